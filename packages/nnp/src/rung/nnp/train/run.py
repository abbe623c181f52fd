"""``nnp train``: run the stages of a training config, write the refit model with its provenance.

Order of work: every check first (output path, base model, frozen patterns, every stage's datasets,
elements and split), so bad input raises :class:`TrainInputError` and writes nothing. Then per stage:
errors before, the refit, errors after (training and validation sets, measured with the inference
engine in float64, not with the refit's own linear algebra), one JSON line in the log
``<output stem>.log.jsonl``. Last, the model file (rung.nnp.model format, written atomically), whose
``provenance`` attribute holds the base model, the config, the datasets with their SHA-256, the
stages with their counts and errors, and the final training/validation errors.

Error units in the log and provenance: energies Hartree (per conformation) and Hartree/atom, forces
Hartree/Bohr; ``loss`` is the refit's chi^2 + prior per member (see :mod:`rung.nnp.train.readout`).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from rung.core import units as U
from rung.nnp.model import ANIModel
from rung.nnp.train.config import TrainConfig, TrainInputError
from rung.nnp.train.data import Frames, load_frames, split
from rung.nnp.train.readout import free_columns, parameter_names, refit

UNITS = {"energy": "hartree", "energy_per_atom": "hartree", "forces": "hartree/bohr"}


@dataclass(frozen=True)
class StageResult:
    """One stage's record (also one line of the log); errors as returned by :func:`errors`."""

    name: str
    solver: str
    n_train: int
    n_valid: int
    n_free: int
    counts: list
    loss_before: list
    loss_after: list
    train_before: dict
    train_after: dict
    valid_before: dict
    valid_after: dict
    seconds: float


@dataclass(frozen=True)
class TrainResult:
    model: ANIModel
    stages: tuple
    output: Path
    log: Path


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def errors(model: ANIModel, frames: Frames, atoms_per_call: int = 20000) -> dict:
    """MAE and RMSE of the model (ensemble mean, float64, numba) against the frames' labels.

    Returns energy_mae/rmse (Hartree), energy_per_atom_mae/rmse (Hartree/atom), forces_mae/rmse
    (Hartree/Bohr, over force components), n_energy and n_forces (labelled conformations); None where
    there are no labels.
    """
    from rung.nnp.ani import ANIPotential

    pot = ANIPotential(model, dtype="float64", backend="numba")
    e = np.empty(frames.n_conf)
    f = np.empty_like(frames.x)
    start = np.concatenate([[0], np.cumsum(frames.natoms)])
    c0 = 0
    while c0 < frames.n_conf:
        c1 = max(c0 + 1, int(np.searchsorted(start, start[c0] + atoms_per_call, side="right")) - 1)
        c1 = min(c1, frames.n_conf)
        a0, a1 = start[c0], start[c1]
        r = pot.evaluate(frames.x[a0:a1], frames.numbers[a0:a1], batch=frames.batch[a0:a1] - c0)
        e[c0:c1], f[a0:a1] = r.energy, r.forces
        c0 = c1
    dE = (e - frames.energy)[np.isfinite(frames.energy)]
    dA = ((e - frames.energy) / frames.natoms)[np.isfinite(frames.energy)]
    ok = np.all(np.isfinite(frames.forces), axis=1)
    dF = ((f - frames.forces)[ok] * U.BOHR_TO_ANGSTROM).ravel()  # Hartree/Angstrom -> Hartree/Bohr

    def mae_rmse(v):
        return (float(np.mean(np.abs(v))), float(np.sqrt(np.mean(v * v)))) if v.size else (None, None)

    out = {"n_energy": int(dE.size), "n_forces": int(np.unique(frames.batch[ok]).size)}
    for key, v in (("energy", dE), ("energy_per_atom", dA), ("forces", dF)):
        out[f"{key}_mae"], out[f"{key}_rmse"] = mae_rmse(v)
    return out


def _base_model(name: str):
    from rung.nnp.fetch import KNOWN, WeightsMissing, resolve
    from rung.nnp.model import ModelFileError, read_model
    from rung.nnp.neurochem import read_ensemble

    try:
        path = resolve(name) if name in KNOWN else Path(name)
        model = read_ensemble(path, name=name) if path.is_dir() else read_model(path)
    except (WeightsMissing, ModelFileError) as err:
        raise TrainInputError(f"model: {err}") from err
    return model, path


