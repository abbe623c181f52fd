"""The pipeline (tools/pipeline): its input file, the selection, the executors, and the loop end to end."""

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from tools.pipeline import steps
from tools.pipeline.config import ConfigError, parse
from tools.pipeline.executors import Executor

ROOT = Path(__file__).resolve().parents[1]

TINY = """
[input]
perturb = {{ molecule = "H2O", n = 3, sigma_angstrom = 0.08, seed = 1 }}
[dft]
xc = "hf"
basis = "ccecp-cc-pvdz"
ecp = "ccecp"
force_grid = 3
[select]
method = "{method}"
n_train = 2
n_holdout = 1
seed = 3
[qmc]
walkers = 20
vmc_blocks = 3
vmc_steps = 5
optimize_iterations = 0
force_every = 3
[md]
steps = 10
beads = 2
"""


@pytest.mark.parametrize("data, match", [
    ({}, "needs exactly one of path"),
    ({"input": {"perturb": {}}, "qmc": {"walkerz": 3}}, r"\[qmc\]: unknown key"),
    ({"input": {"perturb": {}, "normal_modes": {}}}, r"\[input\] needs exactly one of"),
    ({"input": {"perturb": {}}, "select": {"method": "best"}}, "spread, fps or random"),
    ({"input": {"perturb": {}}, "select": {"n_holdout": 0}}, "n_holdout"),
    ({"input": {"path": "nowhere.xyz"}}, "does not exist"),
    ({"input": {"perturb": {}}, "qmc": {"tau": 0.0}}, "tau > 0"),
    ({"input": {"perturb": {}}, "mc": {}}, "unknown section"),
    ({"input": {"perturb": {}}, "sci": {"dmc_blocks": 2}}, r"\[sci\]: .*dmc_blocks >= 3"),
    ({"input": {"perturb": {}}, "sci": {"determinants": 0}}, r"\[sci\]: .*must be >= 1"),
    ({"input": {"perturb": {}}, "sci": {"max_dets": 5}}, r"\[sci\]: unknown key"),
    ({"input": {"perturb": {}}, "refit": {"l2sp": "auto"}}, r"\[refit\]: l2sp must be a number >= 0 or \"cv\""),
    ({"input": {"perturb": {}}, "refit": {"l2sp": "cv", "cv_folds": 1}}, r"cv_folds >= 2"),
    ({"input": {"perturb": {}}, "refit": {"cv_l2sp": [1.0, -2.0]}}, r"cv_l2sp a list of numbers >= 0"),
    ({"input": {"perturb": {}}, "refit": {"finetune_epochs": -1}}, r"finetune_epochs must be >= 0"),
    ({"input": {"perturb": {}}, "refit": {"dft_energy_error_floor_mha": 0.0}}, r"floor_mha .*must be > 0"),
])
def test_config_errors(data, match):
    with pytest.raises(ConfigError, match=match):
        parse(data)


