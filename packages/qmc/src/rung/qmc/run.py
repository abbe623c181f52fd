"""One QMC calculation end to end: trial wave function, VMC, optional DMC, results into the dataset.

``trial_from_dataset`` picks the orbitals the DFT rung saved for a conformation (contract:
``<dataset without .h5>.orbitals.h5``, named by the molecule group's ``dft_orbitals_file``) and falls
back to a PySCF Hartree-Fock calculation on the dataset geometry. ``kernel(mol, orb, config)`` runs
VMC and, when asked, DMC started from the VMC walkers, and returns a frozen :class:`QMCRun`. ``record`` writes ``qmc_*`` properties:
``qmc_<method>_energy`` and ``qmc_<method>_energy_error``, each energy component
``qmc_<method>_<component>`` (+ ``_error``), and ``qmc_total_energy`` (+ ``_error``), the best
(DMC if run, else VMC) estimate; all in Hartree. With forces (``QMCConfig.forces``) also
``qmc_<method>_gradient`` and ``qmc_total_gradient`` (+ ``_error``), (n_atoms, 3) Hartree/Bohr: the
gradient, minus the force (:mod:`rung.qmc.forces` says which derivative it is).

Provenance: each conformation's settings (:func:`result_settings`: method, walkers, blocks, steps, tau,
trial function, determinants, forces, versions) are stored with its values as ``qmc_settings`` (a JSON
string per conformation); the properties' own attributes hold nothing that could differ between
conformations. :func:`check_record` refuses, before any sampling, results that would replace a
conformation's values computed with other settings, or put a second level of theory (:data:`LEVEL`)
into properties that hold another, unless ``replace``; a replacing record clears everything the
conformation held before.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rung.qmc import __version__
from rung.qmc.dmc import DMCConfig, dmc
from rung.qmc.forces import ForceConfig, NuclearDerivatives, displaced_builder
from rung.qmc.hamiltonian import COMPONENTS, Hamiltonian
from rung.qmc.optimize import OptimizeConfig, optimize
from rung.qmc.system import InputError, Orbitals, build_mol, initial_configs, load_orbitals, mean_field, slater_jastrow
from rung.qmc.vmc import QMCResult, VMCConfig, vmc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QMCConfig:
    """What to run: Jastrow optimisation (None: keep the given parameters), VMC settings, DMC settings
    (None: VMC only), three-body Jastrow term, Jastrow on/off, AO kernel backend, forces (None: energies
    only)."""

    vmc: VMCConfig = field(default_factory=VMCConfig)
    dmc: DMCConfig | None = None
    optimize: OptimizeConfig | None = None
    three_body: bool = False
    jastrow: bool = True
    backend: str = "numba"
    forces: ForceConfig | None = None


def trial_from_dataset(dataset, molecule: str, index: int = 0, basis: str = "ccecp-cc-pvdz",
                       ecp: str | None = "ccecp") -> tuple:
    """(mol, Orbitals) for one conformation: the DFT rung's orbitals if saved, else PySCF HF.

    Refuses (:class:`InputError`) a conformation the DFT rung recorded as failed (``dft_status``), and
    one that fails the check every rung runs (:func:`rung.core.dataset.check_conformation`).
    """
    import h5py

    from rung.core.dataset import check_conformation, check_not_failed, read_hdf5

    dataset = Path(dataset)
    with h5py.File(dataset, "r") as f:
        if molecule not in f:  # read only this molecule: a farm calls this once per conformation
            raise InputError(f"{dataset}: no molecule {molecule!r} (has {sorted(f)})")
    (m,) = read_hdf5(dataset, names=[molecule])
    if not 0 <= index < m.n_conf:
        raise InputError(f"{dataset}: {molecule} has {m.n_conf} conformations, index {index} is out of range")
    check_not_failed(dataset, molecule, index, "dft")
    with h5py.File(dataset, "r") as f:
        fname = f[molecule].attrs.get("dft_orbitals_file")
    check_conformation(m.atomic_numbers, m.conformations[index], m.charge, m.multiplicity)
    if fname:
        fname = fname.decode() if isinstance(fname, bytes) else str(fname)
        path = dataset.parent / fname
        if path.exists():
            try:
                mol, orb = load_orbitals(path, molecule, index)
            except InputError as err:
                log.warning("%s; falling back to a PySCF SCF", err)
            else:
                if not np.allclose(mol.atom_coords(), m.conformations[index], atol=1e-5):
                    raise InputError(f"{path}: orbitals of {molecule}/{index} belong to another geometry")
                return mol, orb
    mol = build_mol(m.atomic_numbers, m.conformations[index], basis, ecp, m.charge, m.multiplicity - 1)
    return mol, mean_field(mol)


@dataclass(frozen=True)
class QMCRun:
    """What :func:`kernel` returns.

    vmc : :class:`rung.qmc.vmc.QMCResult` or None (a DMC run resumed from its checkpoint skips the
        optimisation and the VMC); dmc : QMCResult or None (VMC only);
    parameters : {name: array} the trial function's parameters as sampled (after the optimisation;
        ``ProductWF.parameters`` names, e.g. ``"1.ee"``)
    """

    vmc: QMCResult | None
    dmc: QMCResult | None
    parameters: dict

    @property
    def results(self) -> dict:
        """{"vmc": QMCResult, "dmc": QMCResult}, the methods that ran, in that order."""
        return {k: r for k, r in (("vmc", self.vmc), ("dmc", self.dmc)) if r is not None}

    @property
    def best(self) -> QMCResult:
        """The DMC result when DMC ran, else the VMC one."""
        return self.dmc if self.dmc is not None else self.vmc

    def to_hdf5(self, prefix, backend: str = "numba") -> None:
        """``<prefix>.<method>.h5`` per result (:meth:`QMCResult.to_hdf5`) and ``<prefix>.parameters.h5``
        (:func:`save_parameters`)."""
        for method, r in self.results.items():
            r.to_hdf5(f"{prefix}.{method}.h5", backend=backend)
        save_parameters(f"{prefix}.parameters.h5", self.parameters)

    @classmethod
    def from_hdf5(cls, prefix) -> "QMCRun":
        """The files :meth:`to_hdf5` wrote (a method whose file is absent did not run)."""
        res = {m: QMCResult.from_hdf5(f"{prefix}.{m}.h5") for m in ("vmc", "dmc") if Path(f"{prefix}.{m}.h5").exists()}
        return cls(res.get("vmc"), res.get("dmc"), load_parameters(f"{prefix}.parameters.h5"))


def kernel(mol, orb: Orbitals, config: QMCConfig = QMCConfig(), *, parameters: dict | None = None,
           expansion=None, checkpoint=None, trace=None, progress=None) -> QMCRun:
    """Run (optimisation,) VMC (and DMC): a :class:`QMCRun` (DMC only when configured; optimisation and
    VMC are skipped when resuming DMC from a checkpoint, which then needs the same ``parameters`` as the
    run that wrote it). ``expansion``: a multideterminant expansion
    (:func:`rung.qmc.multideterminant.read_multidet`) over ``orb``."""
    options = {"jastrow": config.jastrow, "backend": config.backend, "expansion": expansion,
               "three_body": config.three_body}
    wf = slater_jastrow(mol, orb, parameters=parameters, **options)
    ham = Hamiltonian.from_mol(mol)

    def derivatives():  # with the parameters as they are now (after the optimisation)
        if config.forces is None:
            return None
        build = displaced_builder(mol, orb, parameters=wf.parameters, **options)
        return NuclearDerivatives(build, mol.atom_coords(), config.forces, backend=config.backend)

    rng = np.random.default_rng(config.vmc.seed)
    out = {}
    resuming = config.dmc is not None and checkpoint is not None and Path(checkpoint).exists()
    if resuming:
        configs = np.zeros((config.vmc.nwalkers, sum(mol.nelec), 3))
        e_ref = None
    else:
        configs = initial_configs(mol, config.vmc.nwalkers, rng)
        if config.optimize is not None and config.jastrow:
            _, configs = optimize(wf, ham, configs, config.optimize,
                                  progress=(lambda *a: progress("optimize", *a)) if progress else None)
        r = vmc(wf, ham, configs, config.vmc, rng=rng, forces=derivatives(),
                progress=(lambda *a: progress("vmc", *a)) if progress else None)
        out["vmc"], configs, e_ref = r, r.configs, r.energy
    if config.dmc is not None:
        vf = out["vmc"] if "vmc" in out else None
        out["dmc"] = dmc(wf, ham, configs, config.dmc, e_ref=e_ref, checkpoint=checkpoint, trace=trace,
                         backend=config.backend, progress=(lambda *a: progress("dmc", *a)) if progress else None,
                         forces=derivatives(), vmc_forces=None if vf is None or vf.forces is None else
                         (vf.forces, vf.forces_error))
    return QMCRun(out.get("vmc"), out.get("dmc"), wf.parameters)


def save_parameters(path, parameters: dict) -> None:
    """Wave-function parameters (``ProductWF.parameters`` names) to HDF5."""
    import h5py

    with h5py.File(path, "w") as f:
        f.attrs.update(schema="rung.qmc.parameters", schema_version=1, package_version=__version__)
        for k, v in parameters.items():
            f.create_dataset(k, data=v).attrs["units"] = "dimensionless"


def load_parameters(path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != "rung.qmc.parameters":
                raise InputError(f"{path}: not a rung.qmc parameter file")
            return {k: f[k][()] for k in f}
    except OSError as err:
        raise InputError(f"{path}: unreadable parameter file: {err}") from err


def result_values(run: QMCRun) -> dict:
    """Dataset properties (name -> value) for :class:`rung.core.dataset.ResultWriter` with rung "qmc"."""
    vals = {}
    for method, r in run.results.items():
        vals[f"{method}_energy"] = r.energy
        vals[f"{method}_energy_error"] = r.error
        for k in COMPONENTS:
            vals[f"{method}_{k}"], vals[f"{method}_{k}_error"] = r.components[k]
        if r.forces is not None:
            vals[f"{method}_gradient"], vals[f"{method}_gradient_error"] = -r.forces, r.forces_error
    best = run.best
    vals["total_energy"], vals["total_energy_error"] = best.energy, best.error
    if best.forces is not None:
        vals["total_gradient"], vals["total_gradient_error"] = -best.forces, best.forces_error
    return vals


# Settings that define what a qmc_* value is: one dataset's properties hold one level (else: replace)
LEVEL = ("method", "basis", "ecp", "jastrow", "three_body", "determinants", "optimize_ci", "dmc_tau", "tmoves")
_NOT_THE_CALCULATION = ("seed", "backend", "package_version")  # same numbers, statistically or exactly


# optimisation choices that change the parameters a run ends with (its seed only changes the sample):
# recorded where they differ from the defaults
_OPT_RULE = ("nequil", "tau", "shift", "max_step", "min_samples", "select", "tail", "step", "xi",
             "eval_fraction", "min_samples_per_parameter")


def _optimize_settings(opt: OptimizeConfig | None):
    """[niter, nsteps] (what every record holds since the first format), then {name: value} of the
    :data:`_OPT_RULE` fields that differ from :class:`OptimizeConfig`'s defaults, when any do."""
    if opt is None:
        return None
    default = OptimizeConfig()
    rule = {k: getattr(opt, k) for k in _OPT_RULE if getattr(opt, k) != getattr(default, k)}
    return [opt.niter, opt.nsteps] + ([rule] if rule else [])


