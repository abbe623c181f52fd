"""Gradient-based fine-tuning (solver "gradient"): any layers, energy + force losses, jax + optax.

For one ensemble member with parameters ``p`` (free: not matched by the stage's ``frozen`` patterns),
starting weights ``p0`` and the loss rows of :mod:`rung.nnp.train.losses`::

    L(p) = sum_c aE rho(E_c - E_c^ref; sE_c) + sum_{a,k} aF rho(F_ak - F_ak^ref; sF_ak)
           + l2sp |w - w0|^2 + shift_l2sp |b_last - b0_last|^2

where ``w`` are the free weights and hidden-layer biases and ``b_last`` the free last-layer biases
(the per-element shifts). With loss "mse" and only the last layers free this is the read-out
refit's loss (:mod:`rung.nnp.train.readout`), so both solvers have the same minimiser. Forces are
``-dE/dx`` by ``jax.grad`` (:mod:`rung.nnp.train.jaxani`); the loss gradient is a second derivative.

Each step takes a mini-batch of ``batch_size`` conformations (order reshuffled every epoch from
``(seed, member, epoch)``, so a resumed run sees the same batches) and minimises
``N / B * (data terms of the batch) + prior``, an unbiased estimate of L. The update::

    g = clip(grad)                                     (global norm, gradient_clip > 0)
    u = adam(g) | adabelief(g)                         (optax.scale_by_adam / scale_by_belief)
    p <- p - lr_t (u + weight_decay (p - p0))          (decoupled decay towards the start: L2-SP)

with ``lr_t`` constant, cosine one-cycle (optax, over all steps of ``epochs``) or reduced by
``plateau_factor`` after ``plateau_patience`` epochs without a lower validation loss (the stage ends
when it falls below ``min_learning_rate``). Early stopping (``patience`` > 0) ends a member after
that many epochs without a lower validation loss and keeps its best weights. A learning rate of 0
leaves every parameter bit-identical. ``adamw`` is Adam with the decoupled decay above (towards the
start, not towards zero); ``weight_decay`` applies to every optimiser.

Every member is trained on its own (the ensemble spread stays an uncertainty estimate). The state of
the member in training (parameters, optimiser moments, schedule, early-stopping record, history) is
a flat dict of arrays after every ``checkpoint_every`` epochs (:func:`member_state`), so a killed run
resumes to the same result (:mod:`rung.nnp.train.run` writes it as ``.npz``).

Written back (:func:`write_back`): a layer array that changed is stored in the training dtype, one
that did not (frozen, or a learning rate of 0) is the same array as before. Losses reported per
epoch: data terms per conformation (``train_loss``: summed over the epoch's steps before each update;
``valid_loss``: on the validation set after the epoch).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import numpy as np

from rung.core import units as U
from rung.nnp.model import ANIModel, Layer, Network
from rung.nnp.train.losses import VARIANCE_LOSSES, rho
from rung.nnp.train.readout import Labels, parameter_names


@dataclass(frozen=True)
class Options:
    """The gradient solver's settings (the stage's keys of the same names; see rung.nnp.train.config)."""

    loss: str = "mse"
    optimizer: str = "adabelief"
    learning_rate: float = 1.0e-3
    schedule: str = "constant"
    epochs: int = 100
    batch_size: int = 32
    gradient_clip: float = 0.0
    weight_decay: float = 0.0
    patience: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    min_learning_rate: float = 0.0
    dtype: str = "float64"
    checkpoint_every: int = 1
    seed: int = 0
    energy_weight: float = 1.0
    forces_weight: float = 1.0
    energy_sigma: float = 1.6e-3  # Hartree: initial model error s of nll/crps
    forces_sigma: float = 1.6e-3 * U.BOHR_TO_ANGSTROM  # Hartree/Angstrom
    l2sp: float = 1.0e3
    shift_l2sp: float = 0.0

    @classmethod
    def from_stage(cls, stage) -> "Options":
        keys = {f for f in cls.__dataclass_fields__} - {"forces_sigma"}
        return cls(**{k: getattr(stage, k) for k in keys}, forces_sigma=stage.gradient_sigma * U.ANGSTROM_TO_BOHR)


@dataclass
class MemberRun:
    """One member's training: history per epoch (train_loss, valid_loss, lr, seconds, cpu_seconds) and results."""

    member: int
    history: dict = field(default_factory=lambda: {"epoch": [], "train_loss": [], "valid_loss": [], "lr": [],
                                                   "seconds": [], "cpu_seconds": []})
    loss_before: float = float("nan")
    loss_after: float = float("nan")
    best_epoch: int | None = None
    stopped: str = ""
    model_sigma: dict | None = None