def test_cli_bad_config_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[input]\npath = 'nowhere.xyz'\n")
    out = subprocess.run([sys.executable, "-m", "tools.pipeline", str(bad), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: [input] path")


def test_farthest_points_against_brute_force():
    """FPS: each new point maximises its distance to the chosen set (checked by brute force)."""
    x = np.random.default_rng(0).normal(size=(30, 4))
    chosen = steps.farthest_points(x, 6, first=2)
    for k in range(1, 6):
        dist = np.min(np.linalg.norm(x[:, None] - x[chosen[:k]], axis=-1), axis=1)
        assert chosen[k] == int(np.argmax(dist))


def _labelled_water(path, energy, gradient, x_bohr, e_err, g_err):
    """A rung dataset of water conformations with qmc_total_* labels (Hartree, Hartree/Bohr) and errors."""
    from rung.core.dataset import Molecule, ResultWriter, create_dataset

    create_dataset(path, [Molecule("h2o", np.array([8, 1, 1]), x_bohr)], overwrite=True)
    w = ResultWriter(path, "qmc", {"total_energy": "hartree", "total_energy_error": "hartree",
                                   "total_gradient": "hartree/bohr", "total_gradient_error": "hartree/bohr"}, {})
    for i in range(len(energy)):
        w.record("h2o", i, {"total_energy": energy[i], "total_energy_error": e_err,
                            "total_gradient": gradient[i], "total_gradient_error": np.full((3, 3), g_err)})
    w.merge()
    return path


def test_cv_l2sp_keeps_a_right_model_and_frees_a_wrong_one(tmp_path):
    """Cross-validated l2sp on 8 conformations, 2 folds: labels = ANI-1x's own values plus their error
    bars' noise -> the strongest prior (1e6: nothing to learn, a weak prior fits the noise); labels =
    ANI-1x plus an O-H stretch term the model lacks (0.2 Ha/Bohr^2) -> a weaker prior. The hold-out
    (validation) file is garbage: CV never reads it."""
    from rung.nnp.train.config import parse_config

    rng = np.random.default_rng(0)
    numbers, x = steps.perturbed("H2O", 8, 0.06, seed=5)
    xb = x * 1.8897261254578281
    e, g = steps.predict("ani-1x", numbers, xb)
    r = np.linalg.norm(xb[:, 1:] - xb[:, :1], axis=-1)  # (8, 2) O-H distances, Bohr
    unit = (xb[:, 1:] - xb[:, :1]) / r[..., None]
    k, r0 = 0.2, r.mean()
    e_extra = 0.5 * k * ((r - r0) ** 2).sum(1)
    g_extra = np.zeros_like(g)
    g_extra[:, 1:] = k * (r - r0)[..., None] * unit
    g_extra[:, 0] = -g_extra[:, 1:].sum(1)
    garbage = _labelled_water(tmp_path / "hold.h5", e + 5.0, g + 1.0, xb, 1e-3, 2e-3)
    chosen = []
    for name, (ee, gg) in {"right": (e, g), "wrong": (e + e_extra, g + g_extra)}.items():
        ee = ee + rng.normal(scale=1e-3, size=ee.shape)
        gg = gg + rng.normal(scale=2e-3, size=gg.shape)
        train = _labelled_water(tmp_path / f"{name}.h5", ee, gg, xb, 1e-3, 2e-3)
        cfg = parse_config({"model": "ani-1x", "output": "cv.h5", "training": {
            "datasets": [str(train)], "energy": "qmc_total_energy", "gradient": "qmc_total_gradient",
            "validation": [str(garbage)], "l2sp": 0.0}, "stages": [{"name": "readout", "frozen": []}]}, tmp_path)
        best, scores = steps.cv_l2sp(cfg, (1e1, 1e3, 1e6), 2, seed=1)
        assert best == (1e1, 1e3, 1e6)[int(np.argmin(scores))] and len(scores) == 3
        chosen.append(best)
    assert chosen[0] == 1e6 and chosen[1] < 1e6, chosen


def _spring_hessian(x, k):
    """The Hessian (natm, natm, 3, 3) of E = sum_pairs k_ab/2 (|r_ab| - |r_ab(x)|)^2 at x: k_ab u u^T blocks
    (u the unit bond vector), translation and rotation invariant by construction."""
    na = len(x)
    h = np.zeros((na, na, 3, 3))
    for (a, b), kab in k.items():
        u = (x[b] - x[a]) / np.linalg.norm(x[b] - x[a])
        blk = kab * np.outer(u, u)
        h[a, a] += blk
        h[b, b] += blk
        h[a, b] -= blk
        h[b, a] -= blk
    return h


def test_normal_mode_sampling_energies_and_invariants():
    """Normal-mode sampling on a spring model's Hessian (three O-H/H-H springs of water, an independent
    analytic Hessian): every conformation's harmonic energy (1/2) dx^T H dx is (3/2) N_a k_B T u with u
    uniform in [0, 1] (the modes are H-orthogonal, so the per-mode energies add up: a Kolmogorov-Smirnov
    test of u), no displacement moves the centre of mass, and a Hessian with a negative force
    constant is refused."""
    from scipy.stats import kstest

    from rung.core import units as U

    numbers, x0 = np.array([8, 1, 1]), np.array([[0.0, 0.0, 0.0], [1.8, 0.0, 0.0], [-0.45, 1.75, 0.0]])
    h = _spring_hessian(x0, {(0, 1): 0.5, (0, 2): 0.45, (1, 2): 0.05})
    t = 9000.0
    x = steps.normal_mode_sampled(numbers, x0, h, 400, t, np.random.default_rng(3))
    dx = (x - x0).reshape(400, -1)
    e = 0.5 * np.einsum("ni,ij,nj->n", dx, h.transpose(0, 2, 1, 3).reshape(9, 9), dx)
    u = e / (1.5 * 3 * U.BOLTZMANN_HARTREE_PER_K * t)
    assert u.min() >= 0 and u.max() <= 1 + 1e-12 and kstest(u, "uniform").pvalue > 1e-3
    mass = np.array([15.999, 1.008, 1.008])
    np.testing.assert_allclose(np.einsum("a,nax->nx", mass, x - x0), 0.0, atol=1e-10)
    with pytest.raises(ConfigError, match="non-positive force constant"):
        steps.normal_mode_sampled(numbers, x0, _spring_hessian(x0, {(0, 1): 0.5, (0, 2): -0.45, (1, 2): 0.05}),
                                  4, t, np.random.default_rng(3))


def test_triatomic_box_is_uniform_in_its_internal_coordinates(tmp_path):
    """The internal-coordinate box: bond lengths and angle of every conformation recomputed from the
    Cartesian geometry lie in their ranges and are uniform there (Kolmogorov-Smirnov); through the
    pipeline's input step the dataset holds them in Bohr; a non-triatomic molecule or a bad range is one
    clear line."""
    from scipy.stats import kstest

    from rung.core import units as U
    from rung.core.dataset import read_hdf5

    x = steps.triatomic_box(500, (0.8, 1.45), (70.0, 150.0), np.random.default_rng(2))
    b1, b2 = x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]
    r1, r2 = np.linalg.norm(b1, axis=1), np.linalg.norm(b2, axis=1)
    theta = np.degrees(np.arccos(np.einsum("nx,nx->n", b1, b2) / (r1 * r2)))
    for v, (lo, hi) in ((r1, (0.8, 1.45)), (r2, (0.8, 1.45)), (theta, (70.0, 150.0))):
        assert v.min() >= lo and v.max() <= hi and kstest((v - lo) / (hi - lo), "uniform").pvalue > 1e-3
    box = {"molecule": "H2O", "n": 5, "bond_angstrom": [0.8, 1.45], "angle_degrees": [70.0, 150.0], "seed": 4}
    (m,) = read_hdf5(steps.conformations(parse({"input": {"internal": box}}), tmp_path))
    want = steps.triatomic_box(5, (0.8, 1.45), (70.0, 150.0), np.random.default_rng(4)) * U.ANGSTROM_TO_BOHR
    assert list(m.atomic_numbers) == [8, 1, 1]
    np.testing.assert_allclose(m.conformations, want, rtol=1e-12)
    for bad, match in (({"molecule": "CH4"}, "triatomic"), ({"angle_degrees": [70.0, 190.0]}, "triatomic"),
                       ({"molecule": "H2Q"}, "not in ASE's G2"), ({"bonds": 1}, "unknown key")):
        with pytest.raises(ConfigError, match=match):
            steps.conformations(parse({"input": {"internal": {**box, **bad}}}), tmp_path / str(len(match)))


def test_dynamics_start_from_the_model_s_minimum():
    """The MD start: the lowest of a box of distorted water conformations by ANI-1x's energy, relaxed with
    ASE's BFGS: ANI-1x's forces there (its own evaluation, not the optimiser's) are below the threshold,
    the energy is below every input conformation's, all three vibrational force constants are positive
    (a minimum, from the model's finite-difference Hessian), and the geometry is water's (O-H within
    0.02 Angstrom of the experimental r_e 0.958, H-O-H within 3 degrees of 104.5: ANI-1x's reference
    level is near both)."""
    from pyscf import gto
    from pyscf.hessian.thermo import harmonic_analysis

    from rung.core import units as U

    numbers = np.array([8, 1, 1])
    x = steps.triatomic_box(6, (0.8, 1.45), (70.0, 150.0), np.random.default_rng(0)) * U.ANGSTROM_TO_BOHR
    atoms, i = steps.relaxed_start("ani-1x", numbers, x, fmax_ev_per_angstrom=1e-3)
    e, g = steps.predict("ani-1x", numbers, np.concatenate([x, atoms.positions[None] * U.ANGSTROM_TO_BOHR]))
    assert i == int(np.argmin(e[:-1])) and e[-1] < e[:-1].min()
    assert np.abs(g[-1]).max() * U.HARTREE_TO_EV / U.BOHR_TO_ANGSTROM < 1e-3
    xb = atoms.positions * U.ANGSTROM_TO_BOHR
    mol = gto.M(atom=[(int(z), tuple(r)) for z, r in zip(numbers, xb)], unit="Bohr", basis="sto-3g", verbose=0)
    freq = harmonic_analysis(mol, steps.model_hessian("ani-1x", numbers, xb), imaginary_freq=False)["freq_wavenumber"]
    assert len(freq) == 3 and freq.min() > 1000, freq
    b1, b2 = atoms.positions[1] - atoms.positions[0], atoms.positions[2] - atoms.positions[0]
    r = np.linalg.norm([b1, b2], axis=1)
    assert np.all(np.abs(r - 0.958) < 0.02), r
    assert abs(np.degrees(np.arccos(b1 @ b2 / r.prod())) - 104.5) < 3.0


def test_model_hessian_predicts_the_model_s_energy_change():
    """The base model's finite-difference Hessian against its own energies (an independent route: no
    gradient differences): E(x0 + dx) - E(x0) - g.dx = (1/2) dx^T H dx + O(dx^3) for small random dx,
    ANI-1x water."""
    from rung.core import units as U

    atoms = steps.g2_molecule("H2O", "test")
    x0 = atoms.positions * U.ANGSTROM_TO_BOHR
    h = steps.model_hessian("ani-1x", atoms.numbers, x0).transpose(0, 2, 1, 3).reshape(9, 9)
    np.testing.assert_allclose(h, h.T)
    dx = np.random.default_rng(1).normal(scale=0.01, size=(6, 3, 3))
    e, g = steps.predict("ani-1x", atoms.numbers, np.concatenate([x0[None], x0 + dx]))
    second = e[1:] - e[0] - np.einsum("ax,nax->n", g[0], dx)
    quad = 0.5 * np.einsum("ni,ij,nj->n", dx.reshape(6, -1), h, dx.reshape(6, -1))
    np.testing.assert_allclose(second, quad, rtol=0.05)


def test_spread_selection_finds_where_the_model_is_unsure():
    """30 water conformations near equilibrium and 10 strongly distorted ones (ANI-1x is unsure there):
    choosing 10 by the ensemble spread takes far more distorted ones than random choice would (a
    hypergeometric tail probability below 1e-4), and the distorted ones are where ANI-1x's members
    disagree most."""
    from scipy.stats import hypergeom

    from rung.core import units as U
    from rung.nnp import load_model

    numbers, near = steps.perturbed("H2O", 30, 0.02, seed=1)
    _, far = steps.perturbed("H2O", 10, 0.25, seed=2)
    x = np.concatenate([near, far]) * U.ANGSTROM_TO_BOHR
    spread = steps.spread_scores(load_model("ani-1x"), numbers, x)
    chosen = steps.pick("spread", spread, 10, np.random.default_rng(0))
    k = int(np.sum(np.asarray(chosen) >= 30))
    assert hypergeom.sf(k - 1, 40, 10, 10) < 1e-4, (k, spread)
    rand = [np.sum(np.asarray(steps.pick("random", spread, 10, np.random.default_rng(s))) >= 30) for s in range(200)]
    assert k > np.mean(rand) + 3 * np.std(rand)


def test_a_selection_killed_while_written_leaves_none(tmp_path, monkeypatch):
    """The roles of every molecule are stored at once: a selection stopped after writing one molecule's
    leaves the dataset as it was, and the rerun makes the uninterrupted run's selection (not a partial
    one read back as whole)."""
    from rung.core.dataset import Molecule, ResultWriter, create_dataset

    cfg = parse({"input": {"perturb": {}}, "select": {"method": "random", "n_train": 3, "n_holdout": 2}})
    x = np.zeros((4, 2, 3))
    x[:, 1, 2] = 1.4 + 0.1 * np.arange(4)
    mols = [Molecule(n, np.array([1, 1]), x) for n in ("a", "b")]
    paths = [create_dataset(tmp_path / f"{k}.h5", mols) for k in ("ref", "cut")]
    for path in paths:
        w = ResultWriter(path, "dft", {"total_energy": "hartree"})
        for n in ("a", "b"):
            for i in range(4):
                w.record(n, i, {"total_energy": -1.0})
        w.merge()
    expect = steps.select(cfg, paths[0])
    create = h5py.Group.create_dataset

    def dies_at_the_second(self, name, *a, **k):
        if name == "pipeline_role" and self.name == "/b":
            raise KeyboardInterrupt  # stands for the kill
        return create(self, name, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_dataset", dies_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        steps.select(cfg, paths[1])
    monkeypatch.undo()
    with h5py.File(paths[1]) as f:
        assert not any("pipeline_role" in g for g in f.values())
    got = steps.select(cfg, paths[1])
    assert got.keys() == expect.keys() and all(np.array_equal(got[n], expect[n]) for n in expect)


TASKS = [(i, i, math.log, (float(i),)) for i in range(6)]  # log(0) fails: "math domain error"


def test_executors_agree_and_a_failed_task_fails_alone():
    res = {}
    for kind in ("serial", "local"):
        with Executor(kind, workers=2) as ex:
            res[kind] = {k: (r, e) for k, r, e in ex.run(TASKS)}
            res[kind + " window 2"] = {k: (r, e) for k, r, e in ex.run(TASKS, window=2)}  # 2 in flight at a time
    assert res["serial"] == res["local"] == res["local window 2"]
    assert len(res["serial"]) == len(TASKS)
    assert res["serial"][0] == (None, "ValueError: math domain error")
    assert res["serial"][4] == (math.log(4.0), None)


def _kills_its_worker(i, marker_dir):
    """Task i: sleeps 0.1 s and returns i^2 as a farm result; its worker SIGKILLs itself first, once if a file
    ``once<i>`` is in ``marker_dir`` (it is removed), every time if ``always<i>`` is."""
    d = Path(marker_dir)
    if (d / f"always{i}").exists() or (d / f"once{i}").exists():
        (d / f"once{i}").unlink(missing_ok=True)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.1)
    return {"total_energy": float(i * i)}


def test_a_local_worker_killed_mid_task_breaks_nothing(tmp_path, caplog):
    """A SIGKILLed local worker breaks its pool: the run goes on, the task it ran is rerun (alone) and every
    result is the uninterrupted run's; a task that kills its worker every time is left pending (never
    recorded failed) and named in a warning, and the farm records the rest."""
    import logging

    import numba  # noqa: F401  imported before the pools fork, as in a pipeline run (else every new
    import pyscf.lib  # noqa: F401  worker imports them in _init_worker: seconds each)

    from rung.core.dataset import DONE, PENDING, Molecule, ResultWriter, create_dataset

    tasks = [(("w", i), 1.0, _kills_its_worker, (i, str(tmp_path))) for i in range(8)]
    expect = {("w", i): ({"total_energy": float(i * i)}, None) for i in range(8)}
    for name in ("once2", "once5"):
        (tmp_path / name).touch()
    with Executor("local", workers=2) as ex:
        got = {k: (r, e) for k, r, e in ex.run(tasks)}
        assert got == expect and ex.lost == [] and not list(tmp_path.glob("once*"))
        # the queue in which tasks say they started is emptied as the run goes: 10^4 tags fill no pipe
        assert sum(1 for _ in ex.run([(i, 1, abs, (i,)) for i in range(10_000)])) == 10_000
        (tmp_path / "always3").touch()
        ds = create_dataset(tmp_path / "d.h5", [Molecule("w", np.array([8, 1, 1]), np.zeros((8, 3, 3)))])
        writer = ResultWriter(ds, "qmc", {"total_energy": "hartree"})
        with caplog.at_level(logging.WARNING):
            assert steps.farm(ex, writer, tasks, label="qmc") == (7, 0)
        assert ex.lost == [("w", 3)]
    assert "task ('w', 3): its worker process died under it, also when it ran alone" in caplog.text
    assert "left pending" in caplog.text
    with h5py.File(ds, "r") as f:
        assert f["w/qmc_status"][()].tolist() == [DONE] * 3 + [PENDING] + [DONE] * 4
        np.testing.assert_array_equal(f["w/qmc_total_energy"][()][[0, 1, 2, 4, 7]], [0, 1, 4, 16, 49])


def test_parsl_executor_matches_serial(tmp_path, monkeypatch):
    pytest.importorskip("parsl")
    monkeypatch.setenv("RUNG_PARSL_RUN_DIR", str(tmp_path / "runinfo"))
    with Executor("parsl", workers=2) as ex:
        res = {k: (r, e) for k, r, e in ex.run(TASKS)}
    with Executor("serial") as ex:
        assert res == {k: (r, e) for k, r, e in ex.run(TASKS)}


@pytest.mark.mpi
def test_mpi_executor_matches_serial(tmp_path, mpiexec):
    script = tmp_path / "run.py"
    script.write_text(
        "import math, sys\nsys.path.insert(0, sys.argv[1])\nfrom tools.pipeline.executors import Executor\n"
        "with Executor('mpi') as ex:\n    if ex is not None:\n"
        "        print(sorted(ex.run([(i, i, math.log, (float(i),)) for i in range(6)])))\n")
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script), str(ROOT)], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    with Executor("serial") as ex:
        expect = sorted(ex.run(TASKS))
    assert out.stdout.strip() == str(expect)


