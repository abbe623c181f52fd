"""Per-string excitation tables (small FCI spaces): every string's singles and same-spin doubles ranked
and evaluated once, so that the external space (:func:`external_dense_tables`) and the Hamiltonian in
the variational space (:func:`upper_rows_tables`) need no ranking and no Slater-Condon rules per pair.
"""

from typing import NamedTuple

import numpy as np
from numba import njit, prange

from .bits import flip, occupied, phase, virtual
from .elements import coulomb_exchange, diagonal_jk, same_spin_double_element
from .external import _acc
from .keys import bits_index, in_bits, rank, unrank


class StringTables(NamedTuple):
    """Per-string excitation tables of the ``nstr`` strings of ``ne`` electrons in ``norb`` orbitals, row
    ``r`` the string of rank ``r``; ``ns = ne (norb - ne)`` singles and ``nd = C(ne, 2) C(norb - ne, 2)``
    same-spin doubles per string. :func:`string_tables` gives the first eight fields,
    :func:`block_tables` reorders the columns and adds the last two.

    occ : (nstr, max(ne, 1)) int64, the string's occupied orbitals, ascending
    s_rank : (nstr, ns) int64, rank of the string after each single h -> p
    s_sign : (nstr, ns) float64, its sign (+1 or -1)
    s_h, s_p : (nstr, ns) int64, its hole and particle orbitals
    s_val : (nstr, ns) float64, Hartree, its same-spin part ``h1[h, p] + sum_{j occ} ((hp|jj) - (hj|jp))``,
        sign not included
    d_rank : (nstr, nd) int64, rank of the string after each same-spin double
    d_val : (nstr, nd) float64, Hartree, its element (:func:`same_spin_double_element`, sign included)
    s_ptr : (nstr, nirrep + 1) int64, the singles of symmetry product g in columns ``s_ptr[r, g]:s_ptr[r, g + 1]``
    d_cnt : (nstr,) int64, the doubles of nonzero element, the first ``d_cnt[r]`` columns
    """

    occ: np.ndarray
    s_rank: np.ndarray
    s_sign: np.ndarray
    s_h: np.ndarray
    s_p: np.ndarray
    s_val: np.ndarray
    d_rank: np.ndarray
    d_val: np.ndarray
    s_ptr: np.ndarray
    d_cnt: np.ndarray


@njit(cache=True, parallel=True)
def string_tables(ne, norb, nw, binom, h1, eri):
    """Singles and same-spin doubles of every string of ``ne`` electrons, indexed by string rank: the tuple
    of the first eight fields of :class:`StringTables` (occ, s_rank, s_sign, s_h, s_p, s_val, d_rank,
    d_val). A generator's excitations then need no ranking."""
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
    doubles with a nonzero element come first, ``d_cnt[r]`` of them. Returns the :class:`StringTables`.
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
    return StringTables(occ, *singles, *doubles, s_ptr, d_cnt)


@njit(cache=True, parallel=True)
def external_dense_tables(gen_keys, eri, var_bits, nstr_b, ta, tb, gen_coef, gen_stoch, gen_w, gen_q, ad, as_, t,
                          touched, sym):
    """:func:`external_dense` driven by the per-string tables ``ta``, ``tb`` (:class:`StringTables` of the
    alpha and beta strings, blocked by :func:`block_tables`).

    gen_keys : (ng,) int64 keys of the generators; var_bits : the space's keys as a bit set (:func:`key_bits`).
    The accumulators ad, as_, t (nparts, fci_size) float64 are passed in, zero (kept between passes by
    the caller, who clears only the entries written, see :func:`collect_dense`: no FCI-sized allocation
    or zeroing per pass), with ``touched`` their bit sets to mark, (nparts, ceil(fci_size / 64)) uint64,
    or (nparts, 0) for no marking (see :func:`_acc`); returns the number of (alpha, I) pairs per part.
    Only pairs that can couple are visited: the singles of symmetry product 0, the same-spin doubles of
    nonzero element and, for an alpha single h -> p, the beta singles of the same product
    ``sym[h] ^ sym[p]`` (the others couple through symmetry-forbidden integrals, exactly zero; see
    :func:`block_tables`).
    """
    # the fields by initials and spin: s_rank -> sra, srb; ...; s_ptr -> pa, pb; d_cnt -> nda, ndb
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
