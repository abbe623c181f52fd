"""External space (selection, PT2) generated determinant by determinant: the singles and doubles of
each generator outside the variational space, summed per external determinant either through sorted
lists (any FCI size; the keys tested against a hash table) or into key-indexed dense accumulators (small
FCI spaces), and the collection of the dense accumulators shared with :mod:`.tables`.
"""

import numpy as np
from numba import njit, prange

from .bits import U1, _cttz, flip, occupied, phase, virtual
from .elements import _key_diagonal, _string_energies, same_spin_double_element, single_element
from .keys import in_table, rank, table_shift


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


@njit(cache=True, inline="always")
def _n_keys(packed, sh):
    """The number of distinct keys ``packed >> sh`` of sorted ``packed`` (uint64)."""
    u = 0
    for k in range(packed.shape[0]):
        if k == 0 or (packed[k] >> sh) != (packed[k - 1] >> sh):
            u += 1
    return u


@njit(cache=True)
def reduce_packed(packed, shift, gen, vals, gen_coef, gen_stoch, gen_w, gen_q):
    """Like :func:`reduce_sorted` for sorted ``packed = key << shift | position`` (uint64)."""
    m = packed.shape[0]
    mask = (np.uint64(1) << np.uint64(shift)) - np.uint64(1)
    sh = np.uint64(shift)
    u = _n_keys(packed, sh)
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
        if gen_stoch[g]:  # (written out: a helper call per entry was slower here, even inlined; BENCHMARKS.md)
            as_[j] += gen_w[g] * x
            t[j] += gen_w[g] * x * x * gen_q[g]
        else:
            ad[j] += x
    return ukeys, ad, as_, t


@njit(cache=True)
def reduce_packed_x(packed, shift, x):
    """:func:`reduce_packed` when every generator is deterministic, with the products ``x[pos] = c_I
    <alpha|H|I>`` (m,) float64 formed beforehand: one gather per entry instead of three (position,
    generator, coefficient), the same sums in the same order. Returns ukeys (u,) int64 and A_D (u,)
    float64 (no A_S, T: a deterministic pass carries one sum, :func:`merge_sorted_sum`)."""
    m = packed.shape[0]
    mask = (np.uint64(1) << np.uint64(shift)) - np.uint64(1)
    sh = np.uint64(shift)
    u = _n_keys(packed, sh)
    ukeys = np.empty(u, np.int64)
    ad = np.zeros(u, np.float64)
    j = -1
    for k in range(m):
        key = np.int64(packed[k] >> sh)
        if k == 0 or key != ukeys[j]:
            j += 1
            ukeys[j] = key
        ad[j] += x[np.int64(packed[k] & mask)]
    return ukeys, ad


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
def merge_sorted_sum(k1, a1, k2, a2):
    """:func:`merge_sorted_sums` of a single sum per key (a deterministic pass: A_D only)."""
    n1 = k1.shape[0]
    n2 = k2.shape[0]
    out_k = np.empty(n1 + n2, np.int64)
    oa = np.empty(n1 + n2)
    i = 0
    j = 0
    m = 0
    while i < n1 and j < n2:
        if k1[i] < k2[j]:
            out_k[m] = k1[i]
            oa[m] = a1[i]
            i += 1
        elif k2[j] < k1[i]:
            out_k[m] = k2[j]
            oa[m] = a2[j]
            j += 1
        else:
            out_k[m] = k1[i]
            oa[m] = a1[i] + a2[j]
            i += 1
            j += 1
        m += 1
    for r in range(i, n1):
        out_k[m] = k1[r]
        oa[m] = a1[r]
        m += 1
    for r in range(j, n2):
        out_k[m] = k2[r]
        oa[m] = a2[r]
        m += 1
    return out_k[:m], oa[:m]


@njit(cache=True)
def en_sum(ad, as_, t, hdiag, e0, n_draws):
    """sum_alpha A_alpha^2 / (e0 - hdiag[alpha]) (Hartree) with the estimator of ``rung.sci.pt2``'s
    docstring: A^2 = A_D^2 for ``n_draws`` = 0, else A_D^2 + 2 A_D A_S + (A_S^2 - T / N) / (1 - 1 / N);
    each term the same arithmetic as the NumPy expression, summed in blocks of 4096 (error ~(4096 +
    m / 4096) ulp; NumPy's pairwise sum differs by round-off), with no (m,) temporaries. ad, as_, t,
    hdiag : (m,) float64 (as_, t read only when ``n_draws`` > 0)."""
    m = ad.shape[0]
    total = 0.0
    for lo in range(0, m, 4096):
        part = 0.0
        for k in range(lo, min(m, lo + 4096)):
            num = ad[k] * ad[k]
            if n_draws:
                num = num + 2.0 * ad[k] * as_[k] + (as_[k] * as_[k] - t[k] / n_draws) / (1.0 - 1.0 / n_draws)
            part += num / (e0 - hdiag[k])
        total += part
    return total


@njit(cache=True)
def selection_scores(ad, as_, hdiag, e0, tol):
    """CIPSI scores |e_alpha| = (A_D + A_S)^2 / |e0 - H_aa| (m,) float64, Hartree, with a gap below
    ``tol`` taken as ``tol`` (a degenerate determinant); NumPy's ``(ad + as_) ** 2 / np.abs(den)``
    element by element, in one array instead of five temporaries."""
    out = np.empty(ad.shape[0])
    for k in range(ad.shape[0]):
        den = e0 - hdiag[k]
        if abs(den) < tol:
            den = -tol
        a = ad[k] + as_[k]
        out[k] = a * a / abs(den)
    return out


@njit(cache=True)
def any_near(x, x0, tol):
    """Whether some ``|x0 - x[k]| < tol`` (no (m,) temporaries)."""
    for k in range(x.shape[0]):
        if abs(x0 - x[k]) < tol:
            return True
    return False


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
