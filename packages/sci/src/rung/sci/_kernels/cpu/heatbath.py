"""Heat-bath screened external space (large FCI spaces; Holmes, Tubman and Umrigar, J. Chem. Theory
Comput. 12, 3674 (2016)): double excitations drawn from integral lists sorted by magnitude, so that a
pair with ``|c_I <a|H|I>| <= eps`` is never generated.
"""

import numpy as np
from numba import njit, prange

from .bits import U1, flip, is_set, occupied, phase
from .keys import HASH_MULT, in_table, rank, table_shift

MARK_MAX = 2**26  # string ranks marked (bytes) by the space filter of external_screened at most


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


@njit(cache=True, inline="always")
def _rest_tables(occ, ne, x1, x2, norb, binom, below, pre):
    """Tables of the same-spin doubles ``i j -> a b`` of one hole pair (``i = occ[x1] < j = occ[x2]``),
    so that each one's rank and sign take a few lookups (no string edited). R = the string's other
    ``ne - 2`` electrons, ascending. ``below[p]`` (norb,) = electrons of R below orbital p;
    ``pre[k, c]`` (3, ne - 1) = sum over the first c of R of C(R[m], m + 1 + k). For a < b outside the
    string, with ca = below[a], cb = below[b], the string R + {a, b} has the rank
    ``C(a, ca + 1) + C(b, cb + 2) + pre[0, ca] + pre[1, cb] - pre[1, ca] + pre[2, ne - 2] - pre[2, cb]``
    (R's electrons below a keep their place, those between a and b move up one, those above b two),
    and the sign of :func:`same_spin_double_element` is ``(-1)^(ca + cb + x1 + x2 + 1)`` (the
    electrons passed by i -> a, then by j -> b; the [a > j] terms of both cancel)."""
    y = 0
    for p in range(norb):
        while y < ne and occ[y] < p:
            y += 1
        below[p] = y - (1 if occ[x1] < p else 0) - (1 if occ[x2] < p else 0)
    pre[0, 0] = 0
    pre[1, 0] = 0
    pre[2, 0] = 0
    m = 0
    for y in range(ne):
        if y == x1 or y == x2:
            continue
        r = occ[y]
        for k in range(3):
            pre[k, m + 1] = pre[k, m] + binom[r, m + 1 + k]
        m += 1


