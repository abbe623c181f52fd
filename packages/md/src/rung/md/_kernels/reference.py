"""NumPy oracle of the Lennard-Jones kernel (see :mod:`rung.md.potentials` for the equations)."""

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
