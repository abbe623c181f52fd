"""numba kernels on bit-string determinants (CPU).

A determinant is a ``(2, nw)`` uint64 array: row 0 the alpha string, row 1 the beta string; bit ``i``
of word ``k`` is spatial orbital ``64 k + i``. The fermionic order is all alpha creation operators
before the beta ones, each in ascending orbital order (PySCF FCI vectors and Quantum Package use the
same relative signs). A string is ranked in the combinatorial number system,
``rank = sum_k C(o_k, k + 1)`` over its occupied orbitals ``o_0 < o_1 < ...``, and a determinant's
``key = rank_alpha * n_beta_strings + rank_beta`` is a unique int64 used for sorting and lookups.

Slater-Condon rules (integrals in chemists' notation ``eri[p, q, r, s] = (pq|rs)``, Hartree):

* diagonal: ``sum_i h_ii + 1/2 sum_ij [(ii|jj) - delta_{s_i s_j} (ij|ji)]`` over occupied spin orbitals;
* single ``h -> p`` (spin s): ``sign [h_hp + sum_{j in occ_s} ((hp|jj) - (hj|jp)) + sum_{j in occ_s'} (hp|jj)]``;
* same-spin double ``h1 h2 -> p1 p2``: ``sign [(h1 p1|h2 p2) - (h1 p2|h2 p1)]``;
* opposite-spin double: ``sign_a sign_b (h p|h' p')``.

The sign of ``a+_p a_h`` on a string is ``(-1)^n`` with ``n`` the occupied orbitals strictly between
``h`` and ``p``; a double is two singles applied in turn (Scemama and Giner, arXiv:1311.6244).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import intrinsic

U1 = np.uint64(1)


@intrinsic
def _ctpop(typingctx, x):
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _cttz(typingctx, x):
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        import llvmlite.ir as ir

        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@njit(cache=True)
def popcount(x):
    return np.int64(_ctpop(np.uint64(x)))


# ------------------------------------------------------------------------------------------- strings
@njit(cache=True)
def occupied(s, out):
    """Write the occupied orbitals of string ``s`` ascending into ``out``; return how many."""
    n = 0
    for k in range(s.shape[0]):
        w = s[k]
        while w != 0:
            t = np.int64(_cttz(w))
            out[n] = 64 * k + t
            n += 1
            w &= w - U1
    return n


@njit(cache=True)
def virtual(s, norb, out):
    """Write the empty orbitals (< norb) of string ``s`` ascending into ``out``; return how many."""
    n = 0
    for p in range(norb):
        if (s[p >> 6] >> np.uint64(p & 63)) & U1 == 0:
            out[n] = p
            n += 1
    return n


@njit(cache=True)
def is_set(s, p):
    return (s[p >> 6] >> np.uint64(p & 63)) & U1 != 0


@njit(cache=True)
def flip(s, p):
    s[p >> 6] ^= U1 << np.uint64(p & 63)


@njit(cache=True)
def string_degree(s, t):
    """Excitation degree between two strings of equal electron count."""
    n = 0
    for k in range(s.shape[0]):
        n += popcount(s[k] ^ t[k])
    return n >> 1


@njit(cache=True)
def excitation_degree(d1, d2):
    """(alpha degree, beta degree) between two determinants ((2, nw) uint64 each)."""
    return string_degree(d1[0], d2[0]), string_degree(d1[1], d2[1])


@njit(cache=True)
def count_between(s, a, b):
    """Occupied orbitals of ``s`` strictly between ``min(a, b)`` and ``max(a, b)``."""
    lo = min(a, b)
    hi = max(a, b)
    n = 0
    for k in range(s.shape[0]):
        w = s[k]
        first = 64 * k
        if first + 63 <= lo or first >= hi:
            continue
        # mask bits (lo, hi) within this word
        m = ~np.uint64(0)
        if lo >= first:
            sh = lo - first + 1
            m = np.uint64(0) if sh >= 64 else (m << np.uint64(sh))
        if hi < first + 64:
            sh = hi - first
            m &= (U1 << np.uint64(sh)) - U1
        n += popcount(w & m)
    return n


@njit(cache=True)
def phase(s, h, p):
    """Sign (+1/-1) of ``a+_p a_h`` acting on string ``s`` (``h`` occupied, ``p`` empty or ``p == h``)."""
    return -1.0 if count_between(s, h, p) & 1 else 1.0


@njit(cache=True)
def single_holes_particles(s, t):
    """Hole (in s, not t) and particle (in t, not s) of two strings one excitation apart."""
    h = -1
    p = -1
    for k in range(s.shape[0]):
        x = s[k] & ~t[k]
        y = t[k] & ~s[k]
        if x != 0:
            h = 64 * k + np.int64(_cttz(x))
        if y != 0:
            p = 64 * k + np.int64(_cttz(y))
    return h, p


@njit(cache=True)
def double_holes_particles(s, t):
    """(h1, h2, p1, p2), ascending pairs, of two strings two excitations apart."""
    hs = np.empty(2, np.int64)
    ps = np.empty(2, np.int64)
    nh = 0
    npp = 0
    for k in range(s.shape[0]):
        x = s[k] & ~t[k]
        y = t[k] & ~s[k]
        while x != 0:
            hs[nh] = 64 * k + np.int64(_cttz(x))
            nh += 1
            x &= x - U1
        while y != 0:
            ps[npp] = 64 * k + np.int64(_cttz(y))
            npp += 1
            y &= y - U1
    return hs[0], hs[1], ps[0], ps[1]


# ------------------------------------------------------------------------------------ matrix elements
@njit(cache=True)
def coulomb_exchange(eri):
    """J[i, j] = (ii|jj) and K[i, j] = (ij|ji), (norb, norb) float64 Hartree: the diagonal's only integrals."""
    n = eri.shape[0]
    j = np.empty((n, n))
    k = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            j[a, b] = eri[a, a, b, b]
            k[a, b] = eri[a, b, b, a]
    return j, k


@njit(cache=True)
def diagonal_jk(d, h1, jmat, kmat, occa, occb):
    """<D|H|D> without the core energy from the J and K tables (cache-friendly)."""
    na = occupied(d[0], occa)
    nb = occupied(d[1], occb)
    e = 0.0
    for x in range(na):
        i = occa[x]
        e += h1[i, i]
        for y in range(x + 1, na):
            j = occa[y]
            e += jmat[i, j] - kmat[i, j]
        for y in range(nb):
            e += jmat[i, occb[y]]
    for x in range(nb):
        i = occb[x]
        e += h1[i, i]
        for y in range(x + 1, nb):
            j = occb[y]
            e += jmat[i, j] - kmat[i, j]
    return e


@njit(cache=True)
def diagonal(d, h1, eri, occa, occb):
    """<D|H|D> without the core energy. occa, occb: scratch int64 arrays of length >= norb."""
    jmat, kmat = coulomb_exchange(eri)
    return diagonal_jk(d, h1, jmat, kmat, occa, occb)


@njit(cache=True)
def single_element(s_same, s_other, h, p, h1, eri, occ):
    """Element of a single excitation h -> p in string ``s_same`` (sign included); ``s_other`` the other spin."""
    v = h1[h, p]
    n = occupied(s_same, occ)
    for x in range(n):
        j = occ[x]
        v += eri[h, p, j, j] - eri[h, j, j, p]
    n = occupied(s_other, occ)
    for x in range(n):
        j = occ[x]
        v += eri[h, p, j, j]
    return phase(s_same, h, p) * v


@njit(cache=True)
def same_spin_double_element(s, h1_, h2_, p1, p2, eri):
    """Element of the same-spin double excitation (h1 h2 -> p1 p2) of string ``s``, sign included."""
    t = s.copy()
    sg = phase(t, h1_, p1)
    flip(t, h1_)
    flip(t, p1)
    sg *= phase(t, h2_, p2)
    return sg * (eri[h1_, p1, h2_, p2] - eri[h1_, p2, h2_, p1])


