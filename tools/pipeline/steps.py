"""The pipeline's steps. Each is idempotent and keyed on the conformation: its state lives in the rung
dataset (``<out>/dataset.h5``: ``dft_*``, ``qmc_*``, ``pipeline_role``) and the model files, so a run
killed anywhere resumes where it stopped and recomputes nothing that was recorded.

Atomic units in the dataset (Bohr, Hartree, Hartree/Bohr); the NNP models speak Angstrom and Hartree
and are converted at their boundary (rung.core.units).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import h5py
import numpy as np

from rung.core import units as U

from .config import ConfigError, PipelineConfig

log = logging.getLogger("tools.pipeline")

UNUSED, TRAIN, HOLDOUT = 0, 1, 2


# ------------------------------------------------------------------ conformations
def g2_molecule(name: str, key: str):
    """The ASE G2 molecule ``name`` (ase.Atoms); an unknown name is a ConfigError naming ``key``."""
    from ase.collections import g2

    try:
        return g2[name]
    except KeyError:
        raise ConfigError(f"[input] {key}: molecule {name!r} is not in ASE's G2 collection") from None


def perturbed(molecule: str, n: int, sigma_angstrom: float, seed: int):
    """n conformations of an ASE G2 molecule: the G2 geometry plus Gaussian displacements (Angstrom)."""
    atoms = g2_molecule(molecule, "perturb")
    rng = np.random.default_rng(seed)
    x = atoms.positions[None] + rng.normal(scale=sigma_angstrom, size=(n, len(atoms), 3))
    return atoms.numbers, x


def model_hessian(model, numbers, x_bohr, h: float = 1e-3) -> np.ndarray:
    """The Hessian (natm, natm, 3, 3), Hartree/Bohr^2, of ``model`` (:func:`predict`) at one geometry
    ``x_bohr`` (natm, 3): central differences of its gradients (step ``h`` Bohr), symmetrised."""
    na = len(numbers)
    steps = np.zeros((2 * 3 * na, na, 3))
    for k in range(3 * na):
        steps[2 * k].flat[k], steps[2 * k + 1].flat[k] = h, -h
    _, g = predict(model, numbers, x_bohr[None] + steps)
    hess = ((g[0::2] - g[1::2]) / (2 * h)).reshape(3 * na, 3 * na)  # row: displaced coordinate
    hess = 0.5 * (hess + hess.T)
    return hess.reshape(na, 3, na, 3).transpose(0, 2, 1, 3)


def normal_mode_sampled(numbers, x_bohr, hessian, n: int, temperature_K: float, rng) -> np.ndarray:
    """n conformations (n, natm, 3), Bohr, by normal-mode sampling (Smith, Isayev, Roitberg, Chem. Sci. 8,
    3192 (2017), the ANI-1 data set's method): the vibrational modes of ``hessian`` at ``x_bohr``
    (PySCF's harmonic analysis, translations and rotations projected out), each conformation displaced
    along every mode i by R_i = +-sqrt(3 c_i N_a k_B T / K_i) with random signs, K_i the force constant
    along the mode's unit Cartesian vector and c_i >= 0 a uniform point of the simplex scaled by a
    uniform u in [0, 1]: the harmonic energy of a conformation is (3/2) N_a k_B T u, at most
    (3/2) N_a k_B T. A mode with K_i <= 0 (not a minimum of the model) is an error."""
    from pyscf import gto
    from pyscf.hessian.thermo import harmonic_analysis

    mol = gto.M(atom=[(int(z), tuple(r)) for z, r in zip(numbers, x_bohr)], unit="Bohr", basis="sto-3g",
                spin=None, verbose=0)
    modes = harmonic_analysis(mol, hessian)["norm_mode"]  # (nmode, natm, 3), Cartesian
    d = modes / np.linalg.norm(modes.reshape(len(modes), -1), axis=1)[:, None, None]
    k = np.einsum("iax,abxy,iby->i", d, hessian, d)
    if np.any(k <= 0):
        raise ConfigError(f"[input] normal_modes: the model's Hessian has {int(np.sum(k <= 0))} non-positive "
                          "force constant(s) at the input geometry (not a minimum of the model)")
    kt = temperature_K * U.BOLTZMANN_HARTREE_PER_K
    c = rng.dirichlet(np.ones(len(k)), size=n) * rng.random((n, 1))
    r = rng.choice([-1.0, 1.0], size=c.shape) * np.sqrt(3.0 * c * len(numbers) * kt / k)
    return x_bohr[None] + np.einsum("ni,iax->nax", r, d)


def triatomic_box(n: int, bond_angstrom, angle_degrees, rng) -> np.ndarray:
    """n triatomic conformations (n, 3, 3), Angstrom, uniform in a box of internal coordinates (the
    kind of region a water potential-energy surface is fitted on): atom 0 the apex, bonds 0-1 and 0-2 each uniform in
    ``bond_angstrom`` = (lo, hi), the angle 1-0-2 uniform in ``angle_degrees``, in the xy plane."""
    r1, r2 = rng.uniform(*bond_angstrom, n), rng.uniform(*bond_angstrom, n)
    theta = np.radians(rng.uniform(*angle_degrees, n))
    x = np.zeros((n, 3, 3))
    x[:, 1, 0] = r1
    x[:, 2, 0], x[:, 2, 1] = r2 * np.cos(theta), r2 * np.sin(theta)
    return x


GENERATORS = {"perturb": ("molecule", "n", "sigma_angstrom"), "normal_modes": ("molecule", "n", "temperature_K"),
              "internal": ("molecule", "n", "bond_angstrom", "angle_degrees")}  # [input] keys: their required keys


def generator_args(key: str, table: dict) -> dict:
    """An ``[input] <key> = {...}`` table checked against :data:`GENERATORS` (``seed`` optional, 0)."""
    need = GENERATORS[key]
    missing = [k for k in need if k not in table]
    if missing:
        raise ConfigError(f"[input] {key} needs {', '.join(need)} (missing {', '.join(missing)})")
    unknown = sorted(set(table) - set(need) - {"seed"})
    if unknown:
        raise ConfigError(f"[input] {key}: unknown key(s) {unknown}")
    return {"seed": 0, **table}


def conformations(cfg: PipelineConfig, out: Path) -> Path:
    """The rung dataset of the run (made once from ``[input]``; an existing one is reused as it is)."""
    from rung.core.dataset import Molecule, create_dataset, read_structures

    path = out / "dataset.h5"
    if path.exists():
        return path
    generator = next((k for k in GENERATORS if getattr(cfg.input, k) is not None), None)
    if generator is not None:
        p = generator_args(generator, getattr(cfg.input, generator))
        atoms, n, rng = g2_molecule(p["molecule"], generator), int(p["n"]), np.random.default_rng(int(p["seed"]))
        if generator == "perturb":
            x = perturbed(p["molecule"], n, float(p["sigma_angstrom"]), int(p["seed"]))[1] * U.ANGSTROM_TO_BOHR
        elif generator == "normal_modes":
            x0 = atoms.positions * U.ANGSTROM_TO_BOHR
            hess = model_hessian(cfg.refit.model, atoms.numbers, x0)
            x = normal_mode_sampled(atoms.numbers, x0, hess, n, float(p["temperature_K"]), rng)
        else:
            bonds, angles = p["bond_angstrom"], p["angle_degrees"]
            ok = lambda v, hi: len(v) == 2 and 0 < float(v[0]) < float(v[1]) <= hi  # noqa: E731
            if len(atoms) != 3 or not (ok(bonds, 10.0) and ok(angles, 180.0)):
                raise ConfigError("[input] internal: needs a triatomic molecule, bond_angstrom = [lo, hi] and "
                                  "angle_degrees = [lo, hi] with 0 < lo < hi (angles <= 180)")
            x = triatomic_box(n, bonds, angles, rng) * U.ANGSTROM_TO_BOHR
        mols = [Molecule(p["molecule"].lower(), atoms.numbers, x)]
    else:
        mols = read_structures(cfg.input.path)
    return create_dataset(path, mols)


# ------------------------------------------------------------------ bookkeeping
def status_arrays(dataset: Path, rung: str) -> dict:
    """``{molecule: (status (n_conf,) int8, n_electrons)}`` of a rung, read from the file (one array per
    molecule; merge the rung's journals first): what a step still has to compute."""
    out = {}
    with h5py.File(dataset, "r") as f:
        for name, g in f.items():
            if isinstance(g, h5py.Group) and "conformations" in g:
                n = g["conformations"].shape[0]
                st = g[f"{rung}_status"][()] if f"{rung}_status" in g else np.zeros(n, np.int8)
                out[name] = (st, int(g["atomic_numbers"][()].sum()))
    return out


# ------------------------------------------------------------------ DFT
def dft_config(cfg: PipelineConfig):
    """The dft_gpu farm's DFTConfig of ``[dft]`` (orbitals saved: QMC starts from them)."""
    from rung.dft_gpu.scf import DFTConfig

    try:
        return DFTConfig(**{**cfg.dft, "save_orbitals": True})
    except (TypeError, ValueError) as err:
        raise ConfigError(f"[dft]: {err}") from err


def dft_task(dataset: str, molecule: str, index: int, config) -> dict:
    """One conformation's DFT values (:func:`rung.dft_gpu.scf.kernel`), from a worker; its
    orbitals (and FCIDUMP) are written beside the dataset as the farm's ranks write them, and folded
    into the orbitals file at the end of the step."""
    from rung.core.dataset import read_hdf5
    from rung.dft_gpu import outputs
    from rung.dft_gpu.scf import kernel

    (m,) = read_hdf5(dataset, names=[molecule])
    res = kernel(m, index, config)
    if config.save_fcidump:
        outputs.write_fcidump(dataset, molecule, index, res.mol, res.mo_coeff, config)
    if config.save_orbitals:
        outputs.write_orbital_part(dataset, molecule, index, res.mol, res.orbitals, config)
    return res.values()


def dft(cfg: PipelineConfig, dataset: Path, ex, task=dft_task, merge_every_s: float = 60.0) -> str:
    """DFT energies, gradients and orbitals for every conformation not yet recorded: each conformation a
    task of ``ex`` (``task``, :func:`dft_task`), largest molecules first, results journalled and merged
    as the QMC step's are; the file is the one ``dft-gpu run`` makes (settings, provenance, failures,
    the orbitals file), with the farm's own preparation and finish (:mod:`rung.dft_gpu.run`)."""
    from rung.core.dataset import DONE, FAILED, PENDING
    from rung.dft_gpu import run as farm_module

    rc = dft_config(cfg)
    if rc.jk == "engine":
        farm_module.engine_accelerate()  # refuse before any task if the engine is absent
    t0 = time.perf_counter()
    impossible = farm_module.prepare(dataset, dataset, rc, {})  # settings check, leftover journals merged
    status = status_arrays(dataset, "dft")
    tasks = [((n, int(i)), nelec, task, (str(dataset), n, int(i), rc)) for n, (st, nelec) in status.items()
             for i in np.flatnonzero(st == PENDING) if (n, int(i)) not in impossible]
    done, failed = farm(ex, farm_module.farm_writer(dataset, rc), tasks, label="dft", merge_every_s=merge_every_s)
    farm_module.finalize(dataset, rc)  # orbital parts into the orbitals file, file references
    st = np.concatenate([s for s, _ in status_arrays(dataset, "dft").values()])
    return (f"{int((st == DONE).sum())} done, {int((st == FAILED).sum())} failed of {st.size} ({done + failed} "
            f"computed now, {time.perf_counter() - t0:.0f} s)")


# ------------------------------------------------------------------ selection
def spread_scores(model, numbers, x_bohr) -> np.ndarray:
    """Ensemble spread (Hartree) of ``model`` for conformations x (n_conf, n_atoms, 3) Bohr."""
    n, na, _ = x_bohr.shape
    res = model.evaluate((x_bohr * U.BOHR_TO_ANGSTROM).reshape(-1, 3), np.tile(numbers, n),
                         batch=np.repeat(np.arange(n), na), forces=False)
    return np.asarray(res.spread)


def farthest_points(features, k: int, first: int = 0) -> list:
    """k indices of ``features`` (n, d) by farthest-point sampling from index ``first``."""
    chosen = [first]
    d = np.linalg.norm(features - features[first], axis=1)
    while len(chosen) < min(k, len(features)):
        nxt = int(np.argmax(d))
        chosen.append(nxt)
        d = np.minimum(d, np.linalg.norm(features - features[nxt], axis=1))
    return chosen


def inverse_distances(x) -> np.ndarray:
    """(n_conf, n_pairs) inverse interatomic distances (the FPS descriptor), x (n_conf, n_atoms, 3)."""
    iu = np.triu_indices(x.shape[1], 1)
    return 1.0 / np.linalg.norm(x[:, :, None] - x[:, None], axis=-1)[:, iu[0], iu[1]]


def pick(method: str, scores_or_features, n: int, rng) -> list:
    """Indices of the n candidates to label: largest spread, farthest points, or random."""
    m = len(scores_or_features)
    if method == "spread":
        return list(np.argsort(-np.asarray(scores_or_features), kind="stable")[:n])
    if method == "fps":
        return farthest_points(np.asarray(scores_or_features), n, first=int(rng.integers(m)))
    return list(rng.choice(m, size=min(n, m), replace=False))


def select(cfg: PipelineConfig, dataset: Path, model: str | None = None, n_holdout: int | None = None) -> dict:
    """Mark conformations for the QMC rung: ``pipeline_role`` 1 (train) / 2 (hold-out) per molecule,
    chosen once among the conformations the DFT rung did not reject and stored in the dataset; a rerun
    reads it back (and refuses other selection settings)."""
    from rung.core.dataset import atomic_update, read_hdf5

    sel = cfg.select
    model = model or cfg.refit.model
    n_holdout = sel.n_holdout if n_holdout is None else n_holdout
    attrs = {"method": sel.method, "n_train": sel.n_train, "n_holdout": n_holdout, "seed": sel.seed,
             "model": str(model)}
    with h5py.File(dataset, "r") as f:
        have = {name: (g["pipeline_role"][()], dict(g["pipeline_role"].attrs)) for name, g in f.items()
                if "pipeline_role" in g}
    if have:
        for name, (_, a) in have.items():
            old = {k: (v.item() if hasattr(v, "item") else v) for k, v in a.items() if k in attrs}
            if old != attrs:
                raise ConfigError(f"{dataset}: conformations were selected with {old}, the input asks {attrs}; "
                                  "use a new output folder to select again")
        return {name: r for name, (r, _) in have.items()}
    mols = read_hdf5(dataset)
    cands = []  # (molecule, index) the DFT rung computed
    with h5py.File(dataset, "r") as f:
        for m in mols:
            st = f[m.name]["dft_status"][()] if "dft_status" in f[m.name] else np.zeros(m.n_conf)
            cands += [(m.name, i) for i in np.flatnonzero(st == 1)]
    need = sel.n_train + n_holdout
    if len(cands) < need:
        raise ConfigError(f"{dataset}: {len(cands)} conformations passed DFT, [select] needs {need}")
    rng = np.random.default_rng(sel.seed)
    hold = set(map(tuple, (cands[i] for i in rng.choice(len(cands), n_holdout, replace=False))))
    pool = [c for c in cands if c not in hold]
    byname = {m.name: m for m in mols}
    if sel.method == "spread":
        from rung.nnp import load_model

        pot = load_model(str(model))
        per_mol = {}  # the pool grouped by molecule, in order (one pass: no scan of the pool per molecule)
        for n, i in pool:
            per_mol.setdefault(n, []).append(i)
        values = np.concatenate([spread_scores(pot, byname[n].atomic_numbers, byname[n].conformations[idx])
                                 for n, idx in per_mol.items()])
        pool = [(n, i) for n, idx in per_mol.items() for i in idx]
    elif sel.method == "fps":
        if len({byname[n].n_atoms for n, _ in pool}) > 1:
            raise ConfigError("[select] method fps compares conformations of one molecule; use spread or random")
        values = inverse_distances(np.stack([byname[n].conformations[i] for n, i in pool]))
    else:
        values = np.zeros(len(pool))
    train = {pool[i] for i in pick(sel.method, values, sel.n_train, rng)}
    roles = {m.name: np.array([TRAIN if (m.name, i) in train else HOLDOUT if (m.name, i) in hold else UNUSED
                               for i in range(m.n_conf)], dtype=np.int8) for m in mols}
    # written into a copy that replaces the file: a kill leaves every role or none (a partial selection
    # would be read back as the whole one) and never an HDF5 file torn by a write in place
    def write(f):
        for name, r in roles.items():
            f[name].create_dataset("pipeline_role", data=r).attrs.update(units="dimensionless", **attrs)

    atomic_update(dataset, write)
    return roles


# ------------------------------------------------------------------ QMC
def qmc_config(s):
    from rung.qmc.dmc import DMCConfig
    from rung.qmc.forces import ForceConfig
    from rung.qmc.optimize import OptimizeConfig
    from rung.qmc.run import QMCConfig
    from rung.qmc.vmc import VMCConfig

    return QMCConfig(VMCConfig(nwalkers=s.walkers, nblocks=s.vmc_blocks, nsteps=s.vmc_steps, seed=s.seed),
                     DMCConfig(tau=s.tau, nblocks=s.dmc_blocks, nsteps=s.dmc_steps, nequil_blocks=2, seed=s.seed)
                     if s.dmc else None,
                     OptimizeConfig(niter=s.optimize_iterations, nsteps=15, seed=s.seed) if s.optimize_iterations else None,
                     forces=ForceConfig(every=s.force_every) if s.force_every else None)


def qmc_task(dataset: str, molecule: str, index: int, settings, basis: str, ecp: str, levels: dict,
             parameters: dict | None = None, shared: dict | None = None) -> dict:
    """One conformation's QMC energies (and forces) and their settings (``qmc_settings``, JSON), from a
    worker; refused before any sampling if the dataset's QMC values are at another level (``levels``:
    :func:`rung.qmc.run.recorded_levels`, read once by the step instead of once per task). With
    ``parameters`` (a shared Jastrow, :func:`shared_jastrow`) no optimisation runs here and ``shared``
    (where the parameters come from) is recorded as the settings' ``optimize``."""
    from dataclasses import replace

    from rung.qmc.run import check_level, kernel, result_settings, result_values, trial_from_dataset

    mol, orb = trial_from_dataset(dataset, molecule, index, basis=basis, ecp=ecp)
    config = qmc_config(settings)
    if parameters is not None:
        config = replace(config, optimize=None)
    recorded = result_settings(mol, orb, config)
    if parameters is not None:
        recorded["optimize"] = {"shared": shared}
    check_level(dataset, levels, molecule, index, recorded)
    run = kernel(mol, orb, config, parameters=parameters)
    return {**result_values(run), "settings": json.dumps(recorded, sort_keys=True)}


def jastrow_task(dataset: str, molecule: str, index: int, settings, basis: str, ecp: str) -> dict:
    """The Jastrow parameters optimised (``[qmc]`` optimisation settings, walkers, seed) on one
    conformation, from a worker: {name: array} (``ProductWF.parameters``)."""
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.optimize import optimize
    from rung.qmc.run import trial_from_dataset
    from rung.qmc.system import initial_configs, slater_jastrow

    mol, orb = trial_from_dataset(dataset, molecule, index, basis=basis, ecp=ecp)
    config = qmc_config(settings)
    wf = slater_jastrow(mol, orb, jastrow=True, backend=config.backend)
    configs = initial_configs(mol, config.vmc.nwalkers, np.random.default_rng(config.vmc.seed))
    optimize(wf, Hamiltonian.from_mol(mol), configs, config.optimize)
    return {k: np.asarray(v) for k, v in wf.parameters.items()}


def shared_jastrow(cfg: PipelineConfig, dataset: Path, ex, roles: dict, pending: set) -> dict:
    """``{molecule: (parameters, origin)}`` for the molecules with conformations in ``pending``: the Jastrow
    optimised once per molecule (:func:`jastrow_task`, on the executor) on its first selected conformation,
    training ones first; kept in ``<dataset stem>.jastrow/<molecule>.h5`` (written whole, with the
    settings that made it: redone under other settings). ``origin``: what each conformation records."""
    import hashlib

    from rung.qmc.run import load_parameters, save_parameters

    s = cfg.qmc
    folder = dataset.with_name(dataset.stem + ".jastrow")
    folder.mkdir(exist_ok=True)
    out, tasks = {}, []
    for name in sorted({n for n, _ in pending}):
        r = roles[name]
        index = int(np.flatnonzero(r == TRAIN)[0] if (r == TRAIN).any() else np.flatnonzero(r > 0)[0])
        origin = {"molecule": name, "index": index, "optimize": [s.optimize_iterations, 15], "walkers": s.walkers,
                  "seed": s.seed}
        path = folder / f"{name}.h5"
        if path.exists():
            with h5py.File(path, "r") as f:
                same = json.loads(f.attrs.get("origin", "{}")) == origin
            if same:
                out[name] = (load_parameters(path), origin)
                continue
        tasks.append(((name, index), 0, jastrow_task, (str(dataset), name, index, s, cfg.dft["basis"], cfg.dft["ecp"])))
        out[name] = (None, origin)
    for (name, index), params, error in ex.run(tasks):
        if error is not None:
            raise ConfigError(f"the shared Jastrow optimisation of {name}[{index}] failed: {error}")
        tmp = folder / f"{name}.h5.tmp"
        save_parameters(tmp, params)
        with h5py.File(tmp, "a") as f:
            f.attrs["origin"] = json.dumps(out[name][1], sort_keys=True)
        os.replace(tmp, folder / f"{name}.h5")
        out[name] = (params, out[name][1])
    for name, (params, origin) in out.items():
        digest = hashlib.sha256(b"".join(np.ascontiguousarray(params[k], np.float64).tobytes()
                                         for k in sorted(params))).hexdigest()[:16]
        out[name] = (params, {**origin, "sha256": digest})
    return out


def farm(ex, writer, tasks, *, label: str, merge_every_s: float = 60.0, units=None) -> tuple:
    """Run ``tasks`` [((molecule, index), cost, fn, args)] on the executor ``ex``; each result (a task
    returns a dict of property values) or failure is journalled by ``writer`` as it arrives, and the
    journal is merged into the dataset every ``merge_every_s`` seconds and at the end (also when an error
    or a kill stops the loop). ``units(values)`` gives the units of properties known only once a task
    returns (None: the writer declares them all). Returns (done, failed)."""
    from rung.core.progress import Progress

    done = failed = 0
    last = time.perf_counter()
    try:
        with Progress(len(tasks), label, unit="task", log=log) as bar:
            for (n, i), values, error in ex.run(tasks):
                if error is None:
                    if units is not None:
                        writer.units.update(units(values))
                    writer.record(n, i, values)
                    done += 1
                else:
                    writer.record(n, i, error=error)
                    failed += 1
                    log.warning("%s %s[%d] FAILED %s", label, n, i, error)
                bar.update(done + failed, f"{n}[{i}]" + (f", {failed} failed" if failed else ""))
                if time.perf_counter() - last > merge_every_s:
                    writer.merge()  # results visible while the run goes on
                    last = time.perf_counter()
    finally:
        writer.merge()
    return done, failed


def qmc(cfg: PipelineConfig, dataset: Path, ex, roles: dict, task=qmc_task, merge_every_s: float = 60.0) -> str:
    """QMC for every selected conformation not yet recorded (``task``, :func:`qmc_task`, on ``ex``,
    molecules with more electrons first); results are journalled as they arrive and merged into the
    dataset every ``merge_every_s`` seconds and at the end."""
    from rung.core.dataset import PENDING, ResultWriter
    from rung.qmc.run import recorded_levels, result_units

    s = cfg.qmc
    basis, ecp = cfg.dft["basis"], cfg.dft["ecp"]
    t0 = time.perf_counter()
    writer = ResultWriter(dataset, "qmc", {}, {"settings": "per conformation: qmc_settings (JSON)"})
    writer.merge()  # a killed run's journal: then the file alone says what is recorded
    levels = recorded_levels(dataset)
    pending = [(n, int(i), nelec) for n, (st, nelec) in status_arrays(dataset, "qmc").items()
               for i in np.flatnonzero((roles[n] > 0) & (st == PENDING))]
    shared = (shared_jastrow(cfg, dataset, ex, roles, {(n, i) for n, i, _ in pending})
              if s.shared_jastrow and s.optimize_iterations and pending else {})
    tasks = [((n, i), nelec, task, (str(dataset), n, i, s, basis, ecp, levels) + shared.get(n, ()))
             for n, i, nelec in pending]
    done, failed = farm(ex, writer, tasks, label="qmc", merge_every_s=merge_every_s, units=result_units)
    n_sel = sum(int((r > 0).sum()) for r in roles.values())
    return f"{n_sel} selected conformations, {done} computed now, {failed} failed now ({time.perf_counter() - t0:.0f} s)"


# ------------------------------------------------------------------ selected CI -> multideterminant QMC
def sci_subset(dataset: Path, roles: dict, cfg: PipelineConfig, path: Path) -> Path | None:
    """The first ``[sci] conformations`` training conformations of the molecules with at most
    ``max_atoms`` atoms, as their own rung dataset (made once: a rerun keeps it and its ``sci_*``
    values, and refuses it if it holds other conformations); None if there is none."""
    from rung.core.dataset import Molecule, create_dataset, read_hdf5

    picked, left = [], cfg.sci.conformations
    for m in read_hdf5(dataset):
        idx = np.flatnonzero(roles[m.name] == TRAIN)[:left] if len(m.atomic_numbers) <= cfg.sci.max_atoms else []
        if len(idx):
            picked.append(Molecule(m.name, m.atomic_numbers, m.conformations[idx], charge=m.charge,
                                   multiplicity=m.multiplicity))
            left -= len(idx)
    if path.exists():
        have = read_hdf5(path)
        if [(m.name, m.conformations.shape) for m in have] != [(m.name, m.conformations.shape) for m in picked] or \
                not all(np.array_equal(a.conformations, b.conformations) for a, b in zip(have, picked)):
            raise ConfigError(f"{path} holds other conformations than [sci] picks now (another [sci] or "
                              "selection); remove it (and sci/) or use another --out")
        return path
    return create_dataset(path, picked) if picked else None  # atomic: whole or absent


def sci_qmc_task(wavefunction: str, settings, determinants: int, kind: str) -> dict:
    """DMC on a sci wave-function file's orbitals, ``kind`` "single" (one determinant, Jastrow optimised)
    or "multi" (the ``determinants`` largest of its expansion, Jastrow + CI coefficients optimised):
    {kind: [energy, reblocked error] (Hartree), "determinants", "weight"}. The two kinds are independent
    tasks (seeded alike), so two workers run them side by side."""
    from dataclasses import replace

    from rung.qmc.multideterminant import read_multidet
    from rung.qmc.run import kernel
    from rung.qmc.system import load_orbitals

    mol, orb = load_orbitals(wavefunction, None, group="orbitals")
    expansion = replace(read_multidet(wavefunction, max_dets=determinants), optimize_ci=True)
    r = kernel(mol, orb, qmc_config(settings), expansion=expansion if kind == "multi" else None).dmc
    return {kind: [float(r.energy), float(r.error)], f"{kind}_plateau": bool(r.extra.get("plateau", True)),
            "determinants": int(expansion.coef.size), "weight": float(expansion.weight)}


def sci_qmc_settings(settings, determinants: int) -> dict:
    """What decides a :func:`sci_qmc_task` result (kept in its JSON: a result made with others is redone)."""
    from dataclasses import asdict

    return {**asdict(settings), "determinants": determinants}


def sci(cfg: PipelineConfig, dataset: Path, ex, roles: dict, out: Path) -> str:
    """CIPSI (rung.sci, resumable per conformation) on the ``[sci]`` subset, then single- and
    multideterminant DMC for each (``<out>/sci/<molecule>.<index>.dmc.json``, written whole with its
    settings; one made with other settings is redone)."""
    from dataclasses import replace

    from rung.core.dataset import DONE
    from rung.qmc.stats import format_value
    from rung.sci.cipsi import CIPSIConfig
    from rung.sci.workflow import run_dataset

    s = cfg.sci
    sub = sci_subset(dataset, roles, cfg, out / "sci.h5")
    if sub is None:
        return f"no training conformation of a molecule with <= {s.max_atoms} atoms"
    folder = out / "sci"
    folder.mkdir(exist_ok=True)

    def wavefunction(n, i):
        return folder / f"{n}.{i}.sci.h5"

    run_dataset(sub, CIPSIConfig(max_det=s.max_det), basis=cfg.dft["basis"], ecp=cfg.dft["ecp"],
                wavefunction_path=wavefunction, log=log.info)
    with h5py.File(sub, "r") as f:
        done = [(n, int(i), float(f[n]["sci_variational_energy"][i]), float(f[n]["sci_total_energy"][i]),
                 int(f[n]["sci_n_det"][i])) for n in f if isinstance(f[n], h5py.Group) and "sci_status" in f[n]
                for i in np.flatnonzero(f[n]["sci_status"][()] == DONE)]
    settings = replace(cfg.qmc, dmc=True, dmc_blocks=s.dmc_blocks, dmc_steps=s.dmc_steps, force_every=0)
    wanted = sci_qmc_settings(settings, s.determinants)

    def recorded(n, i):
        path = folder / f"{n}.{i}.dmc.json"
        return path.exists() and json.loads(path.read_text()).get("settings") == wanted

    tasks = [((n, i, kind), int(kind == "multi"), sci_qmc_task,  # the longer multideterminant run first
              (str(wavefunction(n, i)), settings, s.determinants, kind))
             for n, i, *_ in done if not recorded(n, i) for kind in ("multi", "single")]
    halves = {}
    for (n, i, kind), result, error in ex.run(tasks):
        if error is not None:
            log.warning("sci %s[%d]: %s-determinant DMC failed: %s", n, i, kind, error)
            continue
        r = halves.setdefault((n, i), {"settings": wanted})
        r.update(result)
        if "single" in r and "multi" in r:  # the file is written whole, both DMC runs in it
            tmp = folder / f"{n}.{i}.dmc.json.tmp"
            tmp.write_text(json.dumps(r))
            os.replace(tmp, folder / f"{n}.{i}.dmc.json")
    parts = []
    for n, i, e_var, e_tot, ndet in done:
        head = f"{n}[{i}] CIPSI {ndet} dets E_var {e_var:.5f}, +PT2 {e_tot:.5f} Ha"
        if not recorded(n, i):
            parts.append(head + "; DMC failed")
            continue
        r = json.loads((folder / f"{n}.{i}.dmc.json").read_text())
        (e1, s1), (e2, s2) = r["single"], r["multi"]
        short = [k for k in ("single", "multi") if not r.get(f"{k}_plateau", True)]
        which = "either DMC run" if len(short) == 2 else f"the {short[0]}-determinant run" if short else ""
        parts.append(f"{head}; DMC 1 det {format_value(e1, s1)}, {r['determinants']} dets (Jastrow + CI optimised) "
                     f"{format_value(e2, s2)} Ha: {1e3 * (e2 - e1):+.1f} +- {1e3 * np.hypot(s1, s2):.1f} mHa"
                     + (f" (no blocking plateau in {which}: too short for its correlation time, error bar "
                        "unreliable; raise [sci] dmc_blocks)" if short else ""))
    return "; ".join(parts) or f"CIPSI failed for every conformation (their sci_error in {sub})"


def read_names(dataset: Path) -> list:
    """Molecule names of a rung dataset, in file order."""
    from rung.core.dataset import read_hdf5

    return [m.name for m in read_hdf5(dataset)]


def describe_selection(roles: dict, cfg: PipelineConfig) -> str:
    n_tr = sum(int((r == TRAIN).sum()) for r in roles.values())
    n_ho = sum(int((r == HOLDOUT).sum()) for r in roles.values())
    n = sum(r.size for r in roles.values())
    held = f", {n_ho} held out (random)" if n_ho else ""
    return f"{n_tr} for training by {cfg.select.method}{held}, of {n} conformations"


# ------------------------------------------------------------------ refit
LABELS = ("total_energy", "total_energy_error", "total_gradient", "total_gradient_error")


LADDER_UNITS = {"total_energy": "hartree", "total_energy_error": "hartree", "total_gradient": "hartree/bohr",
                "total_gradient_error": "hartree/bohr", "rung": "dimensionless"}


def dft_error_against_qmc(dq_energy, q_energy_err, dq_gradient, q_gradient_err, floors) -> tuple:
    """The DFT rung's rms error against QMC, the labels' own noise removed: sqrt(mean(r^2) - mean(sigma_q^2))
    over the residuals r (energies after each molecule's offset), not below ``floors`` (Hartree, Hartree/Bohr).
    Returns (energy, gradient) in Hartree and Hartree/Bohr."""
    out = []
    for r, s, floor in ((dq_energy, q_energy_err, floors[0]), (dq_gradient, q_gradient_err, floors[1])):
        r, s = np.asarray(r, np.float64).ravel(), np.asarray(s, np.float64).ravel()
        est = np.sqrt(max(np.mean(r**2) - np.mean(s**2), 0.0)) if r.size >= 2 else 0.0
        out.append(max(float(est), floor))
    return tuple(out)


def ladder_subset(cfg: PipelineConfig, dataset: Path, roles: dict, role: int, path: Path) -> tuple:
    """Labelled conformations as a rung dataset (``ladder_total_energy``, ``ladder_total_gradient``, their
    ``_error`` and ``ladder_rung``, written through rung.core): for ``role`` ``HOLDOUT`` the held-out
    conformations' QMC labels; for ``TRAIN`` the refit's training set, every conformation not held out,
    labelled by the highest rung that labelled it:

    - QMC (role ``TRAIN``, QMC done): its labels and error bars.
    - DFT only (DFT done, ``[refit] dft_labels``): ``dft_total_energy`` plus the molecule's offset (the
      1/sigma^2-weighted mean of QMC - DFT over its conformations with both labels), ``dft_total_gradient``;
      as error bars the DFT rung's rms error against QMC (:func:`dft_error_against_qmc` over the
      conformations with both labels, floored). A molecule with no QMC label gets no DFT label (nothing
      places its DFT energies on the QMC scale). The offset's own error is common to a molecule's DFT
      labels and is left out of their error bars (a constant moves no relative energy).

    Held-out conformations are never in the training set. Returns (path, summary line)."""
    from rung.core.dataset import DONE, Molecule, ResultWriter, create_dataset, read_hdf5

    rc = cfg.refit
    per_mol, dq_e, se, dq_g, sg = [], [], [], [], []
    with h5py.File(dataset, "r") as f:
        for m in read_hdf5(dataset):
            g, r = f[m.name], roles[m.name]
            q = (r == role) & (g["qmc_status"][()] == DONE) if "qmc_status" in g else np.zeros(m.n_conf, bool)
            d = (r != HOLDOUT) & ~q & (g["dft_status"][()] == DONE) if "dft_status" in g else np.zeros(m.n_conf, bool)
            if not (q.any() and rc.dft_labels and role == TRAIN):
                d[:] = False
            if not (q.any() or d.any()):
                continue
            lab = {k: g[f"qmc_{k}"][()] for k in LABELS if f"qmc_{k}" in g}
            dft = {k: g[f"dft_{k}"][()] for k in ("total_energy", "total_gradient") if f"dft_{k}" in g}
            offset = 0.0
            if d.any():
                diff, w = lab["total_energy"][q] - dft["total_energy"][q], lab["total_energy_error"][q] ** -2.0
                offset = float(np.sum(w * diff) / np.sum(w))
                dq_e.append(diff - offset)
                se.append(lab["total_energy_error"][q])
                if "total_gradient" in lab:
                    dq_g.append(lab["total_gradient"][q] - dft["total_gradient"][q])
                    sg.append(lab["total_gradient_error"][q])
            per_mol.append((m, q, d, lab, dft, offset))
    if not per_mol:
        raise ConfigError(f"{dataset}: no conformation of role {role} has QMC labels (did every QMC task fail?)")
    def cat(parts):
        return np.concatenate([np.ravel(v) for v in parts]) if parts else np.zeros(0)

    sig_e, sig_g = dft_error_against_qmc(cat(dq_e), cat(se), cat(dq_g), cat(sg),
                                         (rc.dft_energy_error_floor_mha * 1e-3, rc.dft_gradient_error_floor_mha_per_bohr * 1e-3))
    mols, values = [], []
    for m, q, d, lab, dft, offset in per_mol:
        idx = np.flatnonzero(q | d)
        mols.append(Molecule(m.name, m.atomic_numbers, m.conformations[idx], charge=m.charge,
                             multiplicity=m.multiplicity))
        for j, i in enumerate(idx):
            if q[i]:
                v = {k: lab[k][i] for k in lab} | {"rung": "qmc"}
            else:
                v = {"total_energy": dft["total_energy"][i] + offset, "total_energy_error": sig_e, "rung": "dft"}
                if "total_gradient" in dft:
                    v |= {"total_gradient": dft["total_gradient"][i],
                          "total_gradient_error": np.full_like(dft["total_gradient"][i], sig_g)}
            values.append((m.name, j, v))
    create_dataset(path, mols, overwrite=True)
    n_q = sum(int(q.sum()) for _, q, *_ in per_mol)
    n_d = sum(int(d.sum()) for _, _, d, *_ in per_mol)
    meta = {"source": str(dataset.name), "dft_energy_error_hartree": sig_e, "dft_gradient_error_hartree_per_bohr": sig_g,
            "dft_offsets_hartree": json.dumps({m.name: off for m, _, d, _, _, off in per_mol if d.any()})}
    w = ResultWriter(path, "ladder", LADDER_UNITS, meta)
    for name, j, v in values:
        w.record(name, j, v)
    w.merge()
    if role == HOLDOUT:  # the rung below beside the labels: is the refit model better than DFT against QMC?
        w = ResultWriter(path, "dft", {"total_energy": "hartree", "total_gradient": "hartree/bohr"},
                         {"source": str(dataset.name)})
        for m, q, d, lab, dft, offset in per_mol:
            for j, i in enumerate(np.flatnonzero(q)):
                w.record(m.name, j, {k: v[i] for k, v in dft.items()})
        w.merge()
    line = f"{n_q} QMC-labelled conformations"
    if n_d:
        line += (f" + {n_d} DFT-labelled (on the QMC scale; DFT error bars {sig_e * 1e3:.2f} mHa, "
                 f"{sig_g * 1e3:.1f} mHa/Bohr: its rms error against QMC where both labelled)")
    return path, line


def cv_l2sp(config, grid, folds: int, seed: int) -> tuple:
    """The read-out refit's ``l2sp`` (1/Hartree^2) from ``grid`` by k-fold cross-validation on the training
    conformations of ``config`` (a rung.nnp.train TrainConfig with one read-out stage; its validation
    set is never read here): each fold is refit on the other folds (rung.nnp.train's exact read-out
    refit, the stage's 1/sigma^2 weights) and scored by its chi^2 (the same weights) on the fold left
    out. Returns (the grid value of the lowest total chi^2, [chi^2 per grid value]); folds are a seeded
    partition of the conformations, min(folds, n) of them."""
    from rung.nnp.train.readout import refit as readout_refit
    from rung.nnp.train.run import predict as nnp_predict, prepare

    model, _, plan = prepare(config, overwrite=True, log=lambda *a: None)
    st, frames = plan[0][0], plan[0][1]
    n = frames.n_conf
    k = min(folds, n)
    fold = np.random.default_rng(seed).permutation(n) % k
    scores = []
    for lam in grid:
        chi2 = 0.0
        for j in range(k):
            fit = readout_refit(model, frames.subset(np.flatnonzero(fold != j)).labels(st), frozen=st.frozen,
                                l2sp=lam, shift_l2sp=st.shift_l2sp).model
            test = frames.subset(np.flatnonzero(fold == j))
            lab = test.labels(st)
            e, f = nnp_predict(fit, test)
            chi2 += float(np.sum(lab.energy_weight * (e - lab.energy) ** 2) +
                          np.sum(lab.forces_weight * (f - lab.forces) ** 2))
        scores.append(chi2)
    return float(grid[int(np.argmin(scores))]), scores


def refit(cfg: PipelineConfig, train_sets: list, hold_set: Path, out: Path):
    """Refit the model on the labels of ``train_sets`` (rung datasets from :func:`ladder_subset`: QMC
    labels, and DFT ones where QMC did not label; rung.nnp.train, exact read-out refit, 1/sigma^2 weights
    from the labels' error bars; ``hold_set`` as its validation set, reported only): a
    per-element-shift-only model (the baseline) and the read-out model, each from the base model, and with
    ``[refit] finetune_epochs`` the model fine-tuned from the read-out one (:func:`final_model`);
    ``[refit] l2sp = "cv"`` picks l2sp by :func:`cv_l2sp` on the training sets (written to
    ``refit-cv.json``). Returns (summary line, {name: model path}); skipped when all files exist."""
    from rung.nnp.train import train
    from rung.nnp.train.config import parse_config

    paths = {"shifts": out / "model-shifts.h5", "readout": out / "model-readout.h5"}
    if cfg.refit.finetune_epochs:
        paths["finetune"] = out / "model-finetune.h5"
    cv_file = out / "refit-cv.json"
    if all(p.exists() for p in paths.values()):
        note = ""
        if cv_file.exists():
            c = json.loads(cv_file.read_text())
            note = f"; l2sp {c['l2sp']:.0e} by {c['folds']}-fold CV on the training set"
        return "models from an earlier run" + note, paths
    gradient = "ladder_total_gradient" if cfg.qmc.force_every else ""

    def config(kind, frozen, l2sp, output, model=cfg.refit.model, **stage):
        data = {"model": str(model), "output": output, "name": f"{cfg.refit.model}-qmc-{kind}",
                "training": {"datasets": [str(Path(t).resolve()) for t in train_sets], "energy": "ladder_total_energy",
                             "gradient": gradient, "validation": [str(Path(hold_set).resolve())],
                             "seed": cfg.select.seed, "forces_weight": cfg.refit.force_weight, "l2sp": l2sp},
                "stages": [{"name": kind, "frozen": frozen, **stage}]}
        return parse_config(data, out, source=out / "pipeline.toml")

    l2sp, lines = cfg.refit.l2sp, []
    if l2sp == "cv" and cv_file.exists():  # a run killed after the CV
        l2sp = json.loads(cv_file.read_text())["l2sp"]
    elif l2sp == "cv":
        l2sp, scores = cv_l2sp(config("readout", [], 0.0, "cv.h5"), cfg.refit.cv_l2sp, cfg.refit.cv_folds,
                               cfg.select.seed)
        tmp = cv_file.with_name(cv_file.name + ".tmp")
        tmp.write_text(json.dumps({"l2sp": l2sp, "folds": cfg.refit.cv_folds, "grid": list(cfg.refit.cv_l2sp),
                                   "chi2": scores}))
        os.replace(tmp, cv_file)
        lines.append(f"l2sp {l2sp:.0e} by {cfg.refit.cv_folds}-fold CV on the training set (chi^2 "
                     + ", ".join(f"{v:.0e}: {c:.0f}" for v, c in zip(cfg.refit.cv_l2sp, scores)) + ")")
    # the fine-tuning: every layer but the AEV-reading one, full-batch Adam, fixed epochs (patience 0 and a
    # constant rate: the validation set, the hold-out, only reported)
    tune = {"solver": "gradient", "epochs": cfg.refit.finetune_epochs, "learning_rate": cfg.refit.finetune_learning_rate,
            "optimizer": "adam", "schedule": "constant", "patience": 0, "batch_size": 1 << 30}
    for kind, frozen, start, stage in (("shifts", ["*.weight"], cfg.refit.model, {}), ("readout", [], cfg.refit.model, {}),
                                       ("finetune", ["*.0.*"], paths["readout"], tune)):
        if kind not in paths or paths[kind].exists():
            continue
        tmp = paths[kind].with_name(paths[kind].name + ".partial")
        res = train(config(kind, frozen, l2sp, tmp.name, start, **stage), overwrite=True, log=log.info)
        tmp.replace(paths[kind])  # the model file appears whole or not at all
        lines.append(f"{kind}: {res.stages[-1].n_train} conformations")
    return "; ".join(lines), paths


MODEL_NAMES = {"readout": "read-out", "finetune": "fine-tuned"}  # the refit models as the report names them


def final_model(models: dict) -> str:
    """The refit model the report judges and MD runs: the fine-tuned one when there is one, else the read-out."""
    return "finetune" if "finetune" in models else "readout"


def frames_from_md(md_dir: Path, out: Path, n: int, name: str) -> Path:
    """A rung dataset (``out/dataset.h5``) of n frames of an MD run's trajectory (``md_dir/md.h5``, the
    centroid; evenly spaced over its last two thirds): the next round's conformations."""
    from rung.core.dataset import Molecule, create_dataset

    path = out / "dataset.h5"
    if path.exists():
        return path
    with h5py.File(md_dir / "md.h5", "r") as f:
        g = f["particles/centroid"]
        x = g["position/value"][()]
        unit = g["position/value"].attrs.get("unit", "nm")
        numbers = g["species"][()]
    if (unit.decode() if isinstance(unit, bytes) else str(unit)) != "nm":
        raise ConfigError(f"{md_dir / 'md.h5'}: positions in {unit!r}, expected nm (H5MD)")
    x = x[len(x) // 3:]
    if len(x) < n:
        raise ConfigError(f"{md_dir / 'md.h5'}: {len(x)} frames after equilibration, the next round needs {n}; "
                          "raise [md] steps or lower [loop] frames")
    pick = np.linspace(0, len(x) - 1, n).round().astype(int)
    return create_dataset(path, [Molecule(name, numbers, x[pick] / U.BOHR_TO_NM)])


# ------------------------------------------------------------------ evaluation
def predict(model_name_or_path, numbers, x_bohr):
    """Ensemble-mean energies (n_conf,) Hartree and gradients (n_conf, n_atoms, 3) Hartree/Bohr."""
    from rung.nnp import load_model

    pot = load_model(str(model_name_or_path), dtype="float64")
    n, na, _ = x_bohr.shape
    res = pot.evaluate((x_bohr * U.BOHR_TO_ANGSTROM).reshape(-1, 3), np.tile(numbers, n),
                       batch=np.repeat(np.arange(n), na))
    grad = -np.asarray(res.forces).reshape(n, na, 3) * U.BOHR_TO_ANGSTROM  # Hartree/Angstrom -> Hartree/Bohr
    return np.asarray(res.energy), grad


def evaluate(cfg: PipelineConfig, hold: Path, models: dict):
    """Errors of the base model, the refits of ``models`` (and of the DFT rung itself, from the hold-out
    file's ``dft_*``) against the QMC labels of the held-out conformations (never trained on), with the
    labels' own error bars beside them, and the paired comparisons
    (:func:`tools.pipeline.compare.paired_improvement`: the refit model, :func:`final_model`, against each
    of the others, relative energies and gradient components, error bars from the labels' noise and a
    bootstrap over the held-out conformations) in ``metrics["comparisons"]``."""
    from rung.core.dataset import read_hdf5

    from .compare import conformation_sentence, paired_conformation_improvement, paired_improvement, sentence

    rows = {"base": cfg.refit.model, **{k: str(v) for k, v in models.items()}}
    e_ref, e_err, g_ref, g_err, g_conf, pred = [], [], [], [], [], {k: ([], []) for k in rows}
    n_seen = 0
    with h5py.File(hold, "r") as f:
        for m in read_hdf5(hold):
            g = f[m.name]
            if not np.all(g["ladder_rung"][()].astype(str) == "qmc"):
                raise ConfigError(f"{hold}: {m.name} has held-out labels from a rung other than QMC")
            e_ref.append(g["ladder_total_energy"][()])
            e_err.append(g["ladder_total_energy_error"][()])
            if "ladder_total_gradient" in g:
                g_ref.append(g["ladder_total_gradient"][()].reshape(-1))
                g_err.append(g["ladder_total_gradient_error"][()].reshape(-1))
                g_conf.append(np.repeat(n_seen + np.arange(m.n_conf), 3 * m.n_atoms))
            n_seen += m.n_conf
            for k, path in rows.items():
                e, gr = predict(path, m.atomic_numbers, m.conformations)
                pred[k][0].append(e)
                pred[k][1].append(gr.reshape(-1))
            if "dft_total_energy" in g and "dft_total_gradient" in g:
                pred.setdefault("dft", ([], []))
                pred["dft"][0].append(g["dft_total_energy"][()])
                pred["dft"][1].append(g["dft_total_gradient"][()].reshape(-1))
    if "dft" in pred and len(pred["dft"][0]) < len(e_ref):
        del pred["dft"]  # a molecule without DFT values: no DFT row
    e_ref, e_err = np.concatenate(e_ref), np.concatenate(e_err)
    g_ref = np.concatenate(g_ref) if g_ref else np.zeros(0)
    metrics = {"n_holdout": int(e_ref.size), "label_energy_error": float(np.sqrt(np.mean(e_err**2)))}
    if g_ref.size:
        g_err, g_conf = np.concatenate(g_err), np.concatenate(g_conf)
        metrics["label_gradient_error"] = float(np.sqrt(np.mean(g_err**2)))
    for k in pred:
        de = np.concatenate(pred[k][0]) - e_ref
        metrics[k] = {"energy_rmse": float(np.sqrt(np.mean(de**2))), "energy_mae": float(np.mean(np.abs(de))),
                      "relative_energy_rmse": float(np.std(de))}  # after removing the mean offset
        if len(g_ref):
            dg = np.concatenate(pred[k][1]) - g_ref
            metrics[k]["gradient_rmse"] = float(np.sqrt(np.mean(dg**2)))
            metrics[k]["gradient_rms_per_conformation"] = np.sqrt(np.bincount(g_conf, dg**2) / np.bincount(g_conf)).tolist()
        metrics[k]["energies"] = np.concatenate(pred[k][0]).tolist()
    metrics["qmc_energies"], metrics["qmc_energy_errors"] = e_ref.tolist(), e_err.tolist()
    comp, lines = {}, []
    fin = final_model(models)
    name = MODEL_NAMES[fin]
    if e_ref.size >= 2:
        for a in [k for k in ("base", "shifts", "readout", "dft") if k in pred and k != fin]:
            ea, eb, ga, gb = (np.concatenate(pred[k][j]) for k, j in ((a, 0), (fin, 0), (a, 1), (fin, 1)))
            c = {"energy": paired_improvement(ea, eb, e_ref, e_err, relative=True, seed=cfg.select.seed),
                 "energy_per_conformation": paired_conformation_improvement(ea, eb, e_ref, e_err, relative=True,
                                                                            seed=cfg.select.seed)}
            lines.append(sentence(c["energy"], a, name, "relative energy", "mHa"))
            lines.append(conformation_sentence(c["energy_per_conformation"], a, name, "relative energy", "mHa"))
            if g_ref.size:
                c["gradient"] = paired_improvement(ga, gb, g_ref, g_err, g_conf, seed=cfg.select.seed)
                c["gradient_per_conformation"] = paired_conformation_improvement(ga, gb, g_ref, g_err, g_conf,
                                                                                 seed=cfg.select.seed)
                lines.append(sentence(c["gradient"], a, name, "gradient", "mHa/Bohr"))
                lines.append(conformation_sentence(c["gradient_per_conformation"], a, name, "gradient (rms)",
                                                   "mHa/Bohr"))
            comp[f"{fin}_vs_{a}"] = c
    else:
        lines.append(f"no paired comparison: it needs at least 2 held-out conformations, {e_ref.size} here")
    metrics["comparisons"], metrics["comparison_lines"] = comp, lines
    mha = 1e3
    b, s, r = metrics["base"], metrics["shifts"], metrics["readout"]
    tuned = f", fine-tuned {metrics['finetune']['relative_energy_rmse'] * mha:.2f}" if "finetune" in metrics else ""
    line = (f"held-out relative energy RMSE vs QMC: base {b['relative_energy_rmse'] * mha:.2f}, shifts only "
            f"{s['relative_energy_rmse'] * mha:.2f}, read-out {r['relative_energy_rmse'] * mha:.2f}{tuned} mHa (QMC "
            f"error bars {metrics['label_energy_error'] * mha:.2f} mHa); " + "; ".join(lines[:2]))
    return line, metrics


# ------------------------------------------------------------------ dynamics
def relaxed_start(model, numbers, x_bohr, fmax_ev_per_angstrom: float = 1e-3):
    """The dynamics' start: the conformation of ``x_bohr`` (n_conf, natm, 3) lowest in ``model``'s energy,
    relaxed to its nearest minimum of ``model`` (ASE's BFGS, rung.nnp's calculator, forces below
    ``fmax_ev_per_angstrom``). Returns (ase.Atoms, index of the conformation started from): a run
    started from a distorted conformation would put its excess potential energy into the kinetic energy
    the dynamics report."""
    from ase import Atoms
    from ase.optimize import BFGS

    from rung.nnp import NNPCalculator

    e, _ = predict(model, numbers, x_bohr)
    i = int(np.argmin(e))
    atoms = Atoms(numbers=numbers, positions=x_bohr[i] * U.BOHR_TO_ANGSTROM)
    atoms.calc = NNPCalculator(str(model))
    BFGS(atoms, logfile=None).run(fmax=fmax_ev_per_angstrom, steps=500)
    atoms.calc = None
    return atoms, i


def md(cfg: PipelineConfig, dataset: Path, out: Path, models: dict) -> str:
    """A short (ring-polymer) MD run of the first molecule with the refit model (:func:`final_model`; rung.md),
    from that model's minimum nearest its lowest conformation (:func:`relaxed_start`)."""
    from rung.core.dataset import read_hdf5
    from rung.md.config import load_config
    from rung.md.simulation import run

    m = cfg.md
    mol = read_hdf5(dataset)[0]
    folder = out / "md"
    folder.mkdir(exist_ok=True)
    fin = final_model(models)
    model = Path(models[fin]).resolve()
    start, _ = relaxed_start(model, mol.atomic_numbers, mol.conformations)
    start.write(folder / "start.xyz")
    (folder / "input.toml").write_text(
        f'structure = "start.xyz"\nsteps = {m.steps}\ndt_fs = {m.dt_fs}\ntemperature_K = {m.temperature_K}\n'
        f'beads = {m.beads}\nthermostat = "langevin"\ntau_fs = 20\nseed = 2024\n'
        f'potential = {{type = "nnp", model = "{model}"}}\n'
        "[output]\ntrajectory_every = 10\nlog_every = 1\ncheckpoint_every = 50\n")
    res = run(load_config(folder / "input.toml"), workdir=folder, overwrite=True, progress=False)
    kcv = np.asarray(res.observables["kinetic_centroid_virial"][m.steps // 3:])
    kj = U.HARTREE_TO_KJ_PER_MOL
    classical = 1.5 * mol.n_atoms * m.temperature_K * U.BOLTZMANN_HARTREE_PER_K
    line = (f"{'RPMD P=' + str(m.beads) if m.beads > 1 else 'MD'}, {m.steps} x {m.dt_fs} fs at {m.temperature_K:.0f} K "
            f"with the {MODEL_NAMES[fin]} model from its minimum: K_cv = {kcv.mean() * kj:.2f} kJ/mol (classical {classical * kj:.2f})")
    if m.adqtb_steps:
        q = folder / "adqtb"
        q.mkdir(exist_ok=True)
        (q / "input.toml").write_text(
            f'structure = "../start.xyz"\nsteps = {m.adqtb_steps}\ndt_fs = {m.dt_fs}\ntemperature_K = {m.temperature_K}\n'
            f'thermostat = "adqtb"\nseed = 2024\npotential = {{type = "nnp", model = "{model}"}}\n'
            f"[qtb]\ntseg_fs = {m.tseg_fs}\n[output]\ntrajectory_every = 10\nlog_every = 1\ncheckpoint_every = 100\n")
        rq = run(load_config(q / "input.toml"), workdir=q, overwrite=True, progress=False)
        first = 2 * int(round(m.tseg_fs / m.dt_fs))  # the estimate needs a finished segment's spectra
        kq = np.asarray(rq.observables["kinetic_centroid_virial"][first:])
        line += f"; adQTB {m.adqtb_steps} x {m.dt_fs} fs: K = {kq.mean() * kj:.2f} kJ/mol"
    return line + f"; files in {folder}"
