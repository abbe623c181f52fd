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


@pytest.mark.parametrize("path", ["dense_tables", "dense", "packed", "sorted"])
def test_deterministic_pt2_and_selection(problem, monkeypatch, path):
    ham, lay, dets, keys, c, e0, terms, ext_keys = problem
    monkeypatch.setattr(pt2, "DENSE_KEYS", 2**23 if path.startswith("dense") else 0)
    monkeypatch.setattr(pt2, "TABLE_MAX", 2**24 if path == "dense_tables" else 0)  # per-string tables or enumeration
    monkeypatch.setattr(pt2, "POS_BITS", 26 if path != "sorted" else 63)
    r = pt2.en_pt2(lay, dets, keys, c, e0, ham.h1, ham.eri, n_select=10, max_entries=3000)  # several chunks
    assert r.e_pt2 == pytest.approx(terms.sum(), rel=1e-12)
    assert r.error == 0.0
    best = ext_keys[np.argsort(-np.abs(terms))[:10]]
    np.testing.assert_array_equal(r.selected, best)


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
