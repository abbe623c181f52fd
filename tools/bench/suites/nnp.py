"""rung.nnp benchmarks: ANI-1x energy + forces per call, neighbour list included, one thread.

Systems: a 20-atom molecule (paracetamol) and periodic water boxes of 648, 1536 and 3000 atoms at
1 g/cm^3 (rung.nnp.testing.water_box); single network (member 0) and the 8-network ensemble; float32
(both codes). Work unit: atom-steps (atoms evaluated per second, energy and forces).
Ours: numba kernels with numba threads = 1 and BLAS threads = 1 (threadpoolctl).
Peer: TorchANI >= 2.7 (``torch.set_num_threads(1)``) with its cell list for the boxes (all pairs for
the molecule), built from the same NeuroChem files, when torch and torchani are importable. Also: dataset evaluation, time per
molecule for a batch of 1000 small molecules (one call, concatenated atoms), ours only.
With a CUDA device (``make gpu-check``): the 8-network cases again with backend "cupy" (names end in
"(GPU)"), our numba path on the same machine's CPU (all threads) as the peer (gpu_cases).
"""

from __future__ import annotations

import os

import numpy as np

# Idle OpenMP workers (numba's pool, torch's pool) sleep instead of spinning, so that one code's idle
# threads do not steal the core the other is timed on (seen: TorchANI 100x slower right after a numba
# call). Takes effect when the OpenMP runtimes load, i.e. after this module is imported.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from tools.bench import Case

PARACETAMOL_Z = [6, 6, 8, 7, 6, 6, 6, 6, 8, 6, 6, 1, 1, 1, 1, 1, 1, 1, 1, 1]
PARACETAMOL_X = [  # Angstrom
    [3.675488, 0.454632, -0.232764], [2.217146, 0.814142, -0.375061], [1.882572, 1.907315, -0.817063],
    [1.384252, -0.197518, 0.067556], [-0.025766, -0.203530, 0.085907], [-0.818069, 0.852816, -0.370852],
    [-2.214507, 0.769874, -0.319715], [-2.816767, -0.373936, 0.189616], [-4.172215, -0.495237, 0.257201],
    [-2.046884, -1.433797, 0.647378], [-0.653318, -1.348797, 0.595446], [3.842053, -0.602392, -0.459533],
    [4.266208, 1.048664, -0.936113], [4.003115, 0.668370, 0.787946], [1.832475, -1.030016, 0.428558],
    [-0.380102, 1.759976, -0.775371], [-2.804261, 1.606293, -0.681515], [-4.572150, 0.317306, -0.094481],
    [-2.528186, -2.323351, 1.043424], [-0.071084, -2.190816, 0.959434],
]


def _one_thread(fn):
    """Run fn with numba and BLAS (threadpoolctl) limited to one thread."""
    import numba
    from threadpoolctl import ThreadpoolController

    ctl = ThreadpoolController()

    def run():
        n0 = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            with ctl.limit(limits=1, user_api="blas"):
                return fn()
        finally:
            numba.set_num_threads(n0)

    return run


def torchani_model(folder, member, neighborlist):
    """TorchANI (>= 2.7) ANI-1x from the NeuroChem folder, or None when torch/torchani are missing."""
    try:
        import torch
        from torchani.arch import ANI
        from torchani.neighbors import _parse_neighborlist
        from torchani.neurochem import NeurochemInfo, modules_from_info
    except Exception:
        return None
    torch.set_num_threads(1)
    info = NeurochemInfo(folder / "sae_linfit.dat", next(folder.glob("*.params")), folder / "train", 8)
    aev, nets, sae, symbols = modules_from_info(info, member)
    aev.neighborlist = _parse_neighborlist(neighborlist)
    return ANI(symbols, aev, nets, sae, periodic_table_index=True)


def torchani_call(model, x, z, cell):
    import torch

    sp = torch.tensor(z)[None]
    c = None if cell is None else torch.tensor(cell, dtype=torch.float32)
    pbc = None if cell is None else torch.tensor([True, True, True])

    def run():
        torch.set_num_threads(1)
        xt = torch.tensor(x, dtype=torch.float32)[None].requires_grad_(True)
        e = model((sp, xt), cell=c, pbc=pbc).energies
        f = -torch.autograd.grad(e.sum(), xt)[0]
        return e.detach().numpy(), f.numpy()

    return run


def systems(quick):
    from rung.nnp.testing import water_box

    yield "paracetamol (open)", np.array(PARACETAMOL_X), np.array(PARACETAMOL_Z), None
    for n_side in [6] if quick else [6, 8, 10]:
        x, z, cell = water_box(n_side)
        yield f"water box {len(z)} atoms, 1 g/cm3", x, z, cell


