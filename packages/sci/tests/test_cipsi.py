"""CIPSI against exact FCI (PySCF direct_spin1 on the same integrals)."""

import numpy as np
import pytest

from rung.sci import cipsi
from rung.sci.fcidump import Hamiltonian


def test_complete_space_reaches_fci(h2o_small):
    """Truncated H2O/6-31G: CIPSI grows to the whole totally symmetric block and matches PySCF's FCI."""
    ham = h2o_small
    r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=10**6, pt2_threshold=0.0), log=None)
    e_fci = cipsi.fci_energy(ham)[0]
    assert r.e_pt2 == 0.0  # no external determinant couples any more
    assert r.e_var[0] == pytest.approx(e_fci, abs=1e-6)
    assert abs(r.s2[0]) < 1e-6
    ev = [h["e_var"] for h in r.history]
    assert all(b <= a + 1e-10 for a, b in zip(ev, ev[1:]))  # variational energies only go down


def test_two_roots_in_the_complete_space():
    """No spatial symmetry (random integrals): the full space is reached and two singlet roots match."""
    from pyscf import fci

    from rung.sci.testing import pyscf_dense_h, random_hamiltonian

    ham = random_hamiltonian(6, (3, 3), seed=7)
    r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=10**5, pt2_threshold=0.0, nroots=2), log=None)
    assert r.complete_space and r.n_det == 400
    w, v = np.linalg.eigh(pyscf_dense_h(ham))
    singlets = []
    for k in range(w.size):
        if abs(fci.spin_op.spin_square0(v[:, k], 6, (3, 3))[0]) < 1e-6:
            singlets.append(w[k])
        if len(singlets) == 2:
            break
    np.testing.assert_allclose(r.e_var, np.array(singlets) + ham.ecore, atol=1e-6)
    np.testing.assert_allclose(r.s2, 0.0, atol=1e-6)


def test_pt2_and_extrapolation_approach_fci(h2o_small):
    ham = h2o_small
    e_fci = cipsi.fci_energy(ham)[0]
    r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=150, growth=1.6), log=None)
    assert r.n_det < 3136
    err_var = r.e_var[0] - e_fci
    err_pt2 = r.e_var_pt2 - e_fci
    assert err_var > 0
    assert abs(err_pt2) < 0.2 * err_var  # PT2 recovers most of what the space misses
    assert abs(r.e_extrapolated - e_fci) < 0.5 * err_var


def test_singlet_does_not_slide_into_triplet():
    """O2/STO-3G in the Ms = 0 sector: the triplet is lowest; asking for S = 0 gives the singlet.

    (CIPSI stays in the spatial symmetry of its reference: the S = 1 run starts from a determinant
    with two open shells, which has the symmetry of the triplet ground state.)"""
    from pyscf import fci, gto, scf

    from rung.sci.fcidump import from_scf

    mol = gto.M(atom="O 0 0 0; O 0 0 2.3", basis="sto-3g", unit="Bohr", verbose=0)
    mf = scf.RHF(mol).run()
    ham = from_scf(mf, ncore=2)
    cfg = dict(max_det=10**5, pt2_threshold=0.0)
    singlet = cipsi.kernel(ham, cipsi.CIPSIConfig(spin=0, **cfg), log=None)
    triplet = cipsi.kernel(ham, cipsi.CIPSIConfig(spin=1, **cfg), log=None)
    # oracle: PySCF's dense FCI H and spin_square; the lowest eigenstate of each spin
    from rung.sci.testing import pyscf_dense_h

    w, v = np.linalg.eigh(pyscf_dense_h(ham))
    ref = {}
    for k in range(w.size):
        ss = fci.spin_op.spin_square0(v[:, k], ham.norb, ham.nelec)[0]
        s = int(round((np.sqrt(1 + 4 * ss) - 1) / 2))
        ref.setdefault(s, w[k] + ham.ecore)
        if 0 in ref and 1 in ref:
            break
    assert ref[1] < ref[0]
    assert singlet.s2[0] == pytest.approx(0.0, abs=1e-6) and singlet.e_var[0] == pytest.approx(ref[0], abs=1e-6)
    assert triplet.s2[0] == pytest.approx(2.0, abs=1e-6) and triplet.e_var[0] == pytest.approx(ref[1], abs=1e-6)
    # the Ms = 1 run of the triplet agrees with its Ms = 0 component
    hs1 = Hamiltonian(ham.h1, ham.eri, ham.ecore, (ham.nelec[0] + 1, ham.nelec[1] - 1))
    assert cipsi.kernel(hs1, cipsi.CIPSIConfig(**cfg), log=None).e_var[0] == pytest.approx(ref[1], abs=1e-6)


