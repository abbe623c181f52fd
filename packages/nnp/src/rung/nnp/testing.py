"""Test and benchmark structures: periodic boxes of water at liquid density.

``water_box(n_side)`` places ``n_side**3`` rigid water molecules (O-H 0.9572 A, H-O-H 104.52 deg) on
a simple cubic lattice with random orientations; the lattice constant gives 1 g/cm^3
(18.015 g/mol / N_A per molecule: 29.915 A^3). Used by the tests and tools/bench/suites/nnp.py.
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
