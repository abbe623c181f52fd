"""The MD driver behind ``nnp-md run``: input -> potential -> integrator -> outputs and checkpoints.

``run(config)`` validates everything and evaluates the initial forces before it creates any output
file, so bad input (unknown potential, dt <= 0, an element the model does not know, a cell thinner
than twice the cutoff without images, an unreadable restart) raises with nothing written. A restart
(``restart=True``) reads ``<prefix>.chk.h5``, truncates the outputs to what they held at that
checkpoint and continues; since the noise of each step depends only on (seed, step) and the
checkpoint holds the full state, the continued run is bit-for-bit the uninterrupted one.

The integrator is :func:`rung.md.integrators.ring_polymer` for every P (P = 1 is exactly velocity
Verlet / BAOAB / Bussi), or :func:`rung.md.qtb.qtb` for thermostat = "qtb" | "adqtb" (P = 1), whose
gamma_r and spectra also go to ``<prefix>.qtb.h5`` at every checkpoint and whose quantum kinetic
energy fills both kinetic-energy columns. Atomic units inside; the input and outputs carry their
units in their names.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rung.core import units as U
from rung.core.potential import in_atomic_units
from rung.core.progress import Progress as CoreProgress
from rung.md import estimators as est
from rung.md.config import QTB_THERMOSTATS, Config, InputError
from rung.md.integrators import MDState, ring_polymer
from rung.md.output import OBSERVABLES, H5MDWriter, config_dict, read_checkpoint, truncate_text, write_checkpoint
from rung.md.parallel import BeadForces
from rung.md.potentials import build_potential


@dataclass(frozen=True)
class System:
    """Atoms to simulate. numbers (n,) int; positions (n, 3) Bohr; masses (n,) m_e; cell (3, 3) Bohr or None."""

    numbers: np.ndarray
    positions: np.ndarray
    masses: np.ndarray
    cell: np.ndarray | None = None


@dataclass(frozen=True)
class RunResult:
    """Final state and the logged observables (atomic units; rows = logged steps of this invocation)."""

    state: MDState
    observables: dict
    ns_per_day: float
    force_calls: int


def read_system(config: Config) -> System:
    """Structure file (ASE) -> System; masses and cell from the input when given. Positions whose bond
    lengths look like another length unit than ASE's Angstrom are refused (InputError), unless
    ``config.trust_units`` (:func:`rung.core.dataset.check_length_unit`, through the cell's images when
    periodic)."""
    from ase.io import read

    path = Path(config.structure)
    if not path.exists():
        raise InputError(f"structure file {path} does not exist")
    try:
        atoms = read(path, parallel=False)  # parallel=False: ranks read on their own (ASE would broadcast)
    except Exception as err:  # ASE raises many types for unreadable files
        raise InputError(f"cannot read structure {path}: {err}") from err
    numbers = atoms.numbers.astype(np.int64)
    masses = atoms.get_masses() if config.masses_amu is None else np.asarray(config.masses_amu, dtype=np.float64)
    if masses.shape != numbers.shape or np.any(masses <= 0):
        raise InputError(f"masses_amu must give {numbers.size} positive masses")
    if config.cell_angstrom is not None:
        cell = np.asarray(config.cell_angstrom, dtype=np.float64)
        if cell.shape != (3, 3):
            raise InputError(f"cell_angstrom must be a 3x3 matrix (rows = lattice vectors), got shape {cell.shape}")
    elif np.all(atoms.pbc):
        cell = np.asarray(atoms.cell, dtype=np.float64)
    elif np.any(atoms.pbc):
        raise InputError(f"{path}: mixed periodic/open boundaries are not supported")
    else:
        cell = None
    if cell is not None and abs(np.linalg.det(cell)) < 1e-9:
        raise InputError("the periodic cell has zero volume")
    positions = atoms.positions * U.ANGSTROM_TO_BOHR
    cell = None if cell is None else cell * U.ANGSTROM_TO_BOHR
    if not config.trust_units:
        from rung.core.dataset import check_length_unit

        check_length_unit(numbers, positions[None], "angstrom", str(path), cell=cell,
                          advice="Convert the file to Angstrom (ASE reads it so), or set trust_units = true in "
                                 "the input (nnp-md run --trust-units) to run it as it is")
    return System(numbers, positions, masses * U.AMU_TO_ELECTRON_MASS, cell)


def make_potential(config: Config, system: System):
    """The potential of the input, in Hartree and Bohr; checks it against the system's cell."""
    try:
        pot = build_potential(config.potential, masses=system.masses, positions=system.positions,
                              numbers=system.numbers, cell=system.cell)
    except RuntimeError:
        raise
    except ValueError as err:
        raise InputError(str(err)) from err
    if hasattr(pot, "check_cell"):
        try:
            pot.check_cell(system.cell)
        except ValueError as err:
            raise InputError(str(err)) from err
    return in_atomic_units(pot)


def _backend_of(potential) -> str:
    """The kernels the potential runs on (its ``backend``: numpy, numba, cupy), or its type where it has
    none (an ASE calculator, a model potential without a backend choice); the integrator is always numba."""
    inner = getattr(potential, "inner", potential)  # unwrap rung.core's unit conversion
    return str(getattr(inner, "backend", type(inner).__name__))