def small_molecules(n, seed=0):
    """n small H/C/N/O molecules from ASE's G2 set, randomly perturbed: positions, numbers, batch."""
    from ase.collections import g2

    pool = [a for a in g2 if set(a.get_chemical_symbols()) <= {"H", "C", "N", "O"} and len(a) > 1]
    rng = np.random.default_rng(seed)
    pick = rng.integers(len(pool), size=n)
    xs, zs, bs = [], [], []
    for b, k in enumerate(pick):
        a = pool[k]
        xs.append(a.positions + 0.05 * rng.normal(size=a.positions.shape))
        zs.append(a.numbers)
        bs.append(np.full(len(a), b))
    return np.concatenate(xs), np.concatenate(zs), np.concatenate(bs)


def cases(quick: bool):
    from rung.nnp import load_model
    from rung.nnp.fetch import WeightsMissing, cache_dir, fetch, resolve

    try:
        resolve("ani-1x")
    except WeightsMissing:
        fetch("ani-1x")
    folder = cache_dir() / "ani-1x_8x"
    for member, label in [(0, "1 net"), (None, "8 nets")]:
        pot = load_model("ani-1x", member=member, dtype="float32", backend="numba")
        for name, x, z, cell in systems(quick):
            n = len(z)
            big = n > 1000
            nl = "all_pairs" if cell is None else "cell_list"
            peer_model = torchani_model(folder, member, nl) if folder.is_dir() else None
            yield Case("nnp.ani1x_energy_forces", f"{name}, {label}",
                       _one_thread(lambda x=x, z=z, cell=cell, pot=pot: pot.compute(x, z, cell)),
                       peer=None if peer_model is None else torchani_call(peer_model, x, z, cell),
                       peer_name="" if peer_model is None else f"TorchANI ({nl}), 1 thread",
                       work=n, work_unit="atom-steps", repeats=3 if big else 5, warmup=1,
                       note="float32, neighbour list included")
    for member, label in [(0, "1 net"), (None, "8 nets")]:
        pot = load_model("ani-1x", member=member, dtype="float32", backend="numba")
        x, z = np.array(PARACETAMOL_X), np.array(PARACETAMOL_Z)
        peer = fennol_inference(pot.model, x, z, np.zeros(len(z), np.int64))
        yield Case("nnp.small_molecule", f"paracetamol (open), {label}",
                   _one_thread(lambda x=x, z=z, pot=pot: pot.compute(x, z)), peer=peer,
                   peer_name="FeNNol energy_and_forces, 1 thread" if peer else "", work=1, work_unit="calls",
                   repeats=20, warmup=2, note="float32, preprocessing + neighbour list included")
    n_mol = 200 if quick else 1000
    x, z, b = small_molecules(n_mol)
    pot = load_model("ani-1x", dtype="float32", backend="numba")
    peer = fennol_inference(pot.model, x, z, b)
    yield Case("nnp.dataset_batch", f"{n_mol} small molecules ({len(z)} atoms), 8 nets",
               _one_thread(lambda: pot.evaluate(x, z, batch=b)), peer=peer,
               peer_name="FeNNol energy_and_forces (one padded batch), 1 thread" if peer else "",
               work=n_mol, work_unit="molecules", repeats=3, warmup=1, note="one call, energies + forces (+ spread)")
    yield from gpu_cases(quick)
    yield from refit_cases(quick)
    yield from finetune_cases(quick)


def gpu_cases(quick: bool):
    """ANI-1x (8 networks, float32) energies + forces with backend "cupy" (neighbour list, AEVs, networks
    and forces on the device, results copied to the host) beside the numba path on the CPU of the same
    machine (all its threads), same inputs; only when rung.core sees a CUDA device (``make gpu-check``)."""
    from rung.core.backend import gpu_available

    if not gpu_available():
        return
    import cupy

    from rung.core.backend import synchronize
    from rung.nnp import load_model

    gpu = load_model("ani-1x", dtype="float32", backend="cupy")
    cpu = load_model("ani-1x", dtype="float32", backend="numba")
    peer_name = "ours, numba (CPU, all threads)"
    for name, x, z, cell in systems(quick):
        yield Case("nnp.ani1x_energy_forces", f"{name}, 8 nets (GPU)",
                   lambda x=x, z=z, cell=cell: gpu.compute(x, z, cell),
                   peer=lambda x=x, z=z, cell=cell: cpu.compute(x, z, cell), peer_name=peer_name, work=len(z),
                   work_unit="atom-steps", device="gpu", sync=lambda: synchronize(cupy), repeats=5, warmup=2,
                   note="float32, neighbour list on the device, host arrays in and out")
    n_mol = 200 if quick else 1000
    x, z, b = small_molecules(n_mol)
    yield Case("nnp.dataset_batch", f"{n_mol} small molecules ({len(z)} atoms), 8 nets (GPU)",
               lambda: gpu.evaluate(x, z, batch=b), peer=lambda: cpu.evaluate(x, z, batch=b), peer_name=peer_name,
               work=n_mol, work_unit="molecules", device="gpu", sync=lambda: synchronize(cupy), repeats=3, warmup=2,
               note="one call, energies + forces (+ spread)")


