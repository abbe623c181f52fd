"""The conformation farm: DFT energies and forces for every conformation of a rung.core dataset.

Contract. :func:`run` reads structures (rung or SPICE-layout HDF5, or any file ASE reads), writes
them to a rung.core dataset (:func:`rung.core.dataset.create_dataset`) and records, for each
conformation, the ``dft_*`` properties of :func:`rung.dft_gpu.scf.kernel`'s result
(:meth:`rung.dft_gpu.scf.DFTResult.values`, units in :data:`rung.dft_gpu.scf.UNITS`) through
:class:`rung.core.dataset.ResultWriter`, which journals every finished conformation durably before the
next starts. Killing the run at any point and running it again finishes the rest without recomputing
or losing anything. The kernel is a pure function of (molecule, conformation index, config): nothing
depends on which rank computed a conformation or in which order, so 1 and N ranks, or an interrupted
and an uninterrupted run, give the same file (except ``dft_wall_time``). The level of theory, the two
SCFs of a conformation and the SCF fallbacks are described in :mod:`rung.dft_gpu.scf`.

A conformation none of the SCF strategies converges, or any exception while computing it, is recorded
as failed with the reason; it never stops the run and never gets a number. A conformation with NaN or
infinite coordinates is recorded as failed with that reason before the run starts (its coordinates are
stored as zeros, since the dataset holds finite structures only); the other conformations of its
molecule are computed. A molecule the reader rejects as a whole (every conformation NaN, unknown atomic
number) is left out of the output and listed, with the reason, in the root attribute ``dft_rejected``
(JSON).

MPI: every rank takes the next pending conformation from a shared counter
(:class:`rung.core.mpi.SharedCounter`, one-sided ``MPI_Fetch_and_op`` on rank 0), so fast and slow
molecules balance; each rank journals its own results; rank 0 merges when all are done.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rung.core.mpi import SharedCounter, bcast, comm_info, wait_all
from rung.core.progress import Progress
from rung.dft_gpu.scf import UNITS, DFTConfig, engine_accelerate, kernel

log = logging.getLogger("rung.dft_gpu.run")

RUNG = "dft"
# Per-conformation kind and shape of each property (units: rung.dft_gpu.scf.UNITS): the first merge
# lays out every dataset of every molecule at once (one copy of the file), so the merges while the farm
# runs write in place only.
SHAPES = {
    "total_energy": ("f", ()), "total_gradient": ("f", ("n_atoms", 3)), "dipole": ("f", (3,)),
    "gradient_scf_energy": ("f", ()), "scf_cycles": ("i", ()), "gradient_scf_cycles": ("i", ()),
    "converged": ("i", ()), "scf_strategy": ("s", ()), "jk_backend": ("s", ()), "wall_time": ("f", ()),
}
FORCE_PROPERTIES = ("total_gradient", "gradient_scf_energy", "gradient_scf_cycles")


@dataclass(frozen=True)
class RunSummary:
    """What a :func:`run` call found and did (counts over the whole dataset after the run)."""

    out_path: Path
    n_conformations: int
    n_done: int
    n_failed: int
    n_pending: int
    computed: int  # conformations computed by this call (all ranks)
    failed_now: int  # of those, recorded as failed
    rejected: dict = field(default_factory=dict)  # molecule -> reason (left out of the output)
    wall_time_s: float = 0.0


# ------------------------------------------------------------------------------------ the farm
def _without_bad_conformations(path, name, units=None, check_units=True):
    """Read group ``name`` whose coordinates are partly NaN/infinite: the molecule with those
    conformations' coordinates set to zero, and ``{index: reason}`` for them; None if all are bad."""
    from dataclasses import replace

    from rung.core.dataset import read_hdf5

    (m,) = read_hdf5(path, names=[name], units=units, allow_nonfinite=True, check_units=check_units)
    bad = [int(i) for i in np.flatnonzero(~np.isfinite(m.conformations).all(axis=(1, 2)))]
    if not bad or len(bad) == m.n_conf:
        return None
    x = m.conformations.copy()
    x[bad] = 0.0  # placeholder; these conformations are recorded as failed
    reasons = {i: f"input conformation {i} has NaN or infinite coordinates (stored as zeros, not computed)"
               for i in bad}
    return replace(m, conformations=x, allow_nonfinite=False), reasons


