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


def test_finetune_moves_every_layer_but_the_first_and_fits_better(tmp_path):
    """[refit] finetune_epochs: the third model starts from the read-out one, keeps layer 0 (reads the AEV)
    bit for bit, changes deeper layers, and fits training labels that ANI-1x lacks (an O-H stretch term)
    better than the read-out refit (weighted chi^2 on the training set); the report judges it and MD runs it."""
    from rung.core.dataset import Molecule, ResultWriter, create_dataset

    numbers, x = steps.perturbed("H2O", 12, 0.06, seed=5)
    xb = x * 1.8897261254578281
    e, g = steps.predict("ani-1x", numbers, xb)
    r = np.linalg.norm(xb[:, 1:] - xb[:, :1], axis=-1)
    unit = (xb[:, 1:] - xb[:, :1]) / r[..., None]
    k, r0 = 0.3, r.mean()
    e = e + 0.5 * k * ((r - r0) ** 2).sum(1)
    g_extra = np.zeros_like(g)
    g_extra[:, 1:] = k * (r - r0)[..., None] * unit
    g_extra[:, 0] = -g_extra[:, 1:].sum(1)
    g = g + g_extra
    for name, idx in (("train", range(10)), ("hold", range(10, 12))):
        path = tmp_path / f"{name}.h5"
        create_dataset(path, [Molecule("h2o", numbers, xb[list(idx)])])
        w = ResultWriter(path, "ladder", steps.LADDER_UNITS)
        for j, i in enumerate(idx):
            w.record("h2o", j, {"total_energy": e[i], "total_energy_error": 1e-3, "total_gradient": g[i],
                                "total_gradient_error": np.full((3, 3), 2e-3), "rung": "qmc"})
        w.merge()
    cfg = parse({"input": {"perturb": {}}, "refit": {"l2sp": 1e2, "finetune_epochs": 30, "finetune_learning_rate": 1e-4},
                 "md": False})
    line, paths = steps.refit(cfg, [tmp_path / "train.h5"], tmp_path / "hold.h5", tmp_path)
    assert set(paths) == {"shifts", "readout", "finetune"} and steps.final_model(paths) == "finetune"

    def chi2(model):
        pe, pg = steps.predict(model, numbers, xb[:10])
        return np.sum(((pe - e[:10]) - np.mean(pe - e[:10])) ** 2 / 1e-6) + np.sum((pg - g[:10]) ** 2 / 4e-6)

    c_tuned, c_readout = chi2(paths["finetune"]), chi2(paths["readout"])
    print("chi2 fine-tuned", c_tuned, "read-out", c_readout)
    assert c_tuned < 0.9 * c_readout, (c_tuned, c_readout)
    with h5py.File(paths["readout"], "r") as a, h5py.File(paths["finetune"], "r") as b:
        for sp in a["members/0"]:
            np.testing.assert_array_equal(a[f"members/0/{sp}/0/weight"][()], b[f"members/0/{sp}/0/weight"][()])
        assert any(not np.array_equal(a[f"members/0/{sp}/1/weight"][()], b[f"members/0/{sp}/1/weight"][()])
                   for sp in a["members/0"])
    _, met = steps.evaluate(cfg, tmp_path / "hold.h5", paths)
    assert "finetune_vs_base" in met["comparisons"] and "finetune" in met
