"""rung.nnp benchmarks: ANI-1x energy + forces per call, neighbour list included, one thread.

Systems: a 20-atom molecule (paracetamol) and periodic water boxes of 648, 1536 and 3000 atoms at
1 g/cm^3 (rung.nnp.testing.water_box); single network (member 0) and the 8-network ensemble; float32
(both codes). Work unit: atom-steps (atoms evaluated per second, energy and forces).
Ours: numba kernels with numba threads = 1 and BLAS threads = 1 (threadpoolctl).
Peer: TorchANI >= 2.7 (``torch.set_num_threads(1)``) with its cell list for the boxes (all pairs for
the molecule), built from the same NeuroChem files, when torch and torchani are importable. Also: dataset evaluation, time per
molecule for a batch of 1000 small molecules (one call, concatenated atoms), ours only.
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
    n_mol = 200 if quick else 1000
    x, z, b = small_molecules(n_mol)
    pot = load_model("ani-1x", dtype="float32", backend="numba")
    yield Case("nnp.dataset_batch", f"{n_mol} small molecules ({len(z)} atoms), 8 nets",
               _one_thread(lambda: pot.evaluate(x, z, batch=b)), work=n_mol, work_unit="molecules",
               repeats=3, warmup=1, note="one call, energies + forces + spread")
    yield from refit_cases(quick)


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


def transfer_table(sizes=(6, 20, 60), l2sp=1.0e3) -> str:
    """Learning curve of the read-out refit on a label source it cannot represent exactly: ANI-1x
    member 0 refit on the mean of members 1-7 (energies and forces, sigma 1 mHa and 2 mHa/Angstrom),
    G2 molecules displaced by 0.03 Angstrom; errors on 5 other conformations per molecule.

    Run as ``python -m tools.bench.suites.nnp --transfer``; prints a markdown table (kcal/mol, kcal/mol/Angstrom).
    """
    from rung.core.units import HARTREE_TO_KCAL_PER_MOL as K
    from rung.nnp import load_model
    from rung.nnp.ani import ANIPotential
    from rung.nnp.model import ANIModel
    from rung.nnp.testing import conformations
    from rung.nnp.train.readout import Labels, refit

    ens = load_model("ani-1x", dtype="float64").model
    student = ens.select(0)
    teacher = ANIPotential(ANIModel("m1-7", ens.species, ens.aev, ens.self_energies, ens.members[1:]), dtype="float64")
    formulas = ("H2O", "NH3", "CH4", "CH3OH", "HCOOH", "H3CNH2", "CH3CHO", "N2H4", "H2CO", "C2H6")

    def batch(n, seed):
        mols = conformations(formulas, n, seed=seed, amplitude=0.03)
        x = np.concatenate([m[2].reshape(-1, 3) for m in mols])
        z = np.concatenate([np.tile(m[1], n) for m in mols])
        b = np.repeat(np.arange(len(mols) * n), np.concatenate([np.full(n, m[1].size) for m in mols]))
        r = teacher.evaluate(x, z, batch=b)
        return Labels(x, z, b, r.energy, np.full(b.max() + 1, 1e6), r.forces, np.full(x.shape, 0.25e6))

    val = batch(5, 99)

    def errors(model):
        r = ANIPotential(model, dtype="float64").evaluate(val.x, val.numbers, batch=val.batch)
        de, df = (r.energy - val.energy) * K, (r.forces - val.forces) * K
        return f"{np.sqrt(np.mean(de**2)):.3f} | {np.mean(np.abs(df)):.3f} | {np.sqrt(np.mean(df**2)):.3f}"

    rows = ["| training conformations | model | E RMSE | F MAE | F RMSE |", "| --- | --- | --- | --- | --- |",
            f"| 0 | ANI-1x member 0 | {errors(student)} |"]
    for n in sizes:
        lab = batch(n, 0)
        rows.append(f"| {lab.n_conf} | shifts only | {errors(refit(student, lab, frozen=['*.weight']).model)} |")
        rows.append(f"| {lab.n_conf} | read-out, l2sp {l2sp:g} | {errors(refit(student, lab, l2sp=l2sp).model)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    print(transfer_table() if "--transfer" in sys.argv else cpu_time_table(quick="--quick" in sys.argv))
