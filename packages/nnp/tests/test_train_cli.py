"""`nnp train` end to end (CliRunner, once as a subprocess), its outputs, bad input, `nnp eval` of several models."""

import hashlib
import json
import re
import subprocess
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from rung.core import units as U
from rung.core.dataset import FAILED, Molecule, create_dataset
from rung.nnp.ani import ANIPotential
from rung.nnp.cli import main
from rung.nnp.model import ANIModel, Layer, Network, read_model, save_model
from rung.nnp.testing import conformations, random_model

CONFIG = """
model = "student.h5"
output = "refit.h5"

[training]
datasets = ["{dataset}"]
energy = "qmc_total_energy"
gradient = "qmc_total_gradient"
validation_fraction = 0.25
seed = 3
{extra}

[[stages]]
name = "shifts"
frozen = ["*.weight"]

[[stages]]
name = "readout"
frozen = []
l2sp = 1e-9
"""


def teacher_of(student, seed=4):
    """The student with other last layers (so its labels are exactly representable), float64."""
    rng = np.random.default_rng(seed)
    nets = []
    for net in student.members[0]:
        last = net.layers[-1]
        nets.append(Network(net.layers[:-1] + (Layer(last.weight + 0.3 * rng.normal(size=last.weight.shape),
                                                     last.bias + 0.02, last.activation),)))
    return ANIModel("teacher", student.species, student.aev, student.self_energies, (tuple(nets),))


def write_dataset(path, teacher, formulas=("H2O", "NH3", "CH4", "CH3OH", "HCOOH", "H3CNH2"), n_conf=8, nan=False):
    """Labels in atomic units: qmc_total_energy (+ _error) Hartree, qmc_total_gradient Hartree/Bohr.

    ``nan``: conformation 0 of the first molecule has no labels, conformation 1 no gradient, and
    conformation 2 is marked failed."""
    pot = ANIPotential(teacher, dtype="float64")
    mols, labels = [], {}
    for name, z, x in conformations(formulas, n_conf, amplitude=0.05):
        mols.append(Molecule(name, z, x * U.ANGSTROM_TO_BOHR))
        r = pot.compute(x, z)
        labels[name] = (r.energy, -r.forces * U.BOHR_TO_ANGSTROM)  # gradient, Hartree/Bohr
    create_dataset(path, mols)
    with h5py.File(path, "a") as f:
        for k, (name, (e, g)) in enumerate(labels.items()):
            e, g = e.copy(), g.copy()
            status = np.ones(e.size, np.int8)
            if nan and k == 0:
                e[0] = np.nan
                g[:2] = np.nan
                status[2] = FAILED
            grp = f[name]
            for key, value, unit in (("qmc_total_energy", e, "hartree"), ("qmc_total_energy_error", np.full(e.size, 2e-3), "hartree"),
                                     ("qmc_total_gradient", g, "hartree/bohr"), ("qmc_status", status, "dimensionless")):
                grp[key] = value
                grp[key].attrs["units"] = unit
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    student = random_model(0)
    save_model(student, d / "student.h5")
    teacher = teacher_of(read_model(d / "student.h5"))
    write_dataset(d / "qmc.h5", teacher, nan=True)
    (d / "train.toml").write_text(CONFIG.format(dataset="qmc.h5", extra=""))
    r = CliRunner().invoke(main, ["train", str(d / "train.toml")])
    return d, r, teacher


