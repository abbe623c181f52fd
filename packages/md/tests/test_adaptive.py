"""Adaptive sampling (rung.md.adaptive): the pieces against exact answers, the Müller–Brown oracles
(coverage, first passage, reweighted populations against quadrature), the driver's kill/resume, the CLI."""

from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

import mb_sampling as mb
from kills import kill_after_replicas, kill_after_steps
from rung.core import units as U
from rung.core.errors import InputError
from rung.core.testing import check_bad_input
from rung.md.adaptive import (AdaptiveConfig, IterationResult, check_features, dihedral, features, fit_projection,
                              grid, msm_weights, parse_input, run_adaptive, select_starts)
from rung.md.cli import main


# ------------------------------------------------------------------------------------------ the pieces
def test_msm_weights_recover_the_stationary_distribution_of_a_markov_chain():
    """Short chains from uniform (biased) starts; the reversible MLE gives pi within sampling error."""
    rng = np.random.default_rng(0)
    m = 5
    pi = np.exp(-rng.normal(size=m) * 1.5)
    pi /= pi.sum()
    T = np.minimum(1.0, pi[None, :] / pi[:, None]) / m  # Metropolis, reversible with respect to pi
    np.fill_diagonal(T, 0.0)
    np.fill_diagonal(T, 1.0 - T.sum(1))
    cells, traj = [], []
    for k in range(2000):
        s = rng.integers(m)
        for _ in range(8):
            cells.append(s)
            traj.append(k)
            s = rng.choice(m, p=T[s])
    cells, traj = np.array(cells), np.array(traj)
    w, outside = msm_weights(cells, traj, 1)
    est = np.bincount(cells, weights=w, minlength=m)
    naive = np.bincount(cells, minlength=m) / cells.size
    assert outside == 0.0 and np.isclose(w.sum(), 1.0)
    assert np.max(np.abs(est - pi)) < 0.015
    assert np.max(np.abs(naive - pi)) > 2 * np.max(np.abs(est - pi))  # the starts did bias the counts


def test_msm_weights_zero_outside_the_connected_set():
    cells = np.array([0, 1, 0, 1, 0, 2, 2, 2])
    traj = np.array([0, 0, 0, 0, 0, 1, 1, 1])  # state 2 never meets 0 / 1
    w, outside = msm_weights(cells, traj, 1)
    assert np.all(w[cells == 2] == 0) and outside == pytest.approx(3 / 8)


def test_features_distances_dihedrals_and_bad_atoms():
    x = np.array([[[0, 0, 0], [1, 0, 0], [1, 1, 0], [1, 1, 1.0]]])  # (1, 4, 3)
    numbers = np.array([6, 1, 8, 7])
    f = features(x, numbers)  # heavy atoms 0, 2, 3
    assert np.allclose(f, [[np.sqrt(2), np.sqrt(3), 1.0]])
    d = features(x, numbers, [[0, 1], [0, 1, 2, 3]])
    assert np.allclose(d, [[1.0, 0.0, 1.0]])  # cos, sin of +90 degrees
    from ase import Atoms

    r = np.random.default_rng(0).normal(size=(5, 4, 3))  # ASE's dihedral (0..360 degrees) as the oracle
    ref = [Atoms("C4", positions=p).get_dihedral(0, 1, 2, 3) for p in r]
    assert np.allclose(np.degrees(dihedral(r[:, 0], r[:, 1], r[:, 2], r[:, 3])) % 360, ref)
    with pytest.raises(InputError, match=r"atom\(s\) \[7\]"):
        check_features([[0, 7]], numbers)
    for bad in ({"replicas": 0}, {"iterations": 0}, {"projection": "umap"}, {"features": [[0]]},
                {"selection_temperature": 0}):
        with pytest.raises(InputError):
            AdaptiveConfig(**bad)


def test_pca_and_tica_directions():
    """A slow coordinate with small variance and a fast one with large variance: PCA picks the fast,
    tICA the slow one (why tICA exists; rung's default is PCA, see the module docstring)."""
    rng = np.random.default_rng(1)
    n = 20000
    slow, fast = np.zeros(n), rng.normal(size=n) * 3.0
    for t in range(1, n):
        slow[t] = 0.99 * slow[t - 1] + 0.1 * rng.normal()
    rot = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    f = np.c_[slow, fast] @ rot.T
    p = fit_projection(f, 1, "pca")
    t = fit_projection(f, 1, "tica", traj=np.zeros(n, dtype=int), lag=5)
    fast_dir, slow_dir = rot[:, 1], rot[:, 0]
    assert abs(p.components[:, 0] @ fast_dir) > 0.999
    tv = t.components[:, 0] / np.linalg.norm(t.components[:, 0])
    assert abs(tv @ slow_dir) > 0.99
    assert t.eigenvalues[0] == pytest.approx(0.99**5, abs=0.02)