def _read_input(input_path, units=None, name_key="name", check_units=True):
    """Molecules of the input file, {name: reason} of HDF5 groups rejected as a whole (a wrong length
    unit among the reasons: :func:`rung.core.dataset.check_length_unit`, unless not ``check_units``), and
    {name: {index: reason}} of single conformations rejected (NaN/infinite coordinates)."""
    import h5py

    from rung.core.dataset import DatasetError, open_hdf5, read_hdf5, read_structures

    path = Path(input_path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        return read_structures(path, units=units, name_key=name_key, check_units=check_units), {}, {}
    with open_hdf5(path) as f:
        names = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
    molecules, rejected, bad_conformations = [], {}, {}
    for name in names:
        try:
            molecules += read_hdf5(path, names=[name], units=units, check_units=check_units)
        except DatasetError as err:
            try:
                partly = (_without_bad_conformations(path, name, units, check_units) if "NaN or infinite" in str(err)
                          else None)
            except DatasetError as other:  # NaN rows and another problem of the whole molecule: reject it
                partly, err = None, other
            if partly is None:
                rejected[name] = str(err)
            else:
                molecules.append(partly[0])
                bad_conformations[name] = partly[1]
    if not molecules and rejected:
        raise DatasetError(f"{path}: no usable molecule; first problem: {next(iter(rejected.values()))}")
    return molecules, rejected, bad_conformations


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("pyscf", "rung-dft-gpu", "rung-core", "pyscf-dispersion"):
        try:
            out[dist.replace("-", "_") + "_version"] = version(dist)
        except PackageNotFoundError:
            out[dist.replace("-", "_") + "_version"] = "not installed"
    return out


def _auxbasis_used(config: DFTConfig) -> str:
    if config.auxbasis is not None:
        return str(config.auxbasis)
    if config.jk == "engine":
        from rung.dft_gpu.jk import DEFAULT_AUXBASIS

        return str(DEFAULT_AUXBASIS)
    return "pyscf default (pyscf.df.make_auxbasis)"


def _metadata(config: DFTConfig) -> dict:
    meta = {k: ("none" if v is None else v) for k, v in config.result_settings().items()}
    meta["auxbasis"] = _auxbasis_used(config)
    meta.update(jk=config.jk, level_of_theory=f"{config.xc}/{config.basis}" + (f"/{config.ecp}" if config.ecp else ""))
    meta.update(_versions())
    return meta


def _shapes(config: DFTConfig) -> dict:
    return {k: v for k, v in SHAPES.items() if config.forces or k not in FORCE_PROPERTIES}


def farm_writer(out_path, config: DFTConfig, rank: int = 0, rung: str = RUNG):
    """The farm's :class:`rung.core.dataset.ResultWriter` (its units, metadata and shapes) for ``rank``."""
    from rung.core.dataset import ResultWriter

    return ResultWriter(out_path, rung, UNITS, _metadata(config), rank=rank, shapes=_shapes(config))


def prepare(input_path, out_path, config: DFTConfig, rejected_out: dict, input_units=None,
            name_key: str = "name", check_units: bool = True, rung: str = RUNG) -> set:
    """Rank 0: create (or reopen) the output, check the settings match, fold leftover journals.
    Returns the conformations the input itself makes impossible (NaN coordinates): never retried.

    :func:`prepare`, :func:`farm_writer` (each result journalled) and :func:`finalize` are the farm's
    phases around its tasks (:func:`rung.dft_gpu.scf.kernel` per conformation), public for a caller
    that runs the tasks on its own executor (tools/pipeline's DFT step)."""
    import h5py

    from rung.core.dataset import PENDING, DatasetError, ResultWriter, atomic_update, create_dataset

    molecules, rejected, bad_conformations = _read_input(input_path, input_units, name_key, check_units)
    rejected_out.update(rejected)
    create_dataset(out_path, molecules)
    # the auxbasis as resolved: the engine's and PySCF's defaults differ (and so do the energies)
    settings = json.dumps({**config.result_settings(), "auxbasis": _auxbasis_used(config)}, sort_keys=True)
    with h5py.File(out_path, "r") as f:
        have = f.attrs.get(f"{rung}_settings")
        have_rejected = json.loads(f.attrs.get(f"{rung}_rejected", "{}"))
    if have is None:
        _refuse_foreign(out_path, rung)
    if have is not None and have != settings:
        old, new = json.loads(have), json.loads(settings)
        diff = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in new if old.get(k) != new.get(k))
        raise DatasetError(f"{out_path} holds DFT results computed with other settings ({diff}); "
                           "rerun with the same options or choose another --out")
    if have is None or have_rejected != rejected:
        def write(f):
            f.attrs[f"{rung}_settings"] = settings
            f.attrs[f"{rung}_rejected"] = json.dumps(rejected, sort_keys=True)
            f.attrs["package_version"] = _versions()["rung_dft_gpu_version"]
            f.attrs["backend"] = config.jk if config.jk == "pyscf" else f"engine:{config.backend}"

        atomic_update(Path(out_path), write)
    if bad_conformations:  # rejected one by one: failed with the reason, never computed
        status = ResultWriter(out_path, rung, UNITS).status()
        writer = farm_writer(out_path, config, rung=rung)
        try:
            for name, reasons in bad_conformations.items():
                for index, reason in reasons.items():
                    if status[(name, index)] == PENDING:
                        writer.record(name, index, error=reason)
        finally:
            writer.close()
    finalize(out_path, config, rung)  # a killed run's journals and orbital parts
    return {(name, index) for name, reasons in bad_conformations.items() for index in reasons}


