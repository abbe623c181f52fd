"""EN-PT2 and selection against dense linear algebra in the full space."""

import numpy as np
import pytest

from rung.sci import hamiltonian, pt2
from rung.sci.determinants import Layout
from rung.sci.testing import fci_space, random_hamiltonian


@pytest.fixture(scope="module")
def problem():
    ham = random_hamiltonian(7, (3, 3), seed=4)
    lay = Layout(7, 3, 3)
    dets, keys = lay.sort_unique(fci_space(lay))
    h = hamiltonian.build(dets, ham.h1, ham.eri).dense()
    rng = np.random.default_rng(0)
    sub = np.sort(rng.choice(keys.size, 60, replace=False))
    w, v = np.linalg.eigh(h[np.ix_(sub, sub)])
    ext = np.setdiff1d(np.arange(keys.size), sub)
    a = h[np.ix_(ext, sub)] @ v[:, 0]
    terms = a**2 / (w[0] - np.diag(h)[ext])
    return ham, lay, dets[sub], keys[sub], v[:, 0], w[0], terms, keys[ext]


@pytest.mark.parametrize("path", ["dense_tables", "dense_tables_marked", "dense", "packed", "sorted"])
def test_deterministic_pt2_and_selection(problem, monkeypatch, path):
    ham, lay, dets, keys, c, e0, terms, ext_keys = problem
    # (the table path sweeps the accumulators here, 60 generators; "marked" visits the marked entries)
    monkeypatch.setattr(pt2, "MARK_FRACTION", np.inf if path.endswith("marked") else 1.0)
    monkeypatch.setattr(pt2, "DENSE_KEYS", 2**23 if path.startswith("dense") else 0)
    monkeypatch.setattr(pt2, "TABLE_MAX", 2**24 if path == "dense_tables" else 0)  # per-string tables or enumeration
    monkeypatch.setattr(pt2, "POS_BITS", 26 if path != "sorted" else 63)
    r = pt2.en_pt2(lay, dets, keys, c, e0, ham.h1, ham.eri, n_select=10, max_entries=3000)  # several chunks
    assert r.e_pt2 == pytest.approx(terms.sum(), rel=1e-12)
    assert r.error == 0.0
    best = ext_keys[np.argsort(-np.abs(terms))[:10]]
    np.testing.assert_array_equal(r.selected, best)


def test_marked_and_swept_collections_agree(problem, monkeypatch):
    """The table path's two collections (marked entries only, or a sweep of the accumulator rows) give
    the same semi-stochastic sums, draw for draw, and leave the kept accumulators clean."""
    ham, lay, dets, keys, c, e0, _, _ = problem
    got = []
    for frac in (np.inf, 0.0, np.inf):
        monkeypatch.setattr(pt2, "MARK_FRACTION", frac)
        r = pt2.en_pt2(lay, dets, keys, c, e0, ham.h1, ham.eri, n_select=5, stochastic=True, n_samples=3,
                       det_fraction=0.1, sample_fraction=0.3, rng=np.random.default_rng(3))
        got.append((r.e_pt2, r.error, r.selected.tolist(), r.n_external))
    assert got[0] == got[1] == got[2]
    assert not any(a.any() for a in next(iter(pt2._ACC.values())))


def test_semistochastic_is_unbiased(problem):
    ham, lay, dets, keys, c, e0, terms, _ = problem
    runs = [pt2.en_pt2(lay, dets, keys, c, e0, ham.h1, ham.eri, stochastic=True, n_samples=10, det_fraction=0.1,
                       sample_fraction=0.3, rng=np.random.default_rng(s)) for s in range(12)]
    means = np.array([r.e_pt2 for r in runs])
    errs = np.array([r.error for r in runs])
    exact = terms.sum()
    # the average of 12 independent estimates is within 4 standard errors of the exact value,
    # and the reported error bar agrees with the observed spread within a factor 2
    assert abs(means.mean() - exact) < 4 * means.std(ddof=1) / np.sqrt(means.size)
    assert 0.5 < errs.mean() / means.std(ddof=1) < 2.0
    assert np.all(errs > 0)