def test_impossible_spin_is_rejected(h2o_small):
    with pytest.raises(ValueError, match="impossible"):
        cipsi.kernel(h2o_small, cipsi.CIPSIConfig(spin=0.5), log=None)


def test_larger_budget_extends_a_finished_run(h2o_small, tmp_path):
    wf = tmp_path / "wf.h5"
    first = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=100), checkpoint=wf, log=None)
    lines = []
    again = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=100), checkpoint=wf, log=lines.append)
    assert "already complete" in lines[0] and again.n_det == first.n_det
    lines = []
    second = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=400), checkpoint=wf, log=lines.append)
    straight = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=400), log=None)
    assert any("resuming" in s for s in lines)
    n_first = [h["n_det"] for h in first.history]
    assert [h["n_det"] for h in second.history][: len(n_first)] == n_first
    assert second.n_det > first.n_det and second.e_var[0] < first.e_var[0]
    assert abs(second.e_var[0] - straight.e_var[0]) < 1e-5  # another path to the same accuracy


def test_resume_after_kill(h2o_small, tmp_path, killed_cipsi):
    """Kill the run in iteration 4 (after 3 checkpoints); the rerun resumes and matches a straight run."""
    wf = tmp_path / "wf.h5"
    killed_cipsi(h2o_small, cipsi.CIPSIConfig(max_det=800), wf, 4)
    res, next_keys, _ = cipsi.load(wf)
    assert len(res.history) == 3 and next_keys is not None
    lines = []
    resumed = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=800), checkpoint=wf, log=lines.append)
    straight = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=800), log=None)
    assert any("resuming" in s for s in lines)
    assert resumed.n_det == straight.n_det
    assert resumed.e_var[0] == pytest.approx(straight.e_var[0], abs=1e-9)
    assert [h["n_det"] for h in resumed.history] == [h["n_det"] for h in straight.history]


def test_other_hamiltonian_refuses_checkpoint(h2o_small, tmp_path):
    wf = tmp_path / "wf.h5"
    cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=20), checkpoint=wf, log=None)
    other = Hamiltonian(h2o_small.h1 * 1.01, h2o_small.eri, h2o_small.ecore, h2o_small.nelec)
    with pytest.raises(ValueError, match="another Hamiltonian"):
        cipsi.kernel(other, cipsi.CIPSIConfig(max_det=20), checkpoint=wf, log=None)


@pytest.mark.slow  # PySCF's FCI on 1.66 million determinants alone takes ~45 s here
def test_h2o_631g_pt2_within_0p05_mha_of_fci(h2o):
    """E_var + PT2 within 0.05 mHa of exact FCI with at most 50k determinants (here < 10k)."""
    e_fci = cipsi.fci_energy(h2o)[0]
    r = cipsi.kernel(h2o, cipsi.CIPSIConfig(max_det=7_000, growth=2.0), log=None)
    assert r.n_det <= 50_000
    assert abs(r.e_var_pt2 - e_fci) < 5e-5
    assert r.e_var[0] - e_fci < 1e-3


@pytest.mark.slow
def test_h2o_631g_complete_space(h2o):
    """Grown until no external determinant couples (the whole A1 block of the 1.66 million), H2O/6-31G
    reproduces PySCF's FCI within 1e-6 Ha (needs a few GB for the sparse H)."""
    e_fci = cipsi.fci_energy(h2o)[0]
    r = cipsi.kernel(h2o, cipsi.CIPSIConfig(max_det=2_000_000, pt2_threshold=0.0, growth=4.0), log=None)
    assert abs(r.e_pt2) < 1e-12  # only round-off couples any more (~20 min here)
    assert r.e_var[0] == pytest.approx(e_fci, abs=1e-6)


