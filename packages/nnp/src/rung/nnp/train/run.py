"""``nnp train``: run the stages of a training config, write the trained model with its provenance.

Order of work: every check first (output path, base model, frozen patterns, every stage's datasets,
elements and split; jax for a gradient stage), so bad input raises :class:`TrainInputError` and
writes nothing. Then per stage: errors before, the solver (:mod:`rung.nnp.train.readout` or
:mod:`rung.nnp.train.gradient`), errors after (training and validation sets, measured with the
inference engine in float64, not with the solvers' own arithmetic), one JSON line in the log
``<output stem>.log.jsonl`` (a gradient stage adds one line per member and epoch). Last, the model
file (rung.nnp.model format, written atomically), whose ``provenance`` attribute holds the base
model, the config, the datasets with their SHA-256, the stages with their counts and errors, and the
final training/validation errors; and, unless ``plots = false``, ``<stem>.learning.png`` (gradient
stages) and ``<stem>.parity.png`` (:mod:`rung.nnp.train.plots`).

Checkpoints (configs with a gradient stage): ``<output stem>.ckpt.npz`` (NumPy's format, no pickle,
written atomically) after every stage and every ``checkpoint_every`` epochs of a gradient stage: the
model as it is, the stage records so far, and the state of the member in training. Running the same
command again resumes from it (the log is appended to) and gives the same model as an uninterrupted
run; a checkpoint of another config or other datasets is refused (``--overwrite`` starts afresh). It
is removed once the model is written.

Error units in the log and provenance: energies Hartree (per conformation) and Hartree/atom, forces
Hartree/Bohr; ``loss`` is the solver's loss per member at the start and the end (see the solvers).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import os
from dataclasses import asdict, dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path

import numpy as np

from rung.core import units as U
from rung.nnp.model import ANIModel
from rung.nnp.train.config import TrainConfig, TrainInputError
from rung.nnp.train.data import Frames, load_frames, split
from rung.nnp.train.readout import free_columns, parameter_names, refit

_info = logging.getLogger(__name__).info  # the default ``log`` of the long calls: library code prints only when asked

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
    members: list = field(default_factory=list)  # gradient stages: per member, history and how it ended


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


def predict(model: ANIModel, frames: Frames, atoms_per_call: int = 20000):
    """Energies (n_conf,) Hartree and forces (n_atoms, 3) Hartree/Angstrom of the frames (ensemble
    mean, float64, numba), in chunks of about ``atoms_per_call`` atoms."""
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
    return e, f


def errors(model: ANIModel, frames: Frames, atoms_per_call: int = 20000) -> dict:
    """MAE and RMSE of the model (ensemble mean, float64, numba) against the frames' labels.

    Returns energy_mae/rmse (Hartree), energy_per_atom_mae/rmse (Hartree/atom), forces_mae/rmse
    (Hartree/Bohr, over force components), n_energy and n_forces (labelled conformations); None where
    there are no labels.
    """
    e, f = predict(model, frames, atoms_per_call)
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


def prepare(config: TrainConfig, *, overwrite: bool = False, log=_info):
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
        if st.solver == "readout" and not free_columns(model, st.frozen).any():
            raise TrainInputError(f"{where} freezes every parameter the {st.solver} solver can change "
                                  f"(the last layers' weights and biases, e.g. {names[-2]}): nothing to train")
        if st.solver == "gradient":
            if all(any(fnmatchcase(n, p) for p in st.frozen) for n in names):
                raise TrainInputError(f"{where} freezes every parameter ({', '.join(st.frozen)}): nothing to train")
            try:
                import jax  # noqa: F401
                import optax  # noqa: F401
            except ImportError as err:
                raise TrainInputError(f"{where}: solver \"gradient\" needs jax and optax: "
                                      f"pip install 'rung-nnp[train]' ({err})") from err
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


def checkpoint_path(output: Path) -> Path:
    return output.with_suffix(".ckpt.npz")


def _fingerprint(config: TrainConfig) -> dict:
    """What a checkpoint must match to be resumed: the config text and every dataset's SHA-256."""
    return {"config_sha256": hashlib.sha256(config.text.encode()).hexdigest(),
            "datasets": {p: sha256(p) for p in sorted({d for st in config.stages for d in st.datasets + st.validation})}}