def test_pca_with_more_features_than_frames_equals_the_covariance_eigenvectors():
    """The SVD path (features > frames) against numpy's eigh of the covariance matrix."""
    rng = np.random.default_rng(4)
    f = rng.normal(size=(30, 200)) * np.linspace(3.0, 0.1, 200) + rng.normal(size=200)
    p = fit_projection(f, 3, "pca")
    d = f - f.mean(0)
    w, v = np.linalg.eigh(d.T @ d / 29)
    np.testing.assert_allclose(p.eigenvalues, w[::-1][:3], rtol=1e-10)
    for c in range(3):  # unit vectors, the same up to sign (the sign rule is the projection's own)
        assert abs(abs(p.components[:, c] @ v[:, -1 - c]) - 1.0) < 1e-9
        assert p.components[np.argmax(np.abs(p.components[:, c])), c] > 0


def test_select_starts_follows_inverse_counts():
    """p_c ∝ n_c^(-1/T): with cells of 1, 4 and 16 frames and T = 1, frequencies 16 : 4 : 1."""
    cells = np.repeat([0, 1, 2], [1, 4, 16])
    rng = np.random.default_rng(3)
    pick = select_starts(cells, 21000, 1.0, rng)
    freq = np.bincount(cells[pick], minlength=3) / pick.size
    assert np.allclose(freq, np.array([16, 4, 1]) / 21, atol=0.01)
    hot = np.bincount(cells[select_starts(cells, 30000, 1e6, rng)], minlength=3) / 30000
    assert np.allclose(hot, 1 / 3, atol=0.015)  # T -> infinity: uniform over visited cells
    _, c = grid(np.array([[0.0, 0.0], [1.0, 1.0], [0.49, 0.51]]), 2)
    assert list(c) == [0, 3, 1]


# ------------------------------------------------------------------------------ Müller–Brown oracles
def _compare(n_seeds, iterations, replicas, steps):
    out = {}
    acfg = AdaptiveConfig(replicas=replicas, features="positions", bins=20, selection_temperature=0.25)
    for s in ("long", "replicas", "adaptive"):
        res = mb.experiment(s, n_seeds=n_seeds, replicas=replicas, iterations=iterations, steps=steps, stride=5,
                            acfg=acfg)
        out[s] = (np.array([mb.coverage(x) for x, _, _ in res]), np.array([mb.first_passage(x, c) for x, c, _ in res]))
    return out


def _assert_adaptive_wins(out, alpha):
    from scipy.stats import mannwhitneyu, wilcoxon

    cov_a, fp_a = out["adaptive"]
    for other in ("long", "replicas"):
        cov_o, fp_o = out[other]
        assert cov_a.mean() >= 2 * cov_o.mean(), (other, cov_a.mean(), cov_o.mean())
        # per seed, 2x the other's coverage is exceeded more often than not (paired test)
        assert wilcoxon(cov_a - 2 * cov_o, alternative="greater").pvalue < alpha
        # first passage to the farthest basin B (inf = never within the budget): adaptive is sooner
        assert mannwhitneyu(fp_a, fp_o, alternative="less").pvalue < alpha
        assert np.isfinite(fp_a).mean() > np.isfinite(fp_o).mean()


def test_mb_adaptive_beats_long_run_and_replicas_fast():
    """10 seeds, 30 iterations x 10 replicas x 50 steps (15000 Langevin steps per seed), kT = 10 MB units:
    barriers 7.5 kT (A -> C) and 10.6 kT (A -> the C-B saddle); selection T = 0.25, 20 bins."""
    _assert_adaptive_wins(_compare(10, 30, 10, 50), alpha=0.05)


def test_mb_adaptive_beats_long_run_and_replicas_statistical():
    """The issue's oracle: 24 seeds, 30 iterations x 10 replicas x 50 steps, one-sided tests at 1%."""
    _assert_adaptive_wins(_compare(24, 30, 10, 50), alpha=0.01)


def test_mb_reweighted_populations_match_quadrature(monkeypatch):
    """MSM reweighting of adaptive data (20 seeds pooled) against the exact Boltzmann basin populations
    (quadrature on a grid); error bars from a bootstrap over seeds; the raw frame counts are biased."""
    kt = 15.0
    monkeypatch.setattr(mb, "GAMMA", 1.0 / (5.0 * U.FS_TO_AU_TIME))  # lag >> velocity memory: Markovian cells
    monkeypatch.setattr(mb, "POT", mb.MullerBrown(mb.KT / kt, 1.0))
    exact = mb.exact_populations(kt)
    res = mb.experiment("adaptive", n_seeds=20, replicas=10, iterations=20, steps=100, stride=5)
    x = np.concatenate([r[0] for r in res])
    traj = np.concatenate([r[2] + 10_000 * k for k, r in enumerate(res)])
    seed_of = np.concatenate([np.full(len(r[0]), k) for k, r in enumerate(res)])
    _, cells = grid(x, 25)
    lab = mb.basin(x)

    def estimate(rows, tag):
        w, _ = msm_weights(cells[rows], traj[rows] + tag, 4)
        return np.bincount(lab[rows], weights=w, minlength=3)

    pop = estimate(np.arange(len(x)), 0)
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(10):
        pick = rng.integers(20, size=20)
        rows = [np.flatnonzero(seed_of == k) for k in pick]
        boot.append(estimate(np.concatenate(rows), np.repeat(np.arange(20) * 10**6, [r.size for r in rows])))
    err = np.std(boot, axis=0, ddof=1)
    assert np.all(np.abs(pop - exact) < 3 * err + 1e-3), (pop, exact, err)
    naive = np.bincount(lab, minlength=3) / lab.size
    assert abs(naive[1] - exact[1]) > 3 * err[1]  # C is oversampled without reweighting