@dataclass(frozen=True)
class Finetune:
    """model : the trained ANIModel; loss_before/after : (n_members,) L at the start and the end (see
    module); n_free : free parameters per member; runs : tuple of MemberRun."""

    model: ANIModel
    loss_before: np.ndarray
    loss_after: np.ndarray
    n_free: int
    runs: tuple


def free_names(model: ANIModel, frozen=()) -> list[str]:
    """Parameter names not matched by any ``frozen`` fnmatch pattern."""
    return [n for n in parameter_names(model) if not any(fnmatchcase(n, p) for p in frozen)]


def n_parameters(model: ANIModel, names) -> int:
    sizes = {f"{sp}.{k}.{kind}": getattr(layer, kind).size for sp, net in zip(model.species, model.members[0])
             for k, layer in enumerate(net.layers) for kind in ("weight", "bias")}
    return int(sum(sizes[n] for n in names))


@dataclass(frozen=True)
class Spec:
    """The static part of the compiled functions (hashable): architecture, loss type, optimiser,
    clipping, which parameters are free and which of them are shifts. Numbers that may change between
    stages (weights of the terms, l2sp, weight decay, learning rate) are traced arguments."""

    arch: object
    loss: str
    optimizer: str
    clip: float
    free: tuple
    shifts: tuple


def optimizer(spec: Spec):
    import optax

    chain = [optax.clip_by_global_norm(spec.clip)] if spec.clip > 0 else []
    chain.append(optax.scale_by_belief() if spec.optimizer == "adabelief" else optax.scale_by_adam())
    return optax.chain(*chain)


@functools.lru_cache(maxsize=None)
def compiled(spec: Spec) -> dict:
    """The jitted functions of a Spec, built once per process: every stage, member and test with the
    same Spec and shapes reuses XLA's compiled code (compiling costs seconds, a step milliseconds)."""
    import jax
    import jax.numpy as jnp

    from rung.nnp.train.jaxani import make_predict_fn

    predict = make_predict_fn(spec.arch)
    tx = optimizer(spec)
    shifts = set(spec.shifts)

    def data_terms(params, g, t, hyper):
        e, f = predict(params, g)
        sE = jnp.where(t["mE"] > 0, t["sE"], 1.0)
        sF = jnp.where(t["mF"] > 0, t["sF"], 1.0)
        lE = jnp.sum(t["mE"] * rho(spec.loss, e - t["E"], sE, params.get("loss.log_s_energy")))
        lF = jnp.sum(t["mF"] * rho(spec.loss, f - t["F"], sF, params.get("loss.log_s_forces")))
        return hyper["aE"] * lE + hyper["aF"] * lF

    def prior(free, start, hyper):
        out = 0.0
        for n in spec.free:
            d = free[n] - start[n]
            out = out + (hyper["shift_l2sp"] if n in shifts else hyper["l2sp"]) * jnp.sum(d * d)
        return out

    def objective(free, frozen, start, g, t, hyper, scale):
        data = data_terms({**frozen, **free}, g, t, hyper)
        return scale * data + prior(free, start, hyper), data

    def step(free, frozen, start, opt_state, g, t, hyper, lr, scale):
        (_, data), grads = jax.value_and_grad(objective, has_aux=True)(free, frozen, start, g, t, hyper, scale)
        updates, opt_state = tx.update(grads, opt_state, free)
        wd = hyper["weight_decay"]
        free = {n: free[n] - lr * (updates[n] + wd * (free[n] - start[n])) if n in start else free[n] - lr * updates[n]
                for n in free}
        return free, opt_state, data

    return {"step": jax.jit(step), "data": jax.jit(data_terms), "prior": jax.jit(prior),
            "grad": jax.jit(jax.grad(lambda *a: objective(*a, 1.0)[0])), "tx": tx}