def refit_cases(quick: bool):
    """The exact read-out refit of ANI-1x (8 members) on N small-molecule conformations with energies
    and forces (rung.nnp.train.readout.refit; labels are zeros: the cost does not depend on them)."""
    from rung.nnp import load_model
    from rung.nnp.train.readout import Labels, refit

    model = load_model("ani-1x").model
    for n in [100] if quick else [100, 300]:
        x, z, b = small_molecules(n, seed=1)
        lab = Labels(x, z, b, np.zeros(n), np.ones(n), np.zeros((z.size, 3)), np.ones((z.size, 3)))
        yield Case("nnp.readout_refit", f"{n} small molecules ({len(z)} atoms), E + F, 8 nets",
                   lambda lab=lab: refit(model, lab), work=n, work_unit="conformations", repeats=3, warmup=1,
                   note="exact last-layer refit, every member, float64; BLAS 1 thread, numba 2")


FINETUNE_FROZEN = {  # ours: rung.nnp parameter names; FeNNol: regexes on its parameter paths (layers 1-3 frozen)
    "read-out": (["*.0.*", "*.1.*", "*.2.*"], ["energy/./layer_[123]"]),
    "all layers": ([], []),
}


def finetune_labels(n, seed=1):
    """n small-molecule conformations (small_molecules) labelled with the ANI-1x ensemble mean (E + F)."""
    from rung.nnp import load_model
    from rung.nnp.train.readout import Labels

    x, z, b = small_molecules(n, seed=seed)
    r = load_model("ani-1x", dtype="float64").evaluate(x, z, batch=b)
    return Labels(x, z, b, r.energy, np.full(n, 1e6), r.forces, np.full(x.shape, 1e6))


def ours_epoch(lab, which, dtype="float32", batch_size=32, seed=0):
    """One epoch of rung.nnp's gradient solver (ANI-1x member 0, Adam): shuffled batches built in NumPy,
    one jitted step each (energy + force loss, gradients of the free parameters). A callable."""
    import jax
    import jax.numpy as jnp

    from rung.nnp import load_model
    from rung.nnp.train.gradient import Options, Problem

    model = load_model("ani-1x", member=0).model
    opts = Options(optimizer="adam", learning_rate=1e-6, batch_size=batch_size, dtype=dtype, l2sp=1.0, seed=seed,
                   epochs=20)
    with jax.enable_x64(True):
        prob = Problem(model, lab, lab, opts, FINETUNE_FROZEN[which][0])
        free, frozen, start = prob.split_params(0)
        st = {"free": free, "opt": prob.tx.init(free), "epoch": 0}
    step, lr = prob.fn["step"], jnp.asarray(opts.learning_rate, prob.dtype)

    def run():
        with jax.enable_x64(True):
            for (g, t), nb in prob.batches("train", prob.order(0, st["epoch"] % opts.epochs)):
                st["free"], st["opt"], data = step(st["free"], frozen, start, st["opt"], g, t, prob.hyper, lr,
                                                   jnp.asarray(lab.n_conf / nb, prob.dtype))
            jax.block_until_ready(data)
            st["epoch"] += 1

    return run


