"""S^2 in a variational space (stored or applied on the fly) and the spin partners that complete a space
to eigenfunctions of S^2.
"""

import numpy as np
from numba import njit, prange

from .bits import U1, _cttz, flip, is_set, phase, popcount
from .keys import _search, rank


@njit(cache=True)
def _s2_row(i, dets, keys, binom_a, binom_b, nstr_b, sz, cols, vals, fill, sa, sb):
    """Row ``i`` of S^2 in the space of sorted ``keys``: the diagonal first, then the spin swaps that land
    in the space, ascending in the swapped beta-only orbital p, then the alpha-only q (the swap moves
    alpha q -> p and beta p -> q, with an extra minus sign: module docstring); written to ``cols``,
    ``vals`` when ``fill``; returns their number. ``sa``, ``sb`` (nw,) uint64 scratch strings."""
    da = dets[i, 0]
    db = dets[i, 1]
    nw = da.shape[0]
    nbo = 0  # beta-only orbitals
    for w in range(nw):
        nbo += popcount(db[w] & ~da[w])
    if fill:
        cols[0] = i
        vals[0] = nbo + sz * sz + sz
    n = 1
    for wp in range(nw):
        bo = db[wp] & ~da[wp]
        while bo != 0:
            p = 64 * wp + np.int64(_cttz(bo))
            bo &= bo - U1
            for wq in range(nw):
                ao = da[wq] & ~db[wq]
                while ao != 0:
                    q = 64 * wq + np.int64(_cttz(ao))
                    ao &= ao - U1
                    for w in range(nw):
                        sa[w] = da[w]
                        sb[w] = db[w]
                    flip(sa, q)
                    flip(sa, p)
                    flip(sb, p)
                    flip(sb, q)
                    j = _search(keys, rank(sa, binom_a) * nstr_b + rank(sb, binom_b))
                    if j >= 0:
                        if fill:
                            cols[n] = j
                            vals[n] = -phase(da, q, p) * phase(db, p, q)
                        n += 1
    return n


_S2_BLOCK = 256  # rows per parallel block of the S^2 kernels (the block shares its scratch)


@njit(cache=True, parallel=True)
def s2_matrix(dets, keys, binom_a, binom_b, nstr_b, norb, sz):
    """S^2 in the space of sorted ``keys`` as CSR (ptr, cols, vals) (both triangles, diagonal included).

    S^2 = S-S+ + Sz^2 + Sz; the diagonal of S-S+ counts beta-only orbitals, and its off-diagonal part
    swaps the spins of one alpha-only and one beta-only orbital (:func:`_s2_row`). Partners outside the
    space are dropped.
    """
    n = dets.shape[0]
    nw = dets.shape[2]
    nblk = (n + _S2_BLOCK - 1) // _S2_BLOCK
    cnt = np.zeros(n + 1, np.int64)
    dc = np.empty(0, np.int64)
    dv = np.empty(0, np.float64)
    for blk in prange(nblk):
        sa = np.empty(nw, np.uint64)
        sb = np.empty(nw, np.uint64)
        for i in range(blk * _S2_BLOCK, min(n, (blk + 1) * _S2_BLOCK)):
            cnt[i + 1] = _s2_row(i, dets, keys, binom_a, binom_b, nstr_b, sz, dc, dv, False, sa, sb)
    ptr = np.cumsum(cnt)
    cols = np.empty(ptr[-1], np.int64)
    vals = np.empty(ptr[-1], np.float64)
    for blk in prange(nblk):
        sa = np.empty(nw, np.uint64)
        sb = np.empty(nw, np.uint64)
        for i in range(blk * _S2_BLOCK, min(n, (blk + 1) * _S2_BLOCK)):
            _s2_row(i, dets, keys, binom_a, binom_b, nstr_b, sz, cols[ptr[i]:ptr[i + 1]], vals[ptr[i]:ptr[i + 1]],
                    True, sa, sb)
    return ptr, cols, vals


@njit(cache=True, parallel=True)
def s2_matvec(dets, keys, binom_a, binom_b, nstr_b, norb, sz, x):
    """S^2 x (n, k) float64 in the space of sorted ``keys`` without storing S^2 (the rows of
    :func:`_s2_row` made on the fly, in blocks of rows that share their scratch: no allocation per row
    or partner); x (n, k) float64 C-contiguous."""
    n, k = x.shape
    nw = dets.shape[2]
    y = np.empty((n, k))
    for blk in prange((n + _S2_BLOCK - 1) // _S2_BLOCK):
        sa = np.empty(nw, np.uint64)
        sb = np.empty(nw, np.uint64)
        cols = np.empty(1 + norb * norb, np.int64)
        vals = np.empty(1 + norb * norb, np.float64)
        for i in range(blk * _S2_BLOCK, min(n, (blk + 1) * _S2_BLOCK)):
            m = _s2_row(i, dets, keys, binom_a, binom_b, nstr_b, sz, cols, vals, True, sa, sb)
            for r in range(k):
                acc = 0.0
                for e in range(m):
                    acc += vals[e] * x[cols[e], r]
                y[i, r] = acc
    return y


@njit(cache=True, parallel=True)
def spin_partners(dets, norb):
    """All determinants with the same spatial occupation and Ms as each of ``dets`` (n, 2, nw) uint64,
    inputs included: input i's C(open, n_alpha_open) partners at consecutive rows, in input order."""
    n = dets.shape[0]
    nw = dets.shape[2]
    off = np.zeros(n + 1, np.int64)
    for i in prange(n):
        no = 0
        na = 0
        for p in range(norb):
            x = is_set(dets[i, 0], p)
            if x != is_set(dets[i, 1], p):
                no += 1
                if x:
                    na += 1
        c = 1
        for k in range(na):
            c = c * (no - k) // (k + 1)
        off[i + 1] = c
    for i in range(n):
        off[i + 1] += off[i]
    out = np.empty((off[-1], 2, nw), np.uint64)
    for i in prange(n):
        opens = np.empty(norb, np.int64)
        no = 0
        na = 0
        for p in range(norb):
            x = is_set(dets[i, 0], p)
            y = is_set(dets[i, 1], p)
            if x != y:
                opens[no] = p
                no += 1
                if x:
                    na += 1
        closed_a = dets[i, 0].copy()
        for k in range(no):
            if is_set(closed_a, opens[k]):
                flip(closed_a, opens[k])
        m = off[i]
        # enumerate the subsets of the open shells with na members (Gosper's hack on <= 64 open shells)
        if na == 0:
            out[m, 0] = dets[i, 0]
            out[m, 1] = dets[i, 1]
            continue
        sub = (U1 << np.uint64(na)) - U1
        limit = U1 << np.uint64(no)
        while sub < limit:
            a = closed_a.copy()
            b = closed_a.copy()
            for k in range(no):
                if (sub >> np.uint64(k)) & U1:
                    flip(a, opens[k])
                else:
                    flip(b, opens[k])
            out[m, 0] = a
            out[m, 1] = b
            m += 1
            c = sub & (~sub + U1)
            r = sub + c
            sub = (((r ^ sub) >> np.uint64(2)) // c) | r
    return out
