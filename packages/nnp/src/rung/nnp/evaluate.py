"""Evaluate a model on a rung dataset (or any structure file) and compare with the other rungs.

``evaluate_dataset`` reads the structures (rung.core.dataset, Bohr), evaluates every molecule's
conformations in one batch, and records per conformation (crash-safe, resumable, through
:class:`rung.core.dataset.ResultWriter` with rung prefix ``nnp``):

- ``nnp_energy`` (Hartree), ``nnp_energy_spread`` (Hartree, ensemble standard deviation),
- ``nnp_forces`` (n_atoms, 3) Hartree/Bohr (atomic units inside rung; ``-gradient``).

A conformation the model cannot evaluate fails alone, recorded as failed with its reason in the
user's numbering (molecule name, conformation index, atom indices within the molecule): NaN or
infinite coordinates, overlapping atoms, an element the model lacks, and charged or open-shell
molecules: ANI models are fits to neutral closed-shell molecules, so a molecule with a charge or a
multiplicity other than 1 is refused rather than given a neutral singlet's energy. :func:`screen`
finds the failures that need no evaluation (all but overlaps).

The values of one property come from one calculation: the model, its networks and the precision are
recorded in the file (``nnp_settings``, JSON) before the first conformation, and a dataset whose
``nnp_*`` values were computed with other settings is refused before any work (:func:`check_settings`;
``--property-prefix`` writes the other model's values beside them).

``predict`` evaluates in memory instead (several models side by side; nothing written).

``compare`` finds reference data of other rungs in the dataset (``<rung>_total_energy`` or
``<rung>_energy``, ``<rung>_total_gradient`` or ``<rung>_gradient``) and reports MAE and RMSE of
energies (kcal/mol) and forces (kcal/mol/Angstrom), of the stored ``nnp_*`` results or of ``predict``'s.
Absolute energies of different methods differ by a constant, so the energy errors are also given
relative: with each molecule's mean over its conformations removed (only molecules with two or more
conformations count there).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rung.core import units as U

_info = logging.getLogger(__name__).info  # the default ``log`` of the long calls: library code prints only when asked

UNITS = {"energy": "hartree", "energy_spread": "hartree", "forces": "hartree/bohr"}


def screen(molecule, potential) -> dict[int, str]:
    """Conformations of ``molecule`` the model cannot evaluate, found without evaluating them.

    Returns {conformation index: reason}: every conformation for a charged or open-shell molecule
    or an element the model lacks, else those with NaN or infinite coordinates.
    """
    m = molecule
    model = potential.model.name
    if m.charge != 0 or m.multiplicity != 1:
        why = (f"{m.name}: charge {m.charge:+d}, multiplicity {m.multiplicity}: {model} is a model of neutral "
               "closed-shell molecules and does not evaluate charged or open-shell ones")
        return {i: f"{why} (conformation {i})" for i in range(m.n_conf)}
    try:
        potential.species_index(m.atomic_numbers)
    except ValueError as err:
        return {i: f"{m.name}: conformation {i}: {err}" for i in range(m.n_conf)}
    bad = np.nonzero(~np.all(np.isfinite(m.conformations), axis=(1, 2)))[0]
    return {int(i): f"{m.name}: conformation {int(i)}: NaN or infinite coordinates" for i in bad}


def _evaluate(potential, z, x):
    """Energies, spreads and forces (Hartree/Bohr) of conformations x (n, n_atoms, 3) Angstrom, one batch."""
    nb, na = x.shape[:2]
    r = potential.evaluate(x.reshape(-1, 3), np.tile(z, nb), batch=np.repeat(np.arange(nb), na))
    return r.energy, r.spread, r.forces.reshape(nb, na, 3) * U.BOHR_TO_ANGSTROM  # Hartree/Angstrom -> Hartree/Bohr


SETTINGS = ("method", "networks", "dtype")  # what makes two evaluations different calculations


def check_settings(dataset, rung: str, settings: dict) -> None:
    """:func:`rung.core.dataset.check_settings` of the ``settings`` (a dict of :data:`SETTINGS`); in a file
    written before they were recorded, the attributes of the first ``<rung>_energy`` say which model."""
    import h5py

    from rung.core.dataset import check_settings as check, open_hdf5

    written = None
    with open_hdf5(dataset) as f:
        for g in f.values() if f"{rung}_settings" not in f.attrs else ():
            d = g.get(f"{rung}_energy") if isinstance(g, h5py.Group) else None
            if d is not None and all(k in d.attrs for k in SETTINGS):
                written = {k: d.attrs[k].item() if hasattr(d.attrs[k], "item") else str(d.attrs[k]) for k in SETTINGS}
                break
    check(dataset, rung, settings, written=written)


def evaluate_dataset(dataset, potential, *, log=_info, rung: str = "nnp") -> int:
    """Evaluate ``potential`` on every pending conformation of ``dataset``; return how many were done.

    A conformation that cannot be evaluated is recorded as failed with its reason (module docstring);
    the others of its molecule are evaluated all the same. ``rung``: the datasets' prefix (``nnp``, or
    ``<--property-prefix>nnp``).
    """
    from rung.core.dataset import ResultWriter, check_foreign, read_hdf5

    from rung.nnp import __version__

    check_foreign(dataset, rung)  # another code's nnp_* values are never overwritten

    meta = {"method": potential.model.name, "networks": len(potential.model.members), "backend": potential.backend,
            "dtype": str(potential.dtype), "package_version": __version__}
    check_settings(dataset, rung, {k: meta[k] for k in SETTINGS})
    writer = ResultWriter(Path(dataset), rung, UNITS, metadata=meta)
    pending = writer.pending()
    todo: dict[str, list[int]] = {}
    for name, idx in pending:
        todo.setdefault(name, []).append(idx)
    mols = {m.name: m for m in read_hdf5(dataset, names=list(todo), allow_nonfinite=True)}
    done = 0
    for name, idx in todo.items():
        m = mols[name]
        refused = screen(m, potential)
        for i in idx:
            if i in refused:
                writer.record(name, i, error=refused[i])
                log(f"failed: {refused[i]}")
        idx = [i for i in idx if i not in refused]
        if not idx:
            continue
        x = m.conformations[idx] * U.BOHR_TO_ANGSTROM  # (n_conf, n_atoms, 3) Angstrom
        try:
            results = [_evaluate(potential, m.atomic_numbers, x)]
            groups = [idx]
        except ValueError:  # one conformation spoils the batch (overlapping atoms): each alone, to name it
            results, groups = [], []
            for k, i in enumerate(idx):
                try:
                    results.append(_evaluate(potential, m.atomic_numbers, x[k:k + 1]))
                    groups.append([i])
                except ValueError as err:  # atom indices are the molecule's own here
                    writer.record(name, i, error=f"{name}: conformation {i}: {err}")
                    log(f"failed: {name}: conformation {i}: {err}")
        for (e, s, f_au), ids in zip(results, groups):
            for k, i in enumerate(ids):
                writer.record(name, i, {"energy": float(e[k]), "energy_spread": float(s[k]), "forces": f_au[k]})
            done += len(ids)
        log(f"{name}: {sum(len(g) for g in groups)} conformation(s)")
    writer.merge()
    return done


@dataclass(frozen=True)
class Errors:
    """Errors of nnp against one reference rung (kcal/mol, kcal/mol/Angstrom; NaN where no data)."""

    rung: str
    n_conf: int
    energy_mae: float
    energy_rmse: float
    rel_energy_mae: float
    rel_energy_rmse: float
    forces_mae: float
    forces_rmse: float


def _find(group, rung, names):
    for n in names:
        key = f"{rung}_{n}"
        if key in group:
            d = group[key]
            return np.asarray(d[()], dtype=np.float64), str(d.attrs.get("units", "hartree"))
    return None, None


def predict(dataset, potential, *, log=_info) -> dict:
    """Energies and forces of every conformation of ``dataset``, in memory (nothing written).

    Returns {molecule: (energy (n_conf,) Hartree, forces (n_conf, n_atoms, 3) Hartree/Bohr)}; a
    molecule the potential rejects (an element it lacks) is left out and logged.
    """
    from rung.core.dataset import read_hdf5

    out = {}
    for m in read_hdf5(dataset):
        try:
            e, _, f_au = _evaluate(potential, m.atomic_numbers, m.conformations * U.BOHR_TO_ANGSTROM)
        except ValueError as err:
            log(f"{m.name}: skipped: {err}")
            continue
        out[m.name] = (e, f_au)
    return out


def compare(dataset, predictions: dict | None = None, rung: str = "nnp") -> list[Errors]:
    """MAE/RMSE of nnp energies and forces against every other rung with data in ``dataset``.

    ``predictions`` (from :func:`predict`) replaces the stored ``<rung>_energy``/``<rung>_forces``.
    """
    import h5py

    e_kcal = U.HARTREE_TO_KCAL_PER_MOL
    f_kcal = U.HARTREE_TO_KCAL_PER_MOL / U.BOHR_TO_ANGSTROM  # Hartree/Bohr -> kcal/mol/Angstrom
    acc: dict[str, dict[str, list]] = {}
    with h5py.File(dataset, "r") as f:
        for name, g in f.items():
            if predictions is not None:
                if name not in predictions:
                    continue
                e_nn, f_nn = predictions[name]
            elif f"{rung}_energy" in g:
                e_nn, f_nn = g[f"{rung}_energy"][()], g[f"{rung}_forces"][()]
            else:
                continue
            rungs = {k.split("_", 1)[0] for k in g.keys() if "_" in k and not k.startswith(f"{rung}_")} - {
                "nnp", "atomic", "smiles"}
            for rung in sorted(rungs):
                e_ref, e_unit = _find(g, rung, ["total_energy", "energy"])
                gr_ref, g_unit = _find(g, rung, ["total_gradient", "gradient"])
                if e_ref is None and gr_ref is None:
                    continue
                a = acc.setdefault(rung, {"de": [], "rel": [], "df": [], "n": 0})
                if e_ref is not None and e_ref.shape == e_nn.shape:
                    ok = np.isfinite(e_ref) & np.isfinite(e_nn)
                    de = (e_nn[ok] - U.to_atomic(e_ref[ok], e_unit)) * e_kcal
                    a["de"].append(de)
                    a["n"] += int(ok.sum())
                    if de.size >= 2:
                        a["rel"].append(de - de.mean())
                if gr_ref is not None and gr_ref.shape == f_nn.shape:
                    ok = np.all(np.isfinite(gr_ref), axis=(1, 2)) & np.all(np.isfinite(f_nn), axis=(1, 2))
                    f_ref = -U.to_atomic(gr_ref[ok], g_unit)
                    a["df"].append(((f_nn[ok] - f_ref) * f_kcal).ravel())
                    a["n"] = max(a["n"], int(ok.sum()))

    def stats(parts):
        if not parts:
            return np.nan, np.nan
        v = np.concatenate(parts)
        return (float(np.mean(np.abs(v))), float(np.sqrt(np.mean(v * v)))) if v.size else (np.nan, np.nan)

    return [Errors(rung, a["n"], *stats(a["de"]), *stats(a["rel"]), *stats(a["df"])) for rung, a in acc.items()]


def format_errors(errors: list[Errors], models: list[str] | None = None) -> str:
    """A table of errors, one row per reference rung; with ``models``, a first column names each row's model."""
    w = max([5] + [len(m) for m in models or []])
    head = f"{'model':{w}s} " if models else ""
    lines = [f"{head}{'rung':8s} {'n_conf':>6s} {'E MAE':>10s} {'E RMSE':>10s} {'relE MAE':>10s} {'relE RMSE':>10s} "
             f"{'F MAE':>10s} {'F RMSE':>10s}   (kcal/mol, forces kcal/mol/A)"]
    for k, e in enumerate(errors):
        first = f"{models[k]:{w}s} " if models else ""
        lines.append(f"{first}{e.rung:8s} {e.n_conf:6d} {e.energy_mae:10.3f} {e.energy_rmse:10.3f} {e.rel_energy_mae:10.3f} "
                     f"{e.rel_energy_rmse:10.3f} {e.forces_mae:10.3f} {e.forces_rmse:10.3f}")
    return "\n".join(lines)