def prepare(config: TrainConfig, *, overwrite: bool = False, log=print):
    """Every check of :func:`train`, nothing written: (base model, its path, [(stage, train, valid, counts)]).

    The datasets' count lines go to ``log`` only once every check has passed, so bad input shows
    nothing but its error."""
    out = config.output
    if out.exists() and not overwrite:
        raise TrainInputError(f"output {out} exists; choose another 'output' or pass --overwrite")
    if not out.parent.is_dir():
        raise TrainInputError(f"output folder {out.parent} does not exist")
    model, path = _base_model(config.model)
    names = parameter_names(model)
    for st in config.stages:
        where = f"{config.source}: stage {st.name!r}"
        for pat in st.frozen:
            if not any(fnmatchcase(n, pat) for n in names):
                raise TrainInputError(f"{where}: frozen pattern {pat!r} matches no parameter "
                                      f"(names like {names[0]}, {names[-1]})")
        if not free_columns(model, st.frozen).any():
            raise TrainInputError(f"{where} freezes every parameter the {st.solver} solver can change "
                                  f"(the last layers' weights and biases, e.g. {names[-2]}): nothing to train")
    plan, notes = [], []
    for st in config.stages:
        frames, counts = load_frames(st, model.atomic_numbers, log=notes.append)
        if st.validation:  # an explicit validation set: every given conformation is trained on
            train_set = frames
            valid_set, _ = load_frames(replace(st, datasets=st.validation), model.atomic_numbers, log=notes.append)
        else:
            try:
                train_set, valid_set = split(frames, st.validation_fraction, st.split, st.seed)
            except TrainInputError as err:
                raise TrainInputError(f"{config.source}: stage {st.name!r}: {err}") from err
        plan.append((st, train_set, valid_set, counts))
    for line in notes:
        log(line)
    return model, path, plan


def train(config: TrainConfig, *, overwrite: bool = False, log=print) -> TrainResult:
    """Run every stage of ``config`` (see module); return the refit model and the stage records."""
    from rung.nnp import __version__
    from rung.nnp.model import save_model

    model, base_path, plan = prepare(config, overwrite=overwrite, log=log)
    base = {"name": model.name, "path": str(base_path), "provenance": model.provenance,
            "sha256": sha256(base_path) if base_path.is_file() else None}
    log_path = config.output.with_suffix(".log.jsonl")
    results = []
    with open(log_path, "w") as fh:
        def record(d):
            fh.write(json.dumps(d) + "\n")
            fh.flush()

        record({"event": "start", "config": str(config.source), "base_model": base["name"], "output": str(config.output),
                "units": UNITS, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        for st, tr, va, counts in plan:
            t0 = time.perf_counter()
            tr_before, va_before = errors(model, tr), errors(model, va)
            res = refit(model, tr.labels(st), frozen=st.frozen, l2sp=st.l2sp, shift_l2sp=st.shift_l2sp)
            model = res.model
            sr = StageResult(st.name, st.solver, tr.n_conf, va.n_conf, res.n_free, counts, res.loss_before.tolist(),
                             res.loss_after.tolist(), tr_before, errors(model, tr), va_before, errors(model, va),
                             time.perf_counter() - t0)
            record({"event": "stage", **asdict(sr)})
            results.append(sr)
            log(_summary(sr))
        prov = {"source": "rung.nnp.train", "package_version": __version__, "base_model": base,
                "config": {"path": str(config.source), "sha256": hashlib.sha256(config.text.encode()).hexdigest(),
                           "text": config.text},
                "datasets": [{"path": p, "sha256": sha256(p)} for p in sorted({d for st in config.stages for d in st.datasets + st.validation})],
                "stages": [dict(asdict(st), counts=r.counts, n_train=r.n_train, n_valid=r.n_valid, loss_after=r.loss_after,
                                train=r.train_after, validation=r.valid_after) for st, r in zip(config.stages, results)],
                "metrics": {"train": results[-1].train_after, "validation": results[-1].valid_after},
                "units": UNITS}
        model = ANIModel(config.name, model.species, model.aev, model.self_energies, model.members, prov)
        save_model(model, config.output)
        record({"event": "done", "output": str(config.output), "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return TrainResult(model, tuple(results), config.output, log_path)


def _summary(r: StageResult) -> str:
    k = U.HARTREE_TO_KCAL_PER_MOL

    def fmt(d, key, scale):
        v = d[key]
        return "-" if v is None else f"{v * scale:.3f}"

    f = k / U.BOHR_TO_ANGSTROM  # Hartree/Bohr -> kcal/mol/Angstrom
    return (f"stage {r.name}: {r.n_train} train / {r.n_valid} validation conformations, {r.n_free} free parameters "
            f"per member; validation E RMSE {fmt(r.valid_before, 'energy_rmse', k)} -> {fmt(r.valid_after, 'energy_rmse', k)} "
            f"kcal/mol, F RMSE {fmt(r.valid_before, 'forces_rmse', f)} -> {fmt(r.valid_after, 'forces_rmse', f)} kcal/mol/A "
            f"({r.seconds:.1f} s)")