def _run(cfg_path, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "tools.pipeline", str(cfg_path), "--out", str(out), *extra],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _labels(path):
    with h5py.File(path, "r") as f:
        g = f["h2o"]
        return {k: g[k][()] for k in ("dft_total_energy", "qmc_total_energy", "qmc_total_gradient", "pipeline_role")}


def test_loop_end_to_end(tmp_path):
    """Three water conformations climb HF -> QMC (energies + forces, one Jastrow optimised on the first
    training conformation and shared) -> refit (l2sp by 2-fold CV) -> MD; a rerun computes nothing."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(method="spread").replace("optimize_iterations = 0", "optimize_iterations = 1\n"
                                                        "shared_jastrow = true")
                   + "[refit]\nl2sp = \"cv\"\ncv_folds = 2\ncv_l2sp = [1e2, 1e5]\n")
    p = _run(cfg, tmp_path / "out", "--workers", "2")
    text = p.communicate(timeout=900)[0]
    assert p.returncode == 0, text
    lab = _labels(tmp_path / "out" / "dataset.h5")
    role = lab["pipeline_role"]
    assert (role == 1).sum() == 2 and (role == 2).sum() == 1
    assert np.all(np.isfinite(lab["qmc_total_energy"][role > 0]))
    assert np.all(np.isfinite(lab["qmc_total_gradient"][role > 0]))
    with h5py.File(tmp_path / "out" / "dataset.h5") as f:  # each value carries the settings that made it
        import json

        s = [json.loads(x) for x, r in zip(f["h2o/qmc_settings"][()], role) if r > 0]
        assert {x["method"] for x in s} == {"vmc"} and all(x["forces"]["every"] == 3 for x in s)
        shared = {json.dumps(x["optimize"]["shared"], sort_keys=True) for x in s}  # one Jastrow, from a training one
        assert len(shared) == 1 and role[json.loads(shared.pop())["index"]] == 1
    assert "by 2-fold CV on the training set" in text and (tmp_path / "out" / "refit-cv.json").exists()
    assert "needs at least 2 held-out conformations, 1 here" in (tmp_path / "out" / "report.md").read_text()
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| readout |" in report and (tmp_path / "out" / "model-readout.h5").exists()
    assert (tmp_path / "out" / "report.png").stat().st_size > 0 and "![held-out errors" in report
    from rung.nnp import load_model

    assert load_model(tmp_path / "out" / "model-readout.h5").n_members == 8
    p = _run(cfg, tmp_path / "out", "--executor", "serial")
    text = p.communicate(timeout=600)[0]
    assert p.returncode == 0 and "0 computed now" in text, text
    np.testing.assert_array_equal(_labels(tmp_path / "out" / "dataset.h5")["qmc_total_energy"], lab["qmc_total_energy"])


def test_second_round_from_the_dynamics(tmp_path):
    """[loop] rounds = 2: frames of the first MD become new conformations, the refit model's spread picks
    two for QMC, the second refit uses both rounds' labels and is judged on the first hold-out set."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(method="spread").replace("steps = 10", "steps = 30") + "[loop]\nrounds = 2\nframes = 3\n")
    p = _run(cfg, tmp_path / "out", "--workers", "2")
    text = p.communicate(timeout=900)[0]
    assert p.returncode == 0, text
    r1 = tmp_path / "out" / "round1"
    with h5py.File(r1 / "dataset.h5") as f:
        role = f["h2o/pipeline_role"][()]
        assert role.size == 3 and (role == 1).sum() == 2 and f["h2o/pipeline_role"].attrs["model"].endswith("model-readout.h5")
    from rung.nnp.model import read_model

    prov = read_model(r1 / "model-readout.h5").provenance
    assert sorted(d["path"].rsplit("/", 2)[-2] for d in prov["datasets"]) == ["out", "out", "round1"]
    assert "| 1 | readout |" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "report.png").stat().st_size > 0


