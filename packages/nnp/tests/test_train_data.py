"""Training labels from rung datasets: units, error bars as weights, the split."""

import h5py
import numpy as np
import pytest

from rung.core.dataset import Molecule, create_dataset
from rung.nnp.testing import conformations, random_model
from rung.nnp.train.config import Stage, TrainInputError
from rung.nnp.train.data import load_frames, split
from rung.nnp.train.readout import refit

ASE_BOHR = 0.52917721067  # Angstrom (CODATA 2014, as ase.units has it): an oracle independent of rung.core.units


def write(path, mols, props):
    """mols: [(name, numbers, x Angstrom)]; props: {name: {key: (values, units)}}."""
    create_dataset(path, [Molecule(n, z, x / ASE_BOHR) for n, z, x in mols])
    with h5py.File(path, "a") as f:
        for name, d in props.items():
            for key, (v, unit) in d.items():
                f[name][key] = v
                f[name][key].attrs["units"] = unit
    return path


def stage(path, **kw):
    return Stage(name="s", datasets=(str(path),), **{"energy": "qmc_total_energy", "gradient": "qmc_total_gradient", **kw})


def test_units_and_missing_labels(tmp_path):
    (name, z, x), = conformations(("H2O",), 4)
    rng = np.random.default_rng(0)
    e_kcal = rng.normal(size=4)
    g_ev = rng.normal(size=(4, 3, 3))
    g_ev[1] = np.nan
    path = write(tmp_path / "d.h5", [(name, z, x)], {name: {"qmc_total_energy": (e_kcal, "kcal/mol"),
                                                            "qmc_total_gradient": (g_ev, "ev/angstrom")}})
    frames, (count,) = load_frames(stage(path), random_model().atomic_numbers, log=lambda s: None)
    hartree_ev, kcal_mol = 27.211386, 627.5095  # eV and kcal/mol per Hartree (CODATA 2014/2018 agree to 1e-7)
    np.testing.assert_allclose(frames.energy, e_kcal / kcal_mol, rtol=1e-6)
    np.testing.assert_allclose(frames.x.reshape(4, 3, 3), x, rtol=1e-8)  # CODATA 2014 vs 2018 Bohr: 4e-10
    f = frames.forces.reshape(4, 3, 3)
    assert np.all(np.isnan(f[1]))
    np.testing.assert_allclose(f[[0, 2, 3]], -g_ev[[0, 2, 3]] / hartree_ev, rtol=1e-6)  # Hartree/Angstrom
    assert (count["used"], count["no_gradient"], count["no_energy"]) == (4, 1, 0)


def test_error_bars_weight_and_duplicates(tmp_path):
    """1/sigma^2 weights: a conformation present twice, once with doubled error bars, carries 1 + 1/4 of
    its weight, so the refit equals one copy with sigma / sqrt(1.25) (energies and gradients)."""
    (name, z, x), = conformations(("CH3OH",), 10, seed=1)
    teacher = random_model(5)
    from rung.nnp.ani import ANIPotential

    r = ANIPotential(teacher, dtype="float64").compute(x, z)
    e, g = r.energy, -r.forces * ASE_BOHR  # gradient in Hartree/Bohr
    rng = np.random.default_rng(2)
    se, sg = rng.uniform(1e-3, 3e-3, 10), rng.uniform(1e-3, 3e-3, (10, len(z), 3))
    k = 3
    dup = np.r_[np.arange(10), k]
    se2, sg2 = se[dup].copy(), sg[dup].copy()
    se2[-1] *= 2
    sg2[-1] *= 2
    seb, sgb = se.copy(), sg.copy()
    seb[k] /= np.sqrt(1.25)
    sgb[k] /= np.sqrt(1.25)

    def props(idx, s_e, s_g):
        return {name: {"qmc_total_energy": (e[idx], "hartree"), "qmc_total_energy_error": (s_e, "hartree"),
                       "qmc_total_gradient": (g[idx], "hartree/bohr"), "qmc_total_gradient_error": (s_g, "hartree/bohr")}}

    a = write(tmp_path / "a.h5", [(name, z, x[dup])], props(dup, se2, sg2))
    b = write(tmp_path / "b.h5", [(name, z, x)], props(np.arange(10), seb, sgb))
    model = random_model(0, members=2)
    st = stage(a, energy_error_floor=1e-6, gradient_error_floor=1e-6)
    fa, _ = load_frames(st, model.atomic_numbers, log=lambda s: None)
    fb, _ = load_frames(stage(b, energy_error_floor=1e-6, gradient_error_floor=1e-6), model.atomic_numbers,
                        log=lambda s: None)
    la, lb = fa.labels(st), fb.labels(st)
    assert la.energy_weight[-1] == pytest.approx(la.energy_weight[k] / 4, rel=1e-12)
    np.testing.assert_allclose(la.forces_weight[-len(z):], la.forces_weight[k * len(z):(k + 1) * len(z)] / 4, rtol=1e-12)
    np.testing.assert_allclose(la.energy_weight[:10], 1 / se2[:10] ** 2, rtol=1e-12)
    ra, rb = refit(model, la, l2sp=0.1), refit(model, lb, l2sp=0.1)
    for ma, mb in zip(ra.model.members, rb.model.members):
        for na, nb in zip(ma, mb):
            np.testing.assert_allclose(na.layers[-1].weight, nb.layers[-1].weight, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ra.model.self_energies, rb.model.self_energies, rtol=1e-12)
    c = write(tmp_path / "c.h5", [(name, z, x)], props(np.arange(10), se, sg))  # without the extra 1/4
    fc, _ = load_frames(stage(c), model.atomic_numbers, log=lambda s: None)
    rc = refit(model, fc.labels(st), l2sp=0.1)
    assert np.abs(rc.model.members[0][0].layers[-1].weight - ra.model.members[0][0].layers[-1].weight).max() > 1e-6