# Published all-electron FCI of N2/cc-pVDZ at R = 2.118 Bohr (28 orbitals, 14 electrons):
# E = -109.282173 Ha, Z. Wang, Y. Li, J. Lu, "Coordinate Descent Full Configuration Interaction",
# J. Chem. Theory Comput. 15, 3558 (2019), Sec. 4.1 (also quoted by CDFCI's regression test).
N2_FCI_ALL_ELECTRON = -109.282173


@pytest.mark.slow
def test_n2_ccpvdz_extrapolation_matches_published_fci():
    """Extrapolated CIPSI energy of N2/cc-pVDZ (all electrons, R = 2.118 Bohr) within 0.5 mHa of the
    published FCI value above. (No frozen-core FCI value at this geometry could be verified, so the
    all-electron one is used.)"""
    from pyscf import gto, scf

    from rung.sci.fcidump import from_scf

    mol = gto.M(atom="N 0 0 0; N 0 0 2.118", unit="Bohr", basis="cc-pvdz", verbose=0)
    ham = from_scf(scf.RHF(mol).run(conv_tol=1e-11))
    r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=60_000, stochastic_min_det=20_000, pt2_threshold=1e-6), log=None)
    assert abs(r.s2[0]) < 1e-6
    assert abs(r.e_extrapolated - N2_FCI_ALL_ELECTRON) < 5e-4


def test_semistochastic_pt2_in_the_loop(h2o_small):
    """Beyond stochastic_min_det the loop reports a sampled PT2 with an error bar that covers the exact one."""
    from rung.sci import pt2
    from rung.sci.determinants import Layout

    r = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=300, stochastic_min_det=100, pt2_samples=12,
                                             pt2_det_fraction=0.05, pt2_sample_fraction=0.2), log=None)
    assert r.pt2_error > 0 and r.pt2_kind == "semi-stochastic, 12 samples, every pair"
    lay = Layout(h2o_small.norb, *h2o_small.nelec)
    exact = pt2.en_pt2(lay, r.dets, lay.keys(r.dets), r.coef[:, 0], r.e_var[0] - h2o_small.ecore,
                       h2o_small.h1, h2o_small.eri)
    assert abs(r.e_pt2 - exact.e_pt2) < 4 * r.pt2_error
    # sampled iterations that grow the space draw pt2_samples_growing (2), the last one pt2_samples
    samples = [(h["n_det"], h["pt2_samples"]) for h in r.history]
    assert samples[-1] == (r.n_det, 12) and all(s == (2 if n > 100 else 0) for n, s in samples[:-1])
    assert any(s == 2 for _, s in samples)


def test_extrapolation_skips_infinite_pt2():
    """An early iteration with an infinite PT2 (degenerate perturber) is left out of the linear fit."""
    hist = [dict(e_pt2=np.inf, e_var=-1.0), dict(e_pt2=-0.2, e_var=-1.2), dict(e_pt2=-0.1, e_var=-1.3)]
    assert cipsi.extrapolate(hist, 3) == pytest.approx(-1.4)


def test_configuration_averaged_diagonal_commutes_with_s2():
    """The Davidson preconditioner (diagonal averaged over spin partners) commutes with S^2 (PySCF's
    dense H and the reference S^2), so corrections of a spin-pure vector stay in its spin."""
    from rung.sci._kernels import reference as ref
    from rung.sci.determinants import Layout
    from rung.sci.testing import fci_space, pyscf_dense_h, random_hamiltonian

    ham = random_hamiltonian(5, (2, 2), seed=3)
    lay = Layout(5, 2, 2)
    dets = fci_space(lay)
    d = cipsi.configuration_average(dets, np.diag(pyscf_dense_h(ham)))
    s2 = ref.s2(dets, 5)
    np.testing.assert_allclose(d[:, None] * s2, s2 * d[None, :], atol=1e-12)
    assert np.unique(np.round(d, 12)).size < d.size  # partners share one value


