"""Ladder step: the ANI-1x ensemble on the dataset's molecule (energy, forces, ensemble spread).

Reads the geometry from the rung.core dataset, fetches the ANI-1x weights into the cache if they are
missing, writes ``nnp_energy``, ``nnp_energy_spread`` and ``nnp_forces`` into the dataset, and
compares the forces with the DFT gradient when the DFT rung wrote one (``dft_total_gradient``).
Absolute energies of ANI-1x (trained on wB97x/6-31G(d)) and of another functional/basis/ECP differ
by a method-dependent constant, so only the forces are compared.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rung.core import units as U


def step(workdir: Path, dataset: Path, molecule: str) -> str:
    import h5py

    from rung.nnp.ani import load_model
    from rung.nnp.evaluate import evaluate_dataset
    from rung.nnp.fetch import WeightsMissing, fetch

    try:
        pot = load_model("ani-1x", dtype="float64")
    except WeightsMissing:
        fetch("ani-1x", log=lambda *a: None)
        pot = load_model("ani-1x", dtype="float64")
    evaluate_dataset(dataset, pot, log=lambda *a: None)
    with h5py.File(dataset, "r") as f:
        g = f[molecule]
        e = float(g["nnp_energy"][0])
        s = float(g["nnp_energy_spread"][0])
        forces = g["nnp_forces"][0]  # Hartree/Bohr
        ref = g["dft_total_gradient"][0] if "dft_total_gradient" in g else None
        ref_unit = str(g["dft_total_gradient"].attrs.get("units", "hartree/bohr")) if ref is not None else None
    fk = U.HARTREE_TO_KCAL_PER_MOL / U.BOHR_TO_ANGSTROM
    line = (f"E(ANI-1x, 8 nets) = {e:.6f} Ha, spread {s * U.HARTREE_TO_KCAL_PER_MOL:.2f} kcal/mol, "
            f"max|F| = {np.abs(forces).max() * fk:.2f} kcal/mol/A")
    if ref is not None and np.all(np.isfinite(ref)):
        diff = (forces + U.to_atomic(np.asarray(ref), ref_unit)) * fk
        line += f", force RMSE vs DFT {np.sqrt(np.mean(diff**2)):.2f} kcal/mol/A"
    else:
        line += " (no DFT gradient in the dataset to compare)"
    return line
