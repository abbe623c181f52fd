"""Writes torchani_ani_small.pt, torchani_ani_small_sd.npz and torchani_ani_small_ref.npz (the oracle of
test_torchani.py) with TorchANI itself.

A small ANI model built by TorchANI's ``Assembler``: species H, C, N, O; ``ANIRadial.cover_linearly``
(start 0.9, cutoff 5.2 Angstrom, eta 16, 4 shifts) and ``ANIAngular.cover_linearly`` (start 0.9, cutoff
3.5, eta 8, zeta 32, 2 shifts, 2 sections), cosine cutoffs; ``ANINetworks.build`` 8-6-1 networks with
TorchANI's CELU (alpha 0.1) and biases; an ensemble of two members; self energies set by hand. Weights
are TorchANI's random initial ones, biases randomised too, float64. Saved with
``torch.save(model.state_dict())`` (.pt) and as the same arrays in an .npz; the reference holds
TorchANI's float64 energies (Hartree) and forces (Hartree/Angstrom, by autograd) of perturbed
molecules. Run once where torch and torchani are installed (torch 2.13.0+cpu, torchani 2.9.0 were
used)::

    python packages/nnp/tests/data/make_torchani_ani.py
"""

from pathlib import Path

import numpy as np
import torch
from torchani.aev import ANIAngular, ANIRadial
from torchani.models import Assembler

HERE = Path(__file__).parent
MOLECULES = {  # Angstrom
    "H2O": ([8, 1, 1], [[0, 0, 0.119], [0, 0.763, -0.477], [0, -0.763, -0.477]]),
    "CH4": ([6, 1, 1, 1, 1], [[0, 0, 0], [0.629, 0.629, 0.629], [-0.629, -0.629, 0.629],
                              [0.629, -0.629, -0.629], [-0.629, 0.629, -0.629]]),
    "HCN": ([6, 7, 1], [[0, 0, -0.511], [0, 0, 0.652], [0, 0, -1.575]]),
    "CH3OH": ([6, 8, 1, 1, 1, 1], [[-0.047, 0.664, 0], [-0.047, -0.758, 0], [-1.086, 0.974, 0],
                                   [0.437, 1.077, 0.889], [0.437, 1.077, -0.889], [0.847, -1.054, 0]]),
}


def model():
    torch.manual_seed(11)
    asm = Assembler(periodic_table_index=True)
    asm.set_symbols(("H", "C", "N", "O"))
    asm.set_global_cutoff_fn("cosine")
    asm.set_aev_computer(radial=ANIRadial.cover_linearly(start=0.9, cutoff=5.2, eta=16.0, num_shifts=4),
                         angular=ANIAngular.cover_linearly(start=0.9, cutoff=3.5, eta=8.0, zeta=32.0, num_shifts=2,
                                                           num_sections=2),
                         strategy="pyaev")
    asm.set_atomic_networks(ctor="build", kwargs={"dims": {s: (8, 6) for s in "HCNO"}, "activation": "celu",
                                                  "bias": True})
    asm.set_self_energies({"H": -0.5, "C": -37.8, "N": -54.6, "O": -75.0})
    m = asm.assemble(2).double()
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.5)
    return m


def main():
    m = model()
    sd = m.state_dict()
    torch.save(sd, HERE / "torchani_ani_small.pt")
    np.savez(HERE / "torchani_ani_small_sd.npz", **{k: v.numpy() for k, v in sd.items()})
    rng = np.random.default_rng(5)
    xs, zs, es, fs, batch = [], [], [], [], []
    for name, (z, x0) in MOLECULES.items():
        for _ in range(2):
            x = np.asarray(x0, float) + rng.normal(scale=0.05, size=(len(z), 3))
            c = torch.tensor(x[None], dtype=torch.float64, requires_grad=True)
            e = m((torch.tensor([z]), c)).energies
            (g,) = torch.autograd.grad(e.sum(), c)
            xs.append(x)
            zs.append(z)
            es.append(float(e.detach()))
            fs.append(-g[0].numpy())
            batch += [len(es) - 1] * len(z)
    np.savez(HERE / "torchani_ani_small_ref.npz", x=np.concatenate(xs), z=np.concatenate(zs), batch=np.array(batch),
             energy_hartree=np.array(es), forces_hartree_angstrom=np.concatenate(fs))


if __name__ == "__main__":
    main()
