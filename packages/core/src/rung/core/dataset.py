"""The rung dataset: one HDF5 file that every rung reads and writes.

Layout (SPICE 2 compatible; ``schema="rung.dataset"``, ``schema_version=1`` as root attributes)::

    /<molecule>/                      one group per molecule (name: any string without '/')
        atomic_numbers   (n_atoms,) int                         units "dimensionless"
        conformations    (n_conf, n_atoms, 3) float64            units "bohr"
        smiles           (1,) string                             optional
        charge           () int, multiplicity () int             optional (default 0 and 1)
        <rung>_<prop>    (n_conf, ...) NaN where not computed    units "<unit>", method metadata attrs
        <rung>_status    (n_conf,) int8: 0 pending, 1 done, 2 failed
        <rung>_error     (n_conf,) string: why a conformation failed ("" otherwise)

Example properties: ``dft_total_energy`` (n_conf,) Hartree, ``dft_total_gradient``
(n_conf, n_atoms, 3) Hartree/Bohr, ``qmc_total_energy`` with ``qmc_total_energy_error``.

Crash safety (:class:`ResultWriter`): each finished conformation is appended as one JSON line to a
per-rank journal beside the file and fsync'd before the call returns; a line torn by a kill is
ignored. The HDF5 file itself is only ever replaced atomically (written to a temporary copy, then
``os.replace``), so a killed writer never corrupts what is already there, and a rerun sees every
conformation that was recorded and skips it. MPI ranks each write their own journal (one file per
rank); one rank merges them into the HDF5 file.
"""

from __future__ import annotations

import json

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from rung.core.errors import InputError

SCHEMA = "rung.dataset"
SCHEMA_VERSION = 1
MAX_Z = 118
PENDING, DONE, FAILED = 0, 1, 2
MIN_DISTANCE_BOHR = 0.1  # atoms closer than this are on top of each other: no rung computes them
STATUS_NAMES = {PENDING: "pending", DONE: "done", FAILED: "failed"}


class DatasetError(InputError):
    """A structure or dataset file that cannot be used as it is (the message says what and where)."""


@dataclass(frozen=True)
class Molecule:
    """One molecule and its conformations, validated on construction.

    Parameters
    ----------
    name : str
        Group name in the dataset.
    atomic_numbers : (n_atoms,) int
    conformations : (n_conf, n_atoms, 3) float64, Bohr
    charge : int
        Total charge, elementary charges.
    multiplicity : int
        2S + 1.
    smiles : str, optional
    """

    name: str
    atomic_numbers: np.ndarray
    conformations: np.ndarray
    charge: int = 0
    multiplicity: int = 1
    smiles: str | None = None

    def __post_init__(self):
        z = np.asarray(self.atomic_numbers)
        x = np.asarray(self.conformations, dtype=np.float64)
        if not self.name or "/" in self.name:
            raise DatasetError(f"molecule name {self.name!r} must be non-empty and contain no '/'")
        if z.ndim != 1 or z.size == 0 or not np.issubdtype(z.dtype, np.integer):
            raise DatasetError(f"{self.name}: atomic_numbers must be a non-empty 1-D integer array, got {z.dtype} {z.shape}")
        bad = z[(z < 1) | (z > MAX_Z)]
        if bad.size:
            raise DatasetError(f"{self.name}: unknown element, atomic number {int(bad[0])} (must be 1..{MAX_Z})")
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (z.size, 3):
            raise DatasetError(
                f"{self.name}: conformations must have shape (n_conf, {z.size}, 3) to match "
                f"{z.size} atomic numbers, got {tuple(np.shape(self.conformations))}"
            )
        if not np.all(np.isfinite(x)):
            conf = int(np.argwhere(~np.isfinite(x))[0, 0])
            raise DatasetError(f"{self.name}: conformation {conf} has NaN or infinite coordinates")
        if int(self.multiplicity) < 1:
            raise DatasetError(f"{self.name}: multiplicity must be >= 1, got {self.multiplicity}")
        object.__setattr__(self, "atomic_numbers", z.astype(np.int64))
        object.__setattr__(self, "conformations", x)
        object.__setattr__(self, "charge", int(self.charge))
        object.__setattr__(self, "multiplicity", int(self.multiplicity))

    @property
    def n_conf(self) -> int:
        return self.conformations.shape[0]

    @property
    def n_atoms(self) -> int:
        return self.atomic_numbers.size