class Progress(CoreProgress):
    """rung.core's progress (a bar on a terminal, a line every 10 % otherwise, on stderr) with the step
    and the simulated time per day as status."""

    def __init__(self, total, dt_fs, stream=None, enabled=True):
        super().__init__(total, "md", unit="step", enabled=enabled, stream=stream or sys.stderr)
        self.dt_fs = dt_fs

    def ns_per_day(self, done) -> float:
        el = time.perf_counter() - self.t0
        return done * self.dt_fs * 1e-6 / el * 86400 if el > 0 else 0.0

    def update(self, done, step):
        if self.enabled:  # the status costs 0.6 us a step to format: not where nothing is shown
            super().update(done, f"step {step}, {self.ns_per_day(done):.4g} ns/day")


def observables(state: MDState, kT: float, cell) -> dict:
    """The logged observables of a state, atomic units (temperature in K).

    With a QTB thermostat both kinetic-energy entries are its quantum kinetic energy estimate
    (:func:`rung.md.qtb.quantum_kinetic`); the path-integral estimators are for ring polymers. A
    classical run (one bead) logs its actual kinetic energy sum p^2/2m in both: there both
    path-integral estimators reduce to the constant 3/2 N kT of the input temperature, which says
    nothing about the trajectory (and is wrong for NVE).
    """
    kq = est.thermostat_kinetic(state)
    q = np.asarray(state.positions)  # (n, 3) or (P, n, 3) Bohr
    if kq is None and (q.ndim == 2 or q.shape[0] == 1):
        kq = est.kinetic_energy(state.momenta, state.masses)
    o = {"potential_energy": est.potential_energy(state.energy),
         "kinetic_primitive": est.kinetic_primitive(state.positions, state.masses, kT) if kq is None else kq,
         "kinetic_centroid_virial": (est.kinetic_centroid_virial(state.positions, state.forces, kT)
                                     if kq is None else kq),
         "conserved_energy": est.conserved(state, kT),
         "temperature": est.temperature_K(state.momenta, state.masses)}
    if cell is not None and state.virial is not None:
        o["pressure"] = est.pressure(state, kT, cell)
    return o


LOG_COLUMNS = ("step", "time_fs", "temperature_K", "potential_energy_Ha", "kinetic_primitive_Ha",
               "kinetic_centroid_virial_Ha", "conserved_energy_Ha", "pressure_GPa")


def _log_line(step, dt_fs, o) -> str:
    p = o.get("pressure")
    ps = "nan" if p is None else f"{p * U.HARTREE_PER_BOHR3_TO_GPA:.10e}"
    return (f"{step:10d} {step * dt_fs:14.4f} {o['temperature']:12.4f} {o['potential_energy']:20.12e} "
            f"{o['kinetic_primitive']:20.12e} {o['kinetic_centroid_virial']:20.12e} "
            f"{o['conserved_energy']:20.12e} {ps}\n")


def _xyz_frame(fh, system, state, step, dt_fs, o):
    from ase import Atoms
    from ase.io import write

    x = state.positions.mean(axis=0) * U.BOHR_TO_ANGSTROM
    cell = None if system.cell is None else system.cell * U.BOHR_TO_ANGSTROM
    atoms = Atoms(numbers=system.numbers, positions=x, cell=cell,
                  pbc=system.cell is not None)
    atoms.info.update({"step": step, "time_fs": step * dt_fs,
                       "potential_energy_eV": o["potential_energy"] * U.HARTREE_TO_EV})
    write(fh, atoms, format="extxyz", parallel=False)


def output_paths(config: Config, workdir=None) -> dict:
    base = Path(workdir) if workdir is not None else Path(".")
    pre = config.output.prefix
    return {"h5md": base / f"{pre}.h5", "xyz": base / f"{pre}.xyz", "log": base / f"{pre}.log",
            "checkpoint": base / f"{pre}.chk.h5", "qtb": base / f"{pre}.qtb.h5"}