def write_checkpoint(path: Path, fingerprint: dict, model: ANIModel, results: list, stage: int, *,
                     before=None, member: int | None = None, state: dict | None = None, runs=()):
    """The run as it is, as one .npz (no pickle; temporary file, then rename): ``meta`` (JSON: the
    fingerprint, the next stage, the finished stages' records, the stage in progress), ``model/...``
    (every layer array of every member, in its own dtype; ``self_energies``) and ``state/...`` (the
    member in training, :func:`rung.nnp.train.gradient.member_state`)."""
    meta = {"fingerprint": fingerprint, "stage": stage, "results": [asdict(r) for r in results],
            "before": before, "member": member, "runs": [asdict(r) for r in runs]}
    arrays = {"meta": np.array(json.dumps(meta)), "self_energies": model.self_energies}
    for m, nets in enumerate(model.members):
        for sp, net in zip(model.species, nets):
            for k, layer in enumerate(net.layers):
                arrays[f"model/{m}/{sp}.{k}.weight"] = layer.weight
                arrays[f"model/{m}/{sp}.{k}.bias"] = layer.bias
    for k, v in (state or {}).items():
        arrays[f"state/{k}"] = v
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def read_checkpoint(path: Path, base: ANIModel, fingerprint: dict) -> dict:
    """The checkpoint's model (the base model's structure with the stored arrays), records and state."""
    from rung.nnp.model import Layer, Network
    from rung.nnp.train.gradient import MemberRun

    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError) as err:
        raise TrainInputError(f"checkpoint {path} is unreadable ({err}); remove it or pass --overwrite") from err
    if meta["fingerprint"] != fingerprint:
        raise TrainInputError(f"checkpoint {path} was written for another config or other datasets; "
                              "remove it or pass --overwrite to start afresh")
    members = []
    for m, nets in enumerate(base.members):
        members.append(tuple(Network(tuple(Layer(data[f"model/{m}/{sp}.{k}.weight"], data[f"model/{m}/{sp}.{k}.bias"],
                                                 layer.activation) for k, layer in enumerate(net.layers)))
                             for sp, net in zip(base.species, nets)))
    model = ANIModel(base.name, base.species, base.aev, data["self_energies"], tuple(members), dict(base.provenance))
    state = {k[len("state/"):]: v for k, v in data.items() if k.startswith("state/")}
    return {"model": model, "stage": meta["stage"], "results": [StageResult(**r) for r in meta["results"]],
            "before": meta["before"], "member": meta["member"], "state": state or None,
            "runs": [MemberRun(**r) for r in meta["runs"]]}