RESUME = TINY.format(method="spread").replace("walkers = 20", "walkers = 60")

# the step -> what says the run is inside it: a line of its progress output, and a file it writes
KILL_INSIDE = {
    "dft": (r"dft \d+/\d+ ", None),  # a conformation journalled (the farm's progress line), the others running
    "select": (r"dft +\d+ done", None),  # the DFT step's summary: the spread selection runs
    "qmc": (r"qmc \d+/\d+ ", None),
    "refit": (r"stage shifts:", None),  # the shift-only model is trained, the read-out one not
    "md": (r"evaluate ", "md/input.toml"),  # its input written, the trajectory under way
}


def _killed_inside(cfg, out, step):
    """Run the pipeline in its own process group, SIGKILL the whole group (workers too) once it is
    inside ``step``; returns its output. Fails if the step had ended before the kill."""
    import queue
    import re
    import threading

    line_re, file_name = KILL_INSIDE[step]
    p = subprocess.Popen([sys.executable, "-m", "tools.pipeline", str(cfg), "--out", str(out), "--workers", "1"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         start_new_session=True)
    lines = queue.SimpleQueue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in p.stdout] + [lines.put(None)], daemon=True)
    reader.start()
    text, seen = [], False
    while True:
        try:
            line = lines.get(timeout=0.02)
        except queue.Empty:
            line = ""
        if line is None:
            raise AssertionError(f"the run ended before it was inside {step}:\n" + "".join(text))
        text.append(line)
        seen = seen or bool(re.match(line_re, line))
        if seen and (file_name is None or (out / file_name).exists()):
            os.killpg(p.pid, signal.SIGKILL)
            break
    p.wait()
    reader.join(timeout=60)
    while (line := lines.get()) is not None:
        text.append(line)
    text = "".join(text)
    summary = f"{step:12s} "  # the step's summary line (tools.pipeline.__main__.run): not printed yet
    assert not any(x.startswith(summary) for x in text.splitlines()), f"killed after {step} had ended:\n{text}"
    return text