def run(config: Config, *, workdir=None, restart: bool = False, overwrite: bool = False, comm=None,
        progress: bool = True) -> RunResult:
    """Run the MD of ``config``; see the module docstring.

    workdir : folder for the outputs (default: current folder)
    restart : continue from the checkpoint ``<prefix>.chk.h5``
    overwrite : allow a fresh run to replace outputs of an earlier run
    comm : mpi4py communicator (beads over ranks) or None
    """
    rank = 0 if comm is None else comm.Get_rank()
    paths = output_paths(config, workdir)
    kT = config.temperature_K * U.BOLTZMANN_HARTREE_PER_K
    dt = config.dt_fs * U.FS_TO_AU_TIME
    P = config.beads
    if restart:
        try:
            state, saved, saved_sizes, _ = read_checkpoint(paths["checkpoint"])
        except ValueError as err:
            raise InputError(str(err)) from err
        mine = config_dict(config)
        diff = sorted(k for k in mine if k not in ("steps", "output", "trust_units") and mine[k] != saved.get(k))
        if diff:
            raise InputError(f"cannot restart: the input differs from the checkpoint in {diff}")
        if state.positions.shape[0] != P:
            raise InputError(f"cannot restart: checkpoint has {state.positions.shape[0]} beads, input {P}")
    elif paths["checkpoint"].exists() and not overwrite:
        raise InputError(f"{paths['checkpoint']} exists: continue with --restart or allow overwriting (--overwrite)")
    system = read_system(config)
    if restart and state.positions.shape[1] != system.numbers.size:
        raise InputError("cannot restart: the checkpoint has a different number of atoms")
    pot = make_potential(config, system)
    forces = BeadForces(pot, system.numbers, system.cell, virial=system.cell is not None, comm=comm)
    qtb_params = None
    if config.rp_thermostat in QTB_THERMOSTATS:
        from rung.md import qtb

        try:
            init_fn, step_fn, qtb_params = qtb.from_config(config, forces, system.numbers, system.masses, kT, dt)
        except ValueError as err:
            raise InputError(str(err)) from err
    else:
        init_fn, step_fn = ring_polymer(forces, dt, kT, P, thermostat=config.rp_thermostat,
                                        tau=config.tau_fs * U.FS_TO_AU_TIME, pile_lambda=config.pile_lambda,
                                        propagator=config.propagator, seed=config.seed)
    if not restart:
        try:
            state = init_fn(system.positions, system.masses)
        except ValueError as err:
            raise InputError(f"the potential rejected the structure: {err}") from err
        if not np.all(np.isfinite(state.forces)):
            raise InputError("the potential returned non-finite forces for the initial structure")
    out = config.output
    writer = H5MDWriter(paths["h5md"], numbers=system.numbers, masses_amu=system.masses / U.AMU_TO_ELECTRON_MASS,
                        cell=system.cell, P=P, all_beads=out.all_beads, periodic_observables=system.cell is not None,
                        attrs={"backend": "numba", "potential_backend": _backend_of(pot), "beads": P, "dt_fs": config.dt_fs,
                               "temperature_K": config.temperature_K, "thermostat": config.thermostat})
    log_fh = xyz_fh = None
    rows = {"step": [], **{k: [] for k in OBSERVABLES}}

    def sizes():
        return {"frames": writer.frames(), "log": paths["log"].stat().st_size,
                "xyz": paths["xyz"].stat().st_size if out.xyz else 0}

    def checkpoint(s):
        if rank == 0:
            writer.flush()
            log_fh.flush()
            if xyz_fh:
                xyz_fh.flush()
            write_checkpoint(paths["checkpoint"], s, config=config_dict(config), sizes=sizes())
            if qtb_params is not None:
                qtb.write_spectra(paths["qtb"], qtb_params, s.thermostat_state)

    def record(s):
        if rank != 0 or (s.step % out.log_every and s.step % out.trajectory_every):
            return
        o = observables(s, kT, system.cell)
        if s.step % out.log_every == 0:
            log_fh.write(_log_line(s.step, config.dt_fs, o))
            rows["step"].append(s.step)
            for k in OBSERVABLES:
                rows[k].append(o.get(k, np.nan))
        if s.step % out.trajectory_every == 0:
            writer.frame(s.step, s.step * dt, s.positions, s.momenta, s.masses, o)
            if xyz_fh:
                _xyz_frame(xyz_fh, system, s, s.step, config.dt_fs, o)

    if rank == 0:
        if restart:
            if not paths["h5md"].exists() or not paths["log"].exists():
                raise InputError(f"cannot restart: outputs {paths['h5md']} / {paths['log']} are missing")
            try:
                writer.truncate(int(saved_sizes["frames"]))
            except OSError as err:
                raise InputError(f"cannot restart: trajectory {paths['h5md']} is unreadable ({err})") from err
            truncate_text(paths["log"], saved_sizes["log"])
            if out.xyz:
                truncate_text(paths["xyz"], saved_sizes["xyz"])
            log_fh = open(paths["log"], "a")
            xyz_fh = open(paths["xyz"], "a") if out.xyz else None
        else:
            paths["h5md"].parent.mkdir(parents=True, exist_ok=True)  # a new --workdir, once the input is valid
            writer.create()
            log_fh = open(paths["log"], "w")
            log_fh.write("# rung-md log; " + " ".join(LOG_COLUMNS) + "\n")
            xyz_fh = open(paths["xyz"], "w") if out.xyz else None
    try:
        if not restart:
            record(state)
            checkpoint(state)
        todo = max(0, config.steps - state.step)
        bar = Progress(todo, config.dt_fs, enabled=progress and rank == 0)
        for done in range(1, todo + 1):
            state = step_fn(state)
            record(state)
            if state.step % out.checkpoint_every == 0 and state.step != config.steps:
                checkpoint(state)
            bar.update(done, state.step)
        checkpoint(state)
        nsday = bar.ns_per_day(todo) if todo else 0.0
    finally:
        if log_fh:
            log_fh.close()
        if xyz_fh:
            xyz_fh.close()
    return RunResult(state, {k: np.array(v) for k, v in rows.items()}, nsday, forces.calls)

