"""``qmc show``: what a QMC output file holds, as text.

Two kinds of file: a result file (``qmc vmc|dmc --out OUT`` writes ``OUT.<method>.h5``,
:meth:`rung.qmc.vmc.QMCResult.to_hdf5`), and a rung dataset holding ``qmc_*`` properties, or ``<prefix>qmc_*``
ones written with ``--property-prefix`` (one block per conformation the QMC rung recorded: status, energies with error bars, forces when present,
``qmc_settings``). Energies in Hartree, forces in Hartree/Bohr. Anything else is refused with
:class:`rung.core.errors.InputError`.
"""

from __future__ import annotations

import json

import numpy as np

from rung.core.errors import InputError


def _plateau(extra: dict) -> str:
    if "plateau" not in extra:
        return "plateau: not assessed"
    return "plateau: yes" if extra["plateau"] else "plateau: NO (the blocking curve has none; the error bar may be too small)"


def force_kind(r) -> str:
    """Which estimator gave a result's forces: VMC, DMC hybrid (Reynolds' mixed one kept beside it) or
    DMC mixed."""
    if r.method != "dmc":
        return "VMC"
    return "DMC, hybrid 2 F_mixed - F_VMC" if "reynolds" in r.force_estimates else "DMC, mixed (Reynolds)"


def forces_table(forces, errors, title: str, symbols=None) -> list:
    """Lines of a forces table (natom, 3) with error bars; ``title`` heads it, units appended."""
    from rung.qmc.stats import format_value

    lines = [f"{title}, Hartree/Bohr:"]
    for a in range(forces.shape[0]):
        sym = f" {symbols[a]:2s}" if symbols is not None else ""
        lines.append(f"  {a:3d}{sym} " + "  ".join(f"{format_value(forces[a, k], errors[a, k]):>16s}" for k in range(3)))
    return lines


def show_result(path) -> str:
    """Text of a ``rung.qmc.result`` file: energy, error bar, variance, components, forces, plateau, settings."""
    from rung.qmc.stats import format_value
    from rung.qmc.vmc import QMCResult

    r = QMCResult.from_hdf5(path)
    lines = [f"{path}: {r.summary()}", f"  variance {r.variance:.6g} Ha^2, acceptance {r.acceptance:.4f}",
             f"  {_plateau(r.extra)}"]
    for k, (m, e) in sorted(r.components.items()):
        lines.append(f"  {k:>16s} = {format_value(m, e)} Ha")
    import h5py

    with h5py.File(path, "r") as f:
        a = f.attrs
        lines.append(f"  settings: method {r.method}, {r.nwalkers} walkers, {r.nsteps} steps, tau {r.tau}, "
                     f"backend {a.get('backend')}, rung-qmc {a.get('package_version')}")
    extra = {k: v for k, v in r.extra.items() if k != "plateau"}
    if extra:
        lines.append("  " + ", ".join(f"{k} {v:g}" for k, v in sorted(extra.items())))
    if r.forces is not None:
        lines += ["  " + s for s in forces_table(r.forces, r.forces_error, f"forces, {force_kind(r)}")]
    return "\n".join(lines)


def qmc_rungs(path) -> list:
    """The names under which rung's QMC wrote into a dataset, sorted: ``qmc``, and ``<prefix>qmc`` for each
    ``--property-prefix`` used (a ``<name>_status`` dataset in a molecule, or a journal record not yet merged)."""
    import re

    import h5py

    from rung.core.dataset import ResultWriter

    own = re.compile(r"(?:[A-Za-z][A-Za-z0-9_]*_)?qmc")
    found = set()
    with h5py.File(path, "r") as f:
        for g in f.values():
            if isinstance(g, h5py.Group):
                found |= {k.removesuffix("_status") for k in g if k.endswith("_status")
                          and own.fullmatch(k.removesuffix("_status"))}
    found |= {rec["rung"] for rec in ResultWriter(path, "qmc", {}).journal_records(any_rung=True)
              if own.fullmatch(rec["rung"])}
    return sorted(found)