# -------------------------------------------------------------------------------------- the driver
MB_XYZ = "1\n\nH -0.2954 0.7629 0\n"  # basin A of Müller–Brown (1 Bohr per MB unit), Angstrom


def _input(folder: Path, adaptive="iterations = 3\nreplicas = 3\nfeatures = \"positions\"\nbins = 10\n",
           plot=False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mb.xyz").write_text(MB_XYZ)
    path = folder / "in.toml"
    path.write_text('structure = "mb.xyz"\nsteps = 40\ndt_fs = 1.0\ntemperature_K = 300\ntau_fs = 20\n'
                    'masses_amu = [1.0]\npotential = {type = "muller-brown", energy_scale_Ha = 9.5e-5}\n'
                    '[output]\ntrajectory_every = 5\nlog_every = 5\ncheckpoint_every = 10\nxyz = false\n'
                    f'[adaptive]\nplot = {str(plot).lower()}\n{adaptive}')
    return path


def _arrays(work):
    out = {}
    for a in sorted(Path(work).glob("iter_*/analysis.h5")):
        r = IterationResult.from_hdf5(a)
        out[a.parent.name] = (r.starts, r.projected, r.weights, r.selected)
    return out


def test_driver_resumes_bit_for_bit_after_kills(tmp_path):
    """Kills between replicas, inside a replica (a checkpoint mid-run, outputs past it) and before an
    analysis is written: rerunning the same call gives exactly the uninterrupted analyses."""
    from rung.md.simulation import run

    config, acfg = parse_input(_input(tmp_path / "in"))
    ref = run_adaptive(config, acfg, tmp_path / "ref")
    work = tmp_path / "killed"
    with kill_after_replicas(4):  # iteration 0's three replicas and iteration 1's first
        run_adaptive(config, acfg, work)
    assert (work / "iter_000/analysis.h5").exists() and not (work / "iter_001/analysis.h5").exists()
    # a kill inside replica 2 of iteration 1: a checkpoint at step 10, frames after it in md.h5
    from dataclasses import replace

    from rung.md.adaptive import replica_seed, _write_start

    start = work / "iter_001/start_002.xyz"
    from ase.io import read

    _write_start(read(config.structure), IterationResult.from_hdf5(work / "iter_000/analysis.h5").starts[2], start)
    rcfg = replace(config, structure=str(start.resolve()), seed=replica_seed(acfg.seed, 1, 2))
    (work / "iter_001/replica_002").mkdir(parents=True)
    with kill_after_steps(17):
        run(rcfg, workdir=work / "iter_001/replica_002", progress=False)
    with kill_after_replicas(2):  # finishes iteration 1's replicas 1 and 2
        run_adaptive(config, acfg, work)
    assert (work / "iter_001/analysis.h5").exists()
    (work / "iter_001/analysis.h5").unlink()  # a kill before the analysis was renamed into place
    res = run_adaptive(config, acfg, work)
    a, b = _arrays(tmp_path / "ref"), _arrays(work)
    assert a.keys() == b.keys() == {"iter_000", "iter_001", "iter_002"}
    for k in a:
        for u, v in zip(a[k], b[k]):
            assert np.array_equal(u, v), k
    assert [r.coverage for r in res] == [r.coverage for r in ref]
    log = (work / "adaptive.log").read_text().splitlines()
    assert len(log) == 4 and log[-1].split()[:2] == ["2", str(3 * 3 * 9)]


def test_cli_adaptive_and_bad_input(tmp_path):
    inp = _input(tmp_path / "in", "iterations = 2\nreplicas = 2\nfeatures = \"positions\"\nbins = 8\n", plot=True)
    r = CliRunner().invoke(main, ["adaptive", str(inp), "--workdir", str(tmp_path / "w"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "iteration 1: 36 frames" in r.output
    pytest.importorskip("matplotlib")
    assert (tmp_path / "w/iter_001/explored.png").stat().st_size > 1000
    for text, words in (("replicas = 0\n", ["replicas"]), ("features = [[0, 3]]\n", ["features", "[3]"]),
                        ("colour = 1\n", ["colour"])):
        bad = _input(tmp_path / "bad", text)
        check_bad_input(CliRunner().invoke(main, ["adaptive", str(bad), "--workdir", str(tmp_path / "b")]), *words)
    bad.write_text(bad.read_text().split("[adaptive]")[0])
    check_bad_input(CliRunner().invoke(main, ["adaptive", str(bad)]), "[adaptive]")
