"""Every numba kernel against the plain-Python reference (multi-word strings included)."""

import numpy as np
import pytest

from rung.sci._kernels import cpu
from rung.sci._kernels import reference as ref
from rung.sci.determinants import Layout
from rung.sci.testing import random_hamiltonian


def random_string(rng, norb, ne):
    return sum(1 << int(p) for p in rng.choice(norb, ne, replace=False))


@pytest.mark.parametrize("norb", [13, 64, 130])
def test_degree_phase_rank(norb):
    rng = np.random.default_rng(norb)
    nw = (norb + 63) // 64
    ne = 7
    binom = cpu.binomial_table(norb, ne)
    occ = np.empty(norb, np.int64)
    for _ in range(40):
        a, b = random_string(rng, norb, ne), random_string(rng, norb, ne)
        d1 = ref.from_ints(a, b, nw)
        a2, b2 = random_string(rng, norb, ne), random_string(rng, norb, ne)
        d2 = ref.from_ints(a2, b2, nw)
        assert cpu.excitation_degree(d1, d2) == ref.excitation_degree(d1, d2)
        n = cpu.occupied(d1[0], occ)
        assert list(occ[:n]) == [p for p in range(norb) if a >> p & 1]
        h = int(rng.choice([p for p in range(norb) if a >> p & 1]))
        p = int(rng.choice([q for q in range(norb) if not a >> q & 1]))
        assert cpu.phase(d1[0], h, p) == ref.phase(a, h, p)
        if norb <= 64:
            assert cpu.rank(d1[0], binom) == ref.rank(a, norb, ne) if norb <= 13 else True
        r = cpu.rank(d1[0], binom)
        out = np.empty(nw, np.uint64)
        cpu.unrank(r, ne, norb, binom, out)
        assert np.array_equal(out, d1[0])


def test_rank_is_colex_position():
    binom = cpu.binomial_table(9, 4)
    for s in [0b1111, 0b10111, 0b111100000, 0b101010100]:
        assert cpu.rank(np.array([s], np.uint64), binom) == ref.rank(s, 9, 4)


