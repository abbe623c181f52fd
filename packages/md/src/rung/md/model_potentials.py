"""Analytic model potentials with known basins, for testing samplers (one particle per atom, in x, y).

Müller–Brown (K. Müller, L. D. Brown, Theor. Chim. Acta 53, 75 (1979)), per atom at (x, y):

    V(x, y) = s_E sum_{k=1..4} A_k exp[a_k (u - x0_k)^2 + b_k (u - x0_k)(v - y0_k) + c_k (v - y0_k)^2],
    u = x / s_L, v = y / s_L

with A = (-200, -100, -170, 15), a = (-1, -1, -6.5, 0.7), b = (0, 0, 11, 0.6), c = (-10, -10, -6.5, 0.7),
x0 = (1, 0, -0.5, -1), y0 = (0, 0.5, 1.5, 1). Minima (in MB units): A (-0.558, 1.442) V = -146.70,
C (-0.050, 0.467) V = -80.77, B (0.623, 0.028) V = -108.17; the saddle A-C is at V = -72.25, C-B at -40.66.
``s_E`` (Hartree per MB energy unit) and ``s_L`` (Bohr per MB length unit) set the scales; z is held
near 0 by a harmonic term ``s_E k_z (z / s_L)^2 / 2`` (k_z = 1000 MB units, like the wells' curvature), so
Boltzmann averages over x, y are those of the 2D surface. The total energy is the sum over atoms: independent particles, so a system of
N atoms is N independent replicas of the 2D model (what the statistical tests use).
"""

from __future__ import annotations

import numpy as np

from rung.core.potential import PotentialResult

MB_A = np.array([-200.0, -100.0, -170.0, 15.0])
MB_a = np.array([-1.0, -1.0, -6.5, 0.7])
MB_b = np.array([0.0, 0.0, 11.0, 0.6])
MB_c = np.array([-10.0, -10.0, -6.5, 0.7])
MB_X0 = np.array([1.0, 0.0, -0.5, -1.0])
MB_Y0 = np.array([0.0, 0.5, 1.5, 1.0])
MB_MINIMA = {"A": (-0.5582, 1.4417), "C": (-0.0500, 0.4667), "B": (0.6235, 0.0280)}  # MB length units


def muller_brown(u, v):
    """V and its gradient in MB units. u, v: arrays of any (same) shape -> (V, dV/du, dV/dv)."""
    u = np.asarray(u, dtype=np.float64)[..., None]
    v = np.asarray(v, dtype=np.float64)[..., None]
    du, dv = u - MB_X0, v - MB_Y0
    t = MB_A * np.exp(MB_a * du * du + MB_b * du * dv + MB_c * dv * dv)
    return (t.sum(-1), (t * (2 * MB_a * du + MB_b * dv)).sum(-1), (t * (MB_b * du + 2 * MB_c * dv)).sum(-1))


class MullerBrown:
    """The Müller–Brown surface for every atom (x, y), batched over beads; Hartree and Bohr.

    Parameters
    ----------
    energy_scale : float, Hartree per MB energy unit
    length_scale : float, Bohr per MB length unit
    z_force_constant : float, MB units, of the harmonic term in z
    """

    energy_unit, length_unit = "hartree", "bohr"

    def __init__(self, energy_scale: float, length_scale: float = 1.0, z_force_constant: float = 1000.0):
        if not (energy_scale > 0 and length_scale > 0):
            raise ValueError(f"Müller-Brown needs energy_scale > 0 and length_scale > 0, got {energy_scale}, "
                             f"{length_scale}")
        self.energy_scale, self.length_scale = float(energy_scale), float(length_scale)
        self.kz = float(z_force_constant)

    def compute(self, positions, numbers=None, cell=None, *, forces=True, virial=False):
        x = np.asarray(positions, dtype=np.float64)  # (n, 3) or (P, n, 3) Bohr
        s = self.length_scale
        v, gu, gv = muller_brown(x[..., 0] / s, x[..., 1] / s)
        f = np.zeros_like(x)
        f[..., 0] = -self.energy_scale / s * gu
        f[..., 1] = -self.energy_scale / s * gv
        z = x[..., 2] / s
        f[..., 2] = -self.energy_scale / s * self.kz * z
        e = self.energy_scale * (v + 0.5 * self.kz * z * z).sum(-1)
        w = np.einsum("...ia,...ib->...ab", f, x) if virial else None
        return PotentialResult(energy=e, forces=f if forces else None, virial=w)