def test_spin_adapted_davidson_needs_no_penalty(h2o_small):
    """CIPSI iterations after the first use plain H with the averaged preconditioner (no fallback to the
    penalty operator was logged) and stay singlets; energies as in the complete-space test."""
    lines = []
    r = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=1500, pt2_threshold=0.0), log=lines.append)
    assert not any("drifted" in s for s in lines)
    assert all(abs(h["s2"]) < 1e-6 for h in r.history)


def test_trim_selection_is_the_shortest_spin_complete_head(h2o_small):
    """trim_selection against a brute force: for every head of the selection, spin-complete the grown
    space (Layout.spin_complete) and subtract the contributions of the selected determinants it holds."""
    from rung.sci import pt2
    from rung.sci.determinants import Layout

    ham = h2o_small
    lay = Layout(ham.norb, *ham.nelec)
    r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=40, pt2_threshold=0.0), log=None)
    keys = lay.keys(r.dets)
    p = pt2.en_pt2(lay, r.dets, keys, r.coef[:, 0], r.e_var[0] - ham.ecore, ham.h1, ham.eri, n_select=60)
    sel, e2 = p.selected, p.selected_e2
    np.testing.assert_array_less(0.0, -e2)  # ground state: every contribution lowers the energy
    remaining = []
    for m in range(1, sel.size + 1):
        _, grown = lay.spin_complete(np.concatenate([r.dets, lay.from_keys(sel[:m])]))
        remaining.append(p.e_pt2 - e2[np.isin(sel, grown)].sum())
    remaining = np.abs(remaining)
    for thr in (0.9 * abs(p.e_pt2), 0.5 * abs(p.e_pt2), 0.5 * remaining[-1]):
        got = cipsi.trim_selection(lay, sel, e2, p.e_pt2, thr)
        ok = np.flatnonzero(remaining < thr)
        assert got.size == (ok[0] + 1 if ok.size else sel.size)
        np.testing.assert_array_equal(got, sel[: got.size])
    assert cipsi.trim_selection(lay, sel, e2, p.e_pt2, 0.0).size == sel.size  # no threshold: untouched


@pytest.mark.parametrize("threshold", [3e-4, 3e-5])
def test_guided_growth_stops_below_threshold_with_fewer_determinants(h2o_small, threshold):
    """The last growth aimed at 0.8 x the PT2 threshold: same number of iterations as plain doubling,
    fewer determinants, |E_PT2| and E_var - E_FCI (PySCF FCI) still below the threshold."""
    e_fci = cipsi.fci_energy(h2o_small)[0]
    plain = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(pt2_threshold=threshold, guided_growth=0.0), log=None)
    guided = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(pt2_threshold=threshold, guided_growth=0.8), log=None)
    assert len(guided.history) == len(plain.history)
    assert guided.n_det < plain.n_det
    assert abs(guided.e_pt2) < threshold and 0.0 < guided.e_var[0] - e_fci < threshold
    with pytest.raises(ValueError, match="guided_growth"):
        cipsi.CIPSIConfig(guided_growth=1.5)


def test_blas_threads_held_during_diagonalization_and_restored(monkeypatch):
    from threadpoolctl import threadpool_info

    from rung.sci.testing import random_hamiltonian

    with pytest.raises(ValueError, match="blas_threads"):
        cipsi.CIPSIConfig(blas_threads=0)
    def blas():
        return {i["filepath"]: i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen = []
    diagonalize = cipsi._diagonalize

    def spy(hs, *args):
        seen.append((hs.n, blas()))
        return diagonalize(hs, *args)

    monkeypatch.setattr(cipsi, "_diagonalize", spy)
    before = blas()
    ham = random_hamiltonian(6, (3, 3), seed=2)
    r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=50, blas_threads=1), log=None)
    assert r.n_det >= 20
    assert seen and all(b[f] == 1 for _, b in seen for f in before)
    after = blas()
    assert {f: after[f] for f in before} == before  # restored (libraries loaded during the run are left as they came)
    # from BLAS_LIMIT_MAX determinants on the setting is left as it was
    monkeypatch.setattr(cipsi, "BLAS_LIMIT_MAX", 10)
    seen.clear()
    r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=50, blas_threads=1), log=None)
    n_seen = [n for n, _ in seen]
    held = [all(b[f] == 1 for f in before) for _, b in seen]
    assert any(n < 10 for n in n_seen) and any(n >= 10 for n in n_seen)
    assert held == [n < 10 for n in n_seen] or all(before[f] == 1 for f in before)