class Problem:
    """One stage's data and settings: batches of the training and validation sets (padded to one
    shape), the hyper-parameters, and the compiled functions of its :class:`Spec`."""

    def __init__(self, model: ANIModel, train: Labels, valid: Labels, opts: Options, frozen=()):
        import jax.numpy as jnp

        from rung.nnp.train import jaxani

        self.model, self.opts = model, opts
        self.dtype = np.dtype(opts.dtype)
        self.free = free_names(model, frozen)
        if not self.free:
            raise ValueError("every parameter is frozen: nothing to train")
        self.n_free = n_parameters(model, self.free)
        last = {f"{sp}.{len(net.layers) - 1}.bias" for sp, net in zip(model.species, model.members[0])}
        self.spec = Spec(jaxani.architecture(model), opts.loss, opts.optimizer, float(opts.gradient_clip),
                         tuple(self.free), tuple(n for n in self.free if n in last))
        self.fn = compiled(self.spec)
        self.tx = self.fn["tx"]
        self.sets = {}
        for key, lab in (("train", train), ("valid", valid)):
            st = jaxani.structures(model, lab.x, lab.numbers, lab.batch)
            bs = min(opts.batch_size, st.n_conf)
            self.sets[key] = [st, lab, None, bs]
        self.n_train = train.n_conf
        self.steps_per_epoch = -(-self.n_train // self.sets["train"][3])
        # One padded shape for every batch that any member and epoch will see, training and validation:
        # the largest real sizes plus one dummy row (all orders are known in advance: a resumed run pads
        # alike), so XLA compiles each function once and pads little.
        st, _, _, bs = self.sets["train"]
        orders = [self.order(m, e) for m in range(len(model.members)) for e in range(opts.epochs)]
        # the stored order too: the loss before and after is evaluated in it
        sizes = [st.batch_sizes([o for o in orders if o is not None] + [np.arange(st.n_conf)], bs)]
        sv, _, _, bsv = self.sets["valid"]
        sizes.append(sv.batch_sizes([np.arange(sv.n_conf)], bsv))
        bound = np.concatenate([[max(bs, bsv)], np.max(np.concatenate(sizes), axis=0) + 1])
        for v in self.sets.values():
            v[2] = bound
        self.hyper = {k: jnp.asarray(v, self.dtype) for k, v in dict(
            aE=opts.energy_weight, aF=opts.forces_weight, l2sp=opts.l2sp, shift_l2sp=opts.shift_l2sp,
            weight_decay=opts.weight_decay).items()}
        self._cache = {}

    # -- data -----------------------------------------------------------------------------------
    def order(self, member: int, epoch: int):
        """The training conformations' order in an epoch (seeded by seed, member, epoch); None for one
        batch, whose order does not matter (its stored graph is reused)."""
        if self.steps_per_epoch == 1:
            return None
        return np.random.default_rng([self.opts.seed, member, epoch]).permutation(self.n_train)

    def batch(self, key, conf):
        """(graph arrays, targets) of conformations ``conf`` of set ``key`` as JAX arrays (training dtype)."""
        import jax.numpy as jnp

        st, lab, bound, _ = self.sets[key]
        g = st.graph(conf, bound)
        C, A = g.n_conf, g.x.shape[0]
        sae = self._sae(key)
        E, sE, mE = np.zeros(C), np.ones(C), np.zeros(C)
        wE = lab.energy_weight[conf]
        ok = wE > 0
        E[:conf.size] = np.where(ok, lab.energy[conf] - sae[conf], 0.0)
        sE[:conf.size] = np.where(ok, np.sqrt(self.opts.energy_weight / np.where(ok, wE, 1.0)), 1.0)
        mE[:conf.size] = ok
        from rung.nnp.train.jaxani import _ranges

        atoms = _ranges(st.atom_start[conf], st.atom_start[conf + 1])
        n = atoms.size
        F, sF, mF = np.zeros((A, 3)), np.ones((A, 3)), np.zeros((A, 3))
        wF = lab.forces_weight[atoms]
        okF = wF > 0
        F[:n] = np.where(okF, lab.forces[atoms], 0.0)
        sF[:n] = np.where(okF, np.sqrt(self.opts.forces_weight / np.where(okF, wF, 1.0)), 1.0)
        mF[:n] = okF
        dt = self.dtype

        def put(a):  # floats in the training dtype, indices as they are
            return jnp.asarray(a, dt) if a.dtype.kind == "f" else jnp.asarray(a)

        arrays = {k: tuple(put(a) for a in v) if isinstance(v, tuple) else put(v) for k, v in g.arrays().items()}
        t = {k: jnp.asarray(v, dt) for k, v in dict(E=E, sE=sE, mE=mE, F=F, sF=sF, mF=mF).items()}
        return arrays, t

    def _sae(self, key):
        """(n_conf,) float64 Hartree, the self energies of each conformation of set ``key``."""
        if ("sae", key) not in self._cache:
            st = self.sets[key][0]
            self._cache[("sae", key)] = np.bincount(st.batch, weights=self.model.self_energies[st.species],
                                                    minlength=st.n_conf)
        return self._cache[("sae", key)]

    def batches(self, key, order=None):
        """The set's batches in ``order`` (default: as stored), cached when in stored order."""
        st, _, _, bs = self.sets[key]
        if order is None and key in self._cache:
            return self._cache[key]
        conf = np.arange(st.n_conf) if order is None else order
        out = [(self.batch(key, conf[k:k + bs]), min(bs, conf.size - k)) for k in range(0, conf.size, bs)]
        if order is None:
            self._cache[key] = out
        return out

    # -- parameters ---------------------------------------------------------------------------
    def split_params(self, member: int):
        """(free, frozen, start) dicts of JAX arrays for a member (start: the free ones' starting values)."""
        import jax.numpy as jnp

        from rung.nnp.train.jaxani import params_of

        p = params_of(self.model, member)
        free = {n: jnp.asarray(p[n], self.dtype) for n in self.free}
        frozen = {n: jnp.asarray(v, self.dtype) for n, v in p.items() if n not in free}
        if self.opts.loss in VARIANCE_LOSSES:
            free["loss.log_s_energy"] = jnp.asarray(np.log(self.opts.energy_sigma), self.dtype)
            free["loss.log_s_forces"] = jnp.asarray(np.log(self.opts.forces_sigma), self.dtype)
        start = {n: free[n] for n in self.free}
        return free, frozen, start

    def data_loss(self, key, params) -> float:
        """Sum of the data terms over set ``key`` (the full set, not a batch)."""
        return float(sum(float(self.fn["data"](params, g, t, self.hyper)) for (g, t), _ in self.batches(key)))

    def loss(self, free, frozen, start) -> float:
        """L of the training set (data + prior), as the module defines it."""
        return self.data_loss("train", {**frozen, **free}) + float(self.fn["prior"](free, start, self.hyper))

    def gradient(self, free, frozen, start):
        """dL/d(free) over the whole training set (a dict like ``free``)."""
        import jax

        total = None
        for (g, t), _ in self.batches("train"):
            gr = self.fn["grad"](free, frozen, start, g, t, self.hyper)
            total = gr if total is None else jax.tree_util.tree_map(lambda a, b: a + b, total, gr)
        if len(self.batches("train")) > 1:  # the prior was added once per batch
            pr = jax.grad(lambda f: self.fn["prior"](f, start, self.hyper))(free)
            total = jax.tree_util.tree_map(lambda a, b: a - (len(self.batches("train")) - 1) * b, total, pr)
        return total

    # -- training -------------------------------------------------------------------------------
    def train_member(self, member: int, *, state: dict | None = None, save=None, on_epoch=None) -> tuple[dict, MemberRun]:
        """Train one member; return (its parameters, float64 NumPy by name) and its MemberRun.

        state : a dict from :func:`member_state` to resume from; save(state_dict) is called every
        ``checkpoint_every`` epochs and when the member ends; on_epoch(run, epoch) after every epoch.
        """
        import jax
        import jax.numpy as jnp
        import optax

        o = self.opts
        free, frozen, start = self.split_params(member)
        opt_state = self.tx.init(free)
        run = MemberRun(member)
        steps_per_epoch = self.steps_per_epoch
        sched = (optax.cosine_onecycle_schedule(o.epochs * steps_per_epoch, o.learning_rate)
                 if o.schedule == "cosine_onecycle" else None)
        rec = dict(epoch=0, lr_scale=1.0, best_valid=np.inf, best_epoch=-1, bad=0, plateau_best=np.inf, plateau_bad=0,
                   stopped="")
        best = None
        if state is None:
            run.loss_before = self.loss(free, frozen, start)
        else:
            free, opt_state, best, rec, run = _restore(state, free, opt_state, run)
        while rec["epoch"] < o.epochs and not rec["stopped"]:
            epoch = rec["epoch"]
            t0, c0 = time.perf_counter(), time.process_time()
            order = self.order(member, epoch)
            parts, lr = [], 0.0
            for k, ((g, t), nb) in enumerate(self.batches("train", order)):
                step = epoch * steps_per_epoch + k
                lr = (float(sched(step)) if sched is not None else o.learning_rate) * rec["lr_scale"]
                free, opt_state, data = self.fn["step"](free, frozen, start, opt_state, g, t, self.hyper,
                                                        jnp.asarray(lr, self.dtype), jnp.asarray(self.n_train / nb, self.dtype))
                parts.append(data)  # no device sync inside the epoch
            total = float(np.sum(jax.device_get(parts)))
            valid = self.data_loss("valid", {**frozen, **free}) / self.sets["valid"][0].n_conf
            h = run.history
            for key, v in (("epoch", epoch), ("train_loss", total / self.n_train), ("valid_loss", valid), ("lr", lr),
                           ("seconds", time.perf_counter() - t0), ("cpu_seconds", time.process_time() - c0)):
                h[key].append(v)
            rec["epoch"] = epoch + 1
            if valid < rec["best_valid"]:
                rec.update(best_valid=valid, best_epoch=epoch, bad=0)
                if o.patience:
                    best = dict(free)
            else:
                rec["bad"] += 1
                if o.patience and rec["bad"] >= o.patience:
                    rec["stopped"] = f"early stopping: no lower validation loss in {o.patience} epochs"
            if o.schedule == "reduce_on_plateau":
                if valid < rec["plateau_best"]:
                    rec.update(plateau_best=valid, plateau_bad=0)
                else:
                    rec["plateau_bad"] += 1
                    if rec["plateau_bad"] >= o.plateau_patience:
                        rec.update(lr_scale=rec["lr_scale"] * o.plateau_factor, plateau_bad=0)
                if o.learning_rate * rec["lr_scale"] < o.min_learning_rate and not rec["stopped"]:
                    rec["stopped"] = f"learning rate below min_learning_rate {o.min_learning_rate:g}"
            if on_epoch is not None:
                on_epoch(run, epoch)
            if save is not None and (rec["epoch"] % o.checkpoint_every == 0 or rec["stopped"] or rec["epoch"] == o.epochs):
                save(member_state(free, opt_state, best, rec, run))
        if o.patience and best is not None:
            free = best
        run.stopped = rec["stopped"] or f"{o.epochs} epochs"
        run.best_epoch = rec["best_epoch"]
        run.loss_after = self.loss(free, frozen, start)
        if o.loss in VARIANCE_LOSSES:
            run.model_sigma = {"energy_hartree": float(np.exp(float(free["loss.log_s_energy"]))),
                               "forces_hartree_per_angstrom": float(np.exp(float(free["loss.log_s_forces"])))}
        out = {n: np.asarray(jax.device_get(v), np.float64) for n, v in free.items() if n in start}
        return out, run


def member_state(free, opt_state, best, rec, run) -> dict:
    """A member's training state as a flat dict of NumPy arrays (no pickle): ``free/<name>``,
    ``best/<name>``, ``opt/<k>`` (optimiser leaves in tree order), ``rec/<key>``, ``hist/<key>``,
    ``run/<key>``."""
    import jax

    out = {f"free/{n}": np.asarray(v) for n, v in free.items()}
    if best is not None:
        out.update({f"best/{n}": np.asarray(v) for n, v in best.items()})
    out.update({f"opt/{k:04d}": np.asarray(v) for k, v in enumerate(jax.tree_util.tree_leaves(opt_state))})
    out.update({f"rec/{k}": np.asarray(v) for k, v in rec.items()})
    out.update({f"hist/{k}": np.asarray(v, np.float64) for k, v in run.history.items()})
    out["run/loss_before"] = np.asarray(run.loss_before)
    return out


def _restore(state, free, opt_state, run):
    import jax
    import jax.numpy as jnp

    def get(prefix):
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    dt = next(iter(free.values())).dtype
    new_free = {n: jnp.asarray(v, dt) for n, v in get("free/").items()}
    if set(new_free) != set(free):
        raise ValueError("the checkpoint's free parameters differ from the stage's")
    best = {n: jnp.asarray(v, dt) for n, v in get("best/").items()} or None
    leaves = [state[k] for k in sorted(k for k in state if k.startswith("opt/"))]
    treedef = jax.tree_util.tree_structure(opt_state)
    opt = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(v) for v in leaves])
    rec = {k: (v.item() if v.ndim == 0 else v) for k, v in get("rec/").items()}
    rec = {k: (str(v) if k == "stopped" else v) for k, v in rec.items()}
    for k, v in get("hist/").items():
        run.history[k] = [int(a) if k == "epoch" else float(a) for a in v]
    run.loss_before = float(state["run/loss_before"])
    return new_free, opt, best, rec, run