@njit(cache=True)
def matrix_element(d1, d2, h1, eri, occ1, occ2):
    """<d1|H|d2> (Hartree, core energy excluded) for two determinants; occ1, occ2: int64 scratch (norb,)."""
    da, db = excitation_degree(d1, d2)
    if da + db > 2:
        return 0.0
    if da + db == 0:
        return diagonal(d1, h1, eri, occ1, occ2)
    if da == 1 and db == 0:
        h, p = single_holes_particles(d2[0], d1[0])
        return single_element(d2[0], d2[1], h, p, h1, eri, occ1)
    if db == 1 and da == 0:
        h, p = single_holes_particles(d2[1], d1[1])
        return single_element(d2[1], d2[0], h, p, h1, eri, occ1)
    if da == 2:
        a, b, c, e = double_holes_particles(d2[0], d1[0])
        return same_spin_double_element(d2[0], a, b, c, e, eri)
    if db == 2:
        a, b, c, e = double_holes_particles(d2[1], d1[1])
        return same_spin_double_element(d2[1], a, b, c, e, eri)
    ha, pa = single_holes_particles(d2[0], d1[0])
    hb, pb = single_holes_particles(d2[1], d1[1])
    return phase(d2[0], ha, pa) * phase(d2[1], hb, pb) * eri[ha, pa, hb, pb]