def test_weight_options(tmp_path):
    (name, z, x), = conformations(("NH3",), 3)
    path = write(tmp_path / "d.h5", [(name, z, x)], {name: {"qmc_total_energy": (np.zeros(3), "hartree"),
                                                            "qmc_total_energy_error": (np.array([1e-5, 1e-3, np.nan]), "hartree")}})
    st = stage(path, gradient="", energy_error_floor=1e-4, energy_sigma=2e-3)
    frames, _ = load_frames(st, random_model().atomic_numbers, log=lambda s: None)
    np.testing.assert_allclose(frames.labels(st).energy_weight, 1 / np.array([1e-4, 1e-3, 2e-3]) ** 2)
    uni = Stage(**{**st.__dict__, "weights": "uniform", "per_atom": True, "energy_weight": 3.0})
    np.testing.assert_allclose(frames.labels(uni).energy_weight, 3.0 / (2e-3 * 4) ** 2)
    assert not frames.labels(st).forces_weight.any()


def test_split(tmp_path):
    mols = conformations(("H2O", "NH3", "CH4", "CH3OH", "HCOOH"), 6)
    path = write(tmp_path / "d.h5", mols, {n: {"qmc_total_energy": (np.zeros(6), "hartree")} for n, _, _ in mols})
    frames, _ = load_frames(stage(path, gradient=""), random_model().atomic_numbers, log=lambda s: None)
    tr, va = split(frames, 0.4, "molecule", seed=1)
    assert va.n_conf == 12 and tr.n_conf == 18 and not set(tr.mol) & set(va.mol)
    tr2, va2 = split(frames, 0.4, "molecule", seed=1)
    np.testing.assert_array_equal(va.x, va2.x)
    tr, va = split(frames, 0.2, "conformation", seed=0)
    assert (tr.n_conf, va.n_conf) == (24, 6)
    assert sorted(map(tuple, np.round(np.concatenate([tr.x, va.x]), 12))) == sorted(map(tuple, np.round(frames.x, 12)))
    with pytest.raises(TrainInputError, match="validation set is empty"):
        split(frames, 0.05, "molecule", seed=0)


def test_stages_inherit_from_the_stage_before(tmp_path):
    from rung.nnp.train.config import load_config

    (tmp_path / "c.toml").write_text("""
model = "m.h5"
output = "out/r.h5"
[training]
datasets = "d.h5"
energy = "e"
[[stages]]
l2sp = 5.0
frozen = ["*.weight"]
[[stages]]
name = "second"
datasets = ["x.h5", "y.h5"]
frozen = []
[[stages]]
per_atom = true
""")
    c = load_config(tmp_path / "c.toml")
    a, b, d = c.stages
    assert (a.name, b.name, d.name) == ("stage0", "second", "stage2")
    assert a.l2sp == b.l2sp == d.l2sp == 5.0 and b.frozen == d.frozen == () and a.frozen == ("*.weight",)
    assert a.datasets == (str(tmp_path / "d.h5"),) and d.datasets == (str(tmp_path / "x.h5"), str(tmp_path / "y.h5"))
    assert d.per_atom and not b.per_atom and d.energy == "e" and d.shift_l2sp == 0.0
    assert c.output == tmp_path / "out" / "r.h5" and c.name == "r" and c.model == str(tmp_path / "m.h5")