def check_electrons(atomic_numbers, charge: int, multiplicity: int, core_electrons: int = 0) -> int:
    """Check that charge and multiplicity fit the electron count; return the number of electrons.

    ``core_electrons`` (removed by pseudopotentials) is even for every ccECP, so it never changes the
    parity; it is subtracted so the count returned is the one the calculation sees.
    """
    nelec = int(np.sum(atomic_numbers)) - int(charge) - int(core_electrons)
    if nelec < 0:
        raise DatasetError(f"charge {charge} leaves {nelec} electrons")
    unpaired = int(multiplicity) - 1
    if unpaired > nelec or (nelec - unpaired) % 2:
        raise DatasetError(
            f"multiplicity {multiplicity} is impossible with {nelec} electrons (charge {charge}): "
            "the number of electrons and 2S must have the same parity"
        )
    return nelec


def check_geometry(positions, min_distance_bohr: float = MIN_DISTANCE_BOHR) -> None:
    """Reject atoms on top of each other (closer than ``min_distance_bohr``). positions: (n_atoms, 3) Bohr."""
    x = np.asarray(positions, dtype=np.float64)
    if x.shape[0] < 2:
        return
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    d[np.diag_indices_from(d)] = np.inf
    i, j = np.unravel_index(np.argmin(d), d.shape)
    if d[i, j] < min_distance_bohr:
        raise DatasetError(f"atoms {min(i, j)} and {max(i, j)} are {d[i, j]:.3g} Bohr apart (on top of each other)")


def check_conformation(atomic_numbers, positions, charge: int = 0, multiplicity: int = 1, *,
                       core_electrons: int = 0, min_distance_bohr: float = MIN_DISTANCE_BOHR) -> int:
    """The check every rung runs on a conformation before any work; returns the number of electrons.

    No two atoms closer than ``min_distance_bohr`` (:func:`check_geometry`), and a charge and
    multiplicity that fit the electron count left after ``core_electrons`` (:func:`check_electrons`).

    Parameters
    ----------
    atomic_numbers : (n_atoms,) int
    positions : (n_atoms, 3) float64, Bohr
    charge : int, elementary charges; multiplicity : int, 2S + 1
    core_electrons : electrons replaced by pseudopotentials (even)
    min_distance_bohr : closest allowed approach of two atoms, Bohr

    Raises
    ------
    DatasetError naming the atoms or the electron count.
    """
    check_geometry(positions, min_distance_bohr)
    return check_electrons(atomic_numbers, charge, multiplicity, core_electrons)


# --------------------------------------------------------------------------------------------- readers
def _open(path, mode="r") -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    try:
        return h5py.File(path, mode)
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from err


def _text(value) -> str:
    value = np.asarray(value).ravel()[0] if np.ndim(value) else value
    return value.decode() if isinstance(value, bytes) else str(value)


def smiles_charge(smiles: str) -> int:
    """Total formal charge of a SMILES string, summed over bracket atoms (``[NH4+]``, ``[O-]``, ``[Fe+2]``)."""
    total = 0
    for atom in re.findall(r"\[([^\]]*)\]", smiles):
        m = re.search(r"([+-]+)(\d*)$", atom.split(":")[0])
        if m:
            sign = 1 if m.group(1)[0] == "+" else -1
            total += sign * (int(m.group(2)) if m.group(2) else len(m.group(1)))
    return total


def _length_factor(unit, where: str) -> float:
    from rung.core.units import to_atomic

    try:
        return to_atomic(1.0, _text(unit))
    except ValueError as err:
        raise DatasetError(f"{where}: {err}") from None


