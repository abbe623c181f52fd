"""The rung dataset: one HDF5 file that every rung reads and writes.

Layout (SPICE 2 compatible; ``schema="rung.dataset"``, ``schema_version=1`` as root attributes)::

    /<molecule>/                      one group per molecule (name: any string without '/')
        atomic_numbers   (n_atoms,) int                         units "dimensionless"
        conformations    (n_conf, n_atoms, 3) float64            units "bohr"
        smiles           (1,) string                             optional (as SPICE: the mapped SMILES)
        subset           (1,) string                             optional (as SPICE: the source data set)
        charge           () int, multiplicity () int             optional (default 0 and 1)
        <rung>_<prop>    (n_conf, ...) NaN where not computed    units "<unit>", method metadata attrs
        <rung>_status    (n_conf,) int8: 0 pending, 1 done, 2 failed
        <rung>_error     (n_conf,) string: why a conformation failed ("" otherwise)

Example properties: ``dft_total_energy`` (n_conf,) Hartree, ``dft_total_gradient``
(n_conf, n_atoms, 3) Hartree/Bohr, ``qmc_total_energy`` with ``qmc_total_energy_error``.

Crash safety (:class:`ResultWriter`): each finished conformation is appended as one JSON line to a
per-rank journal beside the file (``<file>.journal/rankRRRRR.jsonl``) and flushed to the operating
system before the call returns, so a kill of the process (SIGKILL, the out-of-memory killer) loses
nothing recorded; a line torn by a kill is ignored. The lines are fsync'd in groups (a group commit):
after ``sync_every`` records, or at the first record ``sync_seconds`` or more after the last fsync, and
always when the writer closes, seals or merges. A crash of the machine itself (power loss, kernel panic)
can therefore lose the records since the last fsync: at most ``sync_every - 1`` of them, all recorded
within ``sync_seconds`` after that fsync (a burst; records that arrive more slowly are each fsync'd).
Those conformations are then pending again and recomputed, never half-recorded. The merge fsyncs every
journal file it folds in before reading it, so no value enters the HDF5 file from a line that is not
durable. A rerun sees every conformation that was recorded and skips it. MPI ranks each write their
own journal; one process merges them into the HDF5 file. A writer may *seal* its open journal (rename
it ``rankRRRRR.SSSSSS.jsonl``; nothing is rewritten), and a merge during a run folds in sealed
segments only, so results become visible while the others still record.

The merge is incremental and batched: it never copies the file to write values. It runs in three steps.

1. Plan: read the journals (no value decoded) for which datasets they need, with which shapes and
   string widths.
2. Layout (rare): if a needed ``<rung>_*`` dataset is missing, or is one the merge cannot write in place
   (chunked, storage not yet allocated, variable-length or too narrow strings: older files, foreign
   files), the file is copied, the datasets are created or rewritten in the copy (values unchanged) and
   the copy replaces the file atomically (``os.replace``). Datasets are created contiguous, with their
   storage allocated and filled (NaN, -1, "") at creation, strings fixed-length UTF-8 (width a power of
   two, >= 64 bytes); the first of each name, shape and type is created, the other molecules' are
   copies of it (H5Ocopy, attributes included: one HDF5 call per dataset). Every layout step gives every molecule every ``<rung>_*`` dataset that the writer
   declares (``shapes``), its records need or any molecule holds (NaN/-1/"", status pending, where a
   molecule has no value), so a SPICE-style reader finds the same keys in every group; a writer that
   declares ``shapes`` gets them all in the first layout step, so the later merges of a long run never copy.
3. Values, in place: the file is memory-mapped and each dataset's journalled rows are assigned in one
   vectorised write per dataset and batch of records (a conformation's last record wins; a replacing
   record first clears every ``<rung>_*`` value of its conformation); then ``msync`` and ``fsync``; only
   then are the merged journal files deleted.

Why a kill at any point is safe: step 3 writes only raw data bytes inside storage that step 2
allocated. The superblock, object headers, B-trees, heaps and every other byte HDF5 needs to find its
datasets are never written in place (no HDF5 handle is open for writing; the dataset offsets are read
first with the file opened read-only), so a kill, even mid-row, cannot make the file unreadable. The
rows being written are first set to "pending" and get their status last, so after a kill a reader of
the file alone sees them pending, never "done" beside a stale or half-written value (after a power
loss, any page of the batch may be old or new). Those rows are named by journal
lines that are durable (fsync'd before the merge reads them) and deleted only after the fsync of
step 3, so the next merge (every writer starts with one: ``dft-gpu run`` on the same ``--out``, and any
:meth:`ResultWriter.merge`) rewrites them. Rewriting is idempotent: each row is set to a value that the
journals alone determine, in their order, never accumulated from what the file held. A kill in step 2
leaves the old file and a stale ``.tmp`` copy that the next merge overwrites. Until then, ``status``
and ``recorded`` read the journals after the file, so they already report the journalled values.
"""

from __future__ import annotations

import json