# ----------------------------------------------------------------------------------------- ranking
def binomial_table(norb: int, nmax: int) -> np.ndarray:
    """``C[n, k]`` for 0 <= n <= norb, 0 <= k <= nmax, int64 (raises if a value overflows int64)."""
    from math import comb

    if comb(norb, min(nmax, norb // 2 if nmax > norb // 2 else nmax)) >= 2**62:
        raise OverflowError(f"C({norb}, {nmax}) does not fit a 64-bit integer")
    c = np.zeros((norb + 1, nmax + 1), np.int64)
    for n in range(norb + 1):
        for k in range(min(n, nmax) + 1):
            c[n, k] = comb(n, k)
    return c


@njit(cache=True)
def rank(s, binom):
    """Combinatorial rank of string ``s`` (int64)."""
    r = 0
    k = 0
    for w in range(s.shape[0]):
        x = s[w]
        while x != 0:
            o = 64 * w + np.int64(_cttz(x))
            k += 1
            r += binom[o, k]
            x &= x - U1
    return r


@njit(cache=True)
def unrank(r, ne, norb, binom, out):
    """Write the string of rank ``r`` with ``ne`` electrons into ``out`` ((nw,) uint64, zeroed here)."""
    for w in range(out.shape[0]):
        out[w] = 0
    o = norb - 1
    for k in range(ne, 0, -1):
        while binom[o, k] > r:
            o -= 1
        r -= binom[o, k]
        flip(out, o)
        o -= 1


@njit(cache=True, parallel=True)
def det_keys(dets, binom_a, binom_b, nstr_b):
    """Keys (n,) int64 of determinants (n, 2, nw)."""
    n = dets.shape[0]
    out = np.empty(n, np.int64)
    for i in prange(n):
        out[i] = rank(dets[i, 0], binom_a) * nstr_b + rank(dets[i, 1], binom_b)
    return out


@njit(cache=True, parallel=True)
def dets_from_keys(keys, na, nb, norb, nw, binom_a, binom_b, nstr_b):
    n = keys.shape[0]
    out = np.empty((n, 2, nw), np.uint64)
    for i in prange(n):
        unrank(keys[i] // nstr_b, na, norb, binom_a, out[i, 0])
        unrank(keys[i] % nstr_b, nb, norb, binom_b, out[i, 1])
    return out


@njit(cache=True)
def _search(sorted_keys, key):
    """Index of ``key`` in ``sorted_keys`` or -1."""
    lo = 0
    hi = sorted_keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < sorted_keys.shape[0] and sorted_keys[lo] == key:
        return lo
    return -1


@njit(cache=True, parallel=True)
def diagonals(dets, h1, eri):
    """<D|H|D> for every determinant (n, 2, nw); (n,) float64 Hartree, core energy excluded."""
    n = dets.shape[0]
    norb = h1.shape[0]
    jmat, kmat = coulomb_exchange(eri)
    out = np.empty(n, np.float64)
    for i in prange(n):
        occa = np.empty(norb, np.int64)
        occb = np.empty(norb, np.int64)
        out[i] = diagonal_jk(dets[i], h1, jmat, kmat, occa, occb)
    return out


# ------------------------------------------------------------------- Hamiltonian in a variational space
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


# ------------------------------------------------------------------------------------------------ S^2
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


def key_bits(keys, size):
    """Bit set (ceil(size / 64),) uint64 of the int64 ``keys`` (each < ``size``): bit k & 63 of word k >> 6
    (NumPy: a few vector operations, no numba function to load)."""
    keys = np.asarray(keys, np.int64)
    bits = np.zeros((size + 63) >> 6, np.uint64)
    np.bitwise_or.at(bits, keys >> 6, np.left_shift(np.uint64(1), (keys & 63).astype(np.uint64)))
    return bits


def bits_prefix(bits):
    """(nwords + 1,) int64: set bits of ``bits`` before each word, so that the position of a key among the
    sorted keys of the set is ``prefix[k >> 6] + popcount(bits[k >> 6] & (2^(k & 63) - 1))``
    (:func:`bits_index`)."""
    out = np.zeros(bits.shape[0] + 1, np.int64)
    np.cumsum(np.bitwise_count(bits), out=out[1:])
    return out


@njit(cache=True)
def in_bits(bits, key):
    return (bits[key >> 6] >> np.uint64(key & 63)) & U1 != 0


@njit(cache=True)
def bits_index(bits, prefix, key):
    """Position of ``key`` (in the set) among the set's sorted keys (:func:`bits_prefix`)."""
    w = key >> 6
    return prefix[w] + np.int64(_ctpop(bits[w] & ((U1 << np.uint64(key & 63)) - U1)))


# -------------------------------------------------------------------- external space (selection, PT2)
HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True)
def hash_table(keys):
    """Open-addressing table (size a power of two >= 2 n, empty slots -1) of the int64 ``keys``."""
    n = keys.shape[0]
    bits = 1
    while (1 << bits) < 2 * n + 2:
        bits += 1
    table = np.full(1 << bits, -1, np.int64)
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    for k in keys:
        h = np.int64((np.uint64(k) * HASH_MULT) >> shift)
        while table[h] != -1:
            h = (h + 1) & mask
        table[h] = k
    return table


@njit(cache=True)
def table_shift(table):
    bits = 0
    while (1 << bits) < table.shape[0]:
        bits += 1
    return np.uint64(64 - bits)


@njit(cache=True)
def in_table(table, key, shift):
    mask = table.shape[0] - 1
    h = np.int64((np.uint64(key) * HASH_MULT) >> shift)
    while True:
        t = table[h]
        if t == key:
            return True
        if t == -1:
            return False
        h = (h + 1) & mask


@njit(cache=True)
def _emit(key, var_table, var_mask, shift):
    """True for a determinant outside the space: ``var_mask`` (indexed by key) when given, else the hash table."""
    if var_mask.shape[0] > 0:
        return var_mask[key] == 0
    return not in_table(var_table, key, shift)


@njit(cache=True)
def _excitations(det, norb, h1, eri, var_keys, var_mask, binom_a, binom_b, nstr_b, fill, out_keys, out_vals,
                 occa, occb, vira, virb, scratch):
    """Singles and doubles of ``det`` outside the variational space.

    Returns how many; with ``fill``, writes their keys and <alpha|H|det> into out_keys / out_vals.
    """
    shift = table_shift(var_keys)
    na = occupied(det[0], occa)
    nb = occupied(det[1], occb)
    nva = virtual(det[0], norb, vira)
    nvb = virtual(det[1], norb, virb)
    ra = rank(det[0], binom_a)
    rb = rank(det[1], binom_b)
    ta = det[0].copy()
    tb = det[1].copy()
    n = 0
    for spin in range(2):
        t = ta if spin == 0 else tb
        occ = occa if spin == 0 else occb
        vir = vira if spin == 0 else virb
        ne = na if spin == 0 else nb
        nv = nva if spin == 0 else nvb
        binom = binom_a if spin == 0 else binom_b
        # singles
        for x in range(ne):
            h = occ[x]
            for y in range(nv):
                p = vir[y]
                flip(t, h)
                flip(t, p)
                r = rank(t, binom)
                key = r * nstr_b + rb if spin == 0 else ra * nstr_b + r
                flip(t, h)
                flip(t, p)
                if _emit(key, var_keys, var_mask, shift):
                    if fill:
                        out_keys[n] = key
                        out_vals[n] = single_element(det[spin], det[1 - spin], h, p, h1, eri, scratch)
                    n += 1
        # same-spin doubles
        for x1 in range(ne):
            for x2 in range(x1 + 1, ne):
                for y1 in range(nv):
                    for y2 in range(y1 + 1, nv):
                        h_1 = occ[x1]
                        h_2 = occ[x2]
                        p1 = vir[y1]
                        p2 = vir[y2]
                        flip(t, h_1)
                        flip(t, h_2)
                        flip(t, p1)
                        flip(t, p2)
                        r = rank(t, binom)
                        flip(t, h_1)
                        flip(t, h_2)
                        flip(t, p1)
                        flip(t, p2)
                        key = r * nstr_b + rb if spin == 0 else ra * nstr_b + r
                        if _emit(key, var_keys, var_mask, shift):
                            if fill:
                                out_keys[n] = key
                                out_vals[n] = same_spin_double_element(det[spin], h_1, h_2, p1, p2, eri)
                            n += 1
    # opposite-spin doubles: the beta single excitations (rank, sign) are tabulated once per generator
    nsb = nb * nvb
    rb1 = np.empty(nsb, np.int64)
    sgb = np.empty(nsb, np.float64)
    hb1 = np.empty(nsb, np.int64)
    pb1 = np.empty(nsb, np.int64)
    m = 0
    for u in range(nb):
        hb = occb[u]
        for v in range(nvb):
            pb = virb[v]
            flip(tb, hb)
            flip(tb, pb)
            rb1[m] = rank(tb, binom_b)
            flip(tb, hb)
            flip(tb, pb)
            sgb[m] = phase(det[1], hb, pb)
            hb1[m] = hb
            pb1[m] = pb
            m += 1
    for x in range(na):
        h = occa[x]
        for y in range(nva):
            p = vira[y]
            flip(ta, h)
            flip(ta, p)
            base = rank(ta, binom_a) * nstr_b
            flip(ta, h)
            flip(ta, p)
            sa = phase(det[0], h, p)
            for m in range(nsb):
                key = base + rb1[m]
                if _emit(key, var_keys, var_mask, shift):
                    if fill:
                        out_keys[n] = key
                        out_vals[n] = sa * sgb[m] * eri[h, p, hb1[m], pb1[m]]
                    n += 1
    return n


@njit(cache=True, parallel=True)
def external_contributions(dets, gens, h1, eri, var_keys, var_mask, binom_a, binom_b, nstr_b, nexc):
    """All (key, generator, <alpha|H|D_gen>) for alpha outside the space, from generators ``gens``.

    dets : (n, 2, nw) uint64, the variational space, in the order of ``var_keys`` (sorted).
    gens : (ng,) int64 indices into ``dets``; nexc : singles + doubles of one determinant.
    var_keys : the space's keys as a :func:`hash_table`;
    var_mask : (fci_size,) uint8, 1 for keys in the space (small FCI spaces), or empty.
    Returns keys (m,) int64, gen (m,) int32 (position in ``gens``), vals (m,) float64 Hartree.
    """
    ng = gens.shape[0]
    norb = h1.shape[0]
    keys = np.empty(ng * nexc, np.int64)
    vals = np.empty(ng * nexc, np.float64)
    cnt = np.zeros(ng + 1, np.int64)
    for g in prange(ng):
        occa = np.empty(norb, np.int64)
        occb = np.empty(norb, np.int64)
        vira = np.empty(norb, np.int64)
        virb = np.empty(norb, np.int64)
        scratch = np.empty(norb, np.int64)
        cnt[g + 1] = _excitations(dets[gens[g]], norb, h1, eri, var_keys, var_mask, binom_a, binom_b, nstr_b, True,
                                  keys[g * nexc:(g + 1) * nexc], vals[g * nexc:(g + 1) * nexc],
                                  occa, occb, vira, virb, scratch)
    ptr = np.cumsum(cnt)
    ok = np.empty(ptr[-1], np.int64)
    ov = np.empty(ptr[-1], np.float64)
    og = np.empty(ptr[-1], np.int32)
    for g in prange(ng):
        m = ptr[g + 1] - ptr[g]
        for k in range(m):
            ok[ptr[g] + k] = keys[g * nexc + k]
            ov[ptr[g] + k] = vals[g * nexc + k]
            og[ptr[g] + k] = g
    return ok, og, ov


@njit(cache=True, inline="always")
def _acc(part, key, x, stoch, w, q, ad, as_, t, touched, mark):
    """Add the contribution ``x = c_I <alpha|H|I>`` of generator I to the sums of entry ``key`` in row ``part``
    of the key-indexed accumulators (nparts, fci_size): A_D for a deterministic generator, else A_S
    (weight ``w`` = W_I) and T (``q`` = 1 / p_I); see :func:`reduce_sorted`. With a non-empty ``touched``
    (nparts, ceil(fci_size / 64)) uint64 the key's bit in row ``part`` is set, so that
    :func:`collect_dense` visits the entries written instead of sweeping the FCI-sized rows (worth it
    for passes with few pairs; (nparts, 0): no marking). ``mark`` = ``touched.shape[1] > 0``, taken once
    by the caller (a loop-invariant flag)."""
    if mark:
        touched[part, key >> 6] |= U1 << np.uint64(key & 63)
    if stoch:
        as_[part, key] += w * x
        t[part, key] += w * x * x * q
    else:
        ad[part, key] += x


@njit(cache=True, parallel=True)
def external_dense(dets, gens, h1, eri, var_mask, binom_a, binom_b, nstr_b, nexc, gen_coef, gen_stoch, gen_w,
                   gen_q, nparts, fci_size):
    """Generate and sum the external contributions straight into key-indexed arrays (small FCI spaces).

    Each of ``nparts`` parallel parts owns a row of the accumulators (no write races); the rows are
    summed by the caller (the external determinants met are their nonzero entries). Returns ad, as_, t
    (nparts, fci_size) float64, the bit sets of the entries written (nparts, ceil(fci_size / 64)) uint64
    (see :func:`_acc`) and the number of (alpha, I) pairs per part.
    """
    ng = gens.shape[0]
    norb = h1.shape[0]
    ad = np.zeros((nparts, fci_size))
    as_ = np.zeros((nparts, fci_size))
    t = np.zeros((nparts, fci_size))
    touched = np.zeros((nparts, (fci_size + 63) >> 6), np.uint64)
    mark = True
    counts = np.zeros(nparts, np.int64)
    empty = np.empty(1, np.int64)
    for part in prange(nparts):
        keys = np.empty(nexc, np.int64)
        vals = np.empty(nexc, np.float64)
        occa = np.empty(norb, np.int64)
        occb = np.empty(norb, np.int64)
        vira = np.empty(norb, np.int64)
        virb = np.empty(norb, np.int64)
        scratch = np.empty(norb, np.int64)
        for g in range(part * ng // nparts, (part + 1) * ng // nparts):
            m = _excitations(dets[gens[g]], norb, h1, eri, empty, var_mask, binom_a, binom_b, nstr_b, True,
                             keys, vals, occa, occb, vira, virb, scratch)
            c = gen_coef[g]
            counts[part] += m
            for k in range(m):
                _acc(part, keys[k], c * vals[k], gen_stoch[g], gen_w[g], gen_q[g], ad, as_, t, touched, mark)
    return ad, as_, t, touched, counts


@njit(cache=True)
def reduce_packed(packed, shift, gen, vals, gen_coef, gen_stoch, gen_w, gen_q):
    """Like :func:`reduce_sorted` for sorted ``packed = key << shift | position`` (uint64)."""
    m = packed.shape[0]
    mask = (np.uint64(1) << np.uint64(shift)) - np.uint64(1)
    sh = np.uint64(shift)
    u = 0
    for k in range(m):
        if k == 0 or (packed[k] >> sh) != (packed[k - 1] >> sh):
            u += 1
    ukeys = np.empty(u, np.int64)
    ad = np.zeros(u, np.float64)
    as_ = np.zeros(u, np.float64)
    t = np.zeros(u, np.float64)
    j = -1
    for k in range(m):
        key = np.int64(packed[k] >> sh)
        if k == 0 or key != ukeys[j]:
            j += 1
            ukeys[j] = key
        pos = np.int64(packed[k] & mask)
        g = gen[pos]
        x = gen_coef[g] * vals[pos]
        if gen_stoch[g]:  # (written out: a helper call per entry made this loop 2.4x slower, even inlined)
            as_[j] += gen_w[g] * x
            t[j] += gen_w[g] * x * x * gen_q[g]
        else:
            ad[j] += x
    return ukeys, ad, as_, t


@njit(cache=True)
def pack(keys, shift):
    out = np.empty(keys.shape[0], np.uint64)
    for k in range(keys.shape[0]):
        out[k] = (np.uint64(keys[k]) << np.uint64(shift)) | np.uint64(k)
    return out


@njit(cache=True)
def merge_sorted_sums(k1, a1, b1, c1, k2, a2, b2, c2):
    """Merge two key-sorted partial sums (keys unique within each), adding where keys coincide."""
    n1 = k1.shape[0]
    n2 = k2.shape[0]
    out_k = np.empty(n1 + n2, np.int64)
    oa = np.empty(n1 + n2)
    ob = np.empty(n1 + n2)
    oc = np.empty(n1 + n2)
    i = 0
    j = 0
    m = 0
    while i < n1 or j < n2:
        if j >= n2 or (i < n1 and k1[i] < k2[j]):
            out_k[m] = k1[i]
            oa[m] = a1[i]
            ob[m] = b1[i]
            oc[m] = c1[i]
            i += 1
        elif i >= n1 or k2[j] < k1[i]:
            out_k[m] = k2[j]
            oa[m] = a2[j]
            ob[m] = b2[j]
            oc[m] = c2[j]
            j += 1
        else:
            out_k[m] = k1[i]
            oa[m] = a1[i] + a2[j]
            ob[m] = b1[i] + b2[j]
            oc[m] = c1[i] + c2[j]
            i += 1
            j += 1
        m += 1
    return out_k[:m], oa[:m], ob[:m], oc[:m]


@njit(cache=True)
def reduce_sorted(keys, gen, vals, gen_coef, gen_stoch, gen_w, gen_q):
    """Sum the sorted contributions per external determinant.

    Returns ukeys (u,), A_D (u,) = sum over deterministic generators c_I H_aI, A_S (u,) = sum over sampled
    generators W_I c_I H_aI, T (u,) = sum over sampled generators W_I (c_I H_aI)^2 / p_I.
    gen_q = 1 / p_I for sampled generators.
    """
    m = keys.shape[0]
    u = 0
    for k in range(m):
        if k == 0 or keys[k] != keys[k - 1]:
            u += 1
    ukeys = np.empty(u, np.int64)
    ad = np.zeros(u, np.float64)
    as_ = np.zeros(u, np.float64)
    t = np.zeros(u, np.float64)
    j = -1
    for k in range(m):
        if k == 0 or keys[k] != keys[k - 1]:
            j += 1
            ukeys[j] = keys[k]
        g = gen[k]
        x = gen_coef[g] * vals[k]
        if gen_stoch[g]:  # (written out, as in reduce_packed)
            as_[j] += gen_w[g] * x
            t[j] += gen_w[g] * x * x * gen_q[g]
        else:
            ad[j] += x
    return ukeys, ad, as_, t


# ------------------------------------------- external space from per-string excitation tables (small FCI spaces)
@njit(cache=True, parallel=True)
def string_tables(ne, norb, nw, binom, h1, eri):
    """Singles and same-spin doubles of every string of ``ne`` electrons, indexed by string rank.

    Returns occ (nstr, ne) int64 occupied orbitals; singles: s_rank, s_sign, s_h, s_p, s_val (nstr, ne*nv),
    where s_val = h1[h, p] + sum_{j occ} ((hp|jj) - (hj|jp)) is the same-spin part of the single element
    (Hartree, sign not included); doubles: d_rank, d_val (nstr, C(ne,2) C(nv,2)), d_val the element of
    :func:`same_spin_double_element` (sign included). A generator's excitations then need no ranking.
    """
    nstr = binom[norb, ne] if ne > 0 else 1
    nv = norb - ne
    ns = ne * nv
    nd = (ne * (ne - 1) // 2) * (nv * (nv - 1) // 2)
    occ = np.zeros((nstr, max(ne, 1)), np.int64)
    s_rank = np.empty((nstr, ns), np.int64)
    s_sign = np.empty((nstr, ns), np.float64)
    s_h = np.empty((nstr, ns), np.int64)
    s_p = np.empty((nstr, ns), np.int64)
    s_val = np.empty((nstr, ns), np.float64)
    d_rank = np.empty((nstr, nd), np.int64)
    d_val = np.empty((nstr, nd), np.float64)
    for r in prange(nstr):  # strings are independent
        s = np.zeros(nw, np.uint64)
        o = np.empty(norb, np.int64)
        v = np.empty(norb, np.int64)
        unrank(r, ne, norb, binom, s)
        occupied(s, o)
        virtual(s, norb, v)
        for x in range(ne):
            occ[r, x] = o[x]
        t = s.copy()
        m = 0
        for x in range(ne):
            h = o[x]
            for y in range(nv):
                p = v[y]
                flip(t, h)
                flip(t, p)
                s_rank[r, m] = rank(t, binom)
                flip(t, h)
                flip(t, p)
                s_sign[r, m] = phase(s, h, p)
                s_h[r, m] = h
                s_p[r, m] = p
                val = h1[h, p]
                for z in range(ne):
                    j = o[z]
                    val += eri[h, p, j, j] - eri[h, j, j, p]
                s_val[r, m] = val
                m += 1
        m = 0
        for x1 in range(ne):
            for x2 in range(x1 + 1, ne):
                for y1 in range(nv):
                    for y2 in range(y1 + 1, nv):
                        a, b, c, e = o[x1], o[x2], v[y1], v[y2]
                        flip(t, a)
                        flip(t, b)
                        flip(t, c)
                        flip(t, e)
                        d_rank[r, m] = rank(t, binom)
                        flip(t, a)
                        flip(t, b)
                        flip(t, c)
                        flip(t, e)
                        d_val[r, m] = same_spin_double_element(s, a, b, c, e, eri)
                        m += 1
    return occ, s_rank, s_sign, s_h, s_p, s_val, d_rank, d_val


def block_tables(table, sym, nirrep=8):
    """The per-string table of :func:`string_tables` reordered for the table kernels (NumPy).

    Every string's singles are grouped by their symmetry product ``sym[h] ^ sym[p]`` (``sym`` (norb,)
    int64 irrep labels whose XOR products are below ``nirrep``, 8 for D2h and its subgroups; all 0
    without symmetry), group g of string r in columns ``s_ptr[r, g]:s_ptr[r, g + 1]``; its same-spin
    doubles with a nonzero element come first, ``d_cnt[r]`` of them. Returns the 10-tuple (occ, s_rank,
    s_sign, s_h, s_p, s_val, d_rank, d_val, s_ptr (nstr, nirrep + 1) int64, d_cnt (nstr,) int64).
    Skipping the other groups or the zero doubles changes no sum only when the labels are exact (every
    integral they forbid is zero, see ``pt2._blocked_tables``).
    """
    occ, s_rank, s_sign, s_h, s_p, s_val, d_rank, d_val = table
    prod = sym[s_h] ^ sym[s_p]
    perm = np.argsort(prod, axis=1, kind="stable")
    s_ptr = np.zeros((prod.shape[0], nirrep + 1), np.int64)
    for g in range(nirrep):
        s_ptr[:, g + 1] = s_ptr[:, g] + (prod == g).sum(axis=1)
    singles = tuple(np.ascontiguousarray(np.take_along_axis(a, perm, axis=1)) for a in (s_rank, s_sign, s_h, s_p, s_val))
    dperm = np.argsort(d_val == 0.0, axis=1, kind="stable")
    doubles = tuple(np.ascontiguousarray(np.take_along_axis(a, dperm, axis=1)) for a in (d_rank, d_val))
    d_cnt = (d_val != 0.0).sum(axis=1).astype(np.int64)
    return (occ,) + singles + doubles + (s_ptr, d_cnt)


@njit(cache=True, parallel=True)
def external_dense_tables(gen_keys, eri, var_bits, nstr_b, ta, tb, gen_coef, gen_stoch, gen_w, gen_q, ad, as_, t,
                          touched, sym):
    """:func:`external_dense` driven by the per-string tables ``ta``, ``tb`` (:func:`string_tables`, in the
    blocked form of :func:`block_tables`).

    gen_keys : (ng,) int64 keys of the generators; var_bits : the space's keys as a bit set (:func:`key_bits`).
    The accumulators ad, as_, t (nparts, fci_size) float64 are passed in, zero (kept between passes by
    the caller, who clears only the entries written, see :func:`collect_dense`: no FCI-sized allocation
    or zeroing per pass), with ``touched`` their bit sets to mark, (nparts, ceil(fci_size / 64)) uint64,
    or (nparts, 0) for no marking (see :func:`_acc`); returns the number of (alpha, I) pairs per part. Only pairs that can couple are visited: the singles
    of symmetry product 0, the same-spin doubles of nonzero element and, for an alpha single h -> p, the
    beta singles of the same product ``sym[h] ^ sym[p]`` (the others couple through symmetry-forbidden
    integrals, exactly zero; see :func:`block_tables`).
    """
    occa, sra, ssa, sha, spa, sva, dra, dva, pa, nda = ta
    occb, srb, ssb, shb, spb, svb, drb, dvb, pb, ndb = tb
    mark = touched.shape[1] > 0
    ng = gen_keys.shape[0]
    nparts = ad.shape[0]
    counts = np.zeros(nparts, np.int64)
    nsa = sra.shape[1]
    na = occa.shape[1] if nsa > 0 or dra.shape[1] > 0 else 0
    nb = occb.shape[1] if srb.shape[1] > 0 or drb.shape[1] > 0 else 0
    for part in prange(nparts):
        cnt = 0
        for g in range(part * ng // nparts, (part + 1) * ng // nparts):
            ia = gen_keys[g] // nstr_b
            ib = gen_keys[g] % nstr_b
            c = gen_coef[g]
            st = gen_stoch[g]
            w = gen_w[g]
            q = gen_q[g]
            for k in range(pa[ia, 0], pa[ia, 1]):  # alpha singles
                key = sra[ia, k] * nstr_b + ib
                if not in_bits(var_bits, key):
                    h = sha[ia, k]
                    p = spa[ia, k]
                    val = sva[ia, k]
                    for z in range(nb):
                        j = occb[ib, z]
                        val += eri[h, p, j, j]
                    _acc(part, key, c * ssa[ia, k] * val, st, w, q, ad, as_, t, touched, mark)
                    cnt += 1
            for k in range(pb[ib, 0], pb[ib, 1]):  # beta singles
                key = ia * nstr_b + srb[ib, k]
                if not in_bits(var_bits, key):
                    h = shb[ib, k]
                    p = spb[ib, k]
                    val = svb[ib, k]
                    for z in range(na):
                        j = occa[ia, z]
                        val += eri[h, p, j, j]
                    _acc(part, key, c * ssb[ib, k] * val, st, w, q, ad, as_, t, touched, mark)
                    cnt += 1
            for k in range(nda[ia]):  # alpha-alpha doubles
                key = dra[ia, k] * nstr_b + ib
                if not in_bits(var_bits, key):
                    _acc(part, key, c * dva[ia, k], st, w, q, ad, as_, t, touched, mark)
                    cnt += 1
            for k in range(ndb[ib]):  # beta-beta doubles
                key = ia * nstr_b + drb[ib, k]
                if not in_bits(var_bits, key):
                    _acc(part, key, c * dvb[ib, k], st, w, q, ad, as_, t, touched, mark)
                    cnt += 1
            for k in range(nsa):  # alpha-beta doubles
                base = sra[ia, k] * nstr_b
                h = sha[ia, k]
                p = spa[ia, k]
                ca = c * ssa[ia, k]
                sy = sym[h] ^ sym[p]
                for m in range(pb[ib, sy], pb[ib, sy + 1]):
                    key = base + srb[ib, m]
                    if not in_bits(var_bits, key):
                        _acc(part, key, ca * ssb[ib, m] * eri[h, p, shb[ib, m], spb[ib, m]], st, w, q, ad, as_, t, touched, mark)
                        cnt += 1
        counts[part] = cnt
    return counts


@njit(cache=True, inline="always")
def _met(key, ad, as_, t, use_d, use_s):
    """Whether entry ``key`` of a read kind (ad if ``use_d``, as_ and t if ``use_s``) is nonzero in some part."""
    met = False
    for q in range(ad.shape[0]):
        if use_d:
            met |= ad[q, key] != 0.0
        if use_s:
            met |= (as_[q, key] != 0.0) | (t[q, key] != 0.0)
    return met


@njit(cache=True, parallel=True)
def collect_dense(ad, as_, t, touched, use_d, use_s, reset, nstr_b, occa, occb, na, nb, h1, eri):
    """The external determinants met in a dense pass, their sums over the parts and their diagonals.

    ad, as_, t : (nparts, fci_size) float64 per-part sums (:func:`external_dense_tables`). Only the
    deterministic (``use_d``) and sampled (``use_s``: as_ and t) kinds present are read. A key is met
    when one of those is nonzero in some part. Returns the met keys (m,) int64 ascending, the sums
    over parts of ad, as_, t ((m,) float64 each; zero for a kind not read) and, when the occupied-orbital
    tables ``occa``, ``occb`` of :func:`string_tables` are given (na, nb electrons; else (0, 1) arrays),
    the diagonals <D|H|D> of the met keys (m,) float64 Hartree, core excluded (:func:`_key_diagonal`;
    else an empty array). With ``reset`` the entries read (and the bit sets) are set back to zero.

    ``touched`` (nparts, ceil(fci_size / 64)) uint64, the bit sets of the entries written (:func:`_acc`):
    only those keys are visited (a pass with few pairs); (nparts, 0): every row is swept (a pass whose
    met keys are a sizeable fraction of the space: the sweep streams memory the visits would touch
    anyway, and the pass kernel saves the marking). Blocks of keys run in parallel; a block writes its
    finds at its own offset of scratch arrays, which are then packed.
    """
    with_diag = occa.shape[0] > 0
    ea, eb, ja = _string_energies(occa, occb, na, nb, h1, eri)
    nparts, size = ad.shape
    use_bits = touched.shape[1] > 0
    bsize = 1 << 15  # a multiple of 64: a block owns whole words of the bit sets
    nblk = (size + bsize - 1) // bsize
    cnt = np.zeros(nblk + 1, np.int64)
    tk = np.empty(size, np.int64)
    td = np.empty(size if use_d else 0)
    ts = np.empty(size if use_s else 0)
    tt = np.empty(size if use_s else 0)
    for b in prange(nblk):
        lo = b * bsize
        hi = min(size, lo + bsize)
        loc = np.empty(hi - lo, np.int64)
        e = 0
        if use_bits:
            for w in range(lo >> 6, (hi + 63) >> 6):
                u = np.uint64(0)
                for q in range(nparts):
                    u |= touched[q, w]
                    if reset:
                        touched[q, w] = 0
                while u != 0:
                    key = 64 * w + np.int64(_cttz(u))
                    u &= u - U1
                    if _met(key, ad, as_, t, use_d, use_s):
                        loc[e] = key - lo
                        e += 1
        else:
            met = np.zeros(hi - lo, np.bool_)
            for q in range(nparts):
                if use_d:
                    row = ad[q, lo:hi]
                    for k in range(hi - lo):
                        met[k] |= row[k] != 0.0
                if use_s:
                    row = as_[q, lo:hi]
                    row2 = t[q, lo:hi]
                    for k in range(hi - lo):
                        met[k] |= (row[k] != 0.0) | (row2[k] != 0.0)
            for k in range(hi - lo):  # a tight branch-free scan first
                loc[e] = k
                e += met[k]
        for i in range(e):
            key = lo + loc[i]
            j = lo + i
            tk[j] = key
            vd = 0.0
            vs = 0.0
            vt = 0.0
            for q in range(nparts):
                if use_d:
                    vd += ad[q, key]
                    if reset:
                        ad[q, key] = 0.0
                if use_s:
                    vs += as_[q, key]
                    vt += t[q, key]
                    if reset:
                        as_[q, key] = 0.0
                        t[q, key] = 0.0
            if use_d:
                td[j] = vd
            if use_s:
                ts[j] = vs
                tt[j] = vt
        cnt[b + 1] = e
    for b in range(nblk):
        cnt[b + 1] += cnt[b]
    m = cnt[nblk]
    keys = np.empty(m, np.int64)
    sd = np.zeros(m)
    ss = np.zeros(m)
    st = np.zeros(m)
    hd = np.empty(m if with_diag else 0)
    for b in prange(nblk):
        o = b * bsize - cnt[b]
        for j in range(cnt[b], cnt[b + 1]):
            key = tk[j + o]
            keys[j] = key
            if use_d:
                sd[j] = td[j + o]
            if use_s:
                ss[j] = ts[j + o]
                st[j] = tt[j + o]
            if with_diag:
                hd[j] = _key_diagonal(key, nstr_b, occb, nb, ea, eb, ja)
    return keys, sd, ss, st, hd


@njit(cache=True)
def _partner_key(key, key_i, bits, old_bits):
    """:func:`_partner` by key (the space is sorted by key, so J > I is key_J > key_I): ``key`` in the
    space (``bits``, see :func:`key_bits`) and either above ``key_i`` or, with a non-empty ``old_bits``
    (incremental build, I new), in the old space."""
    if not in_bits(bits, key):
        return False
    if key > key_i:
        return True
    return old_bits.shape[0] > 0 and in_bits(old_bits, key)


@njit(cache=True)
def _row_tables(ia, ib, bits, prefix, old_bits, nstr_b, ta, tb, eri, cols, vals, fill, sym):
    """Connections J > I of determinant I = (ia, ib) from the per-string tables (with a non-empty
    ``old_bits`` also the old J < I, see :func:`_partner_key`); ``bits`` the space's keys as a bit set and
    ``prefix`` its :func:`bits_prefix`, which give a partner's position in the space (:func:`bits_index`,
    in ``fill`` mode). When ``fill`` also their elements; ta, tb, sym as in :func:`external_dense_tables`."""
    occa, sra, ssa, sha, spa, sva, dra, dva, pa, nda = ta
    occb, srb, ssb, shb, spb, svb, drb, dvb, pb, ndb = tb
    nsa = sra.shape[1]
    na = occa.shape[1] if nsa > 0 or dra.shape[1] > 0 else 0
    nb = occb.shape[1] if srb.shape[1] > 0 or drb.shape[1] > 0 else 0
    key_i = ia * nstr_b + ib
    n = 0
    for k in range(pa[ia, 0], pa[ia, 1]):  # alpha singles
        key = sra[ia, k] * nstr_b + ib
        if _partner_key(key, key_i, bits, old_bits):
            if fill:
                j = bits_index(bits, prefix, key)
                h = sha[ia, k]
                p = spa[ia, k]
                val = sva[ia, k]
                for z in range(nb):
                    val += eri[h, p, occb[ib, z], occb[ib, z]]
                cols[n] = j
                vals[n] = ssa[ia, k] * val
            n += 1
    for k in range(pb[ib, 0], pb[ib, 1]):  # beta singles
        key = ia * nstr_b + srb[ib, k]
        if _partner_key(key, key_i, bits, old_bits):
            if fill:
                j = bits_index(bits, prefix, key)
                h = shb[ib, k]
                p = spb[ib, k]
                val = svb[ib, k]
                for z in range(na):
                    val += eri[h, p, occa[ia, z], occa[ia, z]]
                cols[n] = j
                vals[n] = ssb[ib, k] * val
            n += 1
    for k in range(nda[ia]):  # alpha-alpha doubles
        key = dra[ia, k] * nstr_b + ib
        if _partner_key(key, key_i, bits, old_bits):
            if fill:
                j = bits_index(bits, prefix, key)
                cols[n] = j
                vals[n] = dva[ia, k]
            n += 1
    for k in range(ndb[ib]):  # beta-beta doubles
        key = ia * nstr_b + drb[ib, k]
        if _partner_key(key, key_i, bits, old_bits):
            if fill:
                j = bits_index(bits, prefix, key)
                cols[n] = j
                vals[n] = dvb[ib, k]
            n += 1
    for k in range(nsa):  # alpha-beta doubles
        base = sra[ia, k] * nstr_b
        sy = sym[sha[ia, k]] ^ sym[spa[ia, k]]
        for m in range(pb[ib, sy], pb[ib, sy + 1]):
            key = base + srb[ib, m]
            if _partner_key(key, key_i, bits, old_bits):
                if fill:
                    j = bits_index(bits, prefix, key)
                    cols[n] = j
                    vals[n] = ssa[ia, k] * ssb[ib, m] * eri[sha[ia, k], spa[ia, k], shb[ib, m], spb[ib, m]]
                n += 1
    return n


@njit(cache=True, parallel=True)
def upper_rows_tables(dets, keys, bits, prefix, old_bits, nstr_b, ta, tb, h1, eri, rows, sym):
    """:func:`upper_rows_groups` for small FCI spaces: partners found by key lookup from the per-string
    tables of :func:`string_tables` (no pair scans, no Slater-Condon rules). keys (n,) int64 of ``dets``
    (sorted); ``bits``, ``prefix``, ``old_bits`` (empty for a full build, the old space's keys for the
    new rows of an incremental one), ta, tb, sym as in :func:`_row_tables`. Same returns; the columns of
    a row are in the order the tables visit them (not sorted), each row written in place."""
    nr = rows.shape[0]
    norb = h1.shape[0]
    cnt = np.zeros(nr + 1, np.int64)
    dc = np.empty(0, np.int32)
    dv = np.empty(0, np.float64)
    for r in prange(nr):
        i = rows[r]
        cnt[r + 1] = _row_tables(keys[i] // nstr_b, keys[i] % nstr_b, bits, prefix, old_bits, nstr_b, ta, tb, eri,
                                 dc, dv, False, sym)
    ptr = np.cumsum(cnt)
    cols = np.empty(ptr[-1], np.int32)
    vals = np.empty(ptr[-1], np.float64)
    diag = np.empty(nr, np.float64)
    jmat, kmat = coulomb_exchange(eri)
    bsize = 64
    for b in prange((nr + bsize - 1) // bsize):
        occ1 = np.empty(norb, np.int64)
        occ2 = np.empty(norb, np.int64)
        for r in range(b * bsize, min(nr, (b + 1) * bsize)):
            i = rows[r]
            _row_tables(keys[i] // nstr_b, keys[i] % nstr_b, bits, prefix, old_bits, nstr_b, ta, tb, eri,
                        cols[ptr[r]:ptr[r + 1]], vals[ptr[r]:ptr[r + 1]], True, sym)
            diag[r] = diagonal_jk(dets[i], h1, jmat, kmat, occ1, occ2)
    return ptr, cols, vals, diag


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


@njit(cache=True)
def _string_energy(occ, n, h1, jmat, kmat):
    e = 0.0
    for x in range(n):
        i = occ[x]
        e += h1[i, i]
        for y in range(x + 1, n):
            e += jmat[i, occ[y]] - kmat[i, occ[y]]
    return e


@njit(cache=True)
def _string_energies(occa, occb, na, nb, h1, eri):
    """Tables for determinant diagonals from the occupied-orbital tables ``occa`` (nstr_a, >= na), ``occb``
    (nstr_b, >= nb) int64 of na, nb electrons (:func:`string_tables`): the same-spin energies ea (nstr_a,),
    eb (nstr_b,) of every string and ja (nstr_a, norb), ja[r, q] = sum over the alpha string r's orbitals
    i of (ii|qq), Hartree."""
    jmat, kmat = coulomb_exchange(eri)
    norb = h1.shape[0]
    ea = np.empty(occa.shape[0])
    eb = np.empty(occb.shape[0])
    ja = np.zeros((occa.shape[0], norb))
    for r in range(occa.shape[0]):
        ea[r] = _string_energy(occa[r], na, h1, jmat, kmat)
        for x in range(na):
            i = occa[r, x]
            for q in range(norb):
                ja[r, q] += jmat[i, q]
    for r in range(occb.shape[0]):
        eb[r] = _string_energy(occb[r], nb, h1, jmat, kmat)
    return ea, eb, ja


@njit(cache=True, inline="always")
def _key_diagonal(key, nstr_b, occb, nb, ea, eb, ja):
    """<D|H|D> (Hartree, core excluded) of the determinant ``key``: the same-spin energies of its strings
    plus the opposite-spin Coulomb terms (:func:`_string_energies`); no unranking, nb lookups."""
    ia = key // nstr_b
    ib = key % nstr_b
    e = ea[ia] + eb[ib]
    for y in range(nb):
        e += ja[ia, occb[ib, y]]
    return e


# ------------------------------------------------ heat-bath screened external space (large FCI spaces)
@njit(cache=True)
def heatbath_tables(eri):
    """Double-excitation integrals sorted by magnitude per occupied pair (Holmes, Tubman, Umrigar 2016).

    Opposite spin, row ``i * norb + j`` (alpha hole i, beta hole j): the ``norb^2`` particle pairs
    ``a * norb + b`` ordered by descending ``|(ia|jb)|``. Same spin, row ``i * norb + j`` for i < j: the
    ``C(norb, 2)`` pairs a < b ordered by descending ``|(ia|jb) - (ib|ja)|``. Returns (os_ab int32, os_abs
    float64, ss_ab int32, ss_abs float64); the magnitudes are exactly those of the elements that
    :func:`same_spin_double_element` and the opposite-spin rule evaluate (Hartree).
    """
    n = eri.shape[0]
    m = n * (n - 1) // 2
    os_ab = np.zeros((n * n, n * n), np.int32)
    os_abs = np.zeros((n * n, n * n))
    ss_ab = np.zeros((n * n, max(m, 1)), np.int32)
    ss_abs = np.zeros((n * n, max(m, 1)))
    v = np.empty(n * n)
    w = np.empty(max(m, 1))
    idx = np.empty(max(m, 1), np.int32)
    for i in range(n):
        for j in range(n):
            row = i * n + j
            for a in range(n):
                for b in range(n):
                    v[a * n + b] = -abs(eri[i, a, j, b])
            order = np.argsort(v, kind="mergesort")
            for k in range(n * n):
                os_ab[row, k] = order[k]
                os_abs[row, k] = -v[order[k]]
            if j <= i:
                continue
            k = 0
            for a in range(n):
                for b in range(a + 1, n):
                    w[k] = -abs(eri[i, a, j, b] - eri[i, b, j, a])
                    idx[k] = a * n + b
                    k += 1
            order = np.argsort(w[:m], kind="mergesort")
            for k in range(m):
                ss_ab[row, k] = idx[order[k]]
                ss_abs[row, k] = -w[order[k]]
    return os_ab, os_abs, ss_ab, ss_abs


@njit(cache=True)
def _count_above(sorted_abs, row, ac, eps):
    """Entries of the descending row with ``|v| * ac > eps`` (bisection)."""
    lo = 0
    hi = sorted_abs.shape[1]
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_abs[row, mid] * ac > eps:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True, parallel=True)
def screened_bounds(dets, gens, gen_coef, eps, os_abs, ss_abs):
    """Upper bound (ng,) int64 on the screened excitations of each generator: every single plus the
    heat-bath entries above ``eps / |c_I|`` of each occupied pair (occupancy not yet checked)."""
    ng = gens.shape[0]
    norb = int(np.sqrt(os_abs.shape[0]) + 0.5)
    out = np.empty(ng, np.int64)
    for g in prange(ng):
        occa = np.empty(norb, np.int64)
        occb = np.empty(norb, np.int64)
        d = dets[gens[g]]
        na = occupied(d[0], occa)
        nb = occupied(d[1], occb)
        ac = abs(gen_coef[g])
        c = na * (norb - na) + nb * (norb - nb)
        if ac > 0.0:
            for x in range(na):
                for y in range(nb):
                    c += _count_above(os_abs, occa[x] * norb + occb[y], ac, eps)
            for spin in range(2):
                occ = occa if spin == 0 else occb
                ne = na if spin == 0 else nb
                for x1 in range(ne):
                    for x2 in range(x1 + 1, ne):
                        c += _count_above(ss_abs, occ[x1] * norb + occ[x2], ac, eps)
        out[g] = c
    return out


@njit(cache=True)
def _screened(det, ac, eps, norb, h1, eri, os_ab, os_abs, ss_ab, ss_abs, var_table, shift, binom_a, binom_b,
              nstr_b, out_keys, out_vals, occa, occb, scratch, r1a, s1a, r1b, s1b):
    """Singles and doubles ``a`` of ``det`` outside the space with ``|c_I <a|H|det>| > eps`` (``ac = |c_I|``).

    Doubles are found by walking the heat-bath lists of each occupied pair until the bound fails, so
    the discarded ones are never generated. Writes keys and elements; returns how many.
    """
    na = occupied(det[0], occa)
    nb = occupied(det[1], occb)
    ta = det[0].copy()
    tb = det[1].copy()
    for spin in range(2):  # ranks and signs of every single of both strings
        t = ta if spin == 0 else tb
        occ = occa if spin == 0 else occb
        ne = na if spin == 0 else nb
        binom = binom_a if spin == 0 else binom_b
        r1 = r1a if spin == 0 else r1b
        s1 = s1a if spin == 0 else s1b
        for x in range(ne):
            h = occ[x]
            for p in range(norb):
                if is_set(t, p):
                    continue
                flip(t, h)
                flip(t, p)
                r1[x, p] = rank(t, binom)
                flip(t, h)
                flip(t, p)
                s1[x, p] = phase(t, h, p)
    ra = rank(det[0], binom_a)
    rb = rank(det[1], binom_b)
    n = 0
    if ac == 0.0:
        return 0
    for spin in range(2):
        s = det[spin]
        occ = occa if spin == 0 else occb
        ne = na if spin == 0 else nb
        r1 = r1a if spin == 0 else r1b
        t = ta if spin == 0 else tb
        binom = binom_a if spin == 0 else binom_b
        for x in range(ne):  # singles: every one evaluated, kept above the threshold
            h = occ[x]
            for p in range(norb):
                if is_set(s, p):
                    continue
                key = r1[x, p] * nstr_b + rb if spin == 0 else ra * nstr_b + r1[x, p]
                v = single_element(s, det[1 - spin], h, p, h1, eri, scratch)
                if abs(v) * ac > eps and not in_table(var_table, key, shift):
                    out_keys[n] = key
                    out_vals[n] = v
                    n += 1
        for x1 in range(ne):  # same-spin doubles from the sorted lists
            for x2 in range(x1 + 1, ne):
                i = occ[x1]
                j = occ[x2]
                row = i * norb + j
                for k in range(ss_abs.shape[1]):
                    if not ss_abs[row, k] * ac > eps:
                        break
                    ab = ss_ab[row, k]
                    a = ab // norb
                    b = ab % norb
                    if is_set(s, a) or is_set(s, b):
                        continue
                    flip(t, i)
                    flip(t, j)
                    flip(t, a)
                    flip(t, b)
                    r = rank(t, binom)
                    flip(t, i)
                    flip(t, j)
                    flip(t, a)
                    flip(t, b)
                    key = r * nstr_b + rb if spin == 0 else ra * nstr_b + r
                    if not in_table(var_table, key, shift):
                        out_keys[n] = key
                        out_vals[n] = same_spin_double_element(s, i, j, a, b, eri)
                        n += 1
    for x in range(na):  # opposite-spin doubles
        i = occa[x]
        for y in range(nb):
            j = occb[y]
            row = i * norb + j
            for k in range(os_abs.shape[1]):
                if not os_abs[row, k] * ac > eps:
                    break
                ab = os_ab[row, k]
                a = ab // norb
                b = ab % norb
                if is_set(det[0], a) or is_set(det[1], b):
                    continue
                key = r1a[x, a] * nstr_b + r1b[y, b]
                if not in_table(var_table, key, shift):
                    out_keys[n] = key
                    out_vals[n] = s1a[x, a] * s1b[y, b] * eri[i, a, j, b]
                    n += 1
    return n


@njit(cache=True, parallel=True)
def external_screened(dets, gens, gen_coef, eps, bounds, h1, eri, os_ab, os_abs, ss_ab, ss_abs, var_table, binom_a,
                      binom_b, nstr_b):
    """:func:`external_contributions` restricted to ``|c_I <a|H|I>| > eps`` by heat-bath screening.

    gen_coef : (ng,) float64 coefficients of the generators ``gens``; bounds : (ng,) int64 from
    :func:`screened_bounds`; the heat-bath lists from :func:`heatbath_tables`. Returns keys (m,) int64,
    gen (m,) int32 (position in ``gens``), vals (m,) float64 Hartree.
    """
    ng = gens.shape[0]
    norb = h1.shape[0]
    off = np.zeros(ng + 1, np.int64)
    for g in range(ng):
        off[g + 1] = off[g] + bounds[g]
    keys = np.empty(off[ng], np.int64)
    vals = np.empty(off[ng], np.float64)
    cnt = np.zeros(ng + 1, np.int64)
    shift = table_shift(var_table)
    for g in prange(ng):
        occa = np.empty(norb, np.int64)
        occb = np.empty(norb, np.int64)
        scratch = np.empty(norb, np.int64)
        r1a = np.empty((norb, norb), np.int64)
        r1b = np.empty((norb, norb), np.int64)
        s1a = np.empty((norb, norb), np.float64)
        s1b = np.empty((norb, norb), np.float64)
        cnt[g + 1] = _screened(dets[gens[g]], abs(gen_coef[g]), eps, norb, h1, eri, os_ab, os_abs, ss_ab, ss_abs,
                               var_table, shift, binom_a, binom_b, nstr_b, keys[off[g]:off[g + 1]],
                               vals[off[g]:off[g + 1]], occa, occb, scratch, r1a, s1a, r1b, s1b)
    ptr = np.cumsum(cnt)
    ok = np.empty(ptr[-1], np.int64)
    ov = np.empty(ptr[-1], np.float64)
    og = np.empty(ptr[-1], np.int32)
    for g in prange(ng):
        for k in range(ptr[g + 1] - ptr[g]):
            ok[ptr[g] + k] = keys[off[g] + k]
            ov[ptr[g] + k] = vals[off[g] + k]
            og[ptr[g] + k] = g
    return ok, og, ov


@njit(cache=True, parallel=True)
def diagonals_sorted_keys(keys, na, nb, norb, binom_a, binom_b, nstr_b, h1, eri):
    """<D|H|D> (Hartree, core excluded) of the determinants with sorted ``keys`` (m,) int64, without
    building them: the alpha rank changes only between runs of equal keys, so each alpha string is
    unranked once per run, and every beta string present once (a table of ``nstr_b`` entries);
    then ``E = E_a + E_b + sum_q Ja[q]`` over the beta orbitals q, with ``Ja[q] = sum_{i in a} (ii|qq)``."""
    jmat, kmat = coulomb_exchange(eri)
    m = keys.shape[0]
    nw = max(1, (norb + 63) // 64)
    present = np.zeros(nstr_b, np.bool_)
    for k in range(m):
        present[keys[k] % nstr_b] = True
    eb = np.zeros(nstr_b)
    occb = np.zeros((nstr_b, max(nb, 1)), np.int16)
    for r in prange(nstr_b):
        if present[r]:
            s = np.zeros(nw, np.uint64)
            o = np.empty(norb, np.int64)
            unrank(r, nb, norb, binom_b, s)
            occupied(s, o)
            eb[r] = _string_energy(o, nb, h1, jmat, kmat)
            for y in range(nb):
                occb[r, y] = o[y]
    out = np.empty(m)
    nparts = 64
    for part in prange(nparts):
        lo = part * m // nparts
        hi = (part + 1) * m // nparts
        s = np.zeros(nw, np.uint64)
        o = np.empty(norb, np.int64)
        ja = np.zeros(norb)
        ea = 0.0
        cur = -1
        for k in range(lo, hi):
            ra = keys[k] // nstr_b
            if ra != cur:
                cur = ra
                unrank(ra, na, norb, binom_a, s)
                occupied(s, o)
                ea = _string_energy(o, na, h1, jmat, kmat)
                for q in range(norb):
                    v = 0.0
                    for x in range(na):
                        v += jmat[o[x], q]
                    ja[q] = v
            rb = keys[k] % nstr_b
            e = ea + eb[rb]
            for y in range(nb):
                e += ja[occb[rb, y]]
            out[k] = e
    return out


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