def _final_files(out: Path) -> dict:
    """Every file a finished run leaves, as comparable values: HDF5 datasets and attributes, text, other
    files' bytes, the report's numbers and its deterministic step lines. Left out: the DFT wall times,
    the models' creation times and training durations, the layout of PySCF's Mole dump (its atoms,
    basis, ECP, charge and spin are kept); the run's folder name is replaced by <out>."""
    import json
    import re

    def norm(x):
        if isinstance(x, bytes):
            x = x.replace(str(out).encode(), b"<out>")
        elif isinstance(x, str):
            x = x.replace(str(out), "<out>")
            # a model's provenance and training log: when it was made, how long it took
            x = re.sub(r'"seconds": [-+.0-9e]+', '"seconds": -', re.sub(r'"time": "[^"]*"', '"time": -', x))
        elif isinstance(x, np.ndarray) and x.dtype.kind in "SOU":
            x = np.array([norm(v) for v in x.ravel()], dtype=object).reshape(x.shape)
        return x

    files = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = str(path.relative_to(out))
        if path.suffix == ".h5":
            content = {}

            def visit(name, obj):
                content[name + "@"] = {k: norm(v) for k, v in obj.attrs.items()}
                if "mol" in obj.attrs:  # PySCF's Mole dump: its _bas/_env layout follows the process's history
                    content[name + "@"]["mol"] = {k: v for k, v in json.loads(obj.attrs["mol"]).items()
                                                  if k in ("_atom", "_basis", "_ecp", "charge", "spin")}
                if isinstance(obj, h5py.Dataset) and "wall_time" not in name:
                    content[name] = norm(obj[()])

            with h5py.File(path, "r") as f:
                content["/@"] = {k: norm(v) for k, v in f.attrs.items()}
                f.visititems(visit)
            files[rel] = content
        elif path.name == "report.json":
            r = json.loads(path.read_text())
            files[rel] = {"rounds": r["rounds"], **{k: norm(r["steps"][k].rsplit("  [", 1)[0]) for k in ("select", "evaluate", "md")}}
        elif path.name == "report.md":  # from the models' table on (the step lines say what each run computed)
            files[rel] = path.read_text().split("## Models", 1)[1]
        elif path.suffix in (".jsonl", ".toml", ".xyz"):
            files[rel] = norm(path.read_text())
        else:
            files[rel] = norm(path.read_bytes())
    return files


