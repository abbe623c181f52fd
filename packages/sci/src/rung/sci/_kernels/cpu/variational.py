"""The Hamiltonian in a variational space: its strict upper triangle built through alpha-string groups
(any FCI size), grown incrementally (:func:`merge_rows`), and the Davidson sigma vector
(:func:`symmetric_matvec`). The table-driven build for small FCI spaces is :func:`.tables.upper_rows_tables`.
"""

import numpy as np
from numba import njit, prange

from .bits import string_degree
from .elements import coulomb_exchange, diagonal_jk, matrix_element


@njit(cache=True, parallel=True)
def string_connections(strings):
    """Pairs of unique strings (n, nw) one or two excitations apart, as CSR (ptr, idx, degree).

    O(n^2) popcounts over the *unique* strings of one spin, which are few compared with determinants.
    """
    n = strings.shape[0]
    cnt = np.zeros(n + 1, np.int64)
    for i in prange(n):
        c = 0
        for j in range(n):
            if j != i:
                d = string_degree(strings[i], strings[j])
                if d <= 2:
                    c += 1
        cnt[i + 1] = c
    ptr = np.cumsum(cnt)
    idx = np.empty(ptr[-1], np.int64)
    deg = np.empty(ptr[-1], np.int8)
    for i in prange(n):
        c = ptr[i]
        for j in range(n):
            if j != i:
                d = string_degree(strings[i], strings[j])
                if d <= 2:
                    idx[c] = j
                    deg[c] = d
                    c += 1
    return ptr, idx, deg


@njit(cache=True)
def _partner(i, j, is_new):
    """Whether the pair (I, J) (J in the space, or -1) belongs to row I: J > I for a full build; for the
    rows of new determinants in an incremental build (``is_new`` non-empty), also every old J < I."""
    if j > i:
        return True
    return is_new.shape[0] > 0 and j >= 0 and is_new[j] == 0


@njit(cache=True)
def _row(i, dets, ia, ib, grp_ptr, grp_det, grp_ib, ca_ptr, ca_idx, ca_deg, h1, eri, cols, vals, fill, occ1, occ2,
         is_new):
    """Connections J > I of determinant I (upper triangle); when ``fill`` also their elements. With a
    non-empty ``is_new`` (n,) uint8 (I new): also the old J < I (see :func:`_partner`)."""
    n = 0
    a = ia[i]
    sb = dets[i, 1]
    # same alpha string: beta one or two excitations apart
    for g in range(grp_ptr[a], grp_ptr[a + 1]):
        j = grp_det[g]
        if _partner(i, j, is_new):
            d = string_degree(sb, dets[j, 1])
            if d <= 2:
                if fill:
                    cols[n] = j
                    vals[n] = matrix_element(dets[j], dets[i], h1, eri, occ1, occ2)
                n += 1
    for c in range(ca_ptr[a], ca_ptr[a + 1]):
        a2 = ca_idx[c]
        if ca_deg[c] == 1:
            for g in range(grp_ptr[a2], grp_ptr[a2 + 1]):
                j = grp_det[g]
                if _partner(i, j, is_new):
                    if string_degree(sb, dets[j, 1]) <= 1:
                        if fill:
                            cols[n] = j
                            vals[n] = matrix_element(dets[j], dets[i], h1, eri, occ1, occ2)
                        n += 1
        else:  # alpha double: the beta string must be the same, found by bisection in the group
            lo = grp_ptr[a2]
            hi = grp_ptr[a2 + 1]
            target = ib[i]
            while lo < hi:
                mid = (lo + hi) >> 1
                if grp_ib[mid] < target:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < grp_ptr[a2 + 1] and grp_ib[lo] == target:
                j = grp_det[lo]
                if _partner(i, j, is_new):
                    if fill:
                        cols[n] = j
                        vals[n] = matrix_element(dets[j], dets[i], h1, eri, occ1, occ2)
                    n += 1
    return n