def read_hdf5(path, names=None, *, units: str | None = None) -> list[Molecule]:
    """Read molecules from a rung dataset or a SPICE (1 or 2) HDF5 file.

    Conformations are converted to Bohr from their ``units`` attribute (``bohr``, ``angstrom``, ``nm``).
    Units are never guessed: coordinates without the attribute are refused unless ``units`` says what
    they are. The charge comes from a ``charge`` dataset, else from the SMILES formal charges (as SPICE
    encodes it), else 0.
    """
    out = []
    with _open(path) as f:
        keys = list(f.keys()) if names is None else list(names)
        for name in keys:
            if name not in f:
                raise DatasetError(f"{path}: no molecule group {name!r}")
            g = f[name]
            if not isinstance(g, h5py.Group) or "conformations" not in g or "atomic_numbers" not in g:
                raise DatasetError(f"{path}: group {name!r} lacks 'atomic_numbers' or 'conformations'")
            try:
                x = g["conformations"][()]
                z = g["atomic_numbers"][()]
            except OSError as err:
                raise DatasetError(f"{path}: {name}: unreadable data (truncated file?): {err}") from err
            unit = g["conformations"].attrs.get("units", units)
            if unit is None:
                raise DatasetError(f"{path}: {name}/conformations has no 'units' attribute: say which length unit "
                                   "the coordinates are in (dft-gpu run --input-units)")
            x = np.asarray(x, dtype=np.float64) * _length_factor(unit, f"{path}: {name}/conformations")
            smiles = _text(g["smiles"][()]) if "smiles" in g else None
            if "charge" in g:
                charge = int(g["charge"][()])
            else:
                charge = smiles_charge(smiles) if smiles else 0
            mult = int(g["multiplicity"][()]) if "multiplicity" in g else 1
            out.append(Molecule(name, z, x, charge, mult, smiles))
    return out


def read_xyz(path, units: str = "angstrom") -> list[Molecule]:
    """Read xyz/extxyz (any format ASE reads): consecutive frames with the same atoms form one molecule.

    Positions are converted from ``units`` (Angstrom, as ASE reads them) to Bohr. ``charge`` and
    ``multiplicity`` are taken from the extxyz comment line (``info``) when present.
    """
    import ase.io
    from ase.io.formats import UnknownFileTypeError

    path = Path(path)
    factor = _length_factor(units, str(path))
    if path.is_file() and not path.read_bytes().strip():
        raise DatasetError(f"{path}: empty file, no structure to read")
    try:
        # parallel=False: under MPI, ASE would otherwise broadcast from rank 0 (a collective call).
        frames = ase.io.read(str(path), index=":", parallel=False)
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: no such file") from err
    except UnknownFileTypeError as err:
        raise DatasetError(f"{path}: unknown structure file format ({err})") from err
    except (KeyError, ValueError, IndexError, StopIteration) as err:
        raise DatasetError(f"{path}: cannot parse structures (unknown element or malformed file): {err!r}") from err
    if not frames:
        raise DatasetError(f"{path}: no structure in the file")
    groups: list[list] = []
    for atoms in frames:
        key = (tuple(atoms.numbers), atoms.info.get("charge", 0), atoms.info.get("multiplicity", 1))
        if not groups or groups[-1][0] != key:
            groups.append([key, []])
        groups[-1][1].append(atoms.positions * factor)
    names: dict[str, int] = {}
    out = []
    for (numbers, charge, mult), confs in groups:
        from ase.symbols import Symbols

        formula = Symbols(np.array(numbers)).get_chemical_formula()
        names[formula] = names.get(formula, -1) + 1
        name = formula if names[formula] == 0 else f"{formula}_{names[formula]}"
        out.append(Molecule(name, np.array(numbers), np.array(confs), int(charge), int(mult)))
    return out