@pytest.mark.parametrize("norb, span", [(13, 9), (40, 40), (70, 70)])
def test_configuration_labels_match_row_unique(norb, span):
    """The packed 1-D configuration labels (orbitals < 32) give np.unique's row partition; orbitals
    beyond 31 or a second word take the row path."""
    from rung.sci.determinants import Layout

    lay = Layout(norb, 3, 2)
    rng = np.random.default_rng(norb)
    strings = [[sum(1 << int(p) for p in rng.choice(span, ne, replace=False)) for _ in range(60)]
               for ne in (3, 2)]
    dets = np.zeros((60, 2, lay.nw), np.uint64)
    for i in range(60):
        for s in range(2):
            for w in range(lay.nw):
                dets[i, s, w] = (strings[s][i] >> (64 * w)) & ((1 << 64) - 1)
    dets = np.concatenate([dets, dets[::3]])  # repeats
    occ = np.concatenate([dets[:, 0] & dets[:, 1], dets[:, 0] ^ dets[:, 1]], axis=1)
    _, first, inv = np.unique(occ, axis=0, return_index=True, return_inverse=True)
    f2, i2 = cipsi._configurations(dets)
    np.testing.assert_array_equal(f2[i2], first[inv.reshape(-1)])


def test_cap_selection_fits_the_budget_after_spin_completion(h2o):
    """The capped head of a PT2 selection, completed with its spin partners by Layout.grow (the oracle),
    adds at most ``room`` determinants, and the next configuration would not have fitted."""
    from rung.sci import pt2
    from rung.sci.determinants import Layout

    ham = h2o
    lay = Layout(ham.norb, *ham.nelec)
    r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=300, pt2_threshold=0.0), log=None)
    dets, keys = r.dets, lay.keys(r.dets)
    order = np.argsort(keys)
    dets, keys = dets[order], keys[order]
    sel = pt2.en_pt2(lay, dets, keys, r.coef[order, 0], r.e_var[0] - ham.ecore, ham.h1, ham.eri, n_select=400).selected
    full = lay.grow(dets, keys, sel)[1].size - keys.size
    assert full > 100
    for room in (0, 1, 37, 100, full - 1, full):
        head, cut = cipsi.cap_selection(lay, sel, room)
        added = lay.grow(dets, keys, head)[1].size - keys.size if head.size else 0
        assert added <= room and cut == (room < full)
        if cut:  # one more entry of the selection would have brought a configuration that does not fit
            assert lay.grow(dets, keys, sel[:head.size + 1])[1].size - keys.size > room


def test_max_det_is_never_passed(h2o):
    """The space stops at max_det: the growth that would pass it is cut to the budget and is the last."""
    ham = h2o
    for max_det in (500, 2000):
        r = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=max_det, pt2_threshold=0.0, growth=3.0), log=None)
        assert max_det * 0.8 < r.n_det <= max_det
        assert r.history[-2]["capped"] and not r.history[-1]["capped"]


def test_kill_after_the_cut_growth_resumes_to_the_same_end(h2o, tmp_path, killed_cipsi):
    """A run killed in its last iteration (the one after the growth cut to max_det) resumes without
    growing again and ends where a straight run ends; a larger budget extends the finished run."""
    cfg = cipsi.CIPSIConfig(max_det=500, pt2_threshold=0.0, growth=3.0)
    straight = cipsi.kernel(h2o, cfg, log=None)
    assert straight.history[-2]["capped"]
    wf = tmp_path / "wf.h5"
    killed_cipsi(h2o, cfg, wf, len(straight.history))
    resumed = cipsi.kernel(h2o, cfg, checkpoint=wf, log=None)
    assert [h["n_det"] for h in resumed.history] == [h["n_det"] for h in straight.history]
    lines = []
    again = cipsi.kernel(h2o, cfg, checkpoint=wf, log=lines.append)
    assert "already complete" in lines[0] and again.n_det == resumed.n_det
    bigger = cipsi.kernel(h2o, cipsi.CIPSIConfig(max_det=1500, pt2_threshold=0.0, growth=3.0), checkpoint=wf, log=None)
    assert resumed.n_det < bigger.n_det <= 1500