@njit(cache=True, parallel=True)
def upper_rows_groups(dets, ia, ib, grp_ptr, grp_det, grp_ib, ca_ptr, ca_idx, ca_deg, h1, eri, rows, is_new, sort):
    """Rows ``rows`` (nr,) int64 of the strict upper triangle of H in the space ``dets`` (n, 2, nw), found
    through alpha-string groups: CSR over ``rows`` (ptr, cols int32, vals float64 Hartree) and their
    diagonals (nr,). A full build passes every row and an empty ``is_new``; the incremental one the new
    determinants and ``is_new`` (n,) uint8, so a row also holds its old partners J < I (:func:`_partner`).
    ``sort``: columns ascending inside each row.

    ia, ib : (n,) int64, the determinant's unique alpha / beta string index. grp_* : determinants
    grouped by alpha string, sorted by beta index inside a group. ca_* : alpha-string connections.
    """
    nr = rows.shape[0]
    norb = h1.shape[0]
    cnt = np.zeros(nr + 1, np.int64)
    dc = np.empty(0, np.int64)
    dv = np.empty(0, np.float64)
    for r in prange(nr):
        occ1 = np.empty(norb, np.int64)
        occ2 = np.empty(norb, np.int64)
        cnt[r + 1] = _row(rows[r], dets, ia, ib, grp_ptr, grp_det, grp_ib, ca_ptr, ca_idx, ca_deg, h1, eri, dc, dv,
                          False, occ1, occ2, is_new)
    ptr = np.cumsum(cnt)
    cols = np.empty(ptr[-1], np.int32)
    vals = np.empty(ptr[-1], np.float64)
    diag = np.empty(nr, np.float64)
    jmat, kmat = coulomb_exchange(eri)
    for r in prange(nr):
        i = rows[r]
        occ1 = np.empty(norb, np.int64)
        occ2 = np.empty(norb, np.int64)
        c = np.empty(ptr[r + 1] - ptr[r], np.int64)
        v = np.empty(ptr[r + 1] - ptr[r], np.float64)
        _row(i, dets, ia, ib, grp_ptr, grp_det, grp_ib, ca_ptr, ca_idx, ca_deg, h1, eri, c, v, True, occ1, occ2,
             is_new)
        _store_row(c, v, ptr[r], cols, vals, sort)
        diag[r] = diagonal_jk(dets[i], h1, jmat, kmat, occ1, occ2)
    return ptr, cols, vals, diag


@njit(cache=True)
def _store_row(c, v, start, cols, vals, sort):
    """Copy one row's columns ``c`` and values ``v`` to ``cols``/``vals`` from ``start`` (sorted by column if ``sort``)."""
    if sort:
        order = np.argsort(c)
        for k in range(c.shape[0]):
            cols[start + k] = c[order[k]]
            vals[start + k] = v[order[k]]
    else:
        for k in range(c.shape[0]):
            cols[start + k] = c[k]
            vals[start + k] = v[k]


@njit(cache=True, parallel=True)
def merge_rows(n, old_ptr, old_cols, old_vals, pos, rows, new_ptr, new_cols, new_vals):
    """Off-diagonal CSR (n rows, each pair once) of a grown space: the old rows moved to ``pos`` (old index
    -> new index, increasing; columns renumbered through it) and the new rows ``rows`` (nr,) int64 as
    they are (CSR ``new_ptr``, ``new_cols``, ``new_vals`` over ``rows``). Every row is one contiguous
    copy, so rows run in parallel. Returns (ptr (n+1,) int64, cols int32, vals float64); columns inside a
    row are not sorted."""
    cnt = np.zeros(n + 1, np.int64)
    for r in prange(pos.shape[0]):
        cnt[pos[r] + 1] = old_ptr[r + 1] - old_ptr[r]
    for r in prange(rows.shape[0]):
        cnt[rows[r] + 1] = new_ptr[r + 1] - new_ptr[r]
    ptr = np.cumsum(cnt)
    cols = np.empty(ptr[-1], np.int32)
    vals = np.empty(ptr[-1], np.float64)
    for r in prange(pos.shape[0]):
        d = ptr[pos[r]] - old_ptr[r]
        for k in range(old_ptr[r], old_ptr[r + 1]):
            cols[k + d] = pos[old_cols[k]]
            vals[k + d] = old_vals[k]
    for r in prange(rows.shape[0]):
        d = ptr[rows[r]] - new_ptr[r]
        for k in range(new_ptr[r], new_ptr[r + 1]):
            cols[k + d] = new_cols[k]
            vals[k + d] = new_vals[k]
    return ptr, cols, vals


@njit(cache=True, parallel=True)
def symmetric_matvec(diag, ptr, cols, vals, xt, nparts):
    """``y = (D + U + U^T) x``: D = diag(``diag`` (n,) float64), U the CSR (``ptr`` (n+1,), ``cols``, ``vals``)
    off-diagonal part holding every pair once (e.g. the strict upper triangle); ``xt`` = x^T (k, n) float64
    C-contiguous; returns y (n, k) float64.

    One pass over the nonzeros per column does both U and U^T. The rows are cut into ``nparts`` runs
    of about equal nonzeros, one per thread; a run adds ``U_ij x_j`` to row i and ``U_ij x_i`` to row j
    (any row) of its own buffer, and the buffers are summed at the end (no atomics, no transposed copy).
    """
    k, n = xt.shape
    nnz = ptr[n]
    rb = np.empty(nparts + 1, np.int64)
    for p in range(nparts + 1):
        rb[p] = np.searchsorted(ptr[: n + 1], p * nnz // nparts)
    rb[0] = 0
    rb[nparts] = n
    buf = np.zeros((nparts, k, n))
    for part in prange(nparts):
        for c in range(k):
            b = buf[part, c]
            xc = xt[c]
            for i in range(rb[part], rb[part + 1]):
                xi = xc[i]
                s = 0.0
                for jj in range(ptr[i], ptr[i + 1]):
                    j = cols[jj]
                    v = vals[jj]
                    s += v * xc[j]
                    b[j] += v * xi
                b[i] += s
    y = np.empty((n, k))
    for i in prange(n):
        for c in range(k):
            s = diag[i] * xt[c, i]
            for part in range(nparts):
                s += buf[part, c, i]
            y[i, c] = s
    return y