def result_settings(mol, orb: Orbitals, config: QMCConfig, expansion=None) -> dict:
    """What decides one conformation's ``qmc_*`` numbers (stored with them as ``qmc_settings``)."""
    s = {"method": "dmc" if config.dmc is not None else "vmc", "basis": str(mol.basis), "ecp": str(mol.ecp or ""),
         "orbitals": orb.source, "jastrow": bool(config.jastrow), "three_body": bool(config.three_body),
         "optimize": _optimize_settings(config.optimize),
         "determinants": 1 if expansion is None else len(expansion.coef),
         "nwalkers": config.vmc.nwalkers, "vmc_blocks": config.vmc.nblocks, "vmc_steps": config.vmc.nsteps,
         "vmc_tau": config.vmc.tau, "forces": None, "seed": config.vmc.seed, "backend": config.backend,
         "package_version": __version__}
    if expansion is not None and getattr(expansion, "optimize_ci", False) and config.optimize is not None:
        s["optimize_ci"] = True  # the CI coefficients optimised with the Jastrow: another trial function (absent: as read)
    if config.forces is not None:
        f = config.forces
        s["forces"] = {"estimator": "zvzb" + ("+space-warp" if f.warp else "") +
                       ("+hybrid" if config.dmc is not None else ""), "every": f.every, "step_bohr": f.step_bohr}
    if config.dmc is not None:
        d = config.dmc
        s.update(dmc_tau=d.tau, dmc_blocks=d.nblocks, dmc_steps=d.nsteps, dmc_equil_blocks=d.nequil_blocks,
                 tmoves=bool(d.tmoves))
    return s