def _assert_same(a, b, where=""):
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: {sorted(a)} != {sorted(b)}"
        for k in a:
            _assert_same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The resume test's reference: the run never killed, its final files."""
    root = tmp_path_factory.mktemp("uninterrupted")
    cfg = root / "tiny.toml"
    cfg.write_text(RESUME)
    p = _run(cfg, root / "out", "--workers", "1")
    text = p.communicate(timeout=900)[0]
    assert p.returncode == 0, text
    return _final_files(root / "out")


@pytest.mark.slow
@pytest.mark.parametrize("step", list(KILL_INSIDE))
def test_killed_inside_a_step_resumes_to_the_same_files(tmp_path, step, uninterrupted):
    """SIGKILL of the whole run (the pipeline and its workers) inside each step (DFT, selection, QMC,
    refit, MD), then the same command again: every final file equals the uninterrupted run's (the
    dataset value by value, the orbitals, the models, the trajectory, the report's numbers)."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(RESUME)
    _killed_inside(cfg, tmp_path / "out", step)
    p = _run(cfg, tmp_path / "out", "--workers", "1")
    text = p.communicate(timeout=900)[0]
    assert p.returncode == 0, text
    _assert_same(uninterrupted, _final_files(tmp_path / "out"))


def test_level_check_read_once_refuses_as_check_record(tmp_path):
    """rung.qmc.run.check_level over recorded_levels (the dataset read once per step) refuses exactly what
    check_record (which reads the dataset per call) refuses, with the same message, for a pending
    conformation of a dataset holding values at two levels."""
    import json

    from rung.core.dataset import Molecule, ResultWriter, create_dataset
    from rung.qmc.run import check_level, check_record, recorded_levels
    from rung.qmc.system import InputError

    x = np.zeros((4, 2, 3))
    x[:, 1, 2] = 1.4 + 0.1 * np.arange(4)
    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), x)])
    base = {"method": "vmc", "basis": "b", "ecp": "", "jastrow": True, "three_body": False, "determinants": 1,
            "seed": 1, "nwalkers": 10}
    w = ResultWriter(ds, "qmc", {"settings": "dimensionless", "total_energy": "hartree"})
    w.record("h2", 2, {"settings": json.dumps(base), "total_energy": -1.0})
    w.record("h2", 1, {"settings": json.dumps({**base, "method": "dmc", "dmc_tau": 0.01}), "total_energy": -1.1})
    w.merge()
    w.record("h2", 3, {"settings": json.dumps({**base, "seed": 2}), "total_energy": -1.05})  # still in the journal
    w.close()

    def outcome(check):
        try:
            check()
        except InputError as err:
            return str(err)
        return None

    levels = recorded_levels(ds)
    assert len(levels) == 2
    for new in (base, {**base, "seed": 9}, {**base, "method": "dmc", "dmc_tau": 0.01}, {**base, "basis": "c"}):
        old = outcome(lambda: check_record(ds, "h2", 0, new))
        assert old is not None  # two levels are recorded: any new value differs from one of them
        assert outcome(lambda: check_level(ds, levels, "h2", 0, new)) == old
    one = create_dataset(tmp_path / "one.h5", [Molecule("h2", np.array([1, 1]), x)])
    w = ResultWriter(one, "qmc", {"settings": "dimensionless"})
    w.record("h2", 1, {"settings": json.dumps(base)})
    w.close()
    for new, refused in ((base, False), ({**base, "seed": 9}, False), ({**base, "ecp": "ccecp"}, True)):
        old = outcome(lambda: check_record(one, "h2", 0, new))
        assert (old is not None) == refused
        assert outcome(lambda: check_level(one, recorded_levels(one), "h2", 0, new)) == old


def test_dft_step_as_executor_tasks_makes_the_farms_file(tmp_path):
    """The DFT step's conformations as tasks of the local executor (2 workers) give the file that the
    dft_gpu farm (`dft-gpu run`'s rung.dft_gpu.run.run) makes of the same dataset: every dft_* value
    (wall times aside), attribute and saved orbital equal (floats to 1e-9: the farm runs here on
    several BLAS threads, the workers on one)."""
    from rung.dft_gpu.run import run

    cfg = parse({"input": {"perturb": {"molecule": "H2O", "n": 3, "sigma_angstrom": 0.08, "seed": 1}},
                 "dft": {"xc": "hf", "force_grid": 3}})
    (tmp_path / "farm").mkdir()
    (tmp_path / "tasks").mkdir()
    a = steps.conformations(cfg, tmp_path / "farm")
    b = steps.conformations(cfg, tmp_path / "tasks")
    with Executor("local", workers=2) as ex:
        assert len(list(ex.run([(i, 0, abs, (-i,)) for i in range(4)]))) == 4  # the workers forked before any SCF here
        run(a, a, steps.dft_config(cfg), progress=False)
        line = steps.dft(cfg, b, ex)
    assert line.startswith("3 done, 0 failed of 3 (3 computed now")

    def content(path):
        out = {}

        def visit(name, obj):
            if "wall_time" not in name:
                out[name] = obj[()] if isinstance(obj, h5py.Dataset) else None
            out[name + "@"] = dict(obj.attrs)

        with h5py.File(path) as f:
            out["/@"] = dict(f.attrs)
            f.visititems(visit)
        return out

    for fa, fb in ((a, b), (a.with_name("dataset.orbitals.h5"), b.with_name("dataset.orbitals.h5"))):
        ca, cb = content(fa), content(fb)
        assert ca.keys() == cb.keys() and any(k.endswith("dft_total_gradient") or k.endswith("mo_coeff") for k in ca)
        for k in ca:
            pairs = [(k + kk, ca[k][kk], cb[k][kk]) for kk in ca[k]] if isinstance(ca[k], dict) else [(k, ca[k], cb[k])]
            if isinstance(ca[k], dict):
                assert ca[k].keys() == cb[k].keys(), k
            for what, x, y in pairs:
                if what.endswith("@mol"):  # PySCF's Mole dump: its _env order follows the process's history
                    import json

                    x, y = ({k: v for k, v in json.loads(m).items() if k in ("_atom", "_basis", "_ecp", "charge", "spin")}
                            for m in (x, y))
                    assert x == y, what
                elif np.asarray(x).dtype.kind == "f":  # 1 BLAS thread in a worker, several here: ~1e-12 apart
                    np.testing.assert_allclose(x, y, rtol=0, atol=1e-9, err_msg=what)
                else:
                    np.testing.assert_array_equal(x, y, err_msg=what)
    with Executor("serial") as ex:  # a rerun computes nothing
        assert "0 computed now" in steps.dft(cfg, b, ex)


def test_local_workers_forked_after_an_in_process_scf_do_not_hang():
    """A process that ran an SCF (its OpenMP team exists) then starts the local executor: the forked
    workers run PySCF integrals instead of waiting forever on the parent's OpenMP threads (this hung the
    test above when it ran after other in-process SCFs). In a fresh interpreter, with a timeout."""
    script = (
        "import sys\nsys.path.insert(0, sys.argv[1])\nfrom pyscf import gto, scf\n"
        "from tools.pipeline.executors import Executor\n"
        "mol = gto.M(atom='O 0 0 0; H 0 1 0.5; H 0 -1 0.5', basis='cc-pvdz', verbose=0)\n"
        "scf.RHF(mol).run()\n"
        "with Executor('local', workers=2) as ex:\n"
        "    out = dict((k, r) for k, r, e in ex.run([(i, 0, mol.intor, ('int1e_ovlp',)) for i in range(4)]))\n"
        "print(sorted(float(v.sum()) for v in out.values()) == [float(mol.intor('int1e_ovlp').sum())] * 4)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=120,
                         env=env, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "True", out.stderr


def _blas_threads():
    from threadpoolctl import threadpool_info

    return sorted({d["num_threads"] for d in threadpool_info()})


def test_local_workers_run_every_blas_on_one_thread():
    """Every BLAS/OpenMP library of a local worker runs on one thread, also those its parent had loaded
    before the fork with more (PySCF imported first, as the DFT step's resume does): a worker's result
    must not depend on what its parent had imported. In a fresh interpreter with 2 threads."""
    script = ("import sys\nsys.path.insert(0, sys.argv[1])\nimport pyscf.lib, scipy.linalg\n"
              "from tools.pipeline.executors import Executor\nfrom tests.test_pipeline import _blas_threads\n"
              "print(_blas_threads())\n"
              "with Executor('local', workers=1) as ex:\n    print([r for k, r, e in ex.run([(0, 0, _blas_threads, ())])][0])\n")
    env = {**os.environ, "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", script, str(ROOT)], capture_output=True, text=True, timeout=120,
                         env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    parent, worker = out.stdout.split("\n")[:2]
    assert parent.endswith(", 2]") and worker == "[1]", out.stdout


def test_sci_step_single_and_multideterminant_dmc(tmp_path):
    """[sci]: one training conformation gets CIPSI (sci_* values in sci.h5, the wave function with its
    orbitals) and DMC with one determinant and with the expansion after Jastrow + CI optimisation; the
    CI energy lies below the orbitals' Hartree-Fock energy and PT2 lowers it further; a rerun computes
    nothing again."""
    import json

    cfg = tmp_path / "tiny.toml"
    text = "md = false\n" + TINY.format(method="random").split("[md]")[0]
    cfg.write_text(text + "[sci]\nmax_det = 50\ndeterminants = 10\ndmc_blocks = 4\ndmc_steps = 5\n")
    p = _run(cfg, tmp_path / "out", "--workers", "2")
    text = p.communicate(timeout=900)[0]
    assert p.returncode == 0, text
    line = next(x for x in text.splitlines() if x.startswith("sci ")).rsplit("  [", 1)[0]  # without its time
    assert "CIPSI" in line and "DMC 1 det" in line and "10 dets (Jastrow + CI optimised)" in line, line
    with h5py.File(tmp_path / "out" / "sci.h5") as f:
        assert f["h2o/sci_status"].shape == (1,)
        e_var, e_tot = f["h2o/sci_variational_energy"][0], f["h2o/sci_total_energy"][0]
    wf = tmp_path / "out" / "sci" / "h2o.0.sci.h5"
    with h5py.File(wf) as f:
        e_hf = f["orbitals"].attrs["e_tot"]
    assert e_tot < e_var < e_hf - 0.01
    result = tmp_path / "out" / "sci" / "h2o.0.dmc.json"
    r = json.loads(result.read_text())
    assert r["determinants"] == 10 and all(np.isfinite(r["single"] + r["multi"]))
    # 20 DMC steps: the line says when a run's blocking found no plateau (its error bar not to be trusted)
    assert ("no blocking plateau" in line) == (not (r["single_plateau"] and r["multi_plateau"])), line
    stamp = result.stat().st_mtime_ns, wf.stat().st_mtime_ns
    p = _run(cfg, tmp_path / "out", "--executor", "serial")
    again = p.communicate(timeout=600)[0]
    assert p.returncode == 0 and line in again, again
    assert (result.stat().st_mtime_ns, wf.stat().st_mtime_ns) == stamp
    cfg.write_text(cfg.read_text().replace("dmc_steps = 5", "dmc_steps = 6"))  # other DMC settings: redone
    p = _run(cfg, tmp_path / "out", "--executor", "serial")
    assert p.wait(timeout=600) == 0
    assert json.loads(result.read_text())["settings"]["dmc_steps"] == 6 and wf.stat().st_mtime_ns == stamp[1]
    cfg.write_text(cfg.read_text() + "conformations = 2\n")  # another subset: refused, nothing replaced
    p = _run(cfg, tmp_path / "out", "--executor", "serial")
    text = p.communicate(timeout=600)[0]
    assert p.returncode == 2 and "holds other conformations" in text, text