def test_screened_pt2_is_not_labelled_exact(h2o_small, monkeypatch):
    """Beyond pt2.DENSE_KEYS the deterministic PT2 is heat-bath screened: its log line says so."""
    from rung.sci import pt2

    lines = []
    cfg = cipsi.CIPSIConfig(max_det=60, pt2_threshold=0.0, pt2_screen=1e-8)
    r = cipsi.kernel(h2o_small, cfg, log=lines.append)
    iters = [line for line in lines if line.startswith("iter")]
    assert iters and all("(deterministic, every pair)" in line for line in iters)  # the dense path ignores the screen
    assert r.pt2_kind == "deterministic, every pair" and not any("exact" in line for line in lines)
    monkeypatch.setattr(pt2, "DENSE_KEYS", 0)  # the same space now takes the screened path
    lines.clear()
    r = cipsi.kernel(h2o_small, cfg, log=lines.append)
    iters = [line for line in lines if line.startswith("iter")]
    assert iters and not any("exact" in line or "every pair" in line for line in iters)
    assert all("(deterministic, heat-bath screened at 1e-08 Ha)" in line for line in iters)
    assert r.history[-1]["pt2_kind"] == "deterministic, heat-bath screened at 1e-08 Ha"


def test_pt2_kind_follows_the_path_taken(h2o_small, monkeypatch):
    """PT2Result.screen is the screen applied (not the one asked): 0 on the dense path, the threshold on
    the screened one; describe() says semi-stochastic with its samples, and 'none' for a full CI space."""
    from rung.sci import pt2
    from rung.sci.determinants import Layout

    lay = Layout(h2o_small.norb, *h2o_small.nelec)
    dets, keys = lay.spin_complete(lay.aufbau(0.0))
    c = np.ones(keys.size) / np.sqrt(keys.size)
    args = (lay, dets, keys, c, -80.0, h2o_small.h1, h2o_small.eri)
    dense = pt2.en_pt2(*args, screen=1e-8)
    assert dense.screen == 0.0 and pt2.describe(dense) == "deterministic, every pair"
    monkeypatch.setattr(pt2, "DENSE_KEYS", 0)
    screened = pt2.en_pt2(*args, screen=1e-8)
    assert screened.screen == 1e-8 and pt2.describe(screened) == "deterministic, heat-bath screened at 1e-08 Ha"
    assert pt2.en_pt2(*args, screen=0.0).screen == 0.0
    sampled = pt2.en_pt2(*args, screen=1e-8, stochastic=True, n_samples=3)
    assert pt2.describe(sampled) == "semi-stochastic, 3 samples, heat-bath screened at 1e-08 Ha"
    assert pt2.describe(None) == "none: the space is the full CI"


def test_full_ci_space_label():
    """A Hamiltonian without symmetry zeros (random integrals with the 8-fold symmetry) fills its FCI space."""
    from pyscf import ao2mo

    from rung.sci.fcidump import Hamiltonian

    rng = np.random.default_rng(1)
    h1 = rng.normal(size=(4, 4))
    eri = ao2mo.restore(1, rng.normal(size=ao2mo.restore(8, np.zeros((4,) * 4), 4).shape) * 0.1, 4)
    small = Hamiltonian(h1 + h1.T, eri, 0.0, (2, 2), None, 0)
    lines = []
    r = cipsi.kernel(small, cipsi.CIPSIConfig(max_det=10**4, pt2_threshold=0.0), log=lines.append)
    assert r.complete_space and "(none: the space is the full CI)" in [x for x in lines if x.startswith("iter")][-1]
