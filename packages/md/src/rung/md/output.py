"""Run outputs: H5MD trajectory, extxyz, the observables log, and checkpoints.

H5MD 1.1 layout (P. de Buyl, P. H. Colberg, F. Hoefling, Comput. Phys. Commun. 185, 1546 (2014);
https://www.nongnu.org/h5md/h5md.html), readable by h5py and MDAnalysis::

    /h5md                      attrs version = [1, 1]; groups author, creator (name, version)
    /particles/centroid/       the ring-polymer centroid (the atoms themselves for P = 1)
        box                    attrs dimension = 3, boundary = periodic|none;
                               edges/{step, time, value} (frames, 3, 3) nm if periodic (rows = lattice vectors)
        position/{step, time, value}   value (frames, n_atoms, 3) nm, time ps
        velocity/{step, time, value}   value (frames, n_atoms, 3) nm/ps
        species (n_atoms,) atomic numbers; mass (n_atoms,) u
    /particles/beads/          only with output.all_beads: position value (frames, P * n_atoms, 3), bead-major
    /observables/<name>/{step, time, value}
        potential_energy, kinetic_primitive, kinetic_centroid_virial, conserved_energy (kJ/mol),
        temperature (K), pressure (GPa, periodic only)

Every dataset carries a ``unit`` attribute (H5MD) where it has one. Frames are buffered and appended
when a checkpoint is written, so the file is closed (consistent) between checkpoints; the checkpoint
stores how many frames (and how many bytes of the log and extxyz files) belong to the run up to it,
and a restart truncates the outputs to those sizes before continuing.

Checkpoints (``<prefix>.chk.h5``) hold the full :class:`~rung.md.integrators.MDState` and the input
(a thermostat with memory, the QTB, in the group ``/thermostat``); they are written to a temporary
file and renamed, so a kill leaves the previous one intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np

from rung.core import units as U
from rung.md.integrators import MDState

NM = U.BOHR_TO_NM
PS = U.AU_TIME_TO_FS * 1e-3
KJ = U.HARTREE_TO_KJ_PER_MOL
OBSERVABLES = {  # name -> (unit, factor from atomic units)
    "potential_energy": ("kJ mol-1", KJ),
    "kinetic_primitive": ("kJ mol-1", KJ),
    "kinetic_centroid_virial": ("kJ mol-1", KJ),
    "conserved_energy": ("kJ mol-1", KJ),
    "temperature": ("K", 1.0),
    "pressure": ("GPa", U.HARTREE_PER_BOHR3_TO_GPA),
}


def _timeseries(g, name, shape, unit):
    sub = g.create_group(name)
    sub.create_dataset("step", (0,), np.int64, maxshape=(None,))
    t = sub.create_dataset("time", (0,), np.float64, maxshape=(None,))
    t.attrs["unit"] = "ps"
    v = sub.create_dataset("value", (0,) + shape, np.float64, maxshape=(None,) + shape,
                           chunks=(max(1, min(64, 2**20 // (8 * max(1, int(np.prod(shape)))))),) + shape)
    if unit:
        v.attrs["unit"] = unit
    return sub


def _particles(f, name, numbers, masses_amu, cell):
    g = f.create_group(f"particles/{name}")
    box = g.create_group("box")
    box.attrs["dimension"] = 3
    periodic = cell is not None
    box.attrs["boundary"] = np.array([b"periodic" if periodic else b"none"] * 3)
    if periodic:  # time-dependent (H5MD allows both; MDAnalysis reads only this form)
        _timeseries(box, "edges", (3, 3), "nm")
    g.create_dataset("species", data=np.asarray(numbers, dtype=np.int32))
    m = g.create_dataset("mass", data=np.asarray(masses_amu, dtype=np.float64))
    m.attrs["unit"] = "u"
    n = len(numbers)
    _timeseries(g, "position", (n, 3), "nm")
    _timeseries(g, "velocity", (n, 3), "nm ps-1")
    return g


class H5MDWriter:
    """Buffered H5MD trajectory (rank 0 only). ``frame()`` buffers, ``flush()`` appends and closes."""

    def __init__(self, path, *, numbers, masses_amu, cell, P, all_beads, periodic_observables, attrs):
        self.path = Path(path)
        self.P, self.all_beads = P, all_beads
        self.names = [k for k in OBSERVABLES if periodic_observables or k != "pressure"]
        self._buf: list = []
        self._init = dict(numbers=numbers, masses_amu=masses_amu, cell=cell, attrs=attrs)

    def create(self):
        from rung.md import __version__

        a = self._init
        with h5py.File(self.path, "w") as f:
            f.attrs.update({"schema": "h5md", "schema_version": "1.1", "package_version": __version__,
                            **a["attrs"]})
            h = f.create_group("h5md")
            h.attrs["version"] = np.array([1, 1], dtype=np.int32)
            h.create_group("author").attrs["name"] = "rung"
            c = h.create_group("creator")
            c.attrs["name"], c.attrs["version"] = "rung-md", __version__
            _particles(f, "centroid", a["numbers"], a["masses_amu"], a["cell"])
            if self.all_beads:
                n = len(a["numbers"])
                g = _particles(f, "beads", np.tile(a["numbers"], self.P), np.tile(a["masses_amu"], self.P), a["cell"])
                g.attrs["beads"] = self.P
                g.attrs["layout"] = f"bead-major: index = bead * {n} + atom"
            obs = f.create_group("observables")
            for k in self.names:
                _timeseries(obs, k, (), OBSERVABLES[k][0])

    def frame(self, step, time_au, positions, momenta, masses, observables):
        """Buffer one frame. positions, momenta: (P, n, 3) atomic units; observables in atomic units."""
        self._buf.append((step, time_au, positions.copy(), momenta.copy(), masses, dict(observables)))

    def frames(self) -> int:
        if not self.path.exists():
            return 0
        with h5py.File(self.path, "r") as f:
            return f["particles/centroid/position/step"].shape[0]

    def flush(self):
        if not self._buf:
            return
        with h5py.File(self.path, "a") as f:
            groups = [("particles/centroid", lambda x: x.mean(axis=0))]
            if self.all_beads:
                groups.append(("particles/beads", lambda x: x.reshape(-1, 3)))
            for name, reduce in groups:
                for what in ("position", "velocity"):
                    vals = []
                    for step, t, x, p, m, _ in self._buf:
                        v = reduce(x) * NM if what == "position" else reduce(p / m[:, None]) * (NM / PS)
                        vals.append(v)
                    self._append(f[f"{name}/{what}"], vals)
                if self._init["cell"] is not None:
                    self._append(f[f"{name}/box/edges"], [np.asarray(self._init["cell"]) * NM] * len(self._buf))
            for k in self.names:
                unit, fac = OBSERVABLES[k]
                self._append(f[f"observables/{k}"], [np.float64(o.get(k, np.nan)) * fac for *_, o in self._buf])
        self._buf = []

    def _append(self, g, values):
        n0 = g["step"].shape[0]
        n1 = n0 + len(values)
        for ds in ("step", "time", "value"):
            g[ds].resize(n1, axis=0)
        g["step"][n0:n1] = [b[0] for b in self._buf]
        g["time"][n0:n1] = [b[1] * PS for b in self._buf]
        g["value"][n0:n1] = np.asarray(values)

    def truncate(self, frames: int):
        """Drop frames beyond ``frames`` (written after the checkpoint a restart starts from)."""
        with h5py.File(self.path, "a") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Group) and "step" in obj and "value" in obj:
                    for ds in ("step", "time", "value"):
                        obj[ds].resize(min(frames, obj[ds].shape[0]), axis=0)
            f.visititems(visit)


def read_centroid(path) -> dict:
    """The centroid trajectory of a rung H5MD file, atomic units: ``numbers`` (n_atoms,) int64,
    ``positions`` (frames, n_atoms, 3) Bohr, ``cell`` (frames, 3, 3) Bohr or None (not periodic),
    ``time_ps`` (frames,). Lengths are converted from their H5MD ``unit`` attribute (nm, as rung writes
    them, Angstrom/Å, Bohr: :func:`rung.core.units.length_to_bohr`; nm where the attribute is absent,
    H5MD's default). KeyError when the file lacks the layout; InputError for a unit that is no length."""
    from rung.core.errors import InputError

    def length(d):
        unit = d.attrs.get("unit", "nm")
        try:
            return np.array(d) * U.length_to_bohr(unit.decode() if isinstance(unit, bytes) else str(unit))
        except ValueError as err:
            raise InputError(f"{path}: {d.name}: {err}") from None

    with h5py.File(path, "r") as f:
        g = f["particles/centroid"]
        return {"numbers": np.array(g["species"], dtype=np.int64),
                "positions": length(g["position/value"]),
                "cell": length(g["box/edges/value"]) if "edges" in g["box"] else None,
                "time_ps": np.array(g["position/time"])}


def truncate_text(path, size: int):
    """Cut a text output back to ``size`` bytes (what it held at the checkpoint)."""
    path = Path(path)
    if path.exists():
        with open(path, "r+b") as fh:
            fh.truncate(size)


def write_checkpoint(path, state: MDState, *, config: dict, sizes: dict, extra: dict | None = None):
    """Write the state atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["schema"] = "rung-md-checkpoint"
        f.attrs["schema_version"] = 1
        f.attrs["config"] = json.dumps(config)
        f.attrs["sizes"] = json.dumps(sizes)
        f.attrs["extra"] = json.dumps(extra or {})
        f.attrs["step"] = state.step
        f.attrs["thermostat_energy"] = state.thermostat_energy
        for k in ("positions", "momenta", "forces", "energy", "masses", "virial"):
            v = getattr(state, k)
            if v is not None:
                f.create_dataset(k, data=np.asarray(v))
        if state.thermostat_state is not None:
            state.thermostat_state.to_hdf5(f.create_group("thermostat"))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_checkpoint(path):
    """(MDState, config dict, sizes dict, extra dict); ValueError naming the problem if unreadable."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"cannot restart: checkpoint {path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != "rung-md-checkpoint":
                raise ValueError("not a rung-md checkpoint")
            names = ("positions", "momenta", "forces", "energy", "masses", "virial")
            arr = {k: np.array(f[k]) for k in names if k in f}
            thermostat = None
            if "thermostat" in f:
                if f["thermostat"].attrs.get("kind") != "qtb":
                    raise ValueError(f"unknown thermostat state {f['thermostat'].attrs.get('kind')!r}")
                from rung.md.qtb import QTBState

                thermostat = QTBState.from_hdf5(f["thermostat"])
            state = MDState(arr["positions"], arr["momenta"], arr["forces"], arr["energy"], arr["masses"],
                            step=int(f.attrs["step"]), thermostat_energy=float(f.attrs["thermostat_energy"]),
                            virial=arr.get("virial"), thermostat_state=thermostat)
            return (state, json.loads(f.attrs["config"]), json.loads(f.attrs["sizes"]),
                    json.loads(f.attrs["extra"]))
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"cannot restart: checkpoint {path} is unreadable ({err})") from err


def config_dict(config) -> dict:
    return json.loads(json.dumps(asdict(config)))