def _refuse_foreign(out_path, rung: str = RUNG) -> None:
    """Refuse an output whose ``<rung>_*`` data rung did not write (no ``<rung>_settings``: e.g. SPICE's
    own ``dft_total_energy`` when the input is given as ``--out``): it is never replaced or mixed with
    ours. ``--property-prefix`` writes ours under other names beside it."""
    import h5py

    from rung.core.dataset import DatasetError

    with h5py.File(out_path, "r") as f:
        for name, g in f.items():
            foreign = sorted(k for k in g if k.startswith(f"{rung}_")) if isinstance(g, h5py.Group) else []
            if foreign:
                more = f" and {len(foreign) - 1} more {rung}_* datasets" if len(foreign) > 1 else ""
                raise DatasetError(
                    f"{out_path} holds {name}/{foreign[0]}{more} that rung did not write (no {rung}_settings "
                    "provenance); they are never replaced: choose another --out, or write rung's results beside "
                    "them under other names with --property-prefix (e.g. rung_)")


def finalize(out_path, config: DFTConfig, rung: str = RUNG) -> None:
    """Rank 0, nobody computing: fold orbital parts and journals into the files, set file references."""
    from rung.dft_gpu import outputs

    if config.save_orbitals:
        outputs.merge_orbital_parts(out_path)
    farm_writer(out_path, config, rung=rung).merge()
    outputs.set_references(out_path, orbitals=config.save_orbitals, fcidump=config.save_fcidump)