def test_train_end_to_end(trained):
    d, r, teacher = trained
    assert r.exit_code == 0, r.output
    assert "stage readout" in r.output and "refit" in r.output
    from rung.nnp import NNPCalculator, load_model

    pot = load_model(d / "refit.h5", dtype="float64")
    # the teacher's energies and forces everywhere, also on molecules not in the data (units right)
    for name, z, x in conformations(("CH3CHO", "N2H4"), 2, seed=7, amplitude=0.05):
        a, b = pot.compute(x, z), ANIPotential(teacher, dtype="float64").compute(x, z)
        np.testing.assert_allclose(a.energy, b.energy, rtol=0, atol=1e-7)
        np.testing.assert_allclose(a.forces, b.forces, rtol=0, atol=1e-6)
    from ase.collections import g2

    atoms = g2["H2O"]
    atoms.calc = NNPCalculator(str(d / "refit.h5"))
    assert np.isfinite(atoms.get_potential_energy())
    base, new = read_model(d / "student.h5"), read_model(d / "refit.h5")
    for nb, nn in zip(base.members[0], new.members[0]):
        for la, lb in zip(nb.layers[:-1], nn.layers[:-1]):
            assert la.weight.dtype == lb.weight.dtype == np.float32 and la.weight.tobytes() == lb.weight.tobytes()
        assert nn.layers[-1].weight.dtype == np.float64
    prov = new.provenance
    assert prov["base_model"]["sha256"] == hashlib.sha256((d / "student.h5").read_bytes()).hexdigest()
    (ds,) = prov["datasets"]
    assert ds["sha256"] == hashlib.sha256((d / "qmc.h5").read_bytes()).hexdigest()
    assert [s["name"] for s in prov["stages"]] == ["shifts", "readout"]
    assert prov["metrics"]["validation"]["energy_rmse"] < 1e-6 and new.name == "refit"
    lines = [json.loads(x) for x in (d / "refit.log.jsonl").read_text().splitlines()]
    assert [x["event"] for x in lines] == ["start", "stage", "stage", "done"]
    shifts, readout = lines[1], lines[2]
    assert shifts["n_free"] == 4 and readout["n_free"] == 4 * 13
    (c,) = readout["counts"]
    assert (c["conformations"], c["used"], c["skipped"], c["no_energy"], c["no_gradient"]) == (48, 46, 2, 2, 3)
    assert readout["n_train"] + readout["n_valid"] == 46
    for key in ("energy_rmse", "energy_per_atom_mae", "forces_rmse"):
        assert readout["valid_after"][key] < 1e-3 * shifts["valid_before"][key]
    assert shifts["valid_after"]["forces_rmse"] == pytest.approx(shifts["valid_before"]["forces_rmse"], rel=1e-9)


def test_explicit_validation_datasets(tmp_path):
    """``validation = [...]``: every conformation of ``datasets`` is trained on, the other file validates."""
    student = random_model(0)
    save_model(student, tmp_path / "student.h5")
    teacher = teacher_of(read_model(tmp_path / "student.h5"))
    write_dataset(tmp_path / "a.h5", teacher, formulas=("H2O", "NH3"), n_conf=5)
    write_dataset(tmp_path / "b.h5", teacher, formulas=("CH4",), n_conf=3)
    (tmp_path / "train.toml").write_text(CONFIG.format(dataset="a.h5", extra='validation = ["b.h5"]'))
    r = CliRunner().invoke(main, ["train", str(tmp_path / "train.toml")])
    assert r.exit_code == 0, r.output
    lines = [json.loads(x) for x in (tmp_path / "refit.log.jsonl").read_text().splitlines()]
    assert [(x["n_train"], x["n_valid"]) for x in lines if x["event"] == "stage"] == [(10, 3), (10, 3)]
    prov = read_model(tmp_path / "refit.h5").provenance
    assert sorted(d["path"].rsplit("/", 1)[-1] for d in prov["datasets"]) == ["a.h5", "b.h5"]


