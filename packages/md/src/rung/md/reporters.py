"""The outputs of an MD run as reporters, called from the short loop of :func:`rung.md.simulation.run`
(OpenMM's ``Simulation.reporters``).

The protocol (:class:`Reporter`): ``every`` (steps); ``report(state, observables)``, called at every step
that is a multiple of ``every``; ``uses_observables``, whether ``report`` needs the logged observables
(:func:`rung.md.simulation.observables`, computed once per step for all the reporters due);
``close()``. The output files also have ``flush() -> dict``: hand what they hold to the operating
system and return their size (``{"frames": n}``, ``{"log": bytes}``, ``{"xyz": bytes}``), which the
checkpoint stores so that a restart can cut each file back to it (their ``size`` argument: None for a
fresh file, the stored size to truncate and append).

- :class:`LogReporter`: ``<prefix>.log``, one line of :data:`LOG_COLUMNS` per report, and the rows of
  ``MDResult.observables``.
- :class:`TrajectoryReporter`: the H5MD file (:class:`rung.md.output.H5MDWriter`; frames are buffered
  until the next checkpoint).
- :class:`XYZReporter`: the extxyz file of centroid frames (Angstrom, with step, time and energy in eV).
- :class:`CheckpointReporter`: flushes the files above, then writes ``<prefix>.chk.h5`` (the state, the
  input, the file sizes) and, for a QTB run, its spectra ``<prefix>.qtb.h5``.

Atomic units inside; the files carry their units in their column names or attributes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from rung.core import units as U
from rung.md.config import InputError
from rung.md.integrators import MDState
from rung.md.output import OBSERVABLES, H5MDWriter, truncate_text, write_checkpoint

LOG_COLUMNS = ("step", "time_fs", "temperature_K", "potential_energy_Ha", "kinetic_primitive_Ha",
               "kinetic_centroid_virial_Ha", "conserved_energy_Ha", "pressure_GPa")


class Reporter(Protocol):
    """What the MD loop calls: ``report`` at every step that is a multiple of ``every``."""

    every: int
    uses_observables: bool

    def report(self, state: MDState, observables: dict | None) -> None: ...

    def close(self) -> None: ...


def _text_file(path: Path, size: int | None):
    """``path`` opened for appending after cutting it to ``size`` bytes (a restart), or new (size None)."""
    if size is None:
        return open(path, "w")
    truncate_text(path, size)
    return open(path, "a")


class LogReporter:
    """The observables log: a header, then one line per report (:data:`LOG_COLUMNS`); keeps the rows.

    Parameters
    ----------
    path : Path of the log; every : int, steps; dt_fs : float, time step in fs
    size : int or None
        Bytes of the log at the checkpoint a restart continues from; None starts a new log.
    """

    uses_observables = True

    def __init__(self, path, every: int, dt_fs: float, size: int | None = None):
        self.path, self.every, self.dt_fs = Path(path), every, dt_fs
        self.fh = _text_file(self.path, size)
        if size is None:
            self.fh.write("# rung-md log; " + " ".join(LOG_COLUMNS) + "\n")
        self.rows = {"step": [], **{k: [] for k in OBSERVABLES}}  # this invocation's, atomic units

    def report(self, state, o):
        p = o.get("pressure")
        ps = "nan" if p is None else f"{p * U.HARTREE_PER_BOHR3_TO_GPA:.10e}"
        self.fh.write(f"{state.step:10d} {state.step * self.dt_fs:14.4f} {o['temperature']:12.4f} "
                      f"{o['potential_energy']:20.12e} {o['kinetic_primitive']:20.12e} "
                      f"{o['kinetic_centroid_virial']:20.12e} {o['conserved_energy']:20.12e} {ps}\n")
        self.rows["step"].append(state.step)
        for k in OBSERVABLES:
            self.rows[k].append(o.get(k, np.nan))

    def flush(self) -> dict:
        self.fh.flush()
        return {"log": self.path.stat().st_size}

    def close(self):
        self.fh.close()


class TrajectoryReporter:
    """Frames (positions, velocities, observables) into the H5MD file of ``writer``.

    Parameters
    ----------
    writer : H5MDWriter; every : int, steps; dt : float, time step in atomic units of time
    frames : int or None
        Frames of the file at the checkpoint a restart continues from; None creates the file.
    """

    uses_observables = True

    def __init__(self, writer: H5MDWriter, every: int, dt: float, frames: int | None = None):
        self.writer, self.every, self.dt = writer, every, dt
        if frames is None:
            writer.create()
            return
        try:
            writer.truncate(int(frames))
        except OSError as err:
            raise InputError(f"cannot restart: trajectory {writer.path} is unreadable ({err})") from err

    def report(self, state, o):
        self.writer.frame(state.step, state.step * self.dt, state.positions, state.momenta, state.masses, o)

    def flush(self) -> dict:
        self.writer.flush()
        return {"frames": self.writer.frames()}

    def close(self):
        pass  # frames not flushed by a checkpoint are not part of the run (as after a kill)


class XYZReporter:
    """Centroid frames into an extxyz file (Angstrom; ``step``, ``time_fs``, ``potential_energy_eV``).

    Parameters
    ----------
    path : Path; every : int, steps; dt_fs : float, time step in fs
    numbers : (n,) int; cell : (3, 3) float64 Bohr or None
    size : int or None
        Bytes of the file at the checkpoint a restart continues from; None starts a new file.
    """

    uses_observables = True

    def __init__(self, path, every: int, dt_fs: float, numbers, cell, size: int | None = None):
        self.path, self.every, self.dt_fs = Path(path), every, dt_fs
        self.numbers, self.cell = numbers, cell
        self.fh = _text_file(self.path, size)

    def report(self, state, o):
        from ase import Atoms
        from ase.io import write

        x = state.positions.mean(axis=0) * U.BOHR_TO_ANGSTROM
        cell = None if self.cell is None else self.cell * U.BOHR_TO_ANGSTROM
        atoms = Atoms(numbers=self.numbers, positions=x, cell=cell, pbc=self.cell is not None)
        atoms.info.update({"step": state.step, "time_fs": state.step * self.dt_fs,
                           "potential_energy_eV": o["potential_energy"] * U.HARTREE_TO_EV})
        write(self.fh, atoms, format="extxyz", parallel=False)

    def flush(self) -> dict:
        self.fh.flush()
        return {"xyz": self.path.stat().st_size}

    def close(self):
        self.fh.close()


class CheckpointReporter:
    """Flushes ``outputs`` and writes the checkpoint (state, input, their sizes); QTB spectra if any.

    Parameters
    ----------
    path : Path of the checkpoint; every : int, steps
    config : dict, the input (:func:`rung.md.output.config_dict`)
    outputs : the file reporters whose sizes the checkpoint records
    qtb_params, qtb_path : a QTB run's parameters (:func:`rung.md.qtb.from_config`) and spectra file
    """

    uses_observables = False

    def __init__(self, path, every: int, config: dict, outputs, qtb_params=None, qtb_path=None):
        self.path, self.every, self.config, self.outputs = Path(path), every, config, outputs
        self.qtb_params, self.qtb_path = qtb_params, qtb_path
        self.step = None  # of the last checkpoint written

    def report(self, state, o=None):
        sizes = {"frames": 0, "log": 0, "xyz": 0}
        for r in self.outputs:
            sizes.update(r.flush())
        write_checkpoint(self.path, state, config=self.config, sizes=sizes)
        if self.qtb_params is not None:
            from rung.md.qtb import write_spectra

            write_spectra(self.qtb_path, self.qtb_params, state.thermostat_state)
        self.step = state.step

    def close(self):
        pass


__all__ = ["CheckpointReporter", "LOG_COLUMNS", "LogReporter", "Reporter", "TrajectoryReporter", "XYZReporter"]