def train(config: TrainConfig, *, overwrite: bool = False, log=_info) -> TrainResult:
    """Run every stage of ``config`` (see module); return the trained model and the stage records."""
    from rung.nnp import __version__
    from rung.nnp.model import save_model

    model, base_path, plan = prepare(config, overwrite=overwrite, log=log)
    base = {"name": model.name, "path": str(base_path), "provenance": model.provenance,
            "sha256": sha256(base_path) if base_path.is_file() else None}
    base_model = model
    log_path = config.output.with_suffix(".log.jsonl")
    ckpt = checkpoint_path(config.output) if any(st.solver == "gradient" for st in config.stages) else None
    fingerprint = _fingerprint(config) if ckpt is not None else None
    resume = None
    if ckpt is not None and ckpt.exists():
        if overwrite:
            ckpt.unlink()
        else:
            resume = read_checkpoint(ckpt, model, fingerprint)
    results = list(resume["results"]) if resume else []
    if resume:
        model = resume["model"]
    with open(log_path, "a" if resume else "w") as fh:
        def record(d):
            fh.write(json.dumps(d) + "\n")
            fh.flush()

        record({"event": "resume" if resume else "start", "config": str(config.source), "base_model": base["name"],
                "output": str(config.output), "units": UNITS, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
                **({"checkpoint": str(ckpt), "stage": resume["stage"], "member": resume["member"]} if resume else {})})
        if resume:
            log(f"resuming from {ckpt}: stage {resume['stage']}"
                + (f", member {resume['member']}" if resume["member"] is not None else ""))
        for k, (st, tr, va, counts) in enumerate(plan):
            if k < len(results):
                continue
            t0 = time.perf_counter()
            here = resume if (resume and resume["stage"] == k and resume["before"]) else None
            tr_before, va_before = here["before"] if here else (errors(model, tr), errors(model, va))
            members = []
            if st.solver == "readout":
                res = refit(model, tr.labels(st), frozen=st.frozen, l2sp=st.l2sp, shift_l2sp=st.shift_l2sp)
            else:
                res = _gradient_stage(st, k, model, tr, va, record, log, results, ckpt, fingerprint,
                                      (tr_before, va_before), here)
                members = [asdict(r) for r in res.runs]
            model = res.model
            sr = StageResult(st.name, st.solver, tr.n_conf, va.n_conf, res.n_free, counts, res.loss_before.tolist(),
                             res.loss_after.tolist(), tr_before, errors(model, tr), va_before, errors(model, va),
                             time.perf_counter() - t0, members)
            record({"event": "stage", **asdict(sr)})
            results.append(sr)
            log(_summary(sr))
            if ckpt is not None:
                write_checkpoint(ckpt, fingerprint, model, results, k + 1)
        prov = {"source": "rung.nnp.train", "package_version": __version__, "base_model": base,
                "config": {"path": str(config.source), "sha256": hashlib.sha256(config.text.encode()).hexdigest(),
                           "text": config.text},
                "datasets": [{"path": p, "sha256": sha256(p)} for p in sorted({d for st in config.stages for d in st.datasets + st.validation})],
                "stages": [dict(asdict(st), counts=r.counts, n_train=r.n_train, n_valid=r.n_valid, loss_after=r.loss_after,
                                train=r.train_after, validation=r.valid_after,
                                **({"members": [{k: v for k, v in m.items() if k != "history"} for m in r.members]}
                                   if r.members else {}))
                           for st, r in zip(config.stages, results)],
                "metrics": {"train": results[-1].train_after, "validation": results[-1].valid_after},
                "units": UNITS}
        model = ANIModel(config.name, model.species, model.aev, model.self_energies, model.members, prov)
        save_model(model, config.output)
        plots = _plots(config, results, base_model, model, plan[-1][2], log) if config.plots else []
        record({"event": "done", "output": str(config.output), "plots": [str(p) for p in plots],
                "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
    if ckpt is not None and ckpt.exists():
        ckpt.unlink()
    return TrainResult(model, tuple(results), config.output, log_path)


def _gradient_stage(st, k, model, tr, va, record, log, results, ckpt, fingerprint, before, here):
    """One gradient stage: per-epoch log lines and checkpoints; resumes from ``here`` (read_checkpoint)."""
    from rung.nnp.train.gradient import Options, finetune

    def save(member, current, state, runs):
        if ckpt is not None:
            write_checkpoint(ckpt, fingerprint, current, results, k, before=list(before), member=member, state=state,
                             runs=runs)

    def on_epoch(member, run, epoch):
        h = run.history
        record({"event": "epoch", "stage": st.name, "member": member, "epoch": epoch,
                **{key: h[key][-1] for key in ("train_loss", "valid_loss", "lr", "seconds", "cpu_seconds")}})

    resume = None
    if here is not None and here["member"] is not None:
        resume = {"member": here["member"], "model": model, "state": here["state"], "runs": here["runs"]}
    return finetune(model, tr.labels(st), va.labels(st), Options.from_stage(st), frozen=st.frozen, log=log,
                    resume=resume, save=save, on_epoch=on_epoch)


def _plots(config, results, base_model, model, valid, log) -> list:
    """The learning curve (gradient stages) and the validation parity plot, or [] without matplotlib."""
    try:
        from rung.nnp.train import plots
    except ImportError as err:
        log(f"no plots: matplotlib is not installed ({err})")
        return []
    out = []
    stem = config.output.with_suffix("")
    if any(r.members for r in results):
        out.append(plots.learning_curve(results, stem.with_name(stem.name + ".learning.png")))
    out.append(plots.parity(valid, predict(base_model, valid), predict(model, valid),
                            stem.with_name(stem.name + ".parity.png"), title=config.name))
    for p in out:
        log(f"plot -> {p}")
    return out


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