def _screened_oracle(ham, lay, sub, c, eps):
    """(key, generator) -> <alpha|H|I> for alpha outside ``sub`` with |c_I <alpha|H|I>| > eps (PySCF's dense H)."""
    from rung.sci.testing import fci_space, pyscf_dense_h

    dets = fci_space(lay)
    keys = lay.keys(dets)
    hp = pyscf_dense_h(ham)
    ext = np.setdiff1d(np.arange(keys.size), sub)
    out = {}
    for g, i in enumerate(sub):
        for a in ext[np.abs(hp[ext, i]) * abs(c[g]) > eps]:
            out[(int(keys[a]), g)] = hp[a, i]
    return dets, keys, hp, out


@pytest.mark.parametrize("eps", [1e-3, 3e-2])
def test_heatbath_screened_contributions(eps):
    """Heat-bath screening generates exactly the pairs with |c_I H_aI| > eps, with their elements."""
    from rung.sci._kernels import cpu

    ham = random_hamiltonian(7, (3, 2), seed=9)
    lay = Layout(7, 3, 2)
    rng = np.random.default_rng(1)
    sub = np.sort(rng.choice(lay.fci_size, 40, replace=False))
    c = rng.normal(size=40) * np.logspace(0, -3, 40)
    dets, keys, _, want = _screened_oracle(ham, lay, sub, c, eps)
    hb = cpu.heatbath_tables(ham.eri)
    gens = np.arange(40)
    bounds = cpu.screened_bounds(dets[sub], gens, c, eps, hb[1], hb[3])
    args = (dets[sub], gens, c, eps, bounds, ham.h1, ham.eri, *hb, cpu.hash_table(keys[sub]), lay.binom_a, lay.binom_b,
            lay.nstr_b)
    shift = int(bounds.sum()).bit_length()  # positions < 2**shift
    slabs = cpu.pass_buffers(int(bounds.sum()), True, False)
    m = cpu.external_screened(*args, shift, False, *slabs)
    _, val, gen, out, _ = slabs
    pos = out[:m] & ((1 << shift) - 1)
    k, g, v = out[:m] >> shift, gen[pos], val[pos]
    got = {(int(a), int(b)): x for a, b, x in zip(k, g, v)}
    assert len(got) == k.size and set(got) == set(want)
    assert max(abs(got[p] - want[p]) for p in want) < 1e-12
    assert np.all(np.bincount(g, minlength=40) <= bounds)
    assert np.all(np.diff(pos) > 0)  # generation order: generators ascending, each at its slab offset
    assert np.all(pos >= np.concatenate([[0], np.cumsum(bounds)])[g])
    # scaled by c_I, without generators, keys and positions apart (shift 0): the same pairs
    slabs2 = cpu.pass_buffers(int(bounds.sum()), False, True)
    m2 = cpu.external_screened(*args, 0, True, *slabs2)
    _, val2, gen2, out2, pos2 = slabs2
    assert m2 == m and gen2.size == 0
    np.testing.assert_array_equal(out2[:m], k)
    np.testing.assert_array_equal(pos2[:m], pos)
    np.testing.assert_array_equal(val2[pos], v * c[g])


