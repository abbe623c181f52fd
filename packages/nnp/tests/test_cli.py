"""The `nnp` command line (CliRunner, and once as a subprocess) and the ladder step."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner

from rung.core import units as U
from rung.nnp.cli import main

XYZ = """3
water
O 0.0 0.0 0.119
H 0.0 0.763 -0.477
H 0.0 -0.763 -0.477
3
water
O 0.0 0.0 0.129
H 0.0 0.753 -0.477
H 0.0 -0.773 -0.467
"""


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_fetch_cached(ani1x_file):
    r = CliRunner().invoke(main, ["fetch", "ani-1x"])
    assert r.exit_code == 0, r.output
    assert "already" in r.output or "networks" in r.output
    r = CliRunner().invoke(main, ["fetch", "ani-3z"])
    assert r.exit_code != 0 and "unknown model" in r.output


def test_eval_xyz(ani1x_file, tmp_path):
    from ase.io import read

    from rung.nnp import load_model

    src = tmp_path / "w.xyz"
    src.write_text(XYZ)
    out = tmp_path / "w.h5"
    r = CliRunner().invoke(main, ["eval", str(src), "--model", str(ani1x_file), "--out", str(out)])
    assert r.exit_code == 0, r.output
    pot = load_model(ani1x_file, dtype="float64")
    with h5py.File(out) as f:
        g = f["H2O"]
        assert g["nnp_forces"].attrs["units"] == "hartree/bohr"
        for k, atoms in enumerate(read(src, ":")):
            ref = pot.evaluate(atoms.positions, atoms.numbers)
            assert abs(g["nnp_energy"][k] - ref.energy[0]) < 1e-10
            assert abs(g["nnp_energy_spread"][k] - ref.spread[0]) < 1e-10
            np.testing.assert_allclose(g["nnp_forces"][k], ref.forces * U.BOHR_TO_ANGSTROM, atol=1e-10)


def test_eval_dataset_errors_vs_reference(ani1x_file, tmp_path):
    """A dataset with a reference rung: the reported MAE matches the errors computed here."""
    from ase.io import read

    from rung.core.dataset import Molecule, create_dataset
    from rung.nnp import load_model

    src = tmp_path / "w.xyz"
    src.write_text(XYZ)
    frames = read(src, ":")
    x = np.array([a.positions for a in frames]) * U.ANGSTROM_TO_BOHR
    ds = create_dataset(tmp_path / "d.h5", [Molecule("water", frames[0].numbers, x)])
    pot = load_model(ani1x_file, dtype="float64")
    e = np.array([pot.evaluate(a.positions, a.numbers).energy[0] for a in frames])
    e_ref = e + np.array([0.01, 0.012])  # a reference 10 / 12 mHa above
    with h5py.File(ds, "a") as f:
        f["water/dft_total_energy"] = e_ref
        f["water/dft_total_energy"].attrs["units"] = "hartree"
    r = CliRunner().invoke(main, ["eval", str(ds), "--model", str(ani1x_file)])
    assert r.exit_code == 0, r.output
    from rung.nnp.evaluate import compare

    (err,) = compare(ds)
    assert err.rung == "dft" and err.n_conf == 2
    assert abs(err.energy_mae - 0.011 * U.HARTREE_TO_KCAL_PER_MOL) < 1e-6
    assert abs(err.rel_energy_mae - 0.001 * U.HARTREE_TO_KCAL_PER_MOL) < 1e-6
    assert np.isnan(err.forces_mae)
    assert "dft" in r.output


def test_cli_subprocess_missing_model(tmp_path):
    env = {"RUNG_CACHE": str(tmp_path), "PATH": ""}
    src = tmp_path / "w.xyz"
    src.write_text(XYZ)
    r = subprocess.run([sys.executable, "-m", "rung.nnp.cli", "eval", str(src)], capture_output=True, text=True, env=env)
    assert r.returncode != 0
    assert "nnp fetch ani-1x" in r.stderr


def test_ladder_step(ani1x_file, tmp_path):
    from ase.collections import g2

    from rung.core.dataset import Molecule, create_dataset
    from rung.nnp.ladder import step

    atoms = g2["H2O"]
    ds = create_dataset(tmp_path / "water.h5", [Molecule("water", atoms.numbers, atoms.positions[None] * U.ANGSTROM_TO_BOHR)])
    grad = np.zeros((1, 3, 3))
    with h5py.File(ds, "a") as f:
        f["water/dft_total_gradient"] = grad
        f["water/dft_total_gradient"].attrs["units"] = "hartree/bohr"
    line = step(Path(tmp_path), ds, "water")
    assert line.startswith("E(ANI-1x, 8 nets) = -76.") and "force RMSE vs DFT" in line
    with h5py.File(ds) as f:
        assert f["water/nnp_status"][0] == 1


def test_convert(ani1x_file, tmp_path):
    from rung.nnp.fetch import cache_dir
    from rung.nnp.model import read_model

    folder = cache_dir() / "ani-1x_8x"
    if not folder.is_dir():
        import pytest

        pytest.skip("NeuroChem folder not in the cache")
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(main, ["convert", str(folder), str(out), "--name", "ani-1x-copy"])
    assert r.exit_code == 0, r.output
    m, ref = read_model(out), read_model(ani1x_file)
    assert m.name == "ani-1x-copy" and len(m.members) == 8 and m.species == ("H", "C", "N", "O")
    for a, b in zip(m.members[7][3].layers, ref.members[7][3].layers):
        np.testing.assert_array_equal(a.weight, b.weight)


def _frames(*blocks):
    return "".join(f"{len(b)}\n{info}\n" + "".join(f"{el} {x} {y} {z}\n" for el, x, y, z in b) for info, b in blocks)


WATER = [("O", 0.0, 0.0, 0.119), ("H", 0.0, 0.763, -0.477), ("H", 0.0, -0.763, -0.477)]
OVERLAP = [("O", 0.0, 0.0, 0.119), ("H", 0.0, 0.0, 0.12), ("H", 0.0, -0.763, -0.477)]  # atoms 0 and 1 on top
NAN = [("O", 0.0, 0.0, 0.119), ("H", 0.0, "nan", -0.477), ("H", 0.0, -0.763, -0.477)]


def test_eval_bad_conformations_fail_alone(ani1x_file, tmp_path):
    """An overlapping pair and a NaN coordinate fail only their conformations, named in the file's
    numbering (molecule, conformation, atoms of the molecule); a charged and an open-shell molecule are
    refused with the reason; the good conformations match the model evaluated directly."""
    from rung.core.dataset import DONE, FAILED
    from rung.nnp import load_model

    src = tmp_path / "mix.xyz"
    src.write_text(_frames(("name=w", WATER), ("name=w", OVERLAP), ("name=w", WATER), ("name=w", NAN),
                           ("name=w", [(e, x + 0.01, y, z) for e, x, y, z in WATER]),
                           ("name=hydroxide charge=-1", WATER[:2]), ("name=oh multiplicity=2", WATER[:2])))
    out = tmp_path / "mix.h5"
    r = CliRunner().invoke(main, ["eval", str(src), "--model", str(ani1x_file), "--out", str(out)])
    assert r.exit_code == 0, r.output
    pot = load_model(ani1x_file, dtype="float64")
    with h5py.File(out) as f:
        g = f["w"]
        status, why = g["nnp_status"][()], [s.decode() if isinstance(s, bytes) else s for s in g["nnp_error"][()]]
        assert list(status) == [DONE, FAILED, DONE, FAILED, DONE]
        assert why[1].startswith("w: conformation 1: atoms 0 and 1 are") and "overlapping" in why[1]
        assert why[3] == "w: conformation 3: NaN or infinite coordinates"
        for k in (0, 2, 4):
            x = g["conformations"][k] * U.BOHR_TO_ANGSTROM
            assert abs(g["nnp_energy"][k] - pot.evaluate(x, g["atomic_numbers"][()]).energy[0]) < 1e-10
        for name, what in (("hydroxide", "charge -1, multiplicity 1"), ("oh", "charge +0, multiplicity 2")):
            h = f[name]
            assert list(h["nnp_status"][()]) == [FAILED]
            msg = h["nnp_error"][0]
            msg = msg.decode() if isinstance(msg, bytes) else msg
            assert what in msg and "neutral closed-shell" in msg and "conformation 0" in msg


def test_eval_nothing_evaluable(ani1x_file, tmp_path):
    """No evaluable structure: exit 2, one line, no output file (screened, and found in evaluation)."""
    for k, text in enumerate((_frames(("name=a", NAN), ("name=b charge=1", WATER)), _frames(("name=a", OVERLAP)))):
        src = tmp_path / f"bad{k}.xyz"
        src.write_text(text)
        r = CliRunner().invoke(main, ["eval", str(src), "--model", str(ani1x_file)])
        assert r.exit_code == 2, r.output
        assert "no structure" in r.output and "can evaluate" in r.output
        assert not src.with_suffix(".nnp.h5").exists()
        if k == 0:
            assert len(r.output.strip().splitlines()) == 1
    # a rung dataset holding only overlapping atoms: failures recorded in it, exit 2
    from rung.core.dataset import FAILED, create_dataset, read_structures

    ds = create_dataset(tmp_path / "bad.h5", read_structures(tmp_path / "bad1.xyz"))
    r = CliRunner().invoke(main, ["eval", str(ds), "--model", str(ani1x_file)])
    assert r.exit_code == 2 and "no structure" in r.output.splitlines()[-1], r.output
    with h5py.File(ds) as f:
        assert list(f["a/nnp_status"][()]) == [FAILED]


def test_model_errors_exit_2(tmp_path, monkeypatch):
    from rung.core.errors import InputError
    from rung.nnp.fetch import WeightsMissing
    from rung.nnp.model import ModelFileError

    assert issubclass(ModelFileError, InputError) and issubclass(WeightsMissing, InputError)
    assert issubclass(WeightsMissing, FileNotFoundError)
    src = tmp_path / "w.xyz"
    src.write_text(XYZ)
    bad = tmp_path / "m.h5"
    bad.write_bytes(b"not hdf5")
    r = CliRunner().invoke(main, ["eval", str(src), "--model", str(bad)])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    monkeypatch.setenv("RUNG_CACHE", str(tmp_path / "empty"))
    r = CliRunner().invoke(main, ["eval", str(src), "--model", "ani-1x"])
    assert r.exit_code == 2 and "nnp fetch" in r.output, r.output
