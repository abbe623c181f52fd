"""numba kernels (CPU) for the hot loops; :mod:`rung.qmc._kernels.reference` is their oracle.

``eval_cart``: the cartesian Gaussian AOs of all shells of all centres at a batch of positions (see
the reference module for the conventions and the derivative formulas). The shell table is flattened
over centres grouped by species, so one call covers every centre and every position.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _ipow(x, n):
    if n < 0:
        return 0.0
    r = 1.0
    for _ in range(n):
        r *= x
    return r


@numba.njit(cache=True)
def eval_cart(pos, sh_center, sh_l, sh_pstart, sh_col, exps, coefs, ncart, deriv, screen):
    """Cartesian AOs at positions.

    Parameters
    ----------
    pos : (npos, 3) float64, Bohr
    sh_center : (nsh, 3) float64, Bohr — centre of each shell (shells of one species are contiguous)
    sh_l : (nsh,) int64; sh_pstart : (nsh+1,) int64 primitive ranges; sh_col : (nsh,) int64 first column
    exps, coefs : (nprim,) float64 — exponents (Bohr^-2) and normalised contraction coefficients
    ncart : int; deriv : 0, 1, 2; screen : float, primitives with a*r^2 > screen are skipped

    Returns
    -------
    out : (nout, npos, ncart) float64, nout = 1, 4, 5 (value, gradient, Laplacian)
    """
    nout = 1 if deriv == 0 else (4 if deriv == 1 else 5)
    npos = pos.shape[0]
    nsh = sh_l.shape[0]
    out = np.zeros((nout, npos, ncart))
    for ip in range(npos):
        for ish in range(nsh):
            x = pos[ip, 0] - sh_center[ish, 0]
            y = pos[ip, 1] - sh_center[ish, 1]
            z = pos[ip, 2] - sh_center[ish, 2]
            s = x * x + y * y + z * z
            f = 0.0
            f1 = 0.0
            f2 = 0.0
            for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                a = exps[p]
                if a * s > screen:
                    continue
                e = coefs[p] * np.exp(-a * s)
                f += e
                f1 -= a * e
                f2 += a * a * e
            l = sh_l[ish]
            col = sh_col[ish]
            for lx in range(l, -1, -1):
                for ly in range(l - lx, -1, -1):
                    lz = l - lx - ly
                    px = _ipow(x, lx)
                    py = _ipow(y, ly)
                    pz = _ipow(z, lz)
                    P = px * py * pz
                    out[0, ip, col] = P * f
                    if deriv >= 1:
                        dPx = lx * _ipow(x, lx - 1) * py * pz
                        dPy = ly * px * _ipow(y, ly - 1) * pz
                        dPz = lz * px * py * _ipow(z, lz - 1)
                        g = 2.0 * f1 * P
                        out[1, ip, col] = dPx * f + x * g
                        out[2, ip, col] = dPy * f + y * g
                        out[3, ip, col] = dPz * f + z * g
                        if deriv >= 2:
                            lapP = (lx * (lx - 1) * _ipow(x, lx - 2) * py * pz
                                    + ly * (ly - 1) * px * _ipow(y, ly - 2) * pz
                                    + lz * (lz - 1) * px * py * _ipow(z, lz - 2))
                            out[4, ip, col] = f * lapP + 4.0 * f1 * l * P + P * (6.0 * f1 + 4.0 * s * f2)
                    col += 1
    return out