def test_eval_several_models(trained):
    d, _, _ = trained
    r = CliRunner().invoke(main, ["eval", str(d / "qmc.h5"), "--model", str(d / "student.h5"),
                                  "--model", str(d / "refit.h5")])
    assert r.exit_code == 0, r.output
    rows = [line.split() for line in r.output.splitlines() if line.split()[1:2] == ["qmc"]]
    assert [row[0] for row in rows] == [str(d / "student.h5"), str(d / "refit.h5")]
    assert float(rows[1][3]) < 1e-3 * float(rows[0][3])  # energy MAE, kcal/mol
    with h5py.File(d / "qmc.h5") as f:
        assert "nnp_energy" not in f["H2O"]
    r = CliRunner().invoke(main, ["eval", str(d / "qmc.h5"), "--model", str(d / "student.h5"), "--model",
                                  str(d / "refit.h5"), "--out", str(d / "x.h5")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1 and not (d / "x.h5").exists()


BAD = {
    "missing property": ("energy = \"ccsd_total_energy\"", "ccsd_total_energy"),
    "unknown element": ("", "element(s) S"),
    "empty validation": ("validation_fraction = 0.01", "validation set is empty"),
    "empty training": ("validation_fraction = 0.999", "training set is empty"),
    "freezes everything": ("frozen = [\"*\"]", "freezes every parameter"),
    "frozen typo": ("frozen = [\"Q.*\"]", "'Q.*' matches no parameter"),
    "unknown solver": ("solver = \"adam\"", "unknown solver 'adam'"),
    "readout loss": ("loss = \"mae\"", "loss 'mae' needs solver = \"gradient\""),
    "gradient freezes everything": ("solver = \"gradient\"\nfrozen = [\"*.weight\", \"*.bias\"]",
                                    "freezes every parameter (*.weight, *.bias)"),
    "unknown optimizer": ("solver = \"gradient\"\noptimizer = \"sgd\"", "unknown optimizer 'sgd'"),
    "bad epochs": ("solver = \"gradient\"\nepochs = 0", "epochs must be a positive integer"),
    "unknown key": ("l2_sp = 3", "unknown key(s) l2_sp"),
    "bad value": ("split = \"atom\"", "split must be"),
    "missing dataset": ("datasets = [\"nope.h5\"]", "nope.h5: no such file"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    student = random_model(0)
    save_model(student, d / "student.h5")
    write_dataset(d / "ok.h5", teacher_of(student), formulas=("H2O", "CH4"), n_conf=4)
    write_dataset(d / "sulfur.h5", random_model(0, species=("H", "C", "N", "O", "S")), formulas=("H2O", "SH2"), n_conf=2)
    nan = write_dataset(d / "nan.h5", teacher_of(student), formulas=("H2O",), n_conf=3)
    with h5py.File(nan, "a") as f:
        f["H2O/qmc_total_energy"][...] = np.nan
        f["H2O/qmc_total_gradient"][...] = np.nan
    return d


def _run_bad(d, text, expect):
    (d / "bad.toml").write_text(text)
    before = sorted(p.name for p in d.iterdir())
    r = CliRunner().invoke(main, ["train", str(d / "bad.toml")])
    assert r.exit_code == 2, r.output
    assert len(r.output.strip().splitlines()) == 1 and expect in r.output, r.output
    assert sorted(p.name for p in d.iterdir()) == before


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(inputs, case):
    extra, expect = BAD[case]
    dataset = "sulfur.h5" if case == "unknown element" else "ok.h5"
    if case in ("freezes everything", "frozen typo", "unknown solver", "readout loss", "gradient freezes everything",
                "unknown optimizer", "bad epochs", "bad value"):
        text = CONFIG.format(dataset=dataset, extra="").replace("frozen = []", extra)
    elif case.startswith("empty") or case == "missing property":
        key = extra.split(" = ")[0]
        text = re.sub(rf"^{key} = .*$", extra, CONFIG.format(dataset=dataset, extra=""), count=1, flags=re.M)
    else:
        text = CONFIG.format(dataset=dataset, extra=extra)
        if case == "missing dataset":
            text = text.replace(f'datasets = ["{dataset}"]', "")
    _run_bad(inputs, text, expect)


def test_bad_input_files(inputs):
    d = inputs
    _run_bad(d, CONFIG.format(dataset="nan.h5", extra=""), "no conformation has a finite")
    _run_bad(d, CONFIG.format(dataset="ok.h5", extra="").replace('model = "student.h5"', ""), "missing key 'model'")
    _run_bad(d, CONFIG.format(dataset="ok.h5", extra="").replace("student.h5", "absent.h5"), "absent.h5: no such model file")
    _run_bad(d, "model = [", "not valid TOML")
    with h5py.File(d / "ok.h5") as f, h5py.File(d / "close.h5", "w") as g:
        for k in f.attrs:
            g.attrs[k] = f.attrs[k]
        f.copy("H2O", g)
        g["H2O/conformations"][1, 2] = g["H2O/conformations"][1, 0] + 0.05
    _run_bad(d, CONFIG.format(dataset="close.h5", extra=""), "H2O conformation 1: atoms 0 and 2 are 0.0866 Bohr apart")
    (d / "close.h5").unlink()
    (d / "refit.h5").write_text("an earlier result")
    _run_bad(d, CONFIG.format(dataset="ok.h5", extra=""), "pass --overwrite")
    (d / "refit.h5").unlink()


def test_bad_input_subprocess(inputs):
    d = inputs
    (d / "bad.toml").write_text(CONFIG.format(dataset="ok.h5", extra="loss = \"log-cosh\""))
    r = subprocess.run([sys.executable, "-m", "rung.nnp.cli", "train", str(d / "bad.toml")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().startswith("Error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr
