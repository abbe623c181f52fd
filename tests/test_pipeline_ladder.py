"""The refit's training set on the highest rung per conformation (tools.pipeline.steps.ladder_subset)."""

import h5py
import numpy as np
import pytest

from tools.pipeline import steps
from tools.pipeline.config import parse

QMC_UNITS = {k: "hartree/bohr" if "gradient" in k else "hartree" for k in steps.LABELS}


def _dataset(path, n=8):
    """Two molecules (water, 8 conformations; H2, 3) with DFT labels everywhere and QMC labels on water's
    conformations 0-4 (0, 1: train; 2, 3, 4: held out); H2 has no QMC label. Returns the arrays written."""
    from rung.core.dataset import Molecule, ResultWriter, create_dataset

    rng = np.random.default_rng(3)
    xw = rng.normal(size=(n, 3, 3)) + np.array([[0, 0, 0], [1.8, 0, 0], [0, 1.8, 0]])
    xh = rng.normal(scale=0.1, size=(3, 2, 3)) + np.array([[0, 0, 0], [1.4, 0, 0]])
    create_dataset(path, [Molecule("h2o", np.array([8, 1, 1]), xw), Molecule("h2", np.array([1, 1]), xh)])
    d = {"h2o": (rng.normal(size=n) - 17.0, rng.normal(size=(n, 3, 3))), "h2": (rng.normal(size=3) - 1.1,
                                                                                 rng.normal(size=(3, 2, 3)))}
    w = ResultWriter(path, "dft", {"total_energy": "hartree", "total_gradient": "hartree/bohr"})
    for name, (e, g) in d.items():
        for i in range(e.size):
            w.record(name, i, {"total_energy": e[i], "total_gradient": g[i]})
    w.merge()
    q_e = d["h2o"][0][:5] + np.array([0.100, 0.104, 0.2, 0.2, 0.2])  # QMC - DFT: 0.100 and 0.104 on the training pair
    q_s = np.array([1e-3, 2e-3, 1e-3, 1e-3, 1e-3])
    q_g = d["h2o"][1][:5] + 0.01
    w = ResultWriter(path, "qmc", QMC_UNITS)
    for i in range(5):
        w.record("h2o", i, {"total_energy": q_e[i], "total_energy_error": q_s[i], "total_gradient": q_g[i],
                            "total_gradient_error": np.full((3, 3), 4e-3)})
    w.merge()
    roles = {"h2o": np.array([1, 1, 2, 2, 2, 0, 0, 0], np.int8), "h2": np.zeros(3, np.int8)}
    return d, q_e, q_s, q_g, roles


def _read(path):
    with h5py.File(path, "r") as f:
        return {name: {k: g[k][()] for k in g} for name, g in f.items()}


def _cfg(**refit):
    return parse({"input": {"perturb": {}}, "refit": refit, "md": False})


def test_training_set_takes_qmc_where_recorded_and_dft_on_the_qmc_scale_elsewhere(tmp_path):
    d, q_e, q_s, q_g, roles = _dataset(tmp_path / "d.h5")
    path, line = steps.ladder_subset(_cfg(), tmp_path / "d.h5", roles, steps.TRAIN, tmp_path / "train.h5")
    got = _read(path)
    assert set(got) == {"h2o"}  # H2: no QMC label, so nothing places its DFT energies on the QMC scale
    g = got["h2o"]
    assert g["ladder_rung"].astype(str).tolist() == ["qmc", "qmc", "dft", "dft", "dft"]  # never the held-out 2-4
    np.testing.assert_array_equal(g["ladder_total_energy"][:2], q_e[:2])
    np.testing.assert_array_equal(g["ladder_total_gradient"][:2], q_g[:2])
    # offset: (0.100 / 1e-6 + 0.104 / 4e-6) / (1 / 1e-6 + 1 / 4e-6) = 0.1008 by hand
    np.testing.assert_allclose(g["ladder_total_energy"][2:], d["h2o"][0][5:] + 0.1008, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(g["ladder_total_gradient"][2:], d["h2o"][1][5:])
    # DFT error bars: energy residuals -0.0008, +0.0032 -> mean r^2 = 5.44e-6, mean sigma^2 = 2.5e-6 -> 1.715 mHa;
    # gradients: every residual 0.01 against 4e-3 error bars -> sqrt(1e-4 - 1.6e-5) = 9.165 mHa/Bohr
    np.testing.assert_allclose(g["ladder_total_energy_error"][2:], np.sqrt(5.44e-6 - 2.5e-6), rtol=1e-10)
    np.testing.assert_allclose(g["ladder_total_gradient_error"][2:], np.sqrt(1e-4 - 1.6e-5), rtol=1e-10)
    assert "2 QMC-labelled conformations + 3 DFT-labelled" in line and "1.71 mHa, 9.2 mHa/Bohr" in line


def test_dft_error_bars_are_floored_and_dft_labels_can_be_off(tmp_path):
    d, q_e, q_s, q_g, roles = _dataset(tmp_path / "d.h5")
    g = _read(steps.ladder_subset(_cfg(dft_energy_error_floor_mha=3.0, dft_gradient_error_floor_mha_per_bohr=20.0),
                                  tmp_path / "d.h5", roles, steps.TRAIN, tmp_path / "t.h5")[0])["h2o"]
    assert np.all(g["ladder_total_energy_error"][2:] == 3e-3) and np.all(g["ladder_total_gradient_error"][2:] == 2e-2)
    g = _read(steps.ladder_subset(_cfg(dft_labels=False), tmp_path / "d.h5", roles, steps.TRAIN,
                                  tmp_path / "q.h5")[0])["h2o"]
    assert g["ladder_rung"].astype(str).tolist() == ["qmc", "qmc"]


def test_hold_out_set_is_qmc_only(tmp_path):
    d, q_e, q_s, q_g, roles = _dataset(tmp_path / "d.h5")
    g = _read(steps.ladder_subset(_cfg(), tmp_path / "d.h5", roles, steps.HOLDOUT, tmp_path / "h.h5")[0])["h2o"]
    assert g["ladder_rung"].astype(str).tolist() == ["qmc"] * 3
    np.testing.assert_array_equal(g["ladder_total_energy"], q_e[2:])
    np.testing.assert_array_equal(g["ladder_total_energy_error"], q_s[2:])
    np.testing.assert_array_equal(g["dft_total_energy"], d["h2o"][0][2:5])  # the rung below, for the DFT row
    np.testing.assert_array_equal(g["dft_total_gradient"], d["h2o"][1][2:5])


def test_no_qmc_label_is_one_clear_error(tmp_path):
    d, q_e, q_s, q_g, roles = _dataset(tmp_path / "d.h5")
    roles["h2o"][:2] = 0
    from tools.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="no conformation of role 1 has QMC labels"):
        steps.ladder_subset(_cfg(), tmp_path / "d.h5", roles, steps.TRAIN, tmp_path / "t.h5")