def write_back(model: ANIModel, member: int, params: dict, dtype) -> tuple:
    """The member's networks with the trained arrays in; unchanged arrays stay the original objects."""
    nets = []
    for sp, net in zip(model.species, model.members[member]):
        layers = []
        for k, layer in enumerate(net.layers):
            arrays = {}
            for kind in ("weight", "bias"):
                old = getattr(layer, kind)
                new = params.get(f"{sp}.{k}.{kind}")
                if new is None or np.array_equal(np.asarray(new, np.float64), old.astype(np.float64)):
                    arrays[kind] = old
                else:
                    arrays[kind] = np.asarray(new, dtype).reshape(old.shape)
            same = arrays["weight"] is layer.weight and arrays["bias"] is layer.bias
            layers.append(layer if same else Layer(arrays["weight"], arrays["bias"], layer.activation))
        nets.append(net if all(a is b for a, b in zip(layers, net.layers)) else Network(tuple(layers)))
    return tuple(nets)


def with_member(model: ANIModel, member: int, nets) -> ANIModel:
    members = list(model.members)
    members[member] = nets
    return ANIModel(model.name, model.species, model.aev, model.self_energies, tuple(members), dict(model.provenance))


def finetune(model: ANIModel, train: Labels, valid: Labels, opts: Options, *, frozen=(), log=None,
             resume: dict | None = None, save=None, on_epoch=None) -> Finetune:
    """Fine-tune every member of ``model`` (see module); ANIModel in, :class:`Finetune` out.

    resume : {"member": m, "model": the model with members < m trained, "state": member_state dict,
        "runs": [MemberRun of members < m]} to continue a killed run; save(member, model, state, runs)
        is called at every checkpoint; on_epoch(member, run, epoch) after every epoch.
    log : callable(str), about ten lines per member, or None
    """
    import jax

    every = max(1, opts.epochs // 10)
    with jax.enable_x64(True):
        prob = Problem(model, train, valid, opts, frozen)
        runs, first, state = [], 0, None
        if resume is not None:
            model, first, state, runs = resume["model"], resume["member"], resume["state"], list(resume["runs"])
            prob.model = model
        for m in range(first, len(model.members)):
            def epoch_done(run, epoch, m=m):
                if on_epoch is not None:
                    on_epoch(m, run, epoch)
                if log is not None and ((epoch + 1) % every == 0 or epoch == 0):
                    h = run.history
                    log(f"  member {m} epoch {epoch + 1}: train loss {h['train_loss'][-1]:.6g}, validation "
                        f"{h['valid_loss'][-1]:.6g} per conformation, lr {h['lr'][-1]:.3g}")

            def save_member(st, m=m, model=model):
                if save is not None:
                    save(m, model, st, runs)

            params, run = prob.train_member(m, state=state if m == first else None, save=save_member,
                                            on_epoch=epoch_done)
            runs.append(run)
            if log is not None:
                log(f"  member {m}: {run.stopped}; loss {run.loss_before:.6g} -> {run.loss_after:.6g}")
            model = with_member(model, m, write_back(model, m, params, prob.dtype))
            prob.model = model  # the next member starts from the model as it is now (its own networks unchanged)
    return Finetune(model, np.array([r.loss_before for r in runs]), np.array([r.loss_after for r in runs]),
                    prob.n_free, tuple(runs))
