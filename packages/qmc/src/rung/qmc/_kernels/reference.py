"""NumPy reference kernels (the test oracle for :mod:`rung.qmc._kernels.cpu`).

Cartesian Gaussian shells, PySCF convention: a shell of angular momentum ``l`` on centre ``A`` gives
the ``(l+1)(l+2)/2`` functions ``x^lx y^ly z^lz R(r^2)`` (``x = r - A``; components ordered with ``lx``
descending, then ``ly`` descending), with the contracted radial part ``R(s) = sum_p c_p exp(-a_p s)``.
``c_p`` already contains PySCF's primitive normalisation and the ``l = 0, 1`` factor.

Multi-centre batching: every centre of one species shares the shell table, so the displacements of all
positions to all centres of the species are flattened into one array and each shell is evaluated once
for that whole array (radial and angular parts separately, combined once), then scattered into the
cartesian AO columns of each centre.

Derivatives, with ``f(s)``, ``s = |x|^2``:
    grad (P f) = f grad P + 2 x f' P
    lap  (P f) = f lap P + 4 f' (x . grad P) + P (6 f' + 4 s f'')
"""

from __future__ import annotations

import numpy as np


def cart_powers(l: int) -> np.ndarray:
    """(ncart, 3) int: exponents (lx, ly, lz) of the cartesian components of angular momentum l, PySCF order."""
    return np.array([(lx, ly, l - lx - ly) for lx in range(l, -1, -1) for ly in range(l - lx, -1, -1)], dtype=np.int64)


def _ipow(x, n):
    """x**n elementwise with n (ncomp,) int broadcast over columns; zero where n < 0."""
    n = np.asarray(n)
    return np.where(n >= 0, x ** np.maximum(n, 0), 0.0)


def eval_cart_species(pos, species, ncart, deriv):
    """Cartesian AOs (and derivatives) at positions, batched over centres of one species at a time.

    Parameters
    ----------
    pos : (npos, 3) float64, Bohr
    species : list of dicts with ``centers`` (ncen, 3) Bohr, ``offsets`` (ncen,) int (first cartesian
        AO column of each centre) and ``shells``: list of (l, exps (nprim,), coefs (nprim,), local offset)
    ncart : int, number of cartesian AOs
    deriv : 0, 1 or 2 (value; + gradient; + Laplacian)

    Returns
    -------
    out : (nout, npos, ncart) float64 with nout = 1, 4, 5: value, d/dx, d/dy, d/dz, Laplacian
    """
    nout = (1, 4, 5)[deriv]
    npos = pos.shape[0]
    out = np.zeros((nout, npos, ncart))
    for sp in species:
        d = (pos[:, None, :] - sp["centers"][None]).reshape(-1, 3)  # (npos*ncen, 3)
        s = np.einsum("ij,ij->i", d, d)
        for l, exps, coefs, loc in sp["shells"]:
            e = np.exp(-np.outer(s, exps))  # (npos*ncen, nprim)
            f = e @ coefs
            f1 = -(e @ (coefs * exps))
            f2 = e @ (coefs * exps**2)
            pw = cart_powers(l)
            cols = (sp["offsets"][:, None] + loc + np.arange(len(pw))[None]).ravel()  # (ncen*ncomp,)
            x, y, z = d[:, 0:1], d[:, 1:2], d[:, 2:3]
            lx, ly, lz = pw[:, 0], pw[:, 1], pw[:, 2]
            px, py, pz = _ipow(x, lx), _ipow(y, ly), _ipow(z, lz)  # (npos*ncen, ncomp)
            P = px * py * pz
            vals = [P * f[:, None]]
            if deriv >= 1:
                dPx = lx * _ipow(x, lx - 1) * py * pz
                dPy = ly * px * _ipow(y, ly - 1) * pz
                dPz = lz * px * py * _ipow(z, lz - 1)
                g = 2.0 * f1[:, None] * P
                vals += [dPx * f[:, None] + x * g, dPy * f[:, None] + y * g, dPz * f[:, None] + z * g]
            if deriv >= 2:
                lapP = (lx * (lx - 1) * _ipow(x, lx - 2) * py * pz + ly * (ly - 1) * px * _ipow(y, ly - 2) * pz
                        + lz * (lz - 1) * px * py * _ipow(z, lz - 2))
                xdP = x * dPx + y * dPy + z * dPz  # = l P for a homogeneous monomial
                lap = f[:, None] * lapP + 4.0 * f1[:, None] * xdP + P * (6.0 * f1 + 4.0 * s * f2)[:, None]
                vals.append(lap)
            ncen = sp["centers"].shape[0]
            for k, v in enumerate(vals):
                out[k][:, cols] = v.reshape(npos, ncen * len(pw))
    return out


def jastrow_basis(y, coeffs):
    """Polynomial cutoff basis b_k(y) and its first two derivatives in y, zero for y >= 1.

    y : (...,) float64 (r / r_cut); coeffs : (nbasis, ndeg) float64, polynomial coefficients in y
    (lowest power first). Returns three arrays (nbasis, ...) .
    """
    inside = y < 1.0
    yc = np.where(inside, y, 1.0)
    nb, nd = coeffs.shape
    v = np.zeros((nb,) + np.shape(y))
    d1 = np.zeros_like(v)
    d2 = np.zeros_like(v)
    for k in range(nd - 1, -1, -1):  # Horner for value and derivatives
        d2 = d2 * yc + 2.0 * d1
        d1 = d1 * yc + v
        v = v * yc + coeffs[:, k].reshape((nb,) + (1,) * np.ndim(y))
    return v * inside, d1 * inside, d2 * inside
