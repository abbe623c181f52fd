"""The MD driver behind ``nnp-md run``: input -> potential -> integrator -> outputs and checkpoints.

``run(config)`` validates everything and evaluates the initial forces before it creates any output
file, so bad input (unknown potential, dt <= 0, an element the model does not know, a cell thinner
than twice the cutoff without images, an unreadable restart) raises with nothing written. A restart
(``restart=True``) reads ``<prefix>.chk.h5``, truncates the outputs to what they held at that
checkpoint and continues; since the noise of each step depends only on (seed, step) and the
checkpoint holds the full state, the continued run is bit-for-bit the uninterrupted one.

The outputs are reporters (:mod:`rung.md.reporters`: trajectory, log, extxyz, checkpoint), each called
by the step loop at the steps that are multiples of its interval; a last checkpoint ends the run.

The integrator is :func:`rung.md.integrators.ring_polymer` for every P (P = 1 is exactly velocity
Verlet / BAOAB / Bussi), or :func:`rung.md.qtb.qtb` for thermostat = "qtb" | "adqtb" (P = 1), whose
gamma_r and spectra also go to ``<prefix>.qtb.h5`` at every checkpoint and whose quantum kinetic
energy fills both kinetic-energy columns. Atomic units inside; the input and outputs carry their
units in their names.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rung.core import units as U
from rung.core.mpi import comm_info
from rung.core.potential import in_atomic_units
from rung.core.progress import Progress as CoreProgress
from rung.md import estimators as est
from rung.md.config import QTB_THERMOSTATS, InputError, MDConfig
from rung.md.integrators import MDState, ring_polymer
from rung.md.output import OBSERVABLES, H5MDWriter, config_dict, read_checkpoint
from rung.md.parallel import BeadForces
from rung.md.potentials import build_potential
from rung.md.reporters import CheckpointReporter, LogReporter, TrajectoryReporter, XYZReporter


@dataclass(frozen=True)
class System:
    """Atoms to simulate. numbers (n,) int; positions (n, 3) Bohr; masses (n,) m_e; cell (3, 3) Bohr or None."""

    numbers: np.ndarray
    positions: np.ndarray
    masses: np.ndarray
    cell: np.ndarray | None = None


@dataclass(frozen=True)
class MDResult:
    """Final state and the logged observables (atomic units; rows = logged steps of this invocation)."""

    state: MDState
    observables: dict
    ns_per_day: float
    force_calls: int


def read_system(config: MDConfig) -> System:
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


def make_potential(config: MDConfig, system: System):
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


def output_paths(config: MDConfig, workdir=None) -> dict:
    base = Path(workdir) if workdir is not None else Path(".")
    pre = config.output.prefix
    return {"h5md": base / f"{pre}.h5", "xyz": base / f"{pre}.xyz", "log": base / f"{pre}.log",
            "checkpoint": base / f"{pre}.chk.h5", "qtb": base / f"{pre}.qtb.h5"}


def _restart_state(config: MDConfig, path: Path):
    """The state and output sizes of the checkpoint ``path``, checked against the input."""
    try:
        state, saved, sizes, _ = read_checkpoint(path)
    except ValueError as err:
        raise InputError(str(err)) from err
    mine = config_dict(config)
    diff = sorted(k for k in mine if k not in ("steps", "output", "trust_units") and mine[k] != saved.get(k))
    if diff:
        raise InputError(f"cannot restart: the input differs from the checkpoint in {diff}")
    if state.positions.shape[0] != config.beads:
        raise InputError(f"cannot restart: checkpoint has {state.positions.shape[0]} beads, input {config.beads}")
    return state, sizes


def _integrator(config: MDConfig, forces, system: System, kT: float, dt: float):
    """``(init_fn, step_fn, qtb_params)``: the QTB for thermostat qtb|adqtb, else the ring polymer."""
    if config.rp_thermostat in QTB_THERMOSTATS:
        from rung.md import qtb

        try:
            return qtb.from_config(config, forces, system.numbers, system.masses, kT, dt)
        except ValueError as err:
            raise InputError(str(err)) from err
    init_fn, step_fn = ring_polymer(forces, dt, kT, config.beads, thermostat=config.rp_thermostat,
                                    tau=config.tau_fs * U.FS_TO_AU_TIME, pile_lambda=config.pile_lambda,
                                    propagator=config.propagator, seed=config.seed)
    return init_fn, step_fn, None


def _initial_state(init_fn, system: System) -> MDState:
    """The first state (forces evaluated); InputError where the potential cannot take the structure."""
    try:
        state = init_fn(system.positions, system.masses)
    except ValueError as err:
        raise InputError(f"the potential rejected the structure: {err}") from err
    if not np.all(np.isfinite(state.forces)):
        raise InputError("the potential returned non-finite forces for the initial structure")
    return state


def _reporters(config: MDConfig, system: System, pot, paths: dict, sizes: dict | None, qtb_params) -> list:
    """The run's outputs as reporters (trajectory, log, extxyz, then the checkpoint that flushes them):
    new files, or for a restart (``sizes`` from the checkpoint) the files cut back to those sizes."""
    out, dt = config.output, config.dt_fs * U.FS_TO_AU_TIME
    if sizes is not None and (not paths["h5md"].exists() or not paths["log"].exists()):
        raise InputError(f"cannot restart: outputs {paths['h5md']} / {paths['log']} are missing")
    if sizes is None:
        paths["h5md"].parent.mkdir(parents=True, exist_ok=True)  # a new --workdir, once the input is valid
    size = ({} if sizes is None else sizes).get  # None: a new file
    writer = H5MDWriter(paths["h5md"], numbers=system.numbers, masses_amu=system.masses / U.AMU_TO_ELECTRON_MASS,
                        cell=system.cell, P=config.beads, all_beads=out.all_beads,
                        periodic_observables=system.cell is not None,
                        attrs={"backend": "numba", "potential_backend": _backend_of(pot), "beads": config.beads,
                               "dt_fs": config.dt_fs, "temperature_K": config.temperature_K,
                               "thermostat": config.thermostat})
    files = [TrajectoryReporter(writer, out.trajectory_every, dt, size("frames")),
             LogReporter(paths["log"], out.log_every, config.dt_fs, size("log"))]
    if out.xyz:
        files.append(XYZReporter(paths["xyz"], out.trajectory_every, config.dt_fs, system.numbers, system.cell,
                                 size("xyz")))
    return files + [CheckpointReporter(paths["checkpoint"], out.checkpoint_every, config_dict(config), files,
                                       qtb_params, paths["qtb"])]


def _report(reporters, stride: int, state: MDState, kT: float, cell) -> None:
    """Hand ``state`` to the reporters due at its step, the observables computed once if any needs them.
    ``stride``: the gcd of their intervals (0 without reporters); most steps end at that one test."""
    if stride == 0 or state.step % stride:
        return
    due = [r for r in reporters if state.step % r.every == 0]
    o = observables(state, kT, cell) if any(r.uses_observables for r in due) else None
    for r in due:
        r.report(state, o)


def run(config: MDConfig, *, workdir=None, restart: bool = False, overwrite: bool = False, comm=None,
        progress: bool = True) -> MDResult:
    """Run the MD of ``config``; see the module docstring. Rank 0 writes the outputs (reporters).

    workdir : folder for the outputs (default: current folder)
    restart : continue from the checkpoint ``<prefix>.chk.h5``
    overwrite : allow a fresh run to replace outputs of an earlier run
    comm : mpi4py communicator (beads over ranks) or None
    """
    rank, _ = comm_info(comm)
    paths = output_paths(config, workdir)
    kT = config.temperature_K * U.BOLTZMANN_HARTREE_PER_K
    sizes = None
    if restart:
        state, sizes = _restart_state(config, paths["checkpoint"])
    elif paths["checkpoint"].exists() and not overwrite:
        raise InputError(f"{paths['checkpoint']} exists: continue with --restart or allow overwriting (--overwrite)")
    system = read_system(config)
    if restart and state.positions.shape[1] != system.numbers.size:
        raise InputError("cannot restart: the checkpoint has a different number of atoms")
    pot = make_potential(config, system)
    forces = BeadForces(pot, system.numbers, system.cell, virial=system.cell is not None, comm=comm)
    init_fn, step_fn, qtb_params = _integrator(config, forces, system, kT, config.dt_fs * U.FS_TO_AU_TIME)
    if not restart:
        state = _initial_state(init_fn, system)
    reporters = _reporters(config, system, pot, paths, sizes, qtb_params) if rank == 0 else []
    log = next((r for r in reporters if isinstance(r, LogReporter)), None)
    checkpoint = next((r for r in reporters if isinstance(r, CheckpointReporter)), None)
    stride = math.gcd(*(r.every for r in reporters))
    try:
        if not restart:
            _report(reporters, stride, state, kT, system.cell)
        todo = max(0, config.steps - state.step)
        bar = Progress(todo, config.dt_fs, enabled=progress and rank == 0)
        for done in range(1, todo + 1):
            state = step_fn(state)
            _report(reporters, stride, state, kT, system.cell)
            bar.update(done, state.step)
        if checkpoint is not None and checkpoint.step != state.step:  # the last state, unless just written
            checkpoint.report(state)
    finally:
        for r in reporters:
            r.close()
    rows = log.rows if log is not None else {"step": [], **{k: [] for k in OBSERVABLES}}  # ranks > 0 log nothing
    return MDResult(state, {k: np.array(v) for k, v in rows.items()}, bar.ns_per_day(todo) if todo else 0.0,
                     forces.calls)
