"""Heat-bath screened external space (large FCI spaces; Holmes, Tubman and Umrigar, J. Chem. Theory
Comput. 12, 3674 (2016)): double excitations drawn from integral lists sorted by magnitude, so that a
pair with ``|c_I <a|H|I>| <= eps`` is never generated.
"""

import numpy as np
from numba import njit, prange

from .bits import flip, is_set, occupied, phase
from .elements import same_spin_double_element, single_element
from .keys import in_table, rank, table_shift


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
