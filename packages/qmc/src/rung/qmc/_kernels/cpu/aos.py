"""Cartesian Gaussian AOs (numba, CPU); :func:`rung.qmc._kernels.reference.eval_cart_species` is the oracle.

``eval_cart``: the cartesian Gaussian AOs of all shells of all centres at a batch of positions (see
the reference module for the conventions and the derivative formulas). The shell table is flattened
over centres grouped by species, so one call covers every centre and every position. It runs in three
passes: the primitive exponents ``a_p |r - A|^2`` for every position and primitive (screened ones set to
infinity), their exponentials in one NumPy call (NumPy's SIMD ``exp``: the exponentials are most of
the cost of an AO evaluation, and numba's scalar libm ``exp`` does not vectorise), then the
contraction with the cartesian polynomials.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _primitive_arguments(pos, sh_center, sh_pstart, sh_minexp, exps, screen):
    """a_p |r - A_p|^2 (npos, nprim) float64 for every position and primitive; 0 where a_p r^2 > screen
    (the contraction skips those; a finite filler keeps NumPy's ``exp`` on its fast path)."""
    npos = pos.shape[0]
    nsh = sh_center.shape[0]
    arg = np.empty((npos, exps.shape[0]))
    for ip in range(npos):
        for ish in range(nsh):
            x = pos[ip, 0] - sh_center[ish, 0]
            y = pos[ip, 1] - sh_center[ish, 1]
            z = pos[ip, 2] - sh_center[ish, 2]
            s = x * x + y * y + z * z
            if sh_minexp[ish] * s > screen:
                for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                    arg[ip, p] = 0.0
                continue
            for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                t = exps[p] * s
                arg[ip, p] = t if t <= screen else 0.0
    return arg


def eval_cart(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ncart, deriv, screen):
    """Cartesian AOs at positions.

    Parameters
    ----------
    pos : (npos, 3) float64, Bohr
    sh_center : (nsh, 3) float64, Bohr — centre of each shell (shells of one species are contiguous)
    sh_l : (nsh,) int64; sh_pstart : (nsh+1,) int64 primitive ranges; sh_col : (nsh,) int64 first column;
    sh_minexp : (nsh,) float64 smallest exponent of each shell
    exps, coefs : (nprim,) float64 — exponents (Bohr^-2) and normalised contraction coefficients
    ncart : int; deriv : 0, 1, 2; screen : float, primitives with a*r^2 > screen are skipped

    Returns
    -------
    out : (nout, npos, ncart) float64, nout = 1, 4, 5 (value, gradient, Laplacian)
    """
    ex = _primitive_arguments(pos, sh_center, sh_pstart, sh_minexp, exps, screen)
    np.negative(ex, out=ex)
    np.exp(ex, out=ex)  # exp(-a r^2); 1 where screened (skipped)
    return _contract(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ex, ncart, deriv, screen)


@numba.njit(cache=True)
def _contract(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ex, ncart, deriv, screen):
    """eval_cart's contraction pass; ex (npos, nprim) float64 holds exp(-a_p r^2) (where a_p r^2 <= screen)."""
    nout = 1 if deriv == 0 else (4 if deriv == 1 else 5)
    npos = pos.shape[0]
    nsh = sh_l.shape[0]
    out = np.zeros((nout, npos, ncart))
    lmax = 0
    for ish in range(nsh):
        lmax = max(lmax, sh_l[ish])
    # powers x^(n-2) stored at index n so that x^-1, x^-2 (times a zero prefactor) read as 0
    xp = np.zeros(lmax + 3)
    yp = np.zeros(lmax + 3)
    zp = np.zeros(lmax + 3)
    for ip in range(npos):
        for ish in range(nsh):
            x = pos[ip, 0] - sh_center[ish, 0]
            y = pos[ip, 1] - sh_center[ish, 1]
            z = pos[ip, 2] - sh_center[ish, 2]
            s = x * x + y * y + z * z
            if sh_minexp[ish] * s > screen:
                continue  # every primitive of the shell is negligible here
            f = 0.0
            f1 = 0.0
            f2 = 0.0
            if deriv == 0:
                for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                    if exps[p] * s <= screen:
                        f += coefs[p] * ex[ip, p]
            else:
                for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                    a = exps[p]
                    if a * s > screen:
                        continue
                    e = coefs[p] * ex[ip, p]
                    f += e
                    f1 -= a * e
                    f2 += a * a * e
            l = sh_l[ish]
            col = sh_col[ish]
            g0 = 2.0 * f1
            lapr = 6.0 * f1 + 4.0 * s * f2 + 4.0 * f1 * l
            # s and p shells written out (most shells; the same arithmetic as the general loop below)
            if l == 0:
                out[0, ip, col] = f
                if deriv >= 1:
                    out[1, ip, col] = x * g0
                    out[2, ip, col] = y * g0
                    out[3, ip, col] = z * g0
                    if deriv >= 2:
                        out[4, ip, col] = lapr
                continue
            if l == 1:
                out[0, ip, col] = x * f
                out[0, ip, col + 1] = y * f
                out[0, ip, col + 2] = z * f
                if deriv >= 1:
                    gx = g0 * x
                    gy = g0 * y
                    gz = g0 * z
                    out[1, ip, col] = f + x * gx
                    out[2, ip, col] = y * gx
                    out[3, ip, col] = z * gx
                    out[1, ip, col + 1] = x * gy
                    out[2, ip, col + 1] = f + y * gy
                    out[3, ip, col + 1] = z * gy
                    out[1, ip, col + 2] = x * gz
                    out[2, ip, col + 2] = y * gz
                    out[3, ip, col + 2] = f + z * gz
                    if deriv >= 2:
                        out[4, ip, col] = x * lapr
                        out[4, ip, col + 1] = y * lapr
                        out[4, ip, col + 2] = z * lapr
                continue
            xp[2] = 1.0
            yp[2] = 1.0
            zp[2] = 1.0
            for n in range(1, l + 1):
                xp[n + 2] = xp[n + 1] * x
                yp[n + 2] = yp[n + 1] * y
                zp[n + 2] = zp[n + 1] * z
            for lx in range(l, -1, -1):
                for ly in range(l - lx, -1, -1):
                    lz = l - lx - ly
                    px = xp[lx + 2]
                    py = yp[ly + 2]
                    pz = zp[lz + 2]
                    P = px * py * pz
                    out[0, ip, col] = P * f
                    if deriv >= 1:
                        dPx = lx * xp[lx + 1] * py * pz
                        dPy = ly * px * yp[ly + 1] * pz
                        dPz = lz * px * py * zp[lz + 1]
                        g = g0 * P
                        out[1, ip, col] = dPx * f + x * g
                        out[2, ip, col] = dPy * f + y * g
                        out[3, ip, col] = dPz * f + z * g
                        if deriv >= 2:
                            lapP = (lx * (lx - 1) * xp[lx] * py * pz + ly * (ly - 1) * px * yp[ly] * pz
                                    + lz * (lz - 1) * px * py * zp[lz])
                            out[4, ip, col] = f * lapP + P * lapr
                    col += 1
    return out
