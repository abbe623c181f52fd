"""`nnp convert` of a TorchANI ANI-1x state dict, checked against TorchANI's own energies and forces.

Two steps, two interpreters (torch is not in the workspace; see packages/nnp/BENCHMARKS.md):

1. with torch + torchani (e.g. a throwaway venv), ``torchani`` step: TorchANI 2.9 builds ANI-1x from
   the NeuroChem files that ``nnp fetch ani-1x`` cached (``torchani.neurochem.modules_from_info``),
   loads that state dict into the model ``torchani.models.ANI1x()`` assembles (strict: same keys),
   saves ``ani1x_state_dict.pt`` (``torch.save(model.state_dict())``) and TorchANI's energies and
   forces (float32 and float64 copies of the model) of perturbed G2 molecules;
2. ``rung`` step, in the workspace's Python with torch importable (torch installed with
   ``uv pip install --target DIR`` and DIR appended to ``sys.path``; rung's numpy stays first): reads
   the .pt with ``rung.nnp.torchani_pt`` and compares. Measured numbers: packages/nnp/README.md.

    $PEER/bin/python tools/studies/nnp_torchani_ani1x.py torchani $NEUROCHEM_ANI1X_DIR OUTDIR
    .venv/bin/python -c "import sys, runpy; sys.path.append('DIR'); sys.argv[1:] = ['rung', 'OUTDIR']; \\
        runpy.run_path('tools/studies/nnp_torchani_ani1x.py', run_name='__main__')"
"""

import sys
from pathlib import Path

import numpy as np

MOLECULES = {  # Angstrom (G2-like), perturbed below
    "H2O": ([8, 1, 1], [[0, 0, 0.119], [0, 0.763, -0.477], [0, -0.763, -0.477]]),
    "CH3OH": ([6, 8, 1, 1, 1, 1], [[-0.047, 0.664, 0], [-0.047, -0.758, 0], [-1.086, 0.974, 0],
                                   [0.437, 1.077, 0.889], [0.437, 1.077, -0.889], [0.847, -1.054, 0]]),
    "HCONH2": ([6, 8, 7, 1, 1, 1], [[0.419, 0.0, 0.0], [1.636, 0.0, 0.0], [-0.307, 1.136, 0.0],
                                    [-0.11, -0.961, 0.0], [-1.309, 1.12, 0.0], [0.154, 2.03, 0.0]]),
}


def torchani_side(nc_dir, out):
    import torch
    from torchani.arch import ANI
    from torchani.models import Assembler, SYMBOLS_1X
    from torchani.neurochem import NeurochemInfo, modules_from_info

    nc = Path(nc_dir)
    info = NeurochemInfo(nc / "sae_linfit.dat", nc / "rHCNO-5.2R_16-3.5A_a4-8.params", nc / "train", 8)
    aev, nets, sae, symbols = modules_from_info(info)
    sd = ANI(symbols, aev, nets, sae).state_dict()
    asm = Assembler(periodic_table_index=True)  # exactly what torchani.models.ANI1x() assembles
    asm.set_symbols(SYMBOLS_1X)
    asm.set_atomic_networks(ctor="ani1x")
    asm.set_global_cutoff_fn("cosine")
    asm.set_aev_computer(angular="ani1x", radial="ani1x", strategy="pyaev")
    asm.set_neighborlist("all_pairs")
    asm.set_gsaes_as_self_energies("wb97x-631gd")
    model = asm.assemble(8)
    model.load_state_dict(sd, strict=True)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), out / "ani1x_state_dict.pt")
    res = {}
    for dt in ("float32", "float64"):
        m = model.to(getattr(torch, dt))
        rng = np.random.default_rng(0)  # the same conformations for both
        xs, zs, es, fs, batch = [], [], [], [], []
        for z, x0 in MOLECULES.values():
            for _ in range(3):
                x = np.asarray(x0, float) + rng.normal(scale=0.05, size=(len(z), 3))
                c = torch.tensor(x[None], dtype=getattr(torch, dt), requires_grad=True)
                e = m((torch.tensor([z]), c)).energies
                (g,) = torch.autograd.grad(e.sum(), c)
                xs.append(x)
                zs.append(z)
                es.append(float(e.detach()))
                fs.append(-g[0].double().numpy())
                batch += [len(es) - 1] * len(z)
        res[dt] = (np.concatenate(xs), np.concatenate(zs), np.array(batch), np.array(es), np.concatenate(fs))
    np.savez(out / "torchani_ref.npz", x=res["float64"][0], z=res["float64"][1], batch=res["float64"][2],
             e64=res["float64"][3], f64=res["float64"][4], e32=res["float32"][3], f32=res["float32"][4],
             torch=torch.__version__, torchani=__import__("torchani").__version__)


def rung_side(out):
    from rung.nnp.ani import ANIPotential, load_model
    from rung.nnp.torchani_pt import read_pt

    out = Path(out)
    ref = np.load(out / "torchani_ref.npz")
    model = read_pt(out / "ani1x_state_dict.pt", name="ani-1x-torchani")
    print(f"TorchANI {ref['torchani']} on torch {ref['torch']}; converted: {len(model.members)} members, "
          f"species {model.species}, cutoffs {model.aev.Rcr}, {model.aev.Rca} Angstrom; "
          f"{ref['e64'].size} conformations, {ref['z'].size} atoms")
    for dt in ("float64", "float32"):
        r = ANIPotential(model, dtype=dt).evaluate(ref["x"], ref["z"], batch=ref["batch"])
        for peer in ("64", "32"):
            de = np.abs(r.energy - ref["e" + peer]).max()
            df = np.abs(r.forces - ref["f" + peer]).max()
            print(f"ours {dt} vs TorchANI float{peer}: max |dE| {de:.2e} Hartree, max |dF| {df:.2e} Hartree/Angstrom")
    mine = ANIPotential(load_model("ani-1x").model, dtype="float64").evaluate(ref["x"], ref["z"], batch=ref["batch"])
    r = ANIPotential(model, dtype="float64").evaluate(ref["x"], ref["z"], batch=ref["batch"])
    print(f"converted vs rung's own ani-1x (NeuroChem reader), float64: max |dE| {np.abs(r.energy - mine.energy).max():.2e} Hartree")


if __name__ == "__main__":
    if sys.argv[1] == "torchani":
        torchani_side(sys.argv[2], sys.argv[3])
    else:
        rung_side(sys.argv[2])
