"""NumPy oracles of the numba kernels in :mod:`rung.md._kernels.cpu`: Lennard-Jones (see
:mod:`rung.md.potentials` for the equations) and the ring polymer's fused flow - O - flow."""

import numpy as np


def lj(x, cell, i, j, shifts, epsilon, sigma, cutoff):
    """Energies (P,), forces (P, n, 3), virials (P, 3, 3) of the truncated, shifted LJ potential.

    x : (P, n, 3) float64, Bohr; cell : (3, 3) or None, Bohr; i, j : (n_pairs,) int64;
    shifts : (n_pairs, 3) int64; epsilon : Hartree; sigma, cutoff : Bohr.
    """
    P, n, _ = x.shape
    t = np.zeros((len(i), 3)) if cell is None else shifts @ cell
    e_cut = 4 * epsilon * ((sigma / cutoff) ** 12 - (sigma / cutoff) ** 6)
    energy, forces, virial = np.zeros(P), np.zeros((P, n, 3)), np.zeros((P, 3, 3))
    for b in range(P):
        d = x[b, j] - x[b, i] + t  # (n_pairs, 3)
        r2 = np.einsum("pk,pk->p", d, d)
        keep = r2 < cutoff * cutoff
        d, r2 = d[keep], r2[keep]
        s6 = (sigma * sigma / r2) ** 3
        energy[b] = np.sum(4 * epsilon * (s6 * s6 - s6) - e_cut)
        fj = (24 * epsilon * (2 * s6 * s6 - s6) / r2)[:, None] * d  # force on j, -dE/dx_j
        np.add.at(forces[b], j[keep], fj)
        np.add.at(forces[b], i[keep], -fj)
        virial[b] = fj.T @ d
    return energy, forces, virial


def flow_o_flow(q, p, m, inv_m, coef, c1, sigma, xi):
    """Free half-step flow, Langevin O step, free half-step flow of every normal mode, in place.

    q, p, xi : (P, n, 3) float64 (xi: N(0, 1) noise); m, inv_m : (n, 3) float64; coef : (4, P) (a, b, c, d)
    with q' = a q + b p / m, p' = c m q + d p (:func:`rung.md.normal_modes.free_propagator`); c1 : (P,);
    sigma : (P, n, 3). Returns the kinetic-energy change of the O step, Hartree.
    """
    a, b, c, d = (co[:, None, None] for co in coef)
    cm = c * m

    def flow():
        qq = q.copy()
        q[:] = a * qq + b * (p * inv_m)
        p[:] = cm * qq + d * p

    flow()
    before = p.copy()
    p[:] = p * c1[:, None, None] + sigma * xi
    dk = 0.5 * np.sum((p * p - before * before) * inv_m)
    flow()
    return float(dk)