def run(input_path, out_path, config: DFTConfig = DFTConfig(), comm=None, *, progress: bool = True,
        input_units: str | None = None, retry_failed: bool = False, merge_every: int = 100,
        merge_every_s: float = 600.0, name_key: str = "name", check_units: bool = True,
        property_prefix: str = "") -> RunSummary:
    """Compute every pending conformation of ``input_path`` into the dataset ``out_path``.

    Parameters
    ----------
    input_path : rung/SPICE-layout HDF5, or a structure file ASE reads (xyz: Angstrom)
    out_path : rung.core dataset to create, or to resume (same input and settings)
    config : DFTConfig
    comm : mpi4py communicator (None: serial); every rank calls ``run`` with the same arguments
    progress : show a progress bar (terminal) or log lines (``logging``, logger ``rung.dft_gpu.run``)
    input_units : length unit of input coordinates whose file does not say (an HDF5 group without a
        ``units`` attribute is rejected otherwise; xyz: Angstrom unless given)
    retry_failed : compute again the conformations recorded as failed (not those the input makes
        impossible: NaN coordinates); each retried result replaces the failure record
    merge_every, merge_every_s : results are folded into ``out_path`` while the run goes on, whenever a
        rank has journalled ``merge_every`` results or ``merge_every_s`` seconds have passed since its
        last merge (in place, no copy of the file: :meth:`rung.core.dataset.ResultWriter.merge`); the
        other ranks' results arrive at rank 0's next merge after they seal their journal segment
    name_key : structure files: the extxyz comment-line key naming each frame's molecule (frames of one
        molecule are grouped wherever they are; without it, the formula names it)
    check_units : refuse input molecules whose bond lengths say their length unit is wrong
        (:func:`rung.core.dataset.check_length_unit`); off for ``--trust-units``
    property_prefix : written before every dataset and attribute name of this rung (``rung_`` writes
        ``rung_dft_total_energy``, ``rung_dft_status``, ``rung_dft_settings``...), so that results go
        beside a property of the same name that rung did not write (SPICE's ``dft_total_energy``),
        which is never replaced (:func:`rung.core.dataset.property_prefix`)

    Returns
    -------
    RunSummary (the same on every rank)
    """
    import h5py

    from rung.core.dataset import DONE, FAILED, PENDING, ResultWriter, read_hdf5
    from rung.core.dataset import property_prefix as checked
    from rung.dft_gpu import outputs

    t0 = time.perf_counter()
    out_path = Path(out_path)
    rung = checked(property_prefix) + RUNG
    rank, size = comm_info(comm)
    if config.jk == "engine":
        engine_accelerate()  # fail before touching any file if the engine is absent
    rejected: dict = {}
    error = None
    impossible: set = set()
    if rank == 0:
        try:
            impossible = prepare(input_path, out_path, config, rejected, input_units, name_key, check_units, rung)
        except Exception as err:  # handed to every rank, so all of them stop with the same error
            error = err
    error = bcast(comm, error)
    if error is not None:
        raise error
    molecules = {m.name: m for m in read_hdf5(out_path)}
    pending = None
    if rank == 0:
        status = ResultWriter(out_path, rung, UNITS).status()
        nelec = {name: int(m.atomic_numbers.sum()) for name, m in molecules.items()}
        todo = {PENDING, FAILED} if retry_failed else {PENDING}
        # Largest first: the slow conformations start early, the small ones fill the gaps at the end.
        pending = sorted(((*k, v == FAILED) for k, v in status.items() if v in todo and k not in impossible),
                         key=lambda k: (-nelec[k[0]], k))
    pending = bcast(comm, pending)

    writer = farm_writer(out_path, config, rank, rung)
    last_merge = time.monotonic()
    counter = SharedCounter(comm)
    bar = Progress(len(pending), "dft-gpu run", unit="conf", enabled=progress, log=log, rank=rank, size=size)
    computed = failed = 0
    try:
        while (k := counter.next()) < len(pending):
            name, index, retry = pending[k]
            try:
                res = kernel(molecules[name], index, config)
                if config.save_fcidump:
                    outputs.write_fcidump(out_path, name, index, res.mol, res.mo_coeff, config)
                if config.save_orbitals:
                    outputs.write_orbital_part(out_path, name, index, res.mol, res.orbitals, config)
                writer.record(name, index, res.values(), replace=retry)
                msg = f"E = {res.energy:.8f} Ha, {res.wall_time_s:.1f} s"
            except Exception as err:  # recorded, never fatal: the run goes on with the next conformation
                reason = f"{type(err).__name__}: {err}"
                writer.record(name, index, error=reason, replace=retry)
                failed += 1
                msg = f"FAILED {reason}"
            computed += 1
            bar.update(k + 1, f"{name}[{index}] {msg}")  # k + 1: handed out by all ranks
            if writer.unsealed >= merge_every or time.monotonic() - last_merge >= merge_every_s:
                # results visible while the farm runs: every rank seals its journal segment, rank 0
                # folds the sealed ones (its own and the others') into the file, in place
                if rank == 0:
                    writer.merge(sealed_only=True)
                else:
                    writer.seal()
                last_merge = time.monotonic()
    finally:
        writer.close()
        bar.close()
    counter.free()
    if size > 1:
        wait_all(comm)
        computed, failed = comm.allreduce(computed), comm.allreduce(failed)
    summary = None
    if rank == 0:
        finalize(out_path, config, rung)
        st = ResultWriter(out_path, rung, UNITS).status()
        with h5py.File(out_path, "r") as f:
            rejected = json.loads(f.attrs.get(f"{rung}_rejected", "{}"))
        summary = RunSummary(
            out_path=out_path, n_conformations=len(st),
            n_done=sum(v == DONE for v in st.values()), n_failed=sum(v == FAILED for v in st.values()),
            n_pending=sum(v == PENDING for v in st.values()), computed=computed, failed_now=failed,
            rejected=rejected, wall_time_s=time.perf_counter() - t0,
        )
    return bcast(comm, summary)