def test_screened_pt2_equals_screened_sum(problem, monkeypatch):
    """en_pt2 with screening on the large-space path (several chunks): the PT2 of the screened sums."""
    ham, lay, dets, keys, c, e0, terms, ext_keys = problem
    monkeypatch.setattr(pt2, "DENSE_KEYS", 0)
    eps = 2e-3
    from rung.sci.testing import pyscf_dense_h

    fd = fci_space(lay)
    fk = lay.keys(fd)
    hp = pyscf_dense_h(ham)
    pos = {int(k): i for i, k in enumerate(fk)}
    idx = np.array([pos[int(k)] for k in keys])
    ext = np.setdiff1d(np.arange(fk.size), idx)
    contrib = hp[np.ix_(ext, idx)] * c[None, :]
    a = np.where(np.abs(contrib) > eps, contrib, 0.0).sum(axis=1)
    want = np.sum(a**2 / (e0 - np.diag(hp)[ext]))
    r = pt2.en_pt2(lay, dets, keys, c, e0, ham.h1, ham.eri, n_select=5, max_entries=500, screen=eps)
    assert r.e_pt2 == pytest.approx(want, rel=1e-12)
    with monkeypatch.context() as m:  # keys too large to pack with positions: sorted apart (the same sums)
        m.setattr(pt2, "POS_BITS", 62)
        r2 = pt2.en_pt2(lay, dets, keys, c, e0, ham.h1, ham.eri, n_select=5, max_entries=500, screen=eps)
    assert r2.e_pt2 == pytest.approx(want, rel=1e-12) and r2.n_generated == r.n_generated
    np.testing.assert_array_equal(r2.selected, r.selected)
    assert abs(r.e_pt2 - terms.sum()) > 1e-9  # the screening did discard something here
    score = a**2 / np.abs(e0 - np.diag(hp)[ext])
    np.testing.assert_array_equal(r.selected, fk[ext][np.argsort(-score, kind="stable")[:5]])
    # a negligible threshold gives the exact PT2
    r0 = pt2.en_pt2(lay, dets, keys, c, e0, ham.h1, ham.eri, max_entries=500, screen=1e-14)
    assert r0.e_pt2 == pytest.approx(terms.sum(), rel=1e-10)


@pytest.mark.parametrize("pos_bits", [26, 62])
def test_screened_semistochastic_matches_unscreened(problem, monkeypatch, pos_bits):
    """The screened pass's sampled path (generator of each pair from the slabs, values not scaled; packed
    and sorted apart): with a negligible screen, the unscreened semi-stochastic sums draw for draw."""
    ham, lay, dets, keys, c, e0, _, _ = problem
    monkeypatch.setattr(pt2, "DENSE_KEYS", 0)
    monkeypatch.setattr(pt2, "POS_BITS", pos_bits)
    got = [pt2.en_pt2(lay, dets, keys, c, e0, ham.h1, ham.eri, stochastic=True, n_samples=3, det_fraction=0.1,
                      sample_fraction=0.3, max_entries=500, rng=np.random.default_rng(3), screen=s)
           for s in (0.0, 1e-14)]
    assert got[1].screen == 1e-14 and got[0].screen == 0.0 and got[0].error > 0
    assert got[1].e_pt2 == pytest.approx(got[0].e_pt2, rel=1e-10)
    assert got[1].error == pytest.approx(got[0].error, rel=1e-8)


def test_degenerate_perturber_diverges_without_dividing_by_zero():
    """A met determinant with H_aa == E_0 (exactly or up to rounding) that couples to the space makes
    EN-PT2 diverge: -inf, with no division by zero; one that does not couple contributes nothing
    (analytic cases)."""
    ad = np.array([0.1, 0.2, 0.3])
    zero = np.zeros(3)
    e0 = -1.0
    hdiag = np.array([0.5, e0, 1.5])
    with np.errstate(all="raise"):
        assert pt2._sum_terms(pt2.accumulate_cpu, ad, zero, zero, hdiag, e0, 0) == -np.inf
        hdiag[1] = e0 * (1 + 2e-16)  # degenerate up to rounding: no 1e15 Ha term
        assert pt2._sum_terms(pt2.accumulate_cpu, ad, zero, zero, hdiag, e0, 0) == -np.inf
        ad[1] = 0.0
        got = pt2._sum_terms(pt2.accumulate_cpu, ad, zero, zero, hdiag, e0, 0)
    assert got == pytest.approx(0.1**2 / (e0 - 0.5) + 0.3**2 / (e0 - 1.5), rel=1e-14)