def read_structures(path, *, units: str | None = None) -> list[Molecule]:
    """Read molecules from an HDF5 dataset (rung or SPICE layout) or any structure file ASE reads.

    ``units``: the length unit of coordinates whose file does not say (HDF5 without a ``units``
    attribute, refused otherwise; structure files: Angstrom unless given).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if h5py.is_hdf5(path) or path.suffix.lower() in (".h5", ".hdf5"):
        return read_hdf5(path, units=units)
    return read_xyz(path, units or "angstrom")


# --------------------------------------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_update(path: Path, update) -> None:
    """Apply ``update(h5file)`` to a copy of ``path`` (or a new file) and move it into place atomically."""
    tmp = path.with_name(path.name + ".tmp")
    if path.exists():
        shutil.copyfile(path, tmp)
    elif tmp.exists():
        tmp.unlink()
    with h5py.File(tmp, "a") as f:
        update(f)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def create_dataset(path, molecules, *, overwrite: bool = False) -> Path:
    """Write molecules (their structures only) to a new rung dataset, atomically.

    An existing file is kept (and checked to hold the same structures) unless ``overwrite``; this is
    what makes a rerun of a job on the same ``--out`` resume instead of starting over.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        have = {m.name: m for m in read_hdf5(path)}
        for m in molecules:
            h = have.get(m.name)
            same = (
                h is not None
                and np.array_equal(h.atomic_numbers, m.atomic_numbers)
                and h.conformations.shape == m.conformations.shape
                and np.allclose(h.conformations, m.conformations, rtol=0, atol=1e-6)
            )
            if not same:
                raise DatasetError(f"{path} exists and holds different structures for {m.name!r}; use another --out")
        return path
    if path.exists():
        path.unlink()

    def write(f):
        f.attrs["schema"] = SCHEMA
        f.attrs["schema_version"] = SCHEMA_VERSION
        for m in molecules:
            g = f.create_group(m.name)
            g.create_dataset("atomic_numbers", data=m.atomic_numbers).attrs["units"] = "dimensionless"
            g.create_dataset("conformations", data=m.conformations).attrs["units"] = "bohr"
            g.create_dataset("charge", data=m.charge)
            g.create_dataset("multiplicity", data=m.multiplicity)
            if m.smiles is not None:
                g.create_dataset("smiles", data=[m.smiles], dtype=h5py.string_dtype())

    _atomic_update(path, write)
    return path


def _encode(value):
    a = np.asarray(value)
    if a.dtype.kind in "US":
        return {"str": str(a)}
    kind = "i" if a.dtype.kind in "biu" else "f"
    return {"kind": kind, "shape": list(a.shape), "data": a.ravel().tolist()}


def _decode(item):
    if "str" in item:
        return item["str"]
    return np.array(item["data"], dtype=np.int64 if item["kind"] == "i" else np.float64).reshape(item["shape"])


def _is_fill(value, fill) -> bool:
    if isinstance(value, str):
        return value == (fill.decode() if isinstance(fill, bytes) else str(fill))
    a = np.asarray(value)
    if a.dtype.kind == "f" and np.isnan(fill):
        return bool(np.all(np.isnan(a)))
    return bool(np.all(a == fill))