import os
import re
import shutil
import time
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
    subset : str, optional
        The data set the molecule comes from (SPICE's ``subset``), kept from the input.
    allow_nonfinite : bool
        Keep conformations with NaN or infinite coordinates instead of refusing the molecule (for a
        rung that fails such a conformation alone, as ``nnp eval`` does); off by default.
    """

    name: str
    atomic_numbers: np.ndarray
    conformations: np.ndarray
    charge: int = 0
    multiplicity: int = 1
    smiles: str | None = None
    allow_nonfinite: bool = field(default=False, repr=False, compare=False)
    subset: str | None = None

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
        if not self.allow_nonfinite and not np.all(np.isfinite(x)):
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


# The length-unit plausibility check. Each atom's nearest neighbour is compared with the bond length
# covalent radii predict (the sum of the two atoms' radii, Cordero et al., Dalton Trans. 2008, 2832, as
# ase.data.covalent_radii lists them); the ratio is ~1 for a bonded neighbour (0.77 to 1.25 over the G2
# molecules: triple bonds to F2). A wrong unit scales every ratio alike: Angstrom read as Bohr by 0.53,
# Bohr read as Angstrom by 1.89, nm read as Angstrom by 10. A scan point with one compressed or stretched
# bond moves the ratios of two atoms; a wrong unit moves all of them. So a molecule is refused when three
# quarters of its atoms or more have their nearest neighbour closer than UNIT_CHECK_SHORT, or farther than
# UNIT_CHECK_APART, times the covalent bond length (in the median of the conformations looked at). A
# diatomic has one distance, and a compressed or dissociated diatomic is a legitimate scan point: only
# warned about. Noble-gas atoms are only neighbours (their contacts are van der Waals).
UNIT_CHECK_SHORT = 0.7  # nearest neighbour closer than this ratio: too close for a bond
UNIT_CHECK_APART = 1.4  # nearest neighbour farther than this ratio: no bond
UNIT_CHECK_FRACTION = 0.75  # of the atoms, too close (or too far) for a molecule to be refused
_NOBLE = (2, 10, 18, 36, 54, 86, 118)
_CANDIDATE_UNITS = ("bohr", "angstrom", "nm")


def _neighbour_ratios(atomic_numbers, positions, cell=None) -> np.ndarray:
    """Each atom's smallest distance / (R_i + R_j) over its 8 nearest neighbours (covalent radii R).
    positions: (n_atoms, 3) Bohr, n_atoms >= 2; cell: (3, 3) Bohr, rows the lattice vectors, or None
    (open): neighbours among the 27 nearest images then. Returns (n_atoms,) float64."""
    import itertools

    from ase.data import covalent_radii
    from scipy.spatial import cKDTree

    from rung.core.units import ANGSTROM_TO_BOHR

    z = np.asarray(atomic_numbers)
    r = np.asarray(covalent_radii)[z] * ANGSTROM_TO_BOHR  # (n_atoms,) Bohr
    images = positions
    if cell is not None:
        shifts = np.array(list(itertools.product((0, -1, 1), repeat=3))) @ np.asarray(cell, dtype=np.float64)
        images = (positions[None] + shifts[:, None]).reshape(-1, 3)  # (27 n_atoms, 3), the cell itself first
    k = min(images.shape[0], 9)
    d, j = cKDTree(images).query(positions, k=k)  # (n_atoms, k): itself first
    return np.min(d[:, 1:] / (r[:, None] + r[j[:, 1:] % z.size]), axis=1)


def _suspected_unit(unit: str, ratio: float) -> str | None:
    """The length unit that would make bonds their covalent length, when one does (within a factor 1.5)."""
    from rung.core.units import length_to_bohr

    best = min(_CANDIDATE_UNITS, key=lambda c: abs(np.log(ratio * length_to_bohr(c) / length_to_bohr(unit))))
    off = abs(np.log(ratio * length_to_bohr(best) / length_to_bohr(unit)))
    return best if off < np.log(1.5) and best != attr_text(unit).strip().lower() else None


def check_length_unit(atomic_numbers, conformations, unit: str, where: str, *, max_conformations: int = 8,
                      cell=None, advice: str | None = None) -> None:
    """Refuse coordinates whose bond lengths say they were read in the wrong length unit, before any work.

    Up to ``max_conformations`` finite conformations, evenly spread, are looked at (a unit is the same
    for the whole molecule). Refused (:class:`DatasetError`, naming ``where``, the typical ratio and the
    unit that fits it): a molecule of three atoms or more of which :data:`UNIT_CHECK_FRACTION` of the
    atoms have their nearest neighbour closer than :data:`UNIT_CHECK_SHORT` or farther than
    :data:`UNIT_CHECK_APART` times the covalent bond length. A diatomic is only warned about (logged),
    when another length unit would make it bonded.

    Parameters
    ----------
    atomic_numbers : (n_atoms,) int
    conformations : (n_conf, n_atoms, 3) float64, Bohr, converted from ``unit``
    unit : the length unit the coordinates were read in (``bohr``, ``angstrom``, ``nm``)
    where : the file and molecule, for the message
    cell : (3, 3) float64, Bohr, rows the lattice vectors, or None: a periodic structure's neighbours are
        looked for among the images too (a molecule split across the cell boundary stays bonded)
    advice : what the user can do, ending the message (default: the 'units' attribute, --input-units,
        --trust-units)
    """
    z = np.asarray(atomic_numbers)
    x = np.asarray(conformations, dtype=np.float64).reshape(-1, z.size, 3)
    finite = np.flatnonzero(np.isfinite(x).all(axis=(1, 2)))
    keep = ~np.isin(z, _NOBLE)
    if z.size < 2 or not keep.any() or finite.size == 0:
        return
    pick = finite[np.unique(np.linspace(0, finite.size - 1, min(max_conformations, finite.size)).round().astype(int))]
    rho = np.array([_neighbour_ratios(z, x[i], cell)[keep] for i in pick])  # (n_picked, n_kept)
    short = float(np.median(np.mean(rho < UNIT_CHECK_SHORT, axis=1))) >= UNIT_CHECK_FRACTION
    apart = float(np.median(np.mean(rho > UNIT_CHECK_APART, axis=1))) >= UNIT_CHECK_FRACTION
    if not (short or apart):
        return
    typical = float(np.median(rho))
    guess = _suspected_unit(unit, typical)
    fit = f"they look like {guess}" if guess else "no length unit makes them bonds"
    what = (f"nearest neighbours at {typical:.2f} times the covalent bond length (median over atoms), "
            f"{'too close' if short else 'too far'} for bonds")
    advice = advice or ("Give the right unit (the file's 'units' attribute, --input-units), or --trust-units to "
                        "compute them as they are")
    msg = f"{where}: coordinates read as {attr_text(unit)}: {what}; {fit}. {advice}"
    if int(keep.sum()) >= 3:
        raise DatasetError(msg)
    if guess is None:  # a diatomic no unit explains: a scan point far out, or atoms on top of each other
        return
    import logging

    logging.getLogger(__name__).warning("%s (a diatomic is only warned about: it may be a scan point)", msg)


# --------------------------------------------------------------------------------------------- readers
def open_hdf5(path, mode="r") -> h5py.File:
    """Open an existing HDF5 file, a missing or unreadable one being one clear :class:`DatasetError`.

    Parameters
    ----------
    path : str or Path
        The file; it must exist.
    mode : str
        ``h5py.File`` mode, ``"r"`` (default) or ``"r+"``/``"a"``.

    Returns
    -------
    h5py.File
        The open file (use it as a context manager).
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    try:
        return h5py.File(path, mode)
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file (truncated or corrupt?): {err}") from err


def attr_text(value) -> str:
    """An HDF5 string attribute or (1,) string dataset value as ``str`` (bytes decoded, arrays unwrapped)."""
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
    from rung.core.units import length_to_bohr

    try:
        return length_to_bohr(attr_text(unit))
    except ValueError as err:
        raise DatasetError(f"{where}: {err}") from None


def read_hdf5(path, names=None, *, units: str | None = None, allow_nonfinite: bool = False,
              check_units: bool = False) -> list[Molecule]:
    """Read molecules from a rung dataset or a SPICE (1 or 2) HDF5 file.

    Conformations are converted to Bohr from their ``units`` attribute (or H5MD's ``unit``: ``bohr``,
    ``angstrom``/``Å``, ``nm``). Units are never guessed: coordinates without the attribute are refused
    unless ``units`` says what they are. With ``check_units``, each molecule of a file that is not a
    rung dataset (whose coordinates were checked when it was made) passes :func:`check_length_unit`.
    The charge comes from a ``charge`` dataset, else from the SMILES formal charges (as SPICE encodes
    it), else 0. ``allow_nonfinite``: see :class:`Molecule`.
    """
    out = []
    with open_hdf5(path) as f:
        check_units = check_units and attr_text(f.attrs.get("schema", "")) != SCHEMA
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
            attrs = g["conformations"].attrs
            unit = attrs.get("units", attrs.get("unit", units))
            if unit is None:
                raise DatasetError(f"{path}: {name}/conformations has no 'units' attribute: say which length unit "
                                   "the coordinates are in (dft-gpu run --input-units)")
            x = np.asarray(x, dtype=np.float64) * _length_factor(unit, f"{path}: {name}/conformations")
            if check_units:
                check_length_unit(z, x, unit, f"{path}: {name}")
            smiles = attr_text(g["smiles"][()]) if "smiles" in g else None
            subset = attr_text(g["subset"][()]) if "subset" in g else None
            if "charge" in g:
                charge = int(g["charge"][()])
            else:
                charge = smiles_charge(smiles) if smiles else 0
            mult = int(g["multiplicity"][()]) if "multiplicity" in g else 1
            out.append(Molecule(name, z, x, charge, mult, smiles, allow_nonfinite=allow_nonfinite, subset=subset))
    return out


def read_xyz(path, units: str = "angstrom", *, name_key: str = "name", allow_nonfinite: bool = False,
             check_units: bool = False) -> list[Molecule]:
    """Read xyz/extxyz (any format ASE reads): frames of the same molecule form one molecule.

    A molecule's name is the frame's ``name_key`` entry of the extxyz comment line (``name=water``),
    else its formula (``H2O``, then ``H2O_1``... for other molecules of the same formula). Frames are
    grouped by identity (name, atoms in order, charge, multiplicity), wherever they are in the file;
    conformations keep the frames' order. Positions are converted from ``units`` (Angstrom, as ASE reads
    them) to Bohr. ``charge``, ``multiplicity``, ``smiles`` and ``subset`` are taken from the comment line
    when present (``smiles="[NH4+]"``: quoted, as ASE writes it; ASE reads an unquoted ``[...]`` as a list);
    without ``charge``, the SMILES formal charges give it, as in :func:`read_hdf5`.
    ``check_units``: each molecule passes :func:`check_length_unit`.
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
    groups: dict = {}  # identity -> conformations, in order of first appearance
    labels: dict = {}  # identity -> {"smiles": ..., "subset": ...} of its first frame that gives them
    named: dict = {}  # user name -> (identity, first frame)
    for i, atoms in enumerate(frames):
        name = atoms.info.get(name_key)
        name = None if name is None else str(name).strip()
        smiles = atoms.info.get("smiles")
        charge = atoms.info.get("charge", smiles_charge(str(smiles)) if smiles is not None else 0)  # as read_hdf5
        key = (name, tuple(int(z) for z in atoms.numbers), int(charge), int(atoms.info.get("multiplicity", 1)))
        if name:
            first = named.setdefault(name, (key, i))
            if first[0] != key:
                raise DatasetError(f"{path}: frames {first[1]} and {i} are both named {name!r} ({name_key}=) but "
                                   "differ in atoms, charge or multiplicity")
        groups.setdefault(key, []).append(atoms.positions * factor)
        for k in ("smiles", "subset"):
            if atoms.info.get(k) is not None:
                labels.setdefault(key, {}).setdefault(k, str(atoms.info[k]))
    from ase.symbols import Symbols

    taken = {k[0] for k in groups if k[0]}
    counts: dict[str, int] = {}
    out = []
    for key, confs in groups.items():
        name, numbers, charge, mult = key
        if not name:
            formula = Symbols(np.array(numbers)).get_chemical_formula()
            while True:
                counts[formula] = counts.get(formula, -1) + 1
                name = formula if counts[formula] == 0 else f"{formula}_{counts[formula]}"
                if name not in taken:
                    break
        out.append(Molecule(name, np.array(numbers), np.array(confs), charge, mult, allow_nonfinite=allow_nonfinite,
                            **labels.get(key, {})))
        if check_units:
            check_length_unit(out[-1].atomic_numbers, out[-1].conformations, units, f"{path}: {name}")
    return out


def read_structures(path, *, units: str | None = None, name_key: str = "name",
                    allow_nonfinite: bool = False, check_units: bool = True) -> list[Molecule]:
    """Read molecules from an HDF5 dataset (rung or SPICE layout) or any structure file ASE reads.

    ``units``: the length unit of coordinates whose file does not say (HDF5 without a ``units``
    attribute, refused otherwise; structure files: Angstrom unless given). ``name_key``: the extxyz
    comment-line key holding a structure file's molecule names (:func:`read_xyz`). ``allow_nonfinite``:
    keep conformations with NaN or infinite coordinates (:class:`Molecule`). ``check_units``: refuse
    coordinates whose bond lengths say the unit is wrong (:func:`check_length_unit`; a rung dataset's are
    not checked again); the entry point of user input, so on unless the user says the units are right.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if h5py.is_hdf5(path) or path.suffix.lower() in (".h5", ".hdf5"):
        return read_hdf5(path, units=units, allow_nonfinite=allow_nonfinite, check_units=check_units)
    return read_xyz(path, units or "angstrom", name_key=name_key, allow_nonfinite=allow_nonfinite,
                    check_units=check_units)


# --------------------------------------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    """fsync a file's data, whichever process wrote it (Linux syncs the file, not the descriptor)."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def atomic_update(path, update) -> None:
    """Apply ``update`` to a copy of an HDF5 file (or to a new one) and move it into place atomically.

    The copy ``<path>.tmp`` is opened in append mode, handed to ``update``, closed and fsync'd, then
    renamed over ``path`` (``os.replace``) and the directory is fsync'd. A kill at any point leaves
    either the old file or the new one, never a half-written one.

    Parameters
    ----------
    path : str or Path
        The HDF5 file; it need not exist yet.
    update : callable
        ``update(f)`` with ``f`` the copy as an open ``h5py.File``; its return value is ignored.
    """
    path = Path(path)
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
        have = {m.name: m for m in read_hdf5(path, allow_nonfinite=True)}
        for m in molecules:
            h = have.get(m.name)
            same = (
                h is not None
                and np.array_equal(h.atomic_numbers, m.atomic_numbers)
                and h.conformations.shape == m.conformations.shape
                and np.allclose(h.conformations, m.conformations, rtol=0, atol=1e-6, equal_nan=True)
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
            for k in ("smiles", "subset"):  # as SPICE stores them: a (1,) string dataset
                if getattr(m, k) is not None:
                    g.create_dataset(k, data=[getattr(m, k)], dtype=h5py.string_dtype())

    atomic_update(path, write)
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


# A result dataset the merge writes in place: contiguous, its storage allocated when it is created (so a
# write never allocates), fixed-size elements (strings fixed-length UTF-8, null-padded).
_MIN_STR_BYTES = 64
_CACHE_VALUES = 4_000_000  # numbers of parsed records a merge keeps between its steps (~200 MB at most)
_STATUS, _ERROR = "status", "error"


def _str_width(nbytes: int) -> int:
    """Width of a fixed-length string dataset holding ``nbytes``: a power of two, so widening is rare."""
    return max(_MIN_STR_BYTES, 1 << max(0, int(nbytes) - 1).bit_length())


@dataclass(frozen=True)
class _Spec:
    """What a result dataset must hold: kind ``f`` (float64), ``i`` (int64), ``b`` (int8, the status) or
    ``s`` (UTF-8 string of ``nbytes``), and its per-conformation shape."""

    kind: str
    shape: tuple
    nbytes: int = 0

    def dtype(self):
        if self.kind == "s":
            return h5py.string_dtype("utf-8", _str_width(self.nbytes))
        return np.dtype({"f": np.float64, "i": np.int64, "b": np.int8}[self.kind])

    def fill(self):
        return {"s": b"", "i": -1, "f": np.nan, "b": PENDING}[self.kind]


def _spec_of(item) -> _Spec:
    if "str" in item:
        return _Spec("s", (), len(item["str"].encode()))
    return _Spec(item["kind"], tuple(item["shape"]))


@dataclass(frozen=True)
class _Info:
    """A dataset as the merge sees it (read with HDF5's low-level calls: a merge may open thousands)."""

    shape: tuple
    dtype: np.dtype          # numpy dtype of one element (fixed strings: S<width>; variable: object)
    offset: int | None       # byte offset of the raw data in the file (contiguous and allocated only)
    is_str: bool
    fill: object = None

    def in_place_ok(self, spec: _Spec) -> bool:
        """Can the merge write ``spec``'s values here without changing the file's structure?"""
        if self.offset is None:  # chunked, external, or storage not allocated (a write would allocate)
            return False
        if spec.kind == "s":
            return self.dtype.kind == "S" and self.dtype.itemsize >= spec.nbytes
        return self.dtype.kind in "iuf" and (self.dtype.kind == "f") == (spec.kind == "f")


def _scan(f, molecules, prefix: str) -> dict:
    """``{molecule: (n_conf, n_atoms, {name: _Info})}`` of the ``prefix*`` datasets of ``molecules``."""
    out = {}
    for mol in molecules:
        try:
            gid = h5py.h5g.open(f.id, mol.encode())
            n_conf, n_atoms = h5py.h5d.open(gid, b"conformations").shape[:2]
        except (KeyError, ValueError, TypeError):
            raise DatasetError(f"{f.filename}: the journal holds results for {mol!r}, which the file lacks") from None
        infos = {}
        for raw in gid:
            name = raw.decode()
            if not name.startswith(prefix) or h5py.h5o.get_info(gid, raw).type != h5py.h5o.TYPE_DATASET:
                continue
            dsid = h5py.h5d.open(gid, raw)
            tid, dcpl = dsid.get_type(), dsid.get_create_plist()
            is_str = isinstance(tid, h5py.h5t.TypeStringID)
            fixed = not (is_str and tid.is_variable_str())
            layout_ok = (dcpl.get_layout() == h5py.h5d.CONTIGUOUS and not dcpl.get_external_count() and fixed
                         and (not is_str or tid.get_strpad() == h5py.h5t.STR_NULLPAD))
            offset = dsid.get_offset() if layout_ok else None
            dt = np.dtype(f"S{tid.get_size()}") if is_str and fixed else (np.dtype(object) if is_str else tid.dtype)
            fill = b""  # every string dataset the merge writes was made by it, empty-filled
            if offset is not None and not is_str:
                buf = np.zeros(1, dtype=dt)
                dcpl.get_fill_value(buf)
                fill = buf[0]
            infos[name] = _Info(tuple(dsid.shape), dt, offset, is_str, fill)
        out[mol] = (n_conf, n_atoms, infos)
    return out


def _create_in_place_dataset(g, name, n, spec: _Spec, attrs: dict, data=None):
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)  # storage (filled) now: a later write changes no metadata
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_ALLOC)
    d = g.create_dataset(name, shape=(n, *spec.shape), dtype=spec.dtype(), fillvalue=spec.fill(), dcpl=dcpl)
    if data is not None:
        d[...] = np.asarray(data, dtype=d.dtype)  # fixed strings: numpy bytes tagged UTF-8, as h5py expects
    for k, v in attrs.items():
        d.attrs[k] = v
    return d


