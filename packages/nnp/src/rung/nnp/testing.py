"""Test and benchmark kits: water boxes, perturbed small molecules, small random ANI models.

``water_box(n_side)`` places ``n_side**3`` rigid water molecules (O-H 0.9572 A, H-O-H 104.52 deg) on
a simple cubic lattice with random orientations; the lattice constant gives 1 g/cm^3
(18.015 g/mol / N_A per molecule: 29.915 A^3). Used by the tests and tools/bench/suites/nnp.py.

``conformations(formulas, n_conf)`` perturbs ASE's G2 geometries; ``random_model(seed)`` is a small
ANI model (H, C, N, O; ANI-1x's cutoffs, fewer AEV terms, narrow networks, random weights) for tests
that must not depend on fetched weights.
"""

from __future__ import annotations

import numpy as np

from rung.core.units import AVOGADRO

WATER_MOLAR_MASS_G = 18.015


def water_box(n_side: int, *, density_g_cm3: float = 1.0, seed: int = 0):
    """(positions (3 n_side^3, 3) float64 Angstrom, numbers (3 n_side^3,) int64, cell (3, 3) Angstrom)."""
    vol_a3 = WATER_MOLAR_MASS_G / AVOGADRO / density_g_cm3 * 1e24  # Angstrom^3 per molecule
    a = vol_a3 ** (1 / 3)
    th = np.deg2rad(104.52) / 2
    mol = np.array([[0.0, 0.0, 0.0], [0.9572 * np.sin(th), 0.0, 0.9572 * np.cos(th)],
                    [-0.9572 * np.sin(th), 0.0, 0.9572 * np.cos(th)]])
    rng = np.random.default_rng(seed)
    pos = []
    for ix in range(n_side):
        for iy in range(n_side):
            for iz in range(n_side):
                q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
                pos.append(mol @ q.T + a * np.array([ix, iy, iz]) + 0.5 * a)
    x = np.concatenate(pos)
    z = np.tile([8, 1, 1], n_side**3).astype(np.int64)
    return x, z, np.eye(3) * (a * n_side)


def conformations(formulas=("H2O", "NH3", "CH4", "CH3OH", "HCOOH", "H3CNH2"), n_conf=8, *, amplitude=0.08, seed=0):
    """Randomly displaced copies of G2 molecules: [(formula, numbers (n_atoms,), x (n_conf, n_atoms, 3) Angstrom)]."""
    from ase.collections import g2

    rng = np.random.default_rng(seed)
    out = []
    for name in formulas:
        a = g2[name]
        x = a.positions[None] + amplitude * rng.normal(size=(n_conf, len(a), 3))
        out.append((name, a.numbers.astype(np.int64), x))
    return out


def random_model(seed=0, hidden=(16, 12), *, species=("H", "C", "N", "O"), members=1, name="random"):
    """A small ANI model with random weights (float32 like NeuroChem's, CELU hidden layers)."""
    from rung.nnp.model import AEVParams, ANIModel, Layer, Network

    rng = np.random.default_rng(seed)
    aev = AEVParams(Rcr=5.2, Rca=3.5, EtaR=np.array([16.0]), ShfR=np.linspace(0.9, 4.7, 8), Zeta=np.array([32.0]),
                    ShfZ=np.linspace(0.19, 2.95, 4), EtaA=np.array([8.0]), ShfA=np.linspace(0.9, 3.0, 4),
                    n_species=len(species))
    sizes = (aev.length, *hidden, 1)

    def net():
        layers = []
        for k, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = rng.normal(scale=1.0 / np.sqrt(n_in), size=(n_out, n_in)).astype(np.float32)
            b = rng.normal(scale=0.1, size=n_out).astype(np.float32)
            layers.append(Layer(w, b, "identity" if k == len(sizes) - 2 else "celu0.1"))
        return Network(tuple(layers))

    sae = np.array([-0.5, -38.0, -54.6, -75.0, -99.7])[:len(species)]
    return ANIModel(name, tuple(species), aev, sae, tuple(tuple(net() for _ in species) for _ in range(members)),
                    {"source": "rung.nnp.testing.random_model", "seed": seed})