def _differences(old: dict, new: dict, keys) -> str:
    return ", ".join(f"{k} {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k))


def check_record(dataset, molecule: str, index: int, settings: dict, *, replace: bool = False,
                 rung: str = "qmc") -> None:
    """Refuse (:class:`InputError`) results of ``settings`` that would silently replace another calculation.

    Without ``replace``: a conformation already done is only recomputed with the same settings (seed,
    backend and version aside), and values at another level (:data:`LEVEL`) than the other conformations'
    are not added to the same properties. Done conformations without ``qmc_settings`` count as another
    calculation of unknown settings. Journals of a run in progress are read too. ``rung``: the datasets'
    prefix (``qmc``, or ``<--property-prefix>qmc``).
    """
    from rung.core.dataset import DONE, ResultWriter

    if replace:
        return
    w = ResultWriter(dataset, rung, {})
    have = {k: json.loads(v) for k, v in w.recorded("settings").items()}
    key = (molecule, index)
    if w.status().get(key) == DONE:
        if key not in have:
            raise InputError(f"{dataset}: {molecule}[{index}] already holds qmc results without recorded "
                             "settings; --replace overwrites them")
        diff = _differences(have[key], settings, [k for k in settings if k not in _NOT_THE_CALCULATION])
        if diff:
            raise InputError(f"{dataset}: {molecule}[{index}] already holds another QMC calculation ({diff}); "
                             "--replace overwrites it")
    for other, old in sorted(have.items()):
        diff = _differences(old, settings, LEVEL)
        if other != key and diff:
            raise InputError(f"{dataset}: the qmc_* values of {other[0]}[{other[1]}] are at another level ({diff}); "
                             "use another dataset, or --replace to mix levels (qmc_settings tells them apart)")


def recorded_levels(dataset) -> dict:
    """The levels of theory (:data:`LEVEL`) of the ``qmc_*`` values ``dataset`` holds (file and journals,
    read once): ``{level values: ((molecule, index), settings)}``, the first conformation at each level.
    A farm reads this once and checks each task with :func:`check_level` (:func:`check_record` reads the
    whole dataset per call: O(N^2) over N conformations)."""
    from rung.core.dataset import ResultWriter

    out = {}
    for key, v in sorted(ResultWriter(dataset, "qmc", {}).recorded("settings").items()):
        s = json.loads(v)
        out.setdefault(tuple(json.dumps(s.get(k)) for k in LEVEL), (key, s))
    return out


def check_level(dataset, levels: dict, molecule: str, index: int, settings: dict) -> None:
    """Refuse (:class:`InputError`) ``settings`` at another level (:data:`LEVEL`) than the values already
    recorded, ``levels`` from :func:`recorded_levels`: the level check of :func:`check_record`, for a
    conformation not yet done."""
    for other, old in sorted(levels.values()):
        diff = _differences(old, settings, LEVEL)
        if other != (molecule, index) and diff:
            raise InputError(f"{dataset}: the qmc_* values of {other[0]}[{other[1]}] are at another level ({diff}); "
                             "use another dataset, or --replace to mix levels (qmc_settings tells them apart)")


def result_units(values: dict) -> dict:
    """Units of the dataset properties in ``values`` (:func:`result_values` and ``settings``)."""
    return {k: "dimensionless" if k == "settings" else "hartree/bohr" if "gradient" in k else "hartree"
            for k in values}


def record(dataset, molecule: str, index: int, results: QMCRun, mol, orb: Orbitals, config: QMCConfig, *,
           expansion=None, replace: bool = False, rung: str = "qmc") -> None:
    """Write the results of one conformation into the dataset (crash-safe journal, then merge), with its
    settings as ``qmc_settings``, after :func:`check_record`; everything the conformation held before is
    cleared. ``rung``: the datasets' prefix (``qmc``, or ``<--property-prefix>qmc``)."""
    from rung.core.dataset import ResultWriter

    settings = result_settings(mol, orb, config, expansion)
    check_record(dataset, molecule, index, settings, replace=replace, rung=rung)
    vals = {**result_values(results), "settings": json.dumps(settings, sort_keys=True)}
    units = result_units(vals)
    w = ResultWriter(dataset, rung, units, {"settings": f"per conformation: {rung}_settings (JSON)"})
    w.record(molecule, index, vals, replace=True)
    w.merge()