@dataclass
class ResultWriter:
    """Crash-safe, resumable writer of one rung's per-conformation results (see the module docstring).

    Parameters
    ----------
    path : path of an existing rung dataset (made with :func:`create_dataset`)
    rung : dataset prefix, e.g. ``"dft"``
    units : property name -> unit string, e.g. ``{"total_energy": "hartree"}``; every property written
        must be declared here
    metadata : attributes stored on every dataset of this rung (level of theory, versions, backend)
    rank : MPI rank; each rank journals to its own file
    """

    path: Path
    rung: str
    units: dict
    metadata: dict = field(default_factory=dict)
    rank: int = 0

    def __post_init__(self):
        self.path = Path(self.path)
        if not self.path.exists():
            raise DatasetError(f"{self.path}: no such dataset; create it first")
        self.journal_dir = self.path.with_name(self.path.name + ".journal")  # made by the first record
        self._journal = self.journal_dir / f"rank{self.rank:05d}.jsonl"
        self._fh = None

    # -- reading state
    def _journal_records(self):
        for jf in sorted(self.journal_dir.glob("rank*.jsonl")):
            with open(jf, "rb") as fh:
                for line in fh:
                    if not line.endswith(b"\n"):
                        break  # torn by a kill mid-write: the conformation was not recorded
                    rec = json.loads(line)
                    if rec["rung"] == self.rung:
                        yield rec

    def status(self) -> dict:
        """``{(molecule, index): PENDING|DONE|FAILED}`` for every conformation, from file and journals."""
        out = {}
        with _open(self.path) as f:
            for name, g in f.items():
                st = g[f"{self.rung}_status"][()] if f"{self.rung}_status" in g else None
                for i in range(g["conformations"].shape[0]):
                    out[(name, i)] = PENDING if st is None else int(st[i])
        for rec in self._journal_records():
            out[(rec["molecule"], rec["index"])] = DONE if rec["status"] == "done" else FAILED
        return out

    def recorded(self, prop: str) -> dict:
        """``{(molecule, index): value}`` of property ``prop`` (without the rung prefix) for every
        conformation recorded as done and holding it, from the file and the journals (newer)."""
        out = {}
        name = f"{self.rung}_{prop}"
        with _open(self.path) as f:
            for mol, g in f.items():
                if isinstance(g, h5py.Group) and name in g and f"{self.rung}_status" in g:
                    d = g[name]
                    values, fill = d[()], d.fillvalue
                    for i in np.flatnonzero(g[f"{self.rung}_status"][()] == DONE):
                        v = values[i]
                        v = v.decode() if isinstance(v, bytes) else v
                        if not _is_fill(v, fill):  # not computed for this conformation
                            out[(mol, int(i))] = v
        for rec in self._journal_records():
            key = (rec["molecule"], rec["index"])
            if rec["status"] == "done" and prop in rec["values"]:
                out[key] = _decode(rec["values"][prop])
            elif rec.get("replace") or rec["status"] != "done":
                out.pop(key, None)
        return out

    def pending(self) -> list:
        """Conformations not yet recorded (done or failed), as sorted ``(molecule, index)`` pairs."""
        return sorted(k for k, v in self.status().items() if v == PENDING)

    # -- writing
    def record(self, molecule: str, index: int, values: dict | None = None, *, error: str | None = None,
               replace: bool = False) -> None:
        """Record one conformation's results (or, with ``error``, its failure), durably, before returning.

        With ``replace`` the record is the conformation's whole result: the merge first clears every
        ``<rung>_*`` value it held (to the dataset's fill value: NaN, -1 or ""), so nothing of an
        earlier calculation stays beside the new one.
        """
        values = values or {}
        unknown = set(values) - set(self.units)
        if unknown:
            raise KeyError(f"properties {sorted(unknown)} have no declared units")
        if error is None:
            for k, v in values.items():
                a = np.asarray(v)
                if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                    raise ValueError(f"{molecule}[{index}]: {k} is not finite; record it as failed instead")
        rec = {
            "rung": self.rung,
            "molecule": molecule,
            "index": int(index),
            "status": "done" if error is None else "failed",
            "error": error or "",
            "values": {k: _encode(v) for k, v in values.items()},
        }
        if replace:
            rec["replace"] = True
        if self._fh is None:
            self.journal_dir.mkdir(exist_ok=True)
            self._truncate_torn_tail()
            self._fh = open(self._journal, "ab")
        self._fh.write((json.dumps(rec, allow_nan=True) + "\n").encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def _truncate_torn_tail(self):
        if not self._journal.exists():
            return
        data = self._journal.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(self._journal, "rb+") as fh:
                fh.truncate(keep)

    def close(self):
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def merge(self) -> int:
        """Fold every rank's journal into the HDF5 file (atomically), then drop the journals (and their
        folder, when empty).

        Call it from one process only (rank 0, after the others are done). Returns the number of
        records merged. Idempotent: a crash after the file is replaced but before the journals are
        removed just merges the same values again.
        """
        self.close()
        records = list(self._journal_records())
        if not records:
            return 0

        def update(f):
            for rec in records:
                g = f[rec["molecule"]]
                n = g["conformations"].shape[0]
                st = self._require(g, f"{self.rung}_status", (n,), np.int8, PENDING, "dimensionless")
                err = self._require(g, f"{self.rung}_error", (n,), h5py.string_dtype(), "", "dimensionless")
                i = rec["index"]
                if rec.get("replace"):
                    for name, d in g.items():
                        if name.startswith(f"{self.rung}_") and isinstance(d, h5py.Dataset) and d.shape[:1] == (n,):
                            d[i] = d.fillvalue
                st[i] = DONE if rec["status"] == "done" else FAILED
                err[i] = rec["error"]
                for k, item in rec["values"].items():
                    v = _decode(item)
                    if isinstance(v, str):
                        d = self._require(g, f"{self.rung}_{k}", (n,), h5py.string_dtype(), "", self.units[k])
                    elif v.dtype.kind == "i":
                        d = self._require(g, f"{self.rung}_{k}", (n, *v.shape), np.int64, -1, self.units[k])
                    else:
                        d = self._require(g, f"{self.rung}_{k}", (n, *v.shape), np.float64, np.nan, self.units[k])
                    d[i] = v

        _atomic_update(self.path, update)
        for jf in self.journal_dir.glob("rank*.jsonl"):
            jf.unlink()
        try:
            self.journal_dir.rmdir()  # nothing is left beside the file once everything is in it
        except OSError:  # not empty (another file in it) or already gone
            pass
        return len(records)

    def _require(self, g, name, shape, dtype, fill, unit):
        if name in g:
            d = g[name]
            if d.shape != shape:
                raise DatasetError(f"{self.path}: {g.name}/{name} has shape {d.shape}, a result needs {shape}")
            return d
        d = g.create_dataset(name, shape=shape, dtype=dtype, fillvalue=fill)
        d.attrs["units"] = unit
        for k, v in self.metadata.items():
            d.attrs[k] = v
        return d


def check_not_failed(path, molecule: str, index: int, rung: str = "dft") -> None:
    """Refuse a conformation that a lower ``rung`` recorded as failed (its ``<rung>_status``).

    A rung above never runs on a conformation a rung below rejected (atoms on top of each other, an
    SCF that never converged): raises :class:`DatasetError` with that rung's reason.
    """
    with _open(path) as f:
        g = f[molecule] if molecule in f else None
        if g is None or f"{rung}_status" not in g or int(g[f"{rung}_status"][index]) != FAILED:
            return
        why = _text(g[f"{rung}_error"][index]) if f"{rung}_error" in g else "no reason recorded"
    raise DatasetError(f"{path}: {molecule}[{index}] failed at the {rung} rung ({why}); "
                       "no rung above runs on a conformation a lower rung rejected")


def read_property(path, molecule: str, name: str) -> tuple[np.ndarray, str]:
    """Return ``(values, units)`` of one ``<rung>_<property>`` dataset of one molecule."""
    with _open(path) as f:
        if molecule not in f or name not in f[molecule]:
            raise DatasetError(f"{path}: no dataset {molecule}/{name}")
        d = f[molecule][name]
        return d[()], _text(d.attrs.get("units", ""))


def summarize(path, rung: str) -> dict:
    """Counts of pending/done/failed conformations of one rung (journals included)."""
    counts = {name: 0 for name in STATUS_NAMES.values()}
    for v in ResultWriter(path, rung, {}).status().values():
        counts[STATUS_NAMES[v]] += 1
    return counts


__all__ = [
    "DatasetError", "Molecule", "ResultWriter", "check_conformation", "check_electrons", "check_geometry", "check_not_failed",
    "create_dataset", "MIN_DISTANCE_BOHR",
    "read_hdf5", "read_property", "read_structures", "read_xyz", "smiles_charge", "summarize",
    "SCHEMA", "SCHEMA_VERSION", "PENDING", "DONE", "FAILED",
]