# ------------------------------------------------------------------------------------ status
def status(path, property_prefix: str = "") -> dict:
    """Done / failed / pending counts, wall-time statistics and failure reasons of a dataset's DFT rung.

    Returns ``{"counts": {...}, "molecules": {name: {"done", "failed", "pending"}}, "failures":
    [(molecule, index, reason)], "wall_time_s": {"total", "mean", "max"} or None, "settings": dict,
    "rejected": dict, "other_prefixes": [prefix]}``; journals of a run in progress count too.
    ``property_prefix``: as given to :func:`run`; ``other_prefixes``: the other ``--property-prefix``
    (``""``: none) under which DFT results were written into this file (their ``<prefix>dft_settings``).
    """
    from rung.core.dataset import DONE, FAILED, STATUS_NAMES, ResultWriter, open_hdf5, prefixed
    from rung.core.dataset import property_prefix as checked

    rung = checked(property_prefix) + RUNG
    st = ResultWriter(path, rung, UNITS).status()
    counts = {n: 0 for n in STATUS_NAMES.values()}
    per_mol: dict = {}
    for (name, _), v in st.items():
        counts[STATUS_NAMES[v]] += 1
        per_mol.setdefault(name, {n: 0 for n in STATUS_NAMES.values()})[STATUS_NAMES[v]] += 1
    reasons, times = {}, []
    with open_hdf5(path) as f:
        for name, g in f.items():
            if f"{rung}_status" in g:
                s = g[f"{rung}_status"][()]
                errs = g[f"{rung}_error"][()]
                reasons.update({(name, int(i)): errs[i].decode() if isinstance(errs[i], bytes) else str(errs[i])
                                for i in np.flatnonzero(s == FAILED)})
                if f"{rung}_wall_time" in g:
                    times += list(g[f"{rung}_wall_time"][()][s == DONE])
        settings = json.loads(f.attrs.get(f"{rung}_settings", "{}"))
        rejected = json.loads(f.attrs.get(f"{rung}_rejected", "{}"))
        found = (prefixed(RUNG, "settings").fullmatch(k) for k in f.attrs)
        others = sorted(m.group(1) for m in found if m and m.group(1) + RUNG != rung)
    for rec in ResultWriter(path, rung, UNITS).journal_records():  # newer than the file
        reasons[(rec["molecule"], rec["index"])] = rec["error"]
    # failed now (a retried conformation that succeeded is no failure any more), in file order
    failures = [(name, index, reasons.get((name, index), "")) for (name, index), v in st.items() if v == FAILED]
    times = np.asarray(times, dtype=np.float64)
    wall = None if times.size == 0 else {"total": float(times.sum()), "mean": float(times.mean()), "max": float(times.max())}
    return {"counts": counts, "molecules": per_mol, "failures": failures, "wall_time_s": wall,
            "settings": settings, "rejected": rejected, "other_prefixes": others}


__all__ = ["RunSummary", "run", "status"]