def _make_in_place(g, name, spec: _Spec) -> None:
    """Rewrite dataset ``g[name]`` (an older or foreign layout) as one the merge writes in place, same values."""
    d = g[name]
    attrs = dict(d.attrs)
    data = d[()]
    if spec.kind == "s":
        data = [v if isinstance(v, bytes) else str(v).encode() for v in np.ravel(data)]
        spec = _Spec("s", (), max([spec.nbytes, *(len(v) for v in data)]))
        data = np.array(data, dtype=f"S{_str_width(spec.nbytes)}")
    del g[name]
    _create_in_place_dataset(g, name, data.shape[0], spec, attrs, data)


def _journal_lines(path: Path):
    with open(path, "rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return  # torn by a kill mid-write: the conformation was not recorded
            yield line


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
    rank : MPI rank; each rank journals to its own files
    shapes : optional property name -> ``(kind, shape)`` (kind ``"f"``, ``"i"`` or ``"s"``; ``shape``
        per conformation, ``"n_atoms"`` standing for the molecule's atom count), e.g.
        ``{"total_gradient": ("f", ("n_atoms", 3))}``. When the merge has to change the file's layout
        it then creates these datasets in every molecule at once, so that later merges of a long run
        write in place only (an undeclared property gets its dataset where a result first needs it).
    sync_every, sync_seconds : the group commit (module docstring): the journal is fsync'd after
        ``sync_every`` records or at the first record ``sync_seconds`` after the last fsync; 1 and 0
        fsync every record. Every record is flushed to the operating system either way.
    """

    path: Path
    rung: str
    units: dict
    metadata: dict = field(default_factory=dict)
    rank: int = 0
    shapes: dict = field(default_factory=dict)
    sync_every: int = 100
    sync_seconds: float = 1.0

    def __post_init__(self):
        self.path = Path(self.path)
        if not self.path.exists():
            raise DatasetError(f"{self.path}: no such dataset; create it first")
        self.journal_dir = self.path.with_name(self.path.name + ".journal")  # made by the first record
        self._journal = self.journal_dir / f"rank{self.rank:05d}.jsonl"
        self._fh = None
        self._since_seal = 0
        self._unsynced = 0  # records flushed to the OS but not yet fsync'd
        self._synced_at = 0.0  # time.monotonic() of the last fsync
        self._cached = None

    # -- reading state
    def _journal_files(self, sealed_only: bool = False) -> list:
        """Journal segments in the order their records were written: for each rank its sealed segments
        (``rankRRRRR.SSSSSS.jsonl``, oldest first), then its open one (``rankRRRRR.jsonl``)."""
        files = sorted(self.journal_dir.glob("rank*.jsonl"))
        return [p for p in files if p.name.count(".") == 2] if sealed_only else files

    def _journal_records(self, files=None, any_rung: bool = False):
        for jf in self._journal_files() if files is None else files:
            for line in _journal_lines(jf):
                rec = json.loads(line)
                if any_rung or rec["rung"] == self.rung:
                    yield rec

    def journal_records(self, any_rung: bool = False):
        """The journal's records (newer than the file, not merged yet) in the order they were written:
        dicts with ``molecule``, ``index``, ``status`` ("done" | "failed"), ``values``, ``error`` and
        ``rung``; this writer's rung only unless ``any_rung`` (every rung journaling beside this file)."""
        return self._journal_records(any_rung=any_rung)

    def status(self) -> dict:
        """``{(molecule, index): PENDING|DONE|FAILED}`` for every conformation, from file and journals."""
        out = {}
        with open_hdf5(self.path) as f:
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
        with open_hdf5(self.path) as f:
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
        """Record one conformation's results (or, with ``error``, its failure) in the journal: flushed to
        the operating system before returning (a kill of the process loses nothing), fsync'd with its
        group (:meth:`sync`; the module docstring says what a crash of the machine can lose).

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
            new_dir, new_file = not self.journal_dir.exists(), not self._journal.exists()
            self.journal_dir.mkdir(exist_ok=True)
            self._truncate_torn_tail()
            self._fh = open(self._journal, "ab")
            if new_file:  # the file's name survives a crash of the machine, as its lines do once fsync'd
                _fsync_dir(self.journal_dir)
                if new_dir:
                    _fsync_dir(self.journal_dir.parent)
            self._synced_at = time.monotonic()
        self._fh.write((json.dumps(rec, allow_nan=True) + "\n").encode())
        self._fh.flush()  # the OS has the line: a kill of this process loses nothing
        self._unsynced += 1
        self._since_seal += 1
        if self._unsynced >= self.sync_every or time.monotonic() - self._synced_at >= self.sync_seconds:
            self.sync()

    def sync(self) -> None:
        """fsync the records journalled since the last fsync (the end of a group commit)."""
        if self._fh is not None and self._unsynced:
            os.fsync(self._fh.fileno())
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def _truncate_torn_tail(self):
        if not self._journal.exists():
            return
        data = self._journal.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            with open(self._journal, "rb+") as fh:
                fh.truncate(keep)

    def close(self):
        """fsync what is not yet (:meth:`sync`) and close the journal; the next record opens it again."""
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None

    def seal(self) -> int:
        """Close this rank's open journal segment so that a merge running meanwhile may fold it in
        (:meth:`merge` with ``sealed_only``); returns the number of records it held since the last seal.

        The segment is renamed, never rewritten: its lines stay durable throughout.
        """
        self.close()
        n, self._since_seal = self._since_seal, 0
        if not self._journal.exists() or self._journal.stat().st_size == 0:
            return 0
        self._truncate_torn_tail()
        seqs = [int(p.name.split(".")[1]) for p in self.journal_dir.glob(f"rank{self.rank:05d}.*.jsonl")]
        os.replace(self._journal, self.journal_dir / f"rank{self.rank:05d}.{max(seqs, default=0) + 1:06d}.jsonl")
        _fsync_dir(self.journal_dir)
        return n

    @property
    def unsealed(self) -> int:
        """Records this writer journalled since it last sealed (or merged)."""
        return self._since_seal

    def merge(self, *, sealed_only: bool = False, batch: int = 50_000) -> int:
        """Fold the journals into the HDF5 file, then delete them (and their folder, when empty).

        Without ``sealed_only``, every rank's journal: call it from one process, when no writer is
        recording (rank 0, after the others are done). With ``sealed_only`` (while a run goes on), this
        writer's own journal is sealed first and only sealed segments are merged: the open segments of
        other ranks, still being appended to, are left for a later merge. ``batch`` records are decoded
        at a time (bounds the memory). Returns the number of records merged. Safe to kill at any point,
        and idempotent (see the module docstring).
        """
        if sealed_only:
            self.seal()
        else:
            self.close()
            self._since_seal = 0
        files = self._journal_files(sealed_only)
        for jf in files:  # lines another process flushed but did not fsync (killed before its group
            _fsync_file(jf)  # commit): made durable before any value of theirs enters the file
        plan, n_records = self._plan(files)
        if n_records:
            scan = self._ensure_layout(plan)
            self._write_in_place(files, set(plan), batch, scan)
        for jf in files:  # every record of these files is in the HDF5 file, durably
            jf.unlink()
        if files:
            try:
                self.journal_dir.rmdir()  # nothing is left beside the file once everything is in it
            except OSError:  # not empty (other segments or another file in it) or already gone
                pass
        return n_records

    # -- merge, step 1: what the journals need of the file's layout (no value decoded)
    def _plan(self, files) -> tuple[dict, int]:
        """``({molecule: {dataset name: _Spec}}, number of records)``; the special key ``None`` of a
        molecule's plan is True when a record replaces (clears every ``<rung>_*`` value of) a conformation."""
        plan: dict = {}
        n = 0
        self._cached, size = [], 0  # the records, kept for step 3 while they are few (else read again)
        for rec in self._journal_records(files):
            n += 1
            if self._cached is not None:
                self._cached.append(rec)
                size += len(rec["values"]) + sum(len(v.get("data", ())) for v in rec["values"].values())
                if size > _CACHE_VALUES:
                    self._cached = None
            p = plan.setdefault(rec["molecule"], {})
            p.setdefault(f"{self.rung}_{_STATUS}", _Spec("b", ()))
            err = f"{self.rung}_{_ERROR}"
            p[err] = _Spec("s", (), max(p.get(err, _Spec("s", ())).nbytes, len(rec["error"].encode())))
            if rec.get("replace"):
                p[None] = True
            for k, item in rec["values"].items():
                name, spec = f"{self.rung}_{k}", _spec_of(item)
                old = p.get(name)
                if old is not None and (old.kind, old.shape) != (spec.kind, spec.shape):
                    raise DatasetError(f"{self.journal_dir}: {rec['molecule']}/{name} recorded both as "
                                       f"{old.kind}{old.shape} and {spec.kind}{spec.shape}")
                if old is not None and spec.kind == "s":
                    spec = _Spec("s", (), max(old.nbytes, spec.nbytes))
                p[name] = spec
        return plan, n

    def _templates(self, f, plan: dict, scan: dict) -> dict:
        """``{dataset name: (kind, shape)}`` of every ``<rung>_*`` value dataset this writer declares, its
        records need or a molecule of the file holds; ``shape`` per conformation, with ``"n_atoms"`` for an
        axis as long as the molecule's atom count (declared, else inferred: a first axis of that length)."""
        out = {f"{self.rung}_{k}": (kind, tuple(s if s == "n_atoms" else int(s) for s in shape))
               for k, (kind, shape) in self.shapes.items()}
        skip = {f"{self.rung}_{_STATUS}", f"{self.rung}_{_ERROR}"}

        def add(name, kind, shape, n_atoms):
            if name in skip or name in out:
                return
            shape = tuple(shape)
            if shape and shape[0] == n_atoms:
                shape = ("n_atoms", *shape[1:])
            out[name] = (kind, shape)

        for mol, p in plan.items():
            for name, spec in p.items():
                if name is not None:
                    add(name, spec.kind, spec.shape, scan[mol][1])
        for g in f.values():
            if not isinstance(g, h5py.Group) or "conformations" not in g:
                continue
            n_conf, n_atoms = g["conformations"].shape[:2]
            for name, d in g.items():
                if name.startswith(f"{self.rung}_") and isinstance(d, h5py.Dataset) and d.shape[:1] == (n_conf,):
                    kind = "s" if h5py.check_string_dtype(d.dtype) or d.dtype.kind in "SUO" else \
                        ("f" if d.dtype.kind == "f" else "i")
                    add(name, kind, d.shape[1:], n_atoms)
        return out

    # -- merge, step 2: layout changes (rare), atomically on a copy of the file
    def _ensure_layout(self, plan: dict) -> dict | None:
        """Create the datasets the journals need, and rewrite any the merge cannot write in place, on a
        copy of the file moved into place atomically (:func:`atomic_update`). No value is written
        here; nothing is copied when the layout is already there (every merge of a long run but the first).
        Returns the scan of the file (:func:`_scan`) when nothing had to change, else None."""
        todo: dict = {}  # molecule -> {name: (spec, exists)}
        prefix = f"{self.rung}_"
        with open_hdf5(self.path) as f:
            scan = _scan(f, plan, prefix)
            for mol in plan:  # never write into a property that no writer of this rung made (foreign data)
                if scan[mol][2] and f"{prefix}{_STATUS}" not in scan[mol][2]:
                    raise DatasetError(_foreign(self.path, mol, sorted(scan[mol][2]), self.rung))
            for mol, p in plan.items():
                n, _, infos = scan[mol]
                need = {k: v for k, v in p.items() if k is not None}
                if p.get(None):  # a replacing record clears every <rung>_* dataset of the molecule
                    for name, d in infos.items():
                        if name not in need and d.shape[:1] == (n,):
                            need[name] = _Spec("s", ()) if d.is_str else \
                                _Spec("f" if d.dtype.kind == "f" else "i", d.shape[1:])
                for name, spec in need.items():
                    d = infos.get(name)
                    if d is None:
                        todo.setdefault(mol, {})[name] = (spec, False)
                        continue
                    if d.shape != (n, *spec.shape):
                        raise DatasetError(f"{self.path}: /{mol}/{name} has shape {d.shape}, a result needs "
                                           f"{(n, *spec.shape)}")
                    if d.is_str != (spec.kind == "s") or (not d.is_str and (d.dtype.kind == "f") != (spec.kind == "f")):
                        what = {"s": "a string", "f": "a float", "i": "an integer", "b": "an integer"}[spec.kind]
                        raise DatasetError(f"{self.path}: /{mol}/{name} holds {d.dtype}, a result is {what}")
                    if not d.in_place_ok(spec):
                        todo.setdefault(mol, {})[name] = (spec, True)
            if not todo:
                return scan
            # A layout change copies the file anyway: give every molecule every dataset of this rung (the
            # declared ones, and any that a record needs or another molecule holds), so that a SPICE-style
            # reader of the same keys in every group never meets a missing one (NaN, -1 or "" and status
            # pending where a molecule has no value). Later merges add no dataset without a layout step,
            # so this holds for every file a merge wrote.
            templates = self._templates(f, plan, scan)
            for mol, g in f.items():
                if not isinstance(g, h5py.Group) or "conformations" not in g:
                    continue
                n_atoms = g["conformations"].shape[1]
                want = {name: _Spec(kind, tuple(n_atoms if s == "n_atoms" else s for s in shape))
                        for name, (kind, shape) in templates.items()}
                want.update({f"{self.rung}_{_STATUS}": _Spec("b", ()), f"{self.rung}_{_ERROR}": _Spec("s", ())})
                for k, v in want.items():
                    if k not in g:
                        todo.setdefault(mol, {}).setdefault(k, (v, False))

        def update(f):
            made = {}  # (name, shape, dtype) -> the first new dataset of this step; the others like it are
            # copies of it (H5Ocopy: its creation properties, filled storage and ~20 attributes in one call,
            # where writing the attributes through h5py took ~0.2 ms each, most of a layout step's time)
            for mol, names in todo.items():
                g = f[mol]
                n = g["conformations"].shape[0]
                for name, (spec, exists) in sorted(names.items()):
                    if exists:
                        _make_in_place(g, name, spec)
                        continue
                    prop = name[len(self.rung) + 1:]
                    unit = "dimensionless" if prop in (_STATUS, _ERROR) else self.units.get(prop)
                    if unit is None:
                        raise DatasetError(f"{self.path}: the journal holds {name} for {mol!r}, and this "
                                           "writer declares no units for it")
                    key = (name, (n, *spec.shape), spec.dtype())
                    if key in made:
                        g.copy(made[key], name)
                    else:
                        made[key] = _create_in_place_dataset(g, name, n, spec, {"units": unit, **self.metadata})

        atomic_update(self.path, update)
        return None

    # -- merge, step 3: the values, in place
    def _write_in_place(self, files, molecules: set, batch: int, scan: dict | None = None) -> None:
        """Write the journals' values into the (already laid out) datasets through a memory map of the
        file: raw data bytes only, one vectorised assignment per dataset and batch; then msync + fsync."""
        import mmap

        if scan is None:
            with open_hdf5(self.path) as f:
                scan = _scan(f, molecules, f"{self.rung}_")
        where = {mol: {name: (d.offset, d.dtype, d.shape, d.fill) for name, d in infos.items() if d.offset is not None
                       and d.shape[:1] == (n,)} for mol, (n, _, infos) in scan.items()}
        with open(self.path, "r+b") as fh:
            mm = mmap.mmap(fh.fileno(), 0)
            try:
                records = iter(self._cached) if self._cached is not None else self._journal_records(files)
                self._cached = None
                while True:
                    chunk = [rec for _, rec in zip(range(batch), records)]
                    if not chunk:
                        break
                    self._apply(mm, where, chunk)
                mm.flush()
            finally:
                mm.close()
            os.fsync(fh.fileno())

    def _apply(self, mm, where: dict, records: list) -> None:
        # the net effect of the records, applied in order: (molecule, index) -> [cleared, status, error,
        # {prop: item}]; a replacing record clears the conformation and drops what came before it
        final: dict = {}
        for rec in records:
            cur = final.setdefault((rec["molecule"], rec["index"]), [False, PENDING, "", {}])
            if rec.get("replace"):
                cur[0], cur[3] = True, {}
            cur[1] = DONE if rec["status"] == "done" else FAILED
            cur[2] = rec["error"]
            cur[3].update(rec["values"])
        by_mol: dict = {}
        for (mol, i), state in final.items():
            by_mol.setdefault(mol, []).append((i, state))

        def view(mol, name):
            off, dt, shape, _ = where[mol][name]
            return np.ndarray(shape, dtype=dt, buffer=mm, offset=off)

        def strings(mol, name, texts):
            data = [t.encode() for t in texts]
            width = where[mol][name][1].itemsize
            if max(map(len, data)) > width:  # the layout step sized it: never truncate a value silently
                raise DatasetError(f"{self.path}: {mol}/{name} holds {width} bytes, a value needs more")
            return np.array(data, dtype=f"S{width}")

        prefix = f"{self.rung}_"
        for mol, items in by_mol.items():
            items.sort(key=lambda t: t[0])
            idx = np.array([i for i, _ in items], dtype=np.int64)
            # Status last: a kill inside this block leaves the rows it touched "pending" in the file
            # (their journal lines, still there, say done or failed), never "done" beside a stale value.
            status = view(mol, prefix + _STATUS)
            status[idx] = PENDING
            cleared = np.array([i for i, s in items if s[0]], dtype=np.int64)
            if cleared.size:
                for name, (_, _, _, fill) in where[mol].items():
                    view(mol, name)[cleared] = fill
            view(mol, prefix + _ERROR)[idx] = strings(mol, prefix + _ERROR, [s[2] for _, s in items])
            props: dict = {}
            for i, s in items:
                for k, item in s[3].items():
                    props.setdefault(k, ([], []))
                    props[k][0].append(i)
                    props[k][1].append(item)
            for k, (rows, vals) in props.items():
                if "str" in vals[0]:
                    data = strings(mol, prefix + k, [v["str"] for v in vals])
                else:
                    dt = np.int64 if vals[0]["kind"] == "i" else np.float64
                    data = np.array([v["data"] for v in vals], dtype=dt).reshape(len(vals), *vals[0]["shape"])
                view(mol, prefix + k)[np.array(rows, dtype=np.int64)] = data
            status[idx] = np.array([s[1] for _, s in items], dtype=np.int8)


def _foreign(path, molecule: str, names: list, rung: str) -> str:
    more = f" and {len(names) - 1} more {rung}_* datasets" if len(names) > 1 else ""
    return (f"{path} holds {molecule}/{names[0]}{more} without {rung}_status: rung did not write them and never "
            "replaces them; write to another dataset, or beside them under other names with --property-prefix "
            "(e.g. rung_)")


def check_settings(path, rung: str, settings: dict, *, written: dict | None = None) -> None:
    """Refuse a dataset whose ``<rung>_*`` values were computed with other ``settings``; record them
    (the file's ``<rung>_settings`` attribute, JSON) when none are, before the first conformation.

    ``settings``: what changes the numbers (model, basis, thresholds...), JSON-serialisable. One property
    never mixes two calculations, a killed run resumed with other options included. ``written``: the
    settings of values written before they were recorded (the caller reads them from its own
    attributes), used when the attribute is missing. Raises :class:`DatasetError` naming each difference.
    """
    with open_hdf5(path) as f:
        have = f.attrs.get(f"{rung}_settings")
    have = json.loads(have) if have is not None else written
    if have is None:
        text = json.dumps(settings, sort_keys=True)
        atomic_update(Path(path), lambda f: f.attrs.__setitem__(f"{rung}_settings", text))
        return
    diff = [f"{k}: {have.get(k)!r} there, {v!r} now" for k, v in settings.items() if have.get(k) != v]
    if diff:
        raise DatasetError(f"{path}: its {rung}_* values were computed with other settings ({', '.join(diff)}), "
                           "and one property never mixes two calculations; give the same options, or "
                           "--property-prefix to write these beside them")


def check_foreign(path, rung: str) -> None:
    """Refuse (:class:`DatasetError`) a dataset whose molecule groups hold ``<rung>_*`` datasets that no
    :class:`ResultWriter` made: a writer always gives a group ``<rung>_status`` with its first value, so
    ``<rung>_*`` without it is someone else's data (SPICE's ``dft_total_energy``), never overwritten.
    The merge refuses the same (the rung's results then stay in the journal); calling this first
    refuses before any work."""
    with open_hdf5(path) as f:
        for name, g in f.items():
            if isinstance(g, h5py.Group) and f"{rung}_status" not in g:
                mine = sorted(k for k in g if k.startswith(f"{rung}_"))
                if mine:
                    raise DatasetError(_foreign(path, name, mine, rung))


_PREFIX = r"[A-Za-z][A-Za-z0-9_]*"  # a --property-prefix, before its closing "_"


def prefixed(rung: str, suffix: str) -> re.Pattern:
    """For ``fullmatch``: ``<prefix><rung>_<suffix>`` under any :func:`property_prefix`, none included;
    group 1 is the prefix (``""`` for none)."""
    return re.compile(rf"((?:{_PREFIX}_)?){re.escape(rung)}_{re.escape(suffix)}")


def property_prefix(prefix: str | None) -> str:
    """A checked ``--property-prefix``: ``""`` (none) or letters, digits and ``_``, starting with a letter,
    ending with ``_`` (added when missing: ``rung`` gives ``rung_``). A rung's datasets are then
    ``<prefix><rung>_<property>`` (``rung_dft_total_energy``), beside a foreign property of the plain name."""
    prefix = (prefix or "").strip()
    if not prefix:
        return ""
    if not re.fullmatch(_PREFIX, prefix):
        raise InputError(f"--property-prefix {prefix!r}: letters, digits and '_' only, starting with a letter")
    return prefix if prefix.endswith("_") else prefix + "_"


def check_not_failed(path, molecule: str, index: int, rung: str = "dft") -> None:
    """Refuse a conformation that a lower ``rung`` recorded as failed (its ``<rung>_status``, or
    ``<prefix><rung>_status`` when that rung wrote under a :func:`property_prefix`; any of them).

    A rung above never runs on a conformation a rung below rejected (atoms on top of each other, an
    SCF that never converged): raises :class:`DatasetError` with that rung's reason.
    """
    with open_hdf5(path) as f:
        g = f[molecule] if molecule in f else None
        own = prefixed(rung, "status")
        names = [] if g is None else sorted(k for k in g if own.fullmatch(k))
        failed = [k for k in names if int(g[k][index]) == FAILED]
        if not failed:
            return
        err = failed[0][:-len("status")] + "error"
        why = attr_text(g[err][index]) if err in g else "no reason recorded"
    where = "" if failed[0] == f"{rung}_status" else f"{failed[0]}: "
    raise DatasetError(f"{path}: {molecule}[{index}] failed at the {rung} rung ({where}{why}); "
                       "no rung above runs on a conformation a lower rung rejected")


def read_property(path, molecule: str, name: str) -> tuple[np.ndarray, str]:
    """Return ``(values, units)`` of one ``<rung>_<property>`` dataset of one molecule."""
    with open_hdf5(path) as f:
        if molecule not in f or name not in f[molecule]:
            raise DatasetError(f"{path}: no dataset {molecule}/{name}")
        d = f[molecule][name]
        return d[()], attr_text(d.attrs.get("units", ""))


def summarize(path, rung: str) -> dict:
    """Counts of pending/done/failed conformations of one rung (journals included)."""
    counts = {name: 0 for name in STATUS_NAMES.values()}
    for v in ResultWriter(path, rung, {}).status().values():
        counts[STATUS_NAMES[v]] += 1
    return counts


__all__ = [
    "DatasetError", "Molecule", "ResultWriter", "atomic_update", "attr_text", "check_conformation",
    "check_electrons", "check_foreign", "check_geometry", "check_length_unit", "check_not_failed", "check_settings",
    "create_dataset", "MIN_DISTANCE_BOHR", "open_hdf5", "prefixed", "property_prefix",
    "read_hdf5", "read_property", "read_structures", "read_xyz", "smiles_charge", "summarize",
    "SCHEMA", "SCHEMA_VERSION", "PENDING", "DONE", "FAILED",
]
