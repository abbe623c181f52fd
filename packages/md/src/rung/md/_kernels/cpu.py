"""numba Lennard-Jones kernel, serial (threads cost more than they gain on small, shared machines).

Pairs are taken in the given (canonical) order within a bead, so a bead's result does not depend on
which other beads share the call."""

import numba
import numpy as np


@numba.njit(cache=True)
def _lj(x, t, i, j, epsilon, sigma, cutoff, energy, forces, virial):
    P = x.shape[0]
    rc2 = cutoff * cutoff
    sr6c = (sigma * sigma / rc2) ** 3
    e_cut = 4.0 * epsilon * (sr6c * sr6c - sr6c)
    for b in range(P):
        e = 0.0
        for q in range(i.shape[0]):
            a, c = i[q], j[q]
            dx = x[b, c, 0] - x[b, a, 0] + t[q, 0]
            dy = x[b, c, 1] - x[b, a, 1] + t[q, 1]
            dz = x[b, c, 2] - x[b, a, 2] + t[q, 2]
            r2 = dx * dx + dy * dy + dz * dz
            if r2 >= rc2:
                continue
            s6 = (sigma * sigma / r2) ** 3
            e += 4.0 * epsilon * (s6 * s6 - s6) - e_cut
            g = 24.0 * epsilon * (2.0 * s6 * s6 - s6) / r2
            fx, fy, fz = g * dx, g * dy, g * dz
            forces[b, c, 0] += fx
            forces[b, c, 1] += fy
            forces[b, c, 2] += fz
            forces[b, a, 0] -= fx
            forces[b, a, 1] -= fy
            forces[b, a, 2] -= fz
            virial[b, 0, 0] += fx * dx
            virial[b, 0, 1] += fx * dy
            virial[b, 0, 2] += fx * dz
            virial[b, 1, 0] += fy * dx
            virial[b, 1, 1] += fy * dy
            virial[b, 1, 2] += fy * dz
            virial[b, 2, 0] += fz * dx
            virial[b, 2, 1] += fz * dy
            virial[b, 2, 2] += fz * dz
        energy[b] = e


def lj(x, cell, i, j, shifts, epsilon, sigma, cutoff):
    """Same contract as :func:`rung.md._kernels.reference.lj`."""
    P, n, _ = x.shape
    t = np.zeros((len(i), 3)) if cell is None else np.ascontiguousarray(shifts @ cell, dtype=np.float64)
    energy, forces, virial = np.zeros(P), np.zeros((P, n, 3)), np.zeros((P, 3, 3))
    _lj(np.ascontiguousarray(x, dtype=np.float64), t, i, j, float(epsilon), float(sigma), float(cutoff),
        energy, forces, virial)
    return energy, forces, virial


@numba.njit(cache=True)
def nm_flow(q, p, m, inv_m, coef):
    """In place: the free ring-polymer flow of every normal mode (see ``normal_modes.free_propagator``).

    q, p : (P, n, 3) normal-mode positions and momenta; m, inv_m : (n,); coef : (4, P) (a, b, c, d).
    Same floating-point operations, in the same order, as the NumPy expression
    ``a q + b (p / m), (c m) q + d p``.
    """
    P, n = q.shape[0], q.shape[1]
    for k in range(P):
        a, b, c, d = coef[0, k], coef[1, k], coef[2, k], coef[3, k]
        for i in range(n):
            cm = c * m[i]
            for x in range(3):
                qq, pp = q[k, i, x], p[k, i, x]
                q[k, i, x] = a * qq + b * (pp * inv_m[i])
                p[k, i, x] = cm * qq + d * pp


@numba.njit(cache=True)
def langevin_o(p, c1, sigma, xi, inv_m):
    """In place: p <- c1_k p + sigma_ki xi for every mode k; returns the kinetic-energy change.

    p, xi : (P, n, 3); c1 : (P,); sigma : (P, n); inv_m : (n,).
    """
    P, n = p.shape[0], p.shape[1]
    dk = 0.0
    for k in range(P):
        for i in range(n):
            for x in range(3):
                old = p[k, i, x]
                new = old * c1[k] + sigma[k, i] * xi[k, i, x]
                p[k, i, x] = new
                dk += 0.5 * (new * new - old * old) * inv_m[i]
    return dk