def show_dataset(path, prefix: str | None = None) -> str:
    """Text of the QMC properties of a rung dataset, one block per conformation recorded: ``qmc_*`` and
    every ``<prefix>qmc_*`` rung wrote (``--property-prefix``), or only ``<prefix>qmc_*`` when ``prefix``
    is given (``""``: the plain names). Values of these names that rung did not write are not shown."""
    found = qmc_rungs(path)
    rungs = found if prefix is None else [r for r in found if r == prefix + "qmc"]
    if not rungs:
        others = [r.removesuffix("qmc") for r in found]
        raise InputError(f"{path}: no {'' if prefix is None else prefix}qmc_* results in this dataset"
                         + (f"; it holds QMC results under --property-prefix {', '.join(others)}" if others else ""))
    return "\n".join(_show_rung(path, r) for r in rungs)


def _show_rung(path, rung: str) -> str:
    """The block of :func:`show_dataset` of one rung name (``qmc`` or ``<prefix>qmc``)."""
    from rung.core.dataset import STATUS_NAMES, ResultWriter
    from rung.qmc.stats import format_value

    w = ResultWriter(path, rung, {})
    status = {k: v for k, v in w.status().items() if v != 0}
    import h5py

    molecules = sorted({mol for mol, _ in status})
    names, errors = {"settings"}, {}
    n = len(rung) + 1
    with h5py.File(path, "r") as f:
        for mol in molecules:
            g = f[mol]
            names |= {k[n:] for k in g if k.startswith(rung + "_") and k not in (f"{rung}_status", f"{rung}_error")}
            if f"{rung}_error" in g:
                errors.update({(mol, i): v.decode() if isinstance(v, bytes) else str(v)
                               for i, v in enumerate(g[f"{rung}_error"][()])})
    for rec in w.journal_records():  # newer than the file
        errors[(rec["molecule"], rec["index"])] = rec["error"]
        names |= set(rec["values"])
    with_values = {p: w.recorded(p) for p in sorted(names)}
    lines = [f"{rung}_* properties:"]
    for key in sorted(status):
        mol, i = key
        lines.append(f"{mol}[{i}]: {STATUS_NAMES[status[key]]}")
        if status[key] != 1:
            lines.append(f"  {errors.get(key, '')}")
            continue
        vals = {p: v[key] for p, v in with_values.items() if key in v}
        settings = json.loads(vals.pop("settings")) if "settings" in vals else None
        for p in sorted(vals):
            if p.endswith("_error") or "gradient" in p:
                continue
            e = vals.get(f"{p}_error")
            lines.append(f"  {p:>20s} = " + (format_value(float(vals[p]), float(e)) if e is not None
                                               else f"{float(vals[p]):.8f}") + " Ha")
        if "total_gradient" in vals:
            g = np.asarray(vals["total_gradient"])
            ge = np.asarray(vals.get("total_gradient_error", np.zeros_like(g)))
            lines += ["  " + s for s in forces_table(-g, ge, "forces (best estimate)")]
        if settings is not None:
            plateau = settings.pop("plateau", None)
            if plateau is not None:
                lines.append(f"  {_plateau({'plateau': plateau})}")
            lines.append("  settings: " + ", ".join(f"{k} {v}" for k, v in sorted(settings.items())))
        else:
            lines.append("  settings: not recorded")
    return "\n".join(lines)


def show(path, prefix: str | None = None) -> str:
    """Text of a qmc result file or of a dataset's ``qmc_*`` properties (see the module docstring);
    ``prefix``: only the properties written under that ``--property-prefix`` (see :func:`show_dataset`)."""
    import h5py

    from rung.core.dataset import open_hdf5

    with open_hdf5(path) as f:  # a missing, truncated or non-HDF5 file: DatasetError (an InputError)
        schema = f.attrs.get("schema")
        schema = schema.decode() if isinstance(schema, bytes) else schema
        has_groups = any(isinstance(g, h5py.Group) and "conformations" in g for g in f.values())
    if schema == "rung.qmc.result":
        try:
            return show_result(path)
        except (KeyError, OSError, ValueError) as err:
            raise InputError(f"{path}: a damaged qmc result file ({err})") from None
    if has_groups:
        return show_dataset(path, prefix)
    raise InputError(f"{path}: neither a qmc result file (qmc --out) nor a rung dataset with qmc_* properties")