def fennol_ani(model, dtype="float32"):
    """FeNNol's ANI (ANI_AEV + SPECIES_INDEX_NET, CELU 0.1) with the weights of a rung model, or None when
    fennol is not importable. Returns (FENNIX, species order).

    One member: FeNNol's ``examples/training/ani.yaml`` layout (networks in module "energy"). Several
    members: FeNNol's ensemble layout, the AEV computed once and read by one SPECIES_INDEX_NET per member
    ("energy_<m>", outputs (n_atoms, 1)), CONCATENATE to (n_atoms, M) and ENSEMBLE_STAT (axis -1), whose
    mean is the energy term (FeNNol has no ensemble-of-models wrapper; this is how its ensembles are
    built inside one model). Self energies are not included (add the rung model's per species)."""
    try:
        from collections import OrderedDict

        import jax
        from fennol import FENNIX
    except Exception:
        return None
    sp = list(model.species)
    p = model.aev
    nets = model.members[0]
    M = len(model.members)
    modules = OrderedDict(
        embedding={"module_name": "ANI_AEV", "species_order": sp, "graph_angle_key": "graph_angle",
                   "radial_eta": float(p.EtaR[0]), "angular_eta": float(p.EtaA[0]),
                   "radial_dist_divisions": int(p.ShfR.size), "angular_dist_divisions": int(p.ShfA.size),
                   "zeta": float(p.Zeta[0]), "angle_sections": int(p.ShfZ.size), "radial_start": float(p.ShfR[0]),
                   "angular_start": float(p.ShfA[0])},
        energy={"module_name": "SPECIES_INDEX_NET", "output_dim": 1, "activation": "partial(celu, alpha=0.1)",
                "hidden_neurons": {s: [la.weight.shape[0] for la in n.layers[:-1]] for s, n in zip(sp, nets)},
                "input_key": "embedding", "squeeze": True})
    if M > 1:
        net = modules.pop("energy")
        for m in range(M):
            modules[f"energy_{m}"] = {**net, "squeeze": False}
        modules["members"] = {"module_name": "CONCATENATE", "keys": [f"energy_{m}" for m in range(M)], "axis": -1}
        modules["ensemble"] = {"module_name": "ENSEMBLE_STAT", "key": "members", "axis": -1, "mean_key": "energy"}
    preproc = OrderedDict(
        graph_angle={"module_name": "GRAPH_FILTER", "cutoff": float(p.Rca), "parent_graph": "graph",
                     "graph_key": "graph_angle"},
        angle_extension={"module_name": "GRAPH_ANGULAR_EXTENSION", "graph_key": "graph_angle"},
        species_indexer={"module_name": "SPECIES_INDEXER", "output_key": "species_index"})
    with jax.enable_x64(dtype == "float64"):
        fm = FENNIX(cutoff=float(p.Rcr), modules=modules, preprocessing=preproc, rng_key=jax.random.PRNGKey(0),
                    energy_terms=["energy"], use_atom_padding=True)
        params = dict(fm.variables["params"])
        for m, nets in enumerate(model.members):
            params["energy" if M == 1 else f"energy_{m}"] = {
                s: {f"Layer_{k + 1}": {"kernel": np.asarray(la.weight.T, dtype), "bias": np.asarray(la.bias, dtype)}
                    for k, la in enumerate(n.layers)} for s, n in zip(sp, nets)}
        fm.variables = {**fm.variables, "params": params}
    return fm, sp


XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _xla_one_thread():
    """XLA on one thread (takes effect only if jax is not imported yet, and then for the whole process)."""
    import sys

    if "jax" not in sys.modules:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + XLA_ONE_THREAD).strip()


def fennol_inference(model, x, z, batch, *, prebuilt=False):
    """FeNNol's energies and forces of the structures (x Angstrom, z, batch index) with the weights of
    ``model`` (fennol_ani: one member, or the ensemble mean), float32, as one call of
    ``FENNIX.energy_and_forces`` (its preprocessing: neighbour list, padding; the jitted model; the
    unpadding) returning NumPy arrays. ``prebuilt``: the jitted ``_energy_and_forces`` only, on a graph
    preprocessed once. None without fennol. Self energies are not included (see fennol_ani)."""
    _xla_one_thread()
    built = fennol_ani(model, "float32")
    if built is None:
        return None
    import jax

    fm, _ = built
    x32 = np.asarray(x, np.float32)
    natoms = np.bincount(batch)

    def run():
        e, f, _ = fm.energy_and_forces(species=z, coordinates=x32, natoms=natoms, batch_index=batch)
        return np.asarray(e), np.asarray(f)

    if not prebuilt:
        return run
    inputs = fm.preprocess(species=z, coordinates=x32, natoms=natoms, batch_index=batch)

    def run_prebuilt():
        return jax.block_until_ready(fm._energy_and_forces(fm.variables, inputs)[:2])

    return run_prebuilt