@njit(cache=True)
def _signed_lists(eri, os_ab, ss_ab):
    """The elements along the heat-bath lists, signed, in list order: os_val[row, k] = (ia|jb) and
    ss_val[row, k] = (ia|jb) - (ib|ja) (i < j; 0 elsewhere) for entry k of row ``i * norb + j``, so a
    walk reads them in sequence instead of gathering from ``eri``; the same numbers."""
    n = eri.shape[0]
    os_val = np.zeros(os_ab.shape)
    ss_val = np.zeros(ss_ab.shape)
    for row in range(n * n):
        i = row // n
        j = row % n
        for k in range(os_ab.shape[1]):
            ab = os_ab[row, k]
            os_val[row, k] = eri[i, ab // n, j, ab % n]
        if j > i:
            for k in range(n * (n - 1) // 2):
                ab = ss_ab[row, k]
                a = ab // n
                b = ab % n
                ss_val[row, k] = eri[i, a, j, b] - eri[i, b, j, a]
    return os_val, ss_val


@njit(cache=True, inline="always")
def _single(h, p, h1, eri, occ, ne, occ_other, ne_other, sign):
    """:func:`single_element` of h -> p from the occupied lists of both strings (``occ``, ``ne`` of the
    excited spin) and its ``sign`` (:func:`phase`), already at hand; the same arithmetic."""
    v = h1[h, p]
    for x in range(ne):
        jj = occ[x]
        v += eri[h, p, jj, jj] - eri[h, jj, jj, p]
    for x in range(ne_other):
        jj = occ_other[x]
        v += eri[h, p, jj, jj]
    return sign * v


@njit(cache=True, inline="always")
def _in_space(ia, ib, key, in_a, in_b, filt, fshift, var_table, shift):
    """``key = ia * nstr_b + ib`` in the space's hash table. Most candidates are answered without a
    probe of the table: a key whose alpha (rank ``ia``) or beta (``ib``) string is in no determinant
    of the space (``in_a``, ``in_b`` from :func:`_string_marks`), or whose hash bit is clear in
    ``filt`` (:func:`_hash_filter`, a bit set 16 times the table's slots, small enough to stay in
    cache where the table's random probes miss it), is outside."""
    if in_a.shape[0] > 0 and (ia >= in_a.shape[0] or in_a[ia] == 0 or ib >= in_b.shape[0] or in_b[ib] == 0):
        return False
    h = (np.uint64(key) * HASH_MULT) >> fshift
    if (filt[h >> np.uint64(6)] >> (h & np.uint64(63))) & U1 == 0:
        return False
    return in_table(var_table, key, shift)


FILTER_BITS = 4  # the hash filter has 2**FILTER_BITS bits per slot of the hash table


@njit(cache=True)
def _hash_filter(var_table):
    """(bit set (words,) uint64, its shift): bit ``(key * HASH_MULT) >> shift`` set for every key of the
    hash table ``var_table`` (:func:`hash_table`), 2**FILTER_BITS bits per table slot (so at most one
    bit in 32 is set: a key outside the space passes the filter with probability < 1/32)."""
    shift = table_shift(var_table) - np.uint64(FILTER_BITS)
    nbits = var_table.shape[0] << FILTER_BITS
    filt = np.zeros(max(1, nbits >> 6), np.uint64)
    for key in var_table:
        if key >= 0:
            h = (np.uint64(key) * HASH_MULT) >> shift
            filt[h >> np.uint64(6)] |= U1 << (h & np.uint64(63))
    return filt, shift


@njit(cache=True)
def _string_marks(var_table, nstr_b, limit):
    """(in_a, in_b) uint8: 1 at the rank of every alpha / beta string of a key in the hash table
    ``var_table`` (sized by the largest rank met), or two empty arrays (no filter) when a size would
    pass ``limit``."""
    ma = -1
    mb = -1
    for key in var_table:
        if key >= 0:
            ma = max(ma, key // nstr_b)
            mb = max(mb, key % nstr_b)
    if ma + 1 > limit or mb + 1 > limit:
        return np.zeros(0, np.uint8), np.zeros(0, np.uint8)
    in_a = np.zeros(ma + 1, np.uint8)
    in_b = np.zeros(mb + 1, np.uint8)
    for key in var_table:
        if key >= 0:
            in_a[key // nstr_b] = 1
            in_b[key % nstr_b] = 1
    return in_a, in_b


@njit(cache=True)
def _screened(det, ac, eps, norb, h1, eri, os_ab, os_abs, ss_ab, ss_abs, os_val, ss_val, var_table, shift, binom_a,
              binom_b, nstr_b, out_keys, out_vals, occa, occb, r1a, s1a, r1b, s1b, ab_a, ab_b, in_a, in_b, filt, fshift,
              below, pre):
    """Singles and doubles ``a`` of ``det`` outside the space with ``|c_I <a|H|det>| > eps`` (``ac = |c_I|``).

    Doubles are found by walking the heat-bath lists of each occupied pair until the bound fails, so
    the discarded ones are never generated; their elements are read along the lists (``os_val``,
    ``ss_val`` from :func:`_signed_lists`). ``ab_a``, ``ab_b`` (norb^2,) int64: the particles ``ab //
    norb``, ``ab % norb`` of a list entry (no division per entry); ``in_a`` (n alpha strings,), ``in_b``
    (n beta strings,) uint8: 1 for a string of some determinant of the space, so a candidate whose alpha
    or beta string is in none is outside without a hash-table probe, as is one whose bit in ``filt``
    (:func:`_hash_filter`, shift ``fshift``) is clear. ``below`` (norb,), ``pre`` (3, norb + 1) int64:
    scratch of :func:`_rest_tables`. Writes keys and elements; returns how many.
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
        s1 = s1a if spin == 0 else s1b
        binom = binom_a if spin == 0 else binom_b
        for x in range(ne):  # singles: every one evaluated, kept above the threshold
            h = occ[x]
            for p in range(norb):
                if is_set(s, p):
                    continue
                key = r1[x, p] * nstr_b + rb if spin == 0 else ra * nstr_b + r1[x, p]
                v = _single(h, p, h1, eri, occ, ne, occa if spin == 1 else occb, nb if spin == 0 else na,
                            s1[x, p])
                ia, ib = (r1[x, p], rb) if spin == 0 else (ra, r1[x, p])
                if abs(v) * ac > eps and not _in_space(ia, ib, key, in_a, in_b, filt, fshift, var_table, shift):
                    out_keys[n] = key
                    out_vals[n] = v
                    n += 1
        for x1 in range(ne):  # same-spin doubles from the sorted lists
            for x2 in range(x1 + 1, ne):
                i = occ[x1]
                j = occ[x2]
                row = i * norb + j
                if not ss_abs[row, 0] * ac > eps:
                    continue
                _rest_tables(occ, ne, x1, x2, norb, binom, below, pre)
                top = pre[2, ne - 2]
                for k in range(ss_abs.shape[1]):
                    if not ss_abs[row, k] * ac > eps:
                        break
                    ab = ss_ab[row, k]
                    a = ab_a[ab]
                    b = ab_b[ab]
                    if is_set(s, a) or is_set(s, b):
                        continue
                    ca = below[a]
                    cb = below[b]
                    r = binom[a, ca + 1] + binom[b, cb + 2] + pre[0, ca] + pre[1, cb] - pre[1, ca] + top - pre[2, cb]
                    ia, ib = (r, rb) if spin == 0 else (ra, r)
                    key = ia * nstr_b + ib
                    if not _in_space(ia, ib, key, in_a, in_b, filt, fshift, var_table, shift):
                        out_keys[n] = key
                        out_vals[n] = -ss_val[row, k] if (ca + cb + x1 + x2 + 1) & 1 else ss_val[row, k]
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
                a = ab_a[ab]
                b = ab_b[ab]
                if is_set(det[0], a) or is_set(det[1], b):
                    continue
                ia = r1a[x, a]
                ib = r1b[y, b]
                key = ia * nstr_b + ib
                if not _in_space(ia, ib, key, in_a, in_b, filt, fshift, var_table, shift):
                    out_keys[n] = key
                    out_vals[n] = s1a[x, a] * s1b[y, b] * os_val[row, k]
                    n += 1
    return n


def pass_buffers(size, with_gen, separate_positions):
    """Scratch arrays of one screened pass for :func:`external_screened` (``size`` pairs: the largest
    chunk's summed bounds), allocated once and reused by every chunk: slab_key (size,) int64, slab_val
    (size,) float64, slab_gen (size,) int32 (empty unless ``with_gen``), out (size,) int64 and out_pos
    (size,) int64 (empty unless ``separate_positions``)."""
    return (np.empty(size, np.int64), np.empty(size), np.empty(size if with_gen else 0, np.int32),
            np.empty(size, np.int64), np.empty(size if separate_positions else 0, np.int64))


@njit(cache=True, parallel=True)
def external_screened(dets, gens, gen_coef, eps, bounds, h1, eri, os_ab, os_abs, ss_ab, ss_abs, var_table, binom_a,
                      binom_b, nstr_b, shift, scale, slab_key, slab_val, slab_gen, out, out_pos):
    """:func:`external_contributions` restricted to ``|c_I <a|H|I>| > eps`` by heat-bath screening,
    written into the caller's buffers (:func:`pass_buffers`, reused from chunk to chunk: a fresh
    pair-sized array per chunk costs as much in page faults as its pairs cost to reduce).

    gen_coef : (ng,) float64 coefficients of the generators ``gens``; bounds : (ng,) int64 from
    :func:`screened_bounds`; the heat-bath lists from :func:`heatbath_tables`. Generator ``g`` writes
    its pairs at the slab positions ``sum(bounds[:g]) + k``: ``slab_val`` <alpha|H|I> Hartree (times
    ``gen_coef[g]`` with ``scale``), ``slab_gen`` g (when not empty). Returns m, the pairs, and writes
    ``out[:m]``, in generation order: ``key << shift | position`` (``shift`` > 0: positions < 2**shift,
    keys < 2**(63 - shift)), or with ``shift`` = 0 the keys, their positions in ``out_pos[:m]``.
    """
    ng = gens.shape[0]
    norb = h1.shape[0]
    off = np.zeros(ng + 1, np.int64)
    for g in range(ng):
        off[g + 1] = off[g] + bounds[g]
    cnt = np.zeros(ng + 1, np.int64)
    tshift = table_shift(var_table)
    ab_a = np.arange(norb * norb) // norb
    ab_b = np.arange(norb * norb) % norb
    os_val, ss_val = _signed_lists(eri, os_ab, ss_ab)
    in_a, in_b = _string_marks(var_table, nstr_b, MARK_MAX)
    filt, fshift = _hash_filter(var_table)
    with_gen = slab_gen.shape[0] > 0
    sh = np.int64(shift)
    for g in prange(ng):
        occa = np.empty(norb, np.int64)
        occb = np.empty(norb, np.int64)
        r1a = np.empty((norb, norb), np.int64)
        r1b = np.empty((norb, norb), np.int64)
        s1a = np.empty((norb, norb), np.float64)
        s1b = np.empty((norb, norb), np.float64)
        below = np.empty(norb, np.int64)
        pre = np.empty((3, norb + 1), np.int64)
        o = off[g]
        n = _screened(dets[gens[g]], abs(gen_coef[g]), eps, norb, h1, eri, os_ab, os_abs, ss_ab, ss_abs, os_val,
                      ss_val, var_table, tshift, binom_a, binom_b, nstr_b, slab_key[o:off[g + 1]],
                      slab_val[o:off[g + 1]], occa, occb, r1a, s1a, r1b, s1b, ab_a, ab_b, in_a, in_b, filt, fshift,
                      below, pre)
        c = gen_coef[g]
        for k in range(o, o + n):
            if sh > 0:
                slab_key[k] = (slab_key[k] << sh) | k
            if scale:
                slab_val[k] *= c
            if with_gen:
                slab_gen[k] = g
        cnt[g + 1] = n
    ptr = np.cumsum(cnt)
    separate = out_pos.shape[0] > 0
    for g in prange(ng):
        for k in range(ptr[g + 1] - ptr[g]):
            out[ptr[g] + k] = slab_key[off[g] + k]
            if separate:
                out_pos[ptr[g] + k] = off[g] + k
    return ptr[ng]