def test_matrix_elements_against_second_quantization():
    ham = random_hamiltonian(5, (3, 2), seed=1)
    lay = Layout(5, 3, 2)
    rng = np.random.default_rng(2)
    occ1, occ2 = np.empty(5, np.int64), np.empty(5, np.int64)
    dets = [ref.from_ints(random_string(rng, 5, 3), random_string(rng, 5, 2), lay.nw) for _ in range(10)]
    dets += list(lay.from_occupations([[0, 1, 2], [0, 3, 4], [0, 1, 2]], [[0, 1], [0, 1], [2, 3]]))
    seen = set()
    for d1 in dets:
        for d2 in dets:
            e = cpu.matrix_element(d1, d2, ham.h1, ham.eri, occ1, occ2)
            assert e == pytest.approx(ref.matrix_element(d1, d2, ham.h1, ham.eri), abs=1e-12)
            seen.add(cpu.excitation_degree(d1, d2))
        assert cpu.diagonal(d1, ham.h1, ham.eri, occ1, occ2) == pytest.approx(
            ref.matrix_element(d1, d1, ham.h1, ham.eri), abs=1e-12)
    assert {(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (0, 2)} <= seen  # every Slater-Condon case was exercised


def test_spin_partners_and_s2_reference():
    lay = Layout(6, 3, 3)
    d = lay.from_occupations([[0, 1, 2]], [[0, 3, 4]])  # open shells 1, 2 (alpha) and 3, 4 (beta)
    dets, keys = lay.spin_complete(d)
    assert dets.shape[0] == 6  # C(4, 2)
    s2 = ref.s2(dets, 6)
    from rung.sci.hamiltonian import s2_operator

    np.testing.assert_allclose(s2_operator(lay, dets, keys).toarray(), s2, atol=1e-12)
    from rung.sci.hamiltonian import SpinSquared

    x = np.random.default_rng(0).normal(size=(6, 2))
    np.testing.assert_allclose(SpinSquared(lay, dets, keys) @ x, s2 @ x, atol=1e-12)  # matrix-free product
    np.testing.assert_allclose(SpinSquared(lay, dets[:4], keys[:4]) @ x[:4, 0], s2[:4, :4] @ x[:4, 0], atol=1e-12)
    w = np.linalg.eigvalsh(s2)
    np.testing.assert_allclose(sorted(set(np.round(w, 8))), [0.0, 2.0, 6.0])  # S = 0, 1, 2


def test_heatbath_lists_are_sorted_integrals():
    """The heat-bath lists hold every particle pair once, ordered by the magnitude of the element (NumPy)."""
    norb = 6
    eri = random_hamiltonian(norb, (3, 3), seed=3).eri
    os_ab, os_abs, ss_ab, ss_abs = cpu.heatbath_tables(eri)
    for i in range(norb):
        for j in range(norb):
            row = i * norb + j
            a, b = np.divmod(os_ab[row], norb)
            np.testing.assert_array_equal(np.sort(os_ab[row]), np.arange(norb * norb))
            np.testing.assert_array_equal(os_abs[row], np.abs(eri[i, a, j, b]))
            assert np.all(np.diff(os_abs[row]) <= 0)
            if j > i:
                a, b = np.divmod(ss_ab[row], norb)
                assert np.all(a < b) and len(set(ss_ab[row])) == norb * (norb - 1) // 2
                np.testing.assert_array_equal(ss_abs[row], np.abs(eri[i, a, j, b] - eri[i, b, j, a]))
                assert np.all(np.diff(ss_abs[row]) <= 0)


@pytest.mark.parametrize("norb, na, nb", [(6, 3, 2), (70, 2, 2)])
def test_diagonals_from_sorted_keys(norb, na, nb):
    """External-determinant diagonals from sorted keys (string runs) against the reference H (second
    quantization) on a few, and against the per-determinant kernel on many (multi-word strings too)."""
    ham = random_hamiltonian(norb, (na, nb), seed=norb)
    lay = Layout(norb, na, nb)
    keys = np.unique(np.random.default_rng(1).integers(0, lay.fci_size, 400))
    got = cpu.diagonals_sorted_keys(keys, na, nb, norb, lay.binom_a, lay.binom_b, lay.nstr_b, ham.h1, ham.eri)
    dets = lay.from_keys(keys)
    np.testing.assert_allclose(got, cpu.diagonals(dets, ham.h1, ham.eri), atol=1e-12)
    if norb <= 8:
        want = [ref.matrix_element(d, d, ham.h1, ham.eri) for d in dets[:5]]
        np.testing.assert_allclose(got[:5], want, atol=1e-12)


@pytest.mark.parametrize("nparts", [1, 3])
@pytest.mark.parametrize("use_d, use_s", [(True, False), (False, True), (True, True)])
@pytest.mark.parametrize("marked", [True, False])
def test_collect_dense_matches_numpy(nparts, use_d, use_s, marked):
    """The collection of a dense pass (visiting the written entries through their bit sets, or sweeping
    the rows) against the plain NumPy reduction over the whole rows (several blocks, a part-only hit, an
    exact cancellation and written-but-zero entries included); the met determinants' diagonals from the
    string tables against the per-determinant kernel."""
    rng = np.random.default_rng(7)
    lay = Layout(11, 4, 3)
    ham = random_hamiltonian(11, (4, 3), seed=4)
    size = lay.fci_size  # 54,450 keys: 851 words, two blocks of 512
    occa = cpu.string_tables(4, 11, 1, lay.binom_a, ham.h1, ham.eri)[0]
    occb = cpu.string_tables(3, 11, 1, lay.binom_b, ham.h1, ham.eri)[0]
    tail = (lay.nstr_b, occa, occb, 4, 3, ham.h1, ham.eri)
    none = (lay.nstr_b, np.zeros((0, 1), np.int64), np.zeros((0, 1), np.int64), 4, 3, ham.h1, ham.eri)
    acc = [np.zeros((nparts, size)) for _ in range(3)]
    written = np.zeros((nparts, size), bool)
    for a in acc:
        for q in range(nparts):
            hit = rng.choice(size, 800, replace=False)
            a[q, hit] = rng.standard_normal(hit.size)
            written[q, hit] = True
    acc[0][:, 5] = 0.0
    acc[0][0, 5] = 1.0  # met in one part only
    acc[0][:, 6] = 0.0
    acc[0][0, 6], acc[0][-1, 6] = 0.5, -0.5  # an exact cancellation is still met when nparts > 1
    written[:, 5:7] = True
    written[:, rng.choice(size, 300, replace=False)] = True  # written, summing to zero in every part
    for a in acc:
        a[~written] = 0.0
    touched = np.zeros((nparts, (size + 63) // 64), np.uint64)
    for q in range(nparts):
        k = np.flatnonzero(written[q])
        np.bitwise_or.at(touched[q], k >> 6, np.left_shift(np.uint64(1), (k & 63).astype(np.uint64)))
    if not marked:
        touched = np.zeros((nparts, 0), np.uint64)
    used = [a for a, on in zip(acc, (use_d, use_s, use_s)) if on]
    nz = np.zeros((nparts, size), bool)
    for a in used:
        nz |= a != 0.0
    uk = np.flatnonzero(nz.any(axis=0))
    want = [a[:, uk].sum(axis=0) if any(a is u for u in used) else np.zeros(uk.size) for a in acc]
    before = [a.copy() for a in acc] + [touched.copy()]
    keys, sd, ss, st, hd = cpu.collect_dense(*acc, touched, use_d, use_s, False, *tail)
    np.testing.assert_array_equal(keys, uk)
    np.testing.assert_allclose(hd, cpu.diagonals(lay.from_keys(uk), ham.h1, ham.eri), rtol=0, atol=1e-12)
    assert cpu.collect_dense(*acc, touched, use_d, use_s, False, *none)[4].size == 0  # no tables: no diagonals
    for got, w in zip((sd, ss, st), want):
        np.testing.assert_allclose(got, w, rtol=0, atol=1e-15)
    for a, b in zip(acc + [touched], before):
        np.testing.assert_array_equal(a, b)  # no reset asked: untouched
    cpu.collect_dense(*acc, touched, use_d, use_s, True, *tail)
    assert not touched.any()
    for a, b, on in zip(acc, before, (use_d, use_s, use_s)):
        if on:
            assert not a.any()  # the entries read are back to zero
        else:
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("nparts", [1, 2, 5])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("triangle", [True, False])
def test_symmetric_matvec_matches_scipy(nparts, k, triangle):
    """(D + U + U^T) x against SciPy, for U the strict upper triangle or any pattern with each pair once
    (as the incremental H stores it)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    n = 400
    u = sp.triu(sp.random(n, n, density=0.05, random_state=4, format="csr"), k=1, format="csr")
    u.data = rng.standard_normal(u.nnz)
    if not triangle:  # move a random half of the pairs below the diagonal
        c = u.tocoo()
        flip = rng.random(c.nnz) < 0.5
        r, q = np.where(flip, c.col, c.row), np.where(flip, c.row, c.col)
        u = sp.csr_matrix((c.data, (r, q)), shape=(n, n))
        assert sp.tril(u).nnz > 0
    diag = rng.standard_normal(n)
    x = rng.standard_normal((n, k))
    want = diag[:, None] * x + u @ x + u.T @ x
    got = cpu.symmetric_matvec(diag, u.indptr, u.indices, u.data, np.ascontiguousarray(x.T), nparts)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_key_bit_set_and_positions():
    """The key bit set holds exactly the keys, and bits_index gives each key's position among the sorted
    keys (NumPy searchsorted), across word boundaries and in the last partial word."""
    rng = np.random.default_rng(5)
    size = 64 * 300 + 17
    keys = np.unique(np.concatenate([rng.integers(0, size, 3000), [0, 63, 64, size - 1]]))
    bits = cpu.key_bits(rng.permutation(keys), size)  # any order
    assert bits.shape == ((size + 63) // 64,)
    got = np.flatnonzero(np.unpackbits(bits.view(np.uint8), bitorder="little"))
    np.testing.assert_array_equal(got, keys)
    prefix = cpu.bits_prefix(bits)
    pos = [cpu.bits_index(bits, prefix, int(k)) for k in keys]
    np.testing.assert_array_equal(pos, np.searchsorted(keys, keys))
    assert prefix[-1] == keys.size


def test_merge_rows_places_old_and_new_rows():
    """merge_rows against a dense NumPy assembly: old rows moved (and their columns renumbered) through
    ``pos``, new rows copied as they are."""
    import scipy.sparse as sp

    rng = np.random.default_rng(8)
    n = 60
    new_rows = np.sort(rng.choice(n, 25, replace=False)).astype(np.int64)
    pos = np.setdiff1d(np.arange(n), new_rows).astype(np.int64)  # old index -> new index, increasing
    m = pos.size
    old = sp.random(m, m, density=0.2, random_state=1, format="csr")
    new = sp.random(new_rows.size, n, density=0.2, random_state=2, format="csr")
    ptr, cols, vals = cpu.merge_rows(n, old.indptr.astype(np.int64), old.indices.astype(np.int32), old.data, pos,
                                     new_rows, new.indptr.astype(np.int64), new.indices.astype(np.int32), new.data)
    want = np.zeros((n, n))
    want[np.ix_(pos, pos)] = old.toarray()
    want[new_rows] = new.toarray()
    got = sp.csr_matrix((vals, cols, ptr), shape=(n, n))
    assert got.nnz == old.nnz + new.nnz
    np.testing.assert_array_equal(got.toarray(), want)


@pytest.mark.parametrize("n_new", [0, 1, 40])
def test_grow_equals_spin_completion_of_the_union(h2o_small, n_new):
    """Layout.grow (partners of the new determinants merged into a sorted spin-complete space) against
    spin_complete of the whole union; new keys already in the space included."""
    lay = Layout(h2o_small.norb, *h2o_small.nelec)
    rng = np.random.default_rng(n_new)
    dets, keys = lay.spin_complete(lay.from_keys(rng.choice(lay.fci_size, 300, replace=False)))
    new = np.concatenate([rng.choice(lay.fci_size, n_new, replace=False), keys[:3]])
    gd, gk = lay.grow(dets, keys, new)
    wd, wk = lay.spin_complete(np.concatenate([dets, lay.from_keys(new)]))
    np.testing.assert_array_equal(gk, wk)
    np.testing.assert_array_equal(gd, wd)
    assert gd.flags.c_contiguous and gd.dtype == np.uint64


def test_s2_product_across_words_matches_reference():
    """The matrix-free S^2 product on two-word strings (open shells on both sides of orbital 64) against
    the second-quantized reference and the stored-CSR kernel, in a spin-complete space and a part of it."""
    from rung.sci.hamiltonian import SpinSquared, s2_operator

    lay = Layout(70, 3, 3)
    d = lay.from_occupations([[0, 62, 65], [1, 63, 64], [0, 1, 69]], [[0, 63, 66], [1, 2, 69], [0, 1, 62]])
    dets, keys = lay.spin_complete(d)
    assert dets.shape[2] == 2 and dets.shape[0] > 6
    want = ref.s2(dets, 70)
    x = np.random.default_rng(2).normal(size=(dets.shape[0], 3))
    np.testing.assert_allclose(SpinSquared(lay, dets, keys) @ x, want @ x, atol=1e-12)
    np.testing.assert_allclose(s2_operator(lay, dets, keys).toarray(), want, atol=1e-12)
    part = np.arange(0, dets.shape[0], 2)  # partners outside the space are dropped
    np.testing.assert_allclose(SpinSquared(lay, dets[part], keys[part]) @ x[part], want[np.ix_(part, part)] @ x[part],
                               atol=1e-12)


def test_reduce_packed_x_matches_numpy():
    """The one-gather reduction of sorted (key, position) pairs: NumPy's sequential sums in sorted order,
    and bit for bit reduce_packed's with every generator deterministic."""
    rng = np.random.default_rng(5)
    m, shift = 3000, 26
    keys = rng.integers(0, 400, m)
    gen = rng.integers(0, 50, m).astype(np.int32)
    vals = rng.normal(size=m)
    coef = rng.normal(size=50)
    packed = np.sort(cpu.pack(keys, shift))
    x = coef[gen] * vals
    uk, ad = cpu.reduce_packed_x(packed, shift, x)
    pos = (packed & np.uint64((1 << shift) - 1)).astype(np.int64)
    want_k, inv = np.unique(keys[pos], return_inverse=True)
    want = np.zeros(want_k.size)
    np.add.at(want, inv, x[pos])  # unbuffered, in sorted order: the same sequence of additions
    np.testing.assert_array_equal(uk, want_k)
    np.testing.assert_array_equal(ad, want)
    z = np.zeros(50)
    old = cpu.reduce_packed(packed, shift, gen, vals, coef, np.zeros(50, np.bool_), z, z)
    for a, b in zip(old, (uk, ad, np.zeros(uk.size), np.zeros(uk.size))):
        np.testing.assert_array_equal(a, b)


def test_merge_sorted_sums_match_numpy():
    """Merging two key-sorted partial sums (unique keys each): NumPy's union of the keys and sums
    (each key's sum is one addition of the two parts, or a part's value alone); the one-sum merge gives
    the same keys and A_D bit for bit."""
    rng = np.random.default_rng(8)
    for n1, n2 in ((0, 5), (7, 0), (300, 200)):
        k1 = np.unique(rng.integers(0, 600, n1))
        k2 = np.unique(rng.integers(0, 600, n2))
        v1 = rng.normal(size=(3, k1.size))
        v2 = rng.normal(size=(3, k2.size))
        uk = np.union1d(k1, k2)
        want = np.zeros((3, uk.size))
        want[:, np.searchsorted(uk, k1)] += v1
        want[:, np.searchsorted(uk, k2)] += v2  # 0 + a + b = a + b exactly
        got = cpu.merge_sorted_sums(k1, *v1, k2, *v2)
        np.testing.assert_array_equal(got[0], uk)
        for q in range(3):
            np.testing.assert_array_equal(got[1 + q], want[q])
        one = cpu.merge_sorted_sum(k1, v1[0], k2, v2[0])
        np.testing.assert_array_equal(one[0], uk)
        np.testing.assert_array_equal(one[1], want[0])


def test_string_marks_of_a_hash_table():
    """The heat-bath pass's filter: every alpha and beta rank of the space's keys marked, nothing else."""
    from rung.sci._kernels.cpu.heatbath import _string_marks

    rng = np.random.default_rng(6)
    nstr_b = 37
    keys = np.unique(rng.integers(0, 50 * nstr_b, 200))
    in_a, in_b = _string_marks(cpu.hash_table(keys), nstr_b, 1 << 20)
    np.testing.assert_array_equal(np.flatnonzero(in_a), np.unique(keys // nstr_b))
    np.testing.assert_array_equal(np.flatnonzero(in_b), np.unique(keys % nstr_b))
    a, b = _string_marks(cpu.hash_table(keys), nstr_b, 10)  # sizes beyond the limit: no filter
    assert a.size == 0 and b.size == 0


def test_hash_filter_of_a_hash_table():
    """The heat-bath pass's hash filter: exactly the bits (key * HASH_MULT mod 2**64) >> shift of the
    table's keys (NumPy's wrapping uint64 product), 16 bits per table slot."""
    from rung.sci._kernels.cpu.heatbath import FILTER_BITS, _hash_filter
    from rung.sci._kernels.cpu.keys import HASH_MULT

    rng = np.random.default_rng(7)
    for n in (0, 1, 300):
        keys = np.unique(rng.integers(0, 2**40, n))
        table = cpu.hash_table(keys)
        filt, shift = _hash_filter(table)
        assert filt.size * 64 == max(64, table.size << FILTER_BITS)
        h = (keys.astype(np.uint64) * HASH_MULT) >> np.uint64(shift)
        assert np.all(h < table.size << FILTER_BITS)
        want = np.zeros(filt.size * 64, np.bool_)
        want[h.astype(np.int64)] = True
        got = np.unpackbits(filt.view(np.uint8), bitorder="little").astype(np.bool_)
        np.testing.assert_array_equal(got, want)


def test_rest_tables_rank_and_sign_of_same_spin_doubles():
    """The heat-bath walk's same-spin doubles i j -> a b: the rank from _rest_tables is the reference's
    colex rank of the excited string, and the sign (-1)^(ca + cb + x1 + x2 + 1) is the reference's
    product of the two single-excitation phases (i -> a, then j -> b), for every double of random
    strings (5 electrons in 10 orbitals)."""
    from rung.sci._kernels.cpu.heatbath import _rest_tables

    norb, ne = 10, 5
    binom = cpu.binomial_table(norb, ne)
    rng = np.random.default_rng(9)
    below = np.empty(norb, np.int64)
    pre = np.empty((3, norb + 1), np.int64)
    for _ in range(4):
        occ = np.sort(rng.choice(norb, ne, replace=False)).astype(np.int64)
        s = sum(1 << int(p) for p in occ)
        empty = [p for p in range(norb) if not s >> p & 1]
        for x1 in range(ne):
            for x2 in range(x1 + 1, ne):
                _rest_tables(occ, ne, x1, x2, norb, binom, below, pre)
                i, j = int(occ[x1]), int(occ[x2])
                for a in empty:
                    for b in empty:
                        if b <= a:
                            continue
                        ca, cb = below[a], below[b]
                        r = (binom[a, ca + 1] + binom[b, cb + 2] + pre[0, ca] + pre[1, cb] - pre[1, ca]
                             + pre[2, ne - 2] - pre[2, cb])
                        t = s ^ (1 << i) ^ (1 << a)
                        assert r == ref.rank(t ^ (1 << j) ^ (1 << b), norb, ne)
                        sign = -1 if (ca + cb + x1 + x2 + 1) & 1 else 1
                        assert sign == ref.phase(s, i, a) * ref.phase(t, j, b)


def test_en_sum_matches_numpy():
    """The PT2 sum kernel: NumPy's elementwise estimator summed with np.sum, to round-off (several
    blocks of 4096), deterministic and sampled; any_near against NumPy's test."""
    rng = np.random.default_rng(10)
    m = 10_000
    ad, as_, t = rng.normal(size=(3, m))
    t = np.abs(t)
    hdiag = rng.uniform(0.5, 3.0, m)
    e0 = -1.0
    for n_draws in (0, 5):
        num = ad * ad
        if n_draws:
            num = num + 2.0 * ad * as_ + (as_ * as_ - t / n_draws) / (1.0 - 1.0 / n_draws)
        want = np.sum(num / (e0 - hdiag))
        assert cpu.en_sum(ad, as_, t, hdiag, e0, n_draws) == pytest.approx(want, rel=1e-13)
    assert cpu.en_sum(ad[:0], as_[:0], t[:0], hdiag[:0], e0, 0) == 0.0
    for tol in (1e-3, 0.5, 2.0):
        assert cpu.any_near(hdiag, 1.0, tol) == bool(np.any(np.abs(1.0 - hdiag) < tol))
    assert not cpu.any_near(hdiag, 10.0, 1.0)


def test_selection_scores_match_numpy():
    """CIPSI scores: NumPy's (A_D + A_S)^2 / |E0 - H_aa| bit for bit, a gap below the tolerance (a
    degenerate determinant) taken as the tolerance."""
    rng = np.random.default_rng(11)
    ad, as_ = rng.normal(size=(2, 500))
    hdiag = rng.uniform(-2.0, 2.0, 500)
    e0 = -0.5
    hdiag[:3] = e0 + np.array([0.0, 1e-13, -1e-12])  # degenerate up to rounding
    tol = 1e-10
    den = e0 - hdiag
    den[np.abs(den) < tol] = -tol
    np.testing.assert_array_equal(cpu.selection_scores(ad, as_, hdiag, e0, tol), (ad + as_) ** 2 / np.abs(den))