def inference_table(rounds: int = 7, min_cpu_s: float = 0.3) -> str:
    """Small-molecule inference, ours against FeNNol in this process, one thread each (numba and BLAS
    1 thread; XLA ``XLA_ONE_THREAD``): paracetamol (1 and 8 networks) and 1000 small molecules in one
    call (8 networks), energies + forces, float32. Per call: process CPU time and wall time (medians
    over ``rounds`` rounds of >= ``min_cpu_s`` CPU-s each, codes alternating); FeNNol also as its
    compiled call alone on a graph built once.
    ``python -m tools.bench.suites.nnp --inference [--fennol-site DIR]``."""
    import time

    _xla_one_thread()
    from rung.nnp import load_model

    def timed(fn):
        calls, c0, w0 = 0, time.process_time(), time.perf_counter()
        while calls < 3 or time.process_time() - c0 < min_cpu_s:
            fn()
            calls += 1
        return (time.process_time() - c0) / calls, (time.perf_counter() - w0) / calls

    rows = ["| system | networks | ours CPU ms | ours wall ms | FeNNol CPU ms | FeNNol wall ms | FeNNol / ours (CPU) | "
            "FeNNol prebuilt graph CPU ms | prebuilt / ours (CPU) | max abs dE, dF (Ha, Ha/Angstrom) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    mols = small_molecules(1000)
    problems = [("paracetamol (20 atoms)", np.array(PARACETAMOL_X), np.array(PARACETAMOL_Z), np.zeros(20, np.int64), 0),
                ("paracetamol (20 atoms)", np.array(PARACETAMOL_X), np.array(PARACETAMOL_Z), np.zeros(20, np.int64), None),
                (f"1000 small molecules ({mols[1].size} atoms), one call", *mols, 0),
                (f"1000 small molecules ({mols[1].size} atoms), one call", *mols, None)]
    for name, x, z, b, member in problems:
        pot = load_model("ani-1x", member=member, dtype="float32", backend="numba")
        one = name.startswith("paracetamol")
        ours = _one_thread((lambda: pot.compute(x, z)) if one else (lambda: pot.evaluate(x, z, batch=b)))
        codes = {"ours": ours}
        peer = fennol_inference(pot.model, x, z, b)
        if peer is not None:
            codes["fennol"] = peer
            codes["prebuilt"] = fennol_inference(pot.model, x, z, b, prebuilt=True)
            r = ours()
            e, f = peer()
            sae = np.bincount(b, weights=pot.model.self_energies[pot.species_index(z)])
            check = (f"{np.max(np.abs(np.atleast_1d(r.energy) - sae - e)):.1e}, "
                     f"{np.max(np.abs(r.forces.reshape(-1, 3) - f[:z.size])):.1e}")
        else:
            check = ""
        for fn in codes.values():
            fn()
            fn()
        t = {k: [] for k in codes}
        for _ in range(rounds):
            for k, fn in codes.items():
                t[k].append(timed(fn))
        med = {k: np.median(np.array(v), axis=0) * 1e3 for k, v in t.items()}

        def cell(k, i):
            return f"{med[k][i]:.3g}" if k in med else ""

        ratio = f"{med['fennol'][0] / med['ours'][0]:.2f}" if "fennol" in med else ""
        ratio_pre = f"{med['prebuilt'][0] / med['ours'][0]:.2f}" if "prebuilt" in med else ""
        rows.append(f"| {name} | {'1' if member == 0 else '8'} | {cell('ours', 0)} | {cell('ours', 1)} | {cell('fennol', 0)} | "
                    f"{cell('fennol', 1)} | {ratio} | {cell('prebuilt', 0)} | {ratio_pre} | {check} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def fennol_epoch(lab, which, dtype="float32", batch_size=32, seed=0):
    """One epoch of FeNNol's own training step (fennol.training.utils.get_train_step_function, mse on
    energies and forces, Adam from fennol.training.optimizers.get_optimizer, frozen layers by its regexes)
    with its preprocessing (neighbour lists) per batch, as its training loop does; None without fennol."""
    import contextlib
    import io

    from rung.nnp import load_model

    model = load_model("ani-1x", member=0).model
    built = fennol_ani(model, dtype)
    if built is None:
        return None
    import jax

    from fennol.training.optimizers import get_optimizer
    from fennol.training.utils import get_loss_definition, get_train_step_function

    fm, sp = built
    spi = {int(k): i for i, k in enumerate(model.atomic_numbers)}
    sae = np.bincount(lab.batch, weights=model.self_energies[[spi[int(k)] for k in lab.numbers]])
    start = np.searchsorted(lab.batch, np.arange(lab.n_conf + 1))
    loss, _, _ = get_loss_definition({"loss": {"e": {"key": "total_energy", "ref": "e_ref", "type": "mse"},
                                               "f": {"key": "forces", "ref": "f_ref", "type": "mse"}}})
    with contextlib.redirect_stdout(io.StringIO()), jax.enable_x64(dtype == "float64"):  # it prints its partition
        opt, _ = get_optimizer({"optimizer": "adam", "frozen": FINETUNE_FROZEN[which][1]}, fm.variables, 1e-6)
        step = get_train_step_function(loss, fm, lambda m, v, d: m._energy_and_forces(v, d)[2], opt)
        st = {"opt_state": opt.init(fm.variables), "variables": fm.variables, "step": 0, "epoch": 0}
    state = {"st": st, "epoch": 0}

    def batch(conf):
        atoms = np.concatenate([np.arange(start[c], start[c + 1]) for c in conf])
        natoms = np.diff(start)[conf]
        inputs = fm.preprocess(species=lab.numbers[atoms], coordinates=lab.x[atoms].astype(dtype), natoms=natoms,
                               batch_index=np.repeat(np.arange(conf.size), natoms))
        e = np.zeros(inputs["natoms"].shape[0], dtype)
        e[:conf.size] = lab.energy[conf] - sae[conf]
        f = np.zeros((inputs["species"].shape[0], 3), dtype)
        f[:atoms.size] = lab.forces[atoms]
        return {"e_ref": e, "f_ref": f}, inputs

    def run():
        with jax.enable_x64(dtype == "float64"):
            order = np.random.default_rng([seed, state["epoch"]]).permutation(lab.n_conf)
            for k in range(0, lab.n_conf, batch_size):
                data, inputs = batch(order[k:k + batch_size])
                value, state["st"], _ = step(data, inputs, state["st"])
            jax.block_until_ready(value)
            state["epoch"] += 1

    return run


def finetune_cases(quick: bool):
    """Gradient fine-tuning throughput: one epoch (N conformations, batches of 32, E + F, Adam), ANI-1x
    member 0, read-out layer only and all layers, float32 (FeNNol's default precision) and float64;
    peer: FeNNol's training step for the same network on the same data when fennol is importable.
    Nothing without jax and optax (the optional [train] extra)."""
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401
    except ImportError:
        return
    lab = finetune_labels(100 if quick else 300)
    for which in FINETUNE_FROZEN:
        for dtype in ("float32", "float64"):
            peer = fennol_epoch(lab, which, dtype)
            yield Case("nnp.finetune_epoch", f"{lab.n_conf} small molecules, {which}, {dtype}",
                       ours_epoch(lab, which, dtype), peer=peer, peer_name="FeNNol train_step" if peer else "",
                       work=lab.n_conf, work_unit="conformations", repeats=3, warmup=1,
                       note="one epoch, batch 32, energies + forces, Adam; batches/neighbour lists included")


def finetune_table(n=300, epochs=10) -> str:
    """Conformations per CPU-second of an epoch (process time) for ours and FeNNol: after one warm-up
    epoch, the median over ``epochs`` epochs (steady state) and their mean (FeNNol compiles again
    whenever a batch outgrows the sizes it has seen; ours pads every batch to one shape computed in
    advance and compiles once); ``python -m tools.bench.suites.nnp --finetune``."""
    import time

    lab = finetune_labels(n)
    rows = ["| layers trained | dtype | ours, median epoch | FeNNol, median epoch | ours / FeNNol | ours, mean | "
            "FeNNol, mean (its recompilations included) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for which in FINETUNE_FROZEN:
        for dtype in ("float32", "float64"):
            med, mean = [], []
            for make in (ours_epoch, fennol_epoch):
                run = make(lab, which, dtype)
                if run is None:
                    med.append(None)
                    mean.append(None)
                    continue
                run()
                t = []
                for _ in range(epochs):
                    c0 = time.process_time()
                    run()
                    t.append(time.process_time() - c0)
                med.append(n / float(np.median(t)))
                mean.append(n / float(np.mean(t)))

            def f(v):
                return "" if v is None else f"{v:.4g}"

            ratio = "" if med[1] is None else f"{med[0] / med[1]:.2f}"
            rows.append(f"| {which} | {dtype} | {f(med[0])} | {f(med[1])} | {ratio} | {f(mean[0])} | {f(mean[1])} |")
            print(rows[-1], flush=True)
    return "\n".join(rows)


def finetune_memory(code: str, which: str, dtype: str, batch_size: str = "32", n: int = 256) -> str:
    """Peak resident set (ru_maxrss, MiB) of a process that trains ``code`` ("ours" or "fennol") for three
    epochs at ``batch_size``; the slope between two batch sizes is the memory per conformation. One
    process per number: ``python -m tools.bench.suites.nnp --finetune-memory ours read-out float32 64``."""
    import resource

    import jax  # noqa: F401  (imported before the labels, as in both codes)

    lab = finetune_labels(n)
    run = (ours_epoch if code == "ours" else fennol_epoch)(lab, which, dtype, int(batch_size))
    if run is None:
        return f"{code}: not installed"
    for _ in range(3):
        run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return f"{code} | {which} | {dtype} | batch {batch_size} | peak RSS {peak:.0f} MiB"


def step_memory(n=256, batch_sizes=(16, 64), dtype="float32") -> str:
    """XLA's working memory (``memory_analysis().temp_size_in_bytes``) of one compiled training step of
    ours and FeNNol's, read-out and all layers, at two batch sizes; the slope is the memory per
    conformation. ``python -m tools.bench.suites.nnp --step-memory``."""
    import contextlib
    import io

    import jax
    import jax.numpy as jnp

    from rung.nnp import load_model
    from rung.nnp.train.gradient import Options, Problem

    lab = finetune_labels(n)
    model = load_model("ani-1x", member=0).model
    start = np.searchsorted(lab.batch, np.arange(lab.n_conf + 1))
    rows = ["| code | layers trained | batch | padded atoms | temp MiB | arguments MiB |", "| --- | --- | --- | --- | --- | --- |"]
    for which in FINETUNE_FROZEN:
        for bs in batch_sizes:
            opts = Options(optimizer="adam", batch_size=bs, dtype=dtype, epochs=5)
            with jax.enable_x64(True):
                prob = Problem(model, lab, lab, opts, FINETUNE_FROZEN[which][0])
                free, frozen, st0 = prob.split_params(0)
                (g, t), _ = prob.batches("train", prob.order(0, 0))[0]
                one = jnp.asarray(1.0, prob.dtype)
                ma = prob.fn["step"].lower(free, frozen, st0, prob.tx.init(free), g, t, prob.hyper, one, one).compile().memory_analysis()
            rows.append(f"| ours | {which} | {bs} | {g['x'].shape[0]} | {ma.temp_size_in_bytes / 2**20:.1f} | "
                        f"{ma.argument_size_in_bytes / 2**20:.1f} |")
            built = fennol_ani(model, dtype)
            if built is None:
                continue
            from fennol.training.optimizers import get_optimizer
            from fennol.training.utils import get_loss_definition, get_train_step_function

            fm, _ = built
            loss, _, _ = get_loss_definition({"loss": {"e": {"key": "total_energy", "ref": "e_ref", "type": "mse"},
                                                       "f": {"key": "forces", "ref": "f_ref", "type": "mse"}}})
            with contextlib.redirect_stdout(io.StringIO()), jax.enable_x64(dtype == "float64"):
                opt, _ = get_optimizer({"optimizer": "adam", "frozen": FINETUNE_FROZEN[which][1]}, fm.variables, 1e-6)
                step = get_train_step_function(loss, fm, lambda m, v, d: m._energy_and_forces(v, d)[2], opt)
                conf = np.random.default_rng(0).permutation(lab.n_conf)[:bs]
                atoms = np.concatenate([np.arange(start[c], start[c + 1]) for c in conf])
                natoms = np.diff(start)[conf]
                inputs = fm.preprocess(species=lab.numbers[atoms], coordinates=lab.x[atoms].astype(dtype), natoms=natoms,
                                       batch_index=np.repeat(np.arange(conf.size), natoms))
                data = {"e_ref": np.zeros(inputs["natoms"].shape[0], dtype),
                        "f_ref": np.zeros((inputs["species"].shape[0], 3), dtype)}
                st = {"opt_state": opt.init(fm.variables), "variables": fm.variables, "step": 0, "epoch": 0}
                ma = step.lower(data, inputs, st).compile().memory_analysis()
            rows.append(f"| FeNNol | {which} | {bs} | {inputs['species'].shape[0]} | {ma.temp_size_in_bytes / 2**20:.1f} | "
                        f"{ma.argument_size_in_bytes / 2**20:.1f} |")
    return "\n".join(rows)


def cpu_time_table(quick: bool = False, repeats: int = 3) -> str:
    """Atom-steps per CPU-second (process time, robust on a shared machine) for ours and the peer:
    two warm-up calls, then at least ``repeats`` calls and 0.5 CPU-seconds.

    Run as ``python -m tools.bench.suites.nnp [--quick]``; prints a markdown table.
    """
    import time

    rows = ["| system | networks | ours (atom-steps/CPU-s) | TorchANI (atom-steps/CPU-s) | ratio |",
            "| --- | --- | --- | --- | --- |"]

    def cpu_rate(fn, n):
        fn()
        fn()
        calls, t0 = 0, time.process_time()
        while calls < repeats or time.process_time() - t0 < 0.5:  # at least 0.5 CPU-s per number
            fn()
            calls += 1
        return n * calls / (time.process_time() - t0)

    for case in cases(quick):
        if case.name != "nnp.ani1x_energy_forces":
            continue
        n = case.work
        ours = cpu_rate(case.ours, n)
        peer = cpu_rate(case.peer, n) if case.peer else None
        system, nets = case.size.rsplit(", ", 1)
        rows.append(f"| {system} | {nets} | {ours:.4g} | {'' if peer is None else f'{peer:.4g}'} | "
                    f"{'' if peer is None else f'{ours / peer:.2f}'} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def _transfer_problem():
    """The transfer problem of the tables below: ANI-1x member 0 (the student) and a label source it
    cannot represent exactly, the mean of members 1-7 (the teacher). Returns (student, batch, errors):
    ``batch(n, seed)``, Labels of n conformations of each of 10 G2 molecules displaced by 0.03 Angstrom
    (sigma 1 mHa and 2 mHa/Angstrom); ``errors(model, labels)``, "E RMSE | F MAE | F RMSE" (kcal/mol,
    kcal/mol/Angstrom) of a model on such labels."""
    from rung.core.units import HARTREE_TO_KCAL_PER_MOL as K
    from rung.nnp import load_model
    from rung.nnp.ani import ANIPotential
    from rung.nnp.model import ANIModel
    from rung.nnp.testing import conformations
    from rung.nnp.train.readout import Labels

    ens = load_model("ani-1x", dtype="float64").model
    teacher = ANIPotential(ANIModel("m1-7", ens.species, ens.aev, ens.self_energies, ens.members[1:]), dtype="float64")
    formulas = ("H2O", "NH3", "CH4", "CH3OH", "HCOOH", "H3CNH2", "CH3CHO", "N2H4", "H2CO", "C2H6")

    def batch(n, seed):
        mols = conformations(formulas, n, seed=seed, amplitude=0.03)
        x = np.concatenate([m[2].reshape(-1, 3) for m in mols])
        z = np.concatenate([np.tile(m[1], n) for m in mols])
        b = np.repeat(np.arange(len(mols) * n), np.concatenate([np.full(n, m[1].size) for m in mols]))
        r = teacher.evaluate(x, z, batch=b)
        return Labels(x, z, b, r.energy, np.full(b.max() + 1, 1e6), r.forces, np.full(x.shape, 0.25e6))

    def errors(model, lab):
        r = ANIPotential(model, dtype="float64").evaluate(lab.x, lab.numbers, batch=lab.batch)
        de, df = (r.energy - lab.energy) * K, (r.forces - lab.forces) * K
        return f"{np.sqrt(np.mean(de**2)):.3f} | {np.mean(np.abs(df)):.3f} | {np.sqrt(np.mean(df**2)):.3f}"

    return ens.select(0), batch, errors


def transfer_table(sizes=(6, 20, 60), l2sp=1.0e3) -> str:
    """Learning curve of the read-out refit on a label source it cannot represent exactly: ANI-1x
    member 0 refit on the mean of members 1-7 (energies and forces, sigma 1 mHa and 2 mHa/Angstrom),
    G2 molecules displaced by 0.03 Angstrom; errors on 5 other conformations per molecule.

    Run as ``python -m tools.bench.suites.nnp --transfer``; prints a markdown table (kcal/mol, kcal/mol/Angstrom).
    """
    from rung.nnp.train.readout import refit

    student, batch, errors = _transfer_problem()
    val = batch(5, 99)
    rows = ["| training conformations | model | E RMSE | F MAE | F RMSE |", "| --- | --- | --- | --- | --- |",
            f"| 0 | ANI-1x member 0 | {errors(student, val)} |"]
    for n in sizes:
        lab = batch(n, 0)
        rows.append(f"| {lab.n_conf} | shifts only | {errors(refit(student, lab, frozen=['*.weight']).model, val)} |")
        rows.append(f"| {lab.n_conf} | read-out, l2sp {l2sp:g} | {errors(refit(student, lab, l2sp=l2sp).model, val)} |")
    return "\n".join(rows)


def transfer_gradient_table(sizes=(6, 20), epochs=100) -> str:
    """The transfer problem of :func:`transfer_table` (ANI-1x member 0 -> mean of members 1-7, 0.03
    Angstrom displacements, errors on 5 other conformations per molecule, kcal/mol and kcal/mol/Angstrom)
    with the gradient solver: the read-out layer or all layers, Adam with a cosine one-cycle schedule,
    ``epochs`` epochs of batches of 32, float32, l2sp 1e3 on every trained weight, no early stopping.
    ``python -m tools.bench.suites.nnp --transfer-gradient``."""
    from rung.nnp.train.gradient import Options, finetune
    from rung.nnp.train.readout import refit

    student, batch, errors = _transfer_problem()
    test, valid = batch(5, 99), batch(2, 98)
    rows = ["| training conformations | model | E RMSE | F MAE | F RMSE |", "| --- | --- | --- | --- | --- |",
            f"| 0 | ANI-1x member 0 | {errors(student, test)} |"]
    for n in sizes:
        lab = batch(n, 0)
        rows.append(f"| {lab.n_conf} | exact read-out refit, l2sp 1000 | {errors(refit(student, lab, l2sp=1e3).model, test)} |")
        for frozen, what in ((["*.0.*", "*.1.*", "*.2.*"], "gradient, read-out layer"), ([], "gradient, all layers")):
            for lr in (1e-4, 1e-3):
                opts = Options(optimizer="adam", learning_rate=lr, epochs=epochs, batch_size=32, schedule="cosine_onecycle",
                               l2sp=1e3, dtype="float32")
                model = finetune(student, lab, valid, opts, frozen=frozen).model
                rows.append(f"| {lab.n_conf} | {what}, lr {lr:g} | {errors(model, test)} |")
        print("\n".join(rows[-5:]), flush=True)
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    if "--fennol-site" in sys.argv:  # FeNNol installed apart (uv pip install --target DIR fennol), after our packages
        sys.path.append(sys.argv[sys.argv.index("--fennol-site") + 1])

    if "--finetune-memory" in sys.argv:
        print(finetune_memory(*sys.argv[sys.argv.index("--finetune-memory") + 1:][:4]))
    elif "--transfer-gradient" in sys.argv:
        print(transfer_gradient_table())
    elif "--step-memory" in sys.argv:
        print(step_memory())
    elif "--inference" in sys.argv:
        print(inference_table())
    elif "--finetune" in sys.argv:
        print(finetune_table())
    else:
        print(transfer_table() if "--transfer" in sys.argv else cpu_time_table(quick="--quick" in sys.argv))
