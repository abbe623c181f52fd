"""numba drivers of the half-transform micro-kernel: one aux block, every factor group, rho and J.

See :mod:`rung.dft_gpu._kernels.cpu` for the equations and :mod:`rung.dft_gpu._kernels._simd` for the
micro-kernel. Imported lazily (numba's JIT start-up is paid only when this path runs).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from rung.dft_gpu._kernels import _simd

_T1, _T2, _T3, _T4, _T5 = (_simd.TILES[nv] for nv in range(1, 6))
_R1, _R2, _R3, _R4, _R5 = (_simd.ROWS[nv] for nv in range(1, 6))
#: Columns of one pass of the micro-kernel (5 vectors of 8).
CHUNK = _simd.LANES * _simd.MAX_NV
#: The micro-kernel prefetches the tensor rows this many rows ahead (two tiles of the widest shape).
PREFETCH_ROWS = 10


@njit(cache=True)
def _half_transform_one(b, nblk, nao, L, f, foff, ldf, r, x, xoff, pf):
    """``x[xoff + q*nblk*r + L*r + i] = sum_p b[L*nao*nao + q*nao + p] * f[foff + p*ldf + i]``, i < r."""
    ldx = nblk * r
    boff = L * nao * nao
    for c0 in range(0, r, CHUNK):
        ncols = min(CHUNK, r - c0)
        nv = (ncols + 7) // 8
        xo = xoff + L * r + c0
        fo = foff + c0
        if nv == 5:
            for q0 in range(0, nao, _R5):
                _T5(b, boff + q0 * nao, nao, min(_R5, nao - q0), f, fo, ldf, x, xo + q0 * ldx, ldx, ncols, nao, pf)
        elif nv == 4:
            for q0 in range(0, nao, _R4):
                _T4(b, boff + q0 * nao, nao, min(_R4, nao - q0), f, fo, ldf, x, xo + q0 * ldx, ldx, ncols, nao, pf)
        elif nv == 3:
            for q0 in range(0, nao, _R3):
                _T3(b, boff + q0 * nao, nao, min(_R3, nao - q0), f, fo, ldf, x, xo + q0 * ldx, ldx, ncols, nao, pf)
        elif nv == 2:
            for q0 in range(0, nao, _R2):
                _T2(b, boff + q0 * nao, nao, min(_R2, nao - q0), f, fo, ldf, x, xo + q0 * ldx, ldx, ncols, nao, pf)
        else:
            for q0 in range(0, nao, _R1):
                _T1(b, boff + q0 * nao, nao, min(_R1, nao - q0), f, fo, ldf, x, xo + q0 * ldx, ldx, ncols, nao, pf)


@njit(cache=True)
def fused_block(b, nblk, nao, f, ldf, ranks, xoffs, gdm, gsign, x, rho, vj, do_j):
    """Half-transform every factor group of one aux block; fitted densities; J on the lower triangle.

    Parameters
    ----------
    b : (nblk*nao*nao,) float64
        The aux block ``B[L, q, p]``, flattened (C order), symmetric in ``q, p``.
    nblk, nao : int
    f : (ngroups*nao*ldf,) float64
        Group ``g``'s factors ``F_g[p, i]`` at ``f[g*nao*ldf + p*ldf + i]``, columns ``r_g .. ldf``
        zero; ``ldf`` a multiple of 8.
    ranks, xoffs, gdm : (ngroups,) int64
        Rank ``r_g``, offset of ``X_g`` in ``x`` and density index of each group.
    gsign : (ngroups,) float64
        +1 or -1.
    x : float64, length >= sum_g nao*nblk*r_g
        Output: ``X_g[q, L, i]`` at ``x[xoffs[g] + q*nblk*r_g + L*r_g + i]``.
    rho : (ngroups, nblk) float64
        Output: ``sum_qi X_g[q,L,i] F_g[q,i]``.
    vj : (n_dm, nao*nao) float64
        With ``do_j``: ``J_n += sum_L rho_n[L] B_L`` with ``rho_n[L] = sum_{g of n} sign_g rho[g, L]``,
        added to the lower triangle (``p <= q`` of ``J_n[q, p]``) only; the caller symmetrises.
    do_j : bool
    """
    ngroups = ranks.shape[0]
    n_dm = vj.shape[0]
    nn = nao * nao
    rho_dm = np.zeros(max(n_dm, 1))
    for L in range(nblk):
        for g in range(ngroups):
            r = ranks[g]
            _half_transform_one(b, nblk, nao, L, f, g * nao * ldf, ldf, r, x, xoffs[g], PREFETCH_ROWS * nao)
            rho[g, L] = _fitted_density(x, xoffs[g] + L * r, nblk * r, f, g * nao * ldf, ldf, nao, r)
        if do_j:  # while B_L is still in cache
            rho_dm[:] = 0.0
            for g in range(ngroups):
                rho_dm[gdm[g]] += gsign[g] * rho[g, L]
            for d in range(n_dm):
                _add_lower(vj[d], b[L * nn:(L + 1) * nn], rho_dm[d], nao)


@njit(cache=True, fastmath=True)
def _fitted_density(x, xoff, ldx, f, foff, ldf, nao, r):
    """``sum_{q < nao, i < r} x[xoff + q*ldx + i] * f[foff + q*ldf + i]`` (reassociated: vectorised)."""
    s = 0.0
    for q in range(nao):
        xq = x[xoff + q * ldx:xoff + q * ldx + r]
        fq = f[foff + q * ldf:foff + q * ldf + r]
        for i in range(r):
            s += xq[i] * fq[i]
    return s


@njit(cache=True, fastmath=True)
def _add_lower(v, b, alpha, nao):
    """``v[q*nao + p] += alpha * b[q*nao + p]`` for ``p <= q`` (lower triangle of a flattened matrix)."""
    for q in range(nao):
        vq = v[q * nao:q * nao + q + 1]
        bq = b[q * nao:q * nao + q + 1]
        for p in range(q + 1):
            vq[p] += alpha * bq[p]
