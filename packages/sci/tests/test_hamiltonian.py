"""Sparse H and S^2 in determinant spaces against PySCF's FCI (dense H, spin_square)."""

import numpy as np
import pytest

from rung.sci import hamiltonian
from rung.sci.davidson import davidson
from rung.sci.determinants import Layout
from rung.sci.fcidump import Hamiltonian
from rung.sci.testing import fci_space, pyscf_dense_h, random_hamiltonian


@pytest.mark.parametrize("tables", [True, False])  # per-string tables (small FCI spaces) or string-group scans
@pytest.mark.parametrize("norb, nelec", [(6, (3, 3)), (6, (3, 2)), (5, (4, 1))])
def test_h_times_c_matches_pyscf_dense(norb, nelec, tables, monkeypatch):
    from rung.sci import pt2

    monkeypatch.setattr(pt2, "TABLE_MAX", 2**24 if tables else 0)
    ham = random_hamiltonian(norb, nelec, seed=norb + nelec[1])
    lay = Layout(norb, *nelec)
    dets = fci_space(lay)
    hp = pyscf_dense_h(ham)
    hs = hamiltonian.build(dets, ham.h1, ham.eri)
    c = np.random.default_rng(0).normal(size=(dets.shape[0], 2))
    np.testing.assert_allclose(hs.matvec(c), hp @ c, atol=1e-11)
    # the threaded one-pass product (taken on several threads above PARALLEL_MATVEC_NNZ), forced
    monkeypatch.setattr(hamiltonian, "PARALLEL_MATVEC_NNZ", 0)
    monkeypatch.setattr(hamiltonian, "get_num_threads", lambda: 3)
    np.testing.assert_allclose(hs.matvec(c), hp @ c, atol=1e-11)
    np.testing.assert_allclose(hs.matvec(c[:, 0]), hp @ c[:, 0], atol=1e-11)
    np.testing.assert_allclose(hs.dense(), hp, atol=1e-12)
    # a random subspace (not closed under anything) in shuffled order: the submatrix
    sub = np.random.default_rng(1).permutation(dets.shape[0])[: dets.shape[0] // 3]
    np.testing.assert_allclose(hamiltonian.build(dets[sub], ham.h1, ham.eri).dense(), hp[np.ix_(sub, sub)], atol=1e-12)


def test_orbitals_beyond_64_bits():
    """6 active orbitals spread over words 0 and 1 of a 70-orbital space give the same H as packed ones."""
    small = random_hamiltonian(6, (3, 3), seed=5)
    where = np.array([0, 1, 63, 64, 65, 69])
    h1 = np.zeros((70, 70))
    eri = np.zeros((70,) * 4)
    h1[np.ix_(where, where)] = small.h1
    eri[np.ix_(where, where, where, where)] = small.eri
    lay, big = Layout(6, 3, 3), Layout(70, 3, 3)
    dets = fci_space(lay)
    occ_a, occ_b = lay.occupations(dets)
    spread = big.from_occupations([[where[p] for p in o] for o in occ_a], [[where[p] for p in o] for o in occ_b])
    assert spread.shape[2] == 2
    np.testing.assert_allclose(hamiltonian.build(spread, h1, eri).dense(), pyscf_dense_h(small), atol=1e-12)


def test_s2_matches_pyscf_spin_square():
    from pyscf import fci

    ham = random_hamiltonian(6, (3, 3), seed=3)
    lay = Layout(6, 3, 3)
    dets = fci_space(lay)
    keys = lay.keys(dets)
    order = np.argsort(keys)
    s2 = hamiltonian.s2_operator(lay, dets[order], keys[order]).toarray()
    e, vecs = fci.direct_spin1.kernel(ham.h1, ham.eri, 6, (3, 3), nroots=4)
    for v in vecs:
        c = v.ravel()[order]
        ss, _ = fci.spin_op.spin_square0(v, 6, (3, 3))
        assert c @ s2 @ c == pytest.approx(ss, abs=1e-8)


def test_davidson_several_roots():
    ham = random_hamiltonian(7, (3, 3), seed=11)
    lay = Layout(7, 3, 3)
    dets = fci_space(lay)
    hs = hamiltonian.build(dets, ham.h1, ham.eri)
    exact = np.linalg.eigvalsh(hs.dense())[:3]
    guess = np.eye(dets.shape[0])[:, np.argsort(hs.diag)[:3]]
    r = davidson(hs.matvec, hs.diag, guess, tol=1e-9)
    assert r.converged.all()
    np.testing.assert_allclose(r.energies, exact, atol=1e-10)
    np.testing.assert_allclose(np.abs(r.vectors.T @ r.vectors), np.eye(3), atol=1e-8)


def test_h2o_subspace_energy_is_variational(h2o_small):
    ham: Hamiltonian = h2o_small
    lay = Layout(ham.norb, *ham.nelec)
    dets = fci_space(lay)
    hs = hamiltonian.build(dets, ham.h1, ham.eri)
    from pyscf import fci

    e_fci = fci.direct_spin1.kernel(ham.h1, ham.eri, ham.norb, ham.nelec, conv_tol=1e-12)[0]
    guess = np.eye(dets.shape[0])[:, np.argsort(hs.diag)[:1]]
    assert davidson(hs.matvec, hs.diag, guess, tol=1e-8).energies[0] == pytest.approx(e_fci, abs=1e-9)


@pytest.mark.parametrize("tables", [True, False])
def test_incremental_build_matches_pyscf_dense(tables, monkeypatch):
    """H of a grown space from the old block plus the new determinants' rows equals PySCF's submatrix."""
    from rung.sci import pt2

    monkeypatch.setattr(pt2, "TABLE_MAX", 2**24 if tables else 0)
    ham = random_hamiltonian(7, (3, 3), seed=11)
    lay = Layout(7, 3, 3)
    dets = fci_space(lay)  # PySCF's address order
    keys = lay.keys(dets)
    hp = pyscf_dense_h(ham)
    rng = np.random.default_rng(2)
    old = np.sort(rng.choice(keys.size, 150, replace=False))
    new = np.union1d(old, rng.choice(keys.size, 400, replace=False))
    o = old[np.argsort(keys[old])]  # spaces sorted by key, as CIPSI keeps them
    nw = new[np.argsort(keys[new])]
    h_old = hamiltonian.build(dets[o], ham.h1, ham.eri)
    h_new = hamiltonian.build(dets[nw], ham.h1, ham.eri, previous=(keys[o], h_old))
    np.testing.assert_allclose(h_new.dense(), hp[np.ix_(nw, nw)], atol=1e-12)
    assert h_new.upper.nnz == hamiltonian.build(dets[nw], ham.h1, ham.eri).upper.nnz
    # a previous space that is not a subspace is ignored (full build)
    other = hamiltonian.build(dets[nw], ham.h1, ham.eri, previous=(keys[o] + 10**6, h_old))
    np.testing.assert_allclose(other.dense(), hp[np.ix_(nw, nw)], atol=1e-12)


def test_symmetry_blocked_tables_match_pyscf_dense(h2o_small):
    """With ORBSYM labels (H2O, C2v) the table kernels visit only symmetry-allowed alpha-beta partners:
    H in a space of mixed symmetry still equals PySCF's dense H, and PT2 is unchanged."""
    from rung.sci import pt2
    from rung.sci.testing import pyscf_dense_h

    ham = h2o_small
    lay = Layout(ham.norb, *ham.nelec)
    dets = fci_space(lay)
    hp = pyscf_dense_h(ham)
    sub = np.sort(np.random.default_rng(3).choice(dets.shape[0], 700, replace=False))
    hs = hamiltonian.build(dets[sub], ham.h1, ham.eri, orbsym=ham.orbsym)
    np.testing.assert_allclose(hs.dense(), hp[np.ix_(sub, sub)], atol=1e-12)
    tables = pt2._string_tables(lay, ham.h1, ham.eri)
    _, tb, sym = pt2._blocked_tables(lay, tables, ham.h1, ham.eri, ham.orbsym)
    ptr, ns = tb.s_ptr, tb.s_rank.shape[1]
    assert ptr[:, -1].tolist() == [ns] * ptr.shape[0] and np.count_nonzero(np.diff(ptr, axis=1)) > ptr.shape[0]
    group = (np.arange(ns)[None, :, None] >= ptr[:, None, 1:]).sum(axis=2)  # the group of every column
    np.testing.assert_array_equal(sym[tb.s_h] ^ sym[tb.s_p], group)
    d_val, d_cnt = tb.d_val, tb.d_cnt
    assert 0 < d_cnt.min() and d_cnt.max() < d_val.shape[1]  # same-spin doubles: the nonzero ones first
    np.testing.assert_array_equal(np.sort(d_val, axis=1), np.sort(tables[1][7], axis=1))  # (raw d_val)
    assert all(np.all(d_val[r, : d_cnt[r]] != 0) and np.all(d_val[r, d_cnt[r]:] == 0) for r in range(d_val.shape[0]))
    keys = lay.keys(dets[sub])
    order = np.argsort(keys)
    d, k = dets[sub][order], keys[order]
    w, v = np.linalg.eigh(hp[np.ix_(sub[order], sub[order])])
    plain = pt2.en_pt2(lay, d, k, v[:, 0], w[0], ham.h1, ham.eri, n_select=20)
    sym = pt2.en_pt2(lay, d, k, v[:, 0], w[0], ham.h1, ham.eri, n_select=20, orbsym=ham.orbsym)
    assert sym.e_pt2 == pytest.approx(plain.e_pt2, rel=1e-13)
    assert sym.n_generated < plain.n_generated
