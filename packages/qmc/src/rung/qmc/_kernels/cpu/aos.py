"""Cartesian Gaussian AOs (numba, CPU); :func:`rung.qmc._kernels.reference.eval_cart_species` is the oracle.

``eval_cart``: the cartesian Gaussian AOs of all shells of all centres at a batch of positions (see
the reference module for the conventions and the derivative formulas). The shell table is flattened
over centres grouped by species, so one call covers every centre and every position. It runs in three
passes: the primitive exponents ``a_p |r - A|^2`` for every position and primitive (screened ones set to
infinity), their exponentials in one NumPy call (NumPy's SIMD ``exp``: the exponentials are most of
the cost of an AO evaluation, and numba's scalar libm ``exp`` does not vectorise), then the
contraction with the cartesian polynomials. The arithmetic of one (position, shell) pair (the offset
from the centre, the cartesian block and its derivatives) is :mod:`rung.qmc._kernels.aos_body`'s, written
once for these kernels and the GPU kernel and compiled in here with ``inline="always"``.
"""

from __future__ import annotations

import numba
import numpy as np

from rung.qmc._kernels import aos_body

_offset = numba.njit(inline="always")(aos_body.offset)
_cart_block = numba.njit(inline="always")(aos_body.cart_block)


@numba.njit(cache=True)
def _primitive_arguments(pos, sh_center, sh_pstart, sh_minexp, exps, screen):
    """a_p |r - A_p|^2 (npos, nprim) float64 for every position and primitive; 0 where a_p r^2 > screen
    (the contraction skips those; a finite filler keeps NumPy's ``exp`` on its fast path)."""
    npos = pos.shape[0]
    nsh = sh_center.shape[0]
    arg = np.empty((npos, exps.shape[0]))
    for ip in range(npos):
        for ish in range(nsh):
            x, y, z, s = _offset(pos, ip, sh_center, ish)
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
    out = np.zeros((nout, pos.shape[0], ncart))
    lmax = 0
    for ish in range(sh_l.shape[0]):
        lmax = max(lmax, sh_l[ish])
    pw = np.zeros((3, lmax + 3))  # the power tables of cart_block (xp[0] = xp[1] = 0 stay)
    _contract_into(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ex, deriv, screen, out, pw[0],
                   pw[1], pw[2])
    return out


# _nrt=False: no reference counting here, where it would cost an incref/decref of each array argument of the
# inlined _cart_block per (position, shell) pair (1.6-1.7x the time of the pass, measured; BENCHMARKS.md)
@numba.njit(cache=True, _nrt=False)
def _contract_into(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ex, deriv, screen, out, xp, yp,
                   zp):
    """_contract's loops: out (nout, npos, ncart) float64 zeroed, xp, yp, zp (lmax + 3,) float64 zeroed scratch."""
    npos = pos.shape[0]
    nsh = sh_l.shape[0]
    for ip in range(npos):
        for ish in range(nsh):
            x, y, z, s = _offset(pos, ip, sh_center, ish)
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
            _cart_block(out, ip, sh_col[ish], sh_l[ish], x, y, z, s, f, f1, f2, deriv, xp, yp, zp)
