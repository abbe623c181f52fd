"""`dft-gpu run` refuses coordinates in a wrong length unit before any work, and --trust-units overrides it."""

import h5py
import numpy as np
from click.testing import CliRunner

from rung.core.testing import check_bad_input
from rung.core.units import ANGSTROM_TO_BOHR
from rung.dft_gpu.cli import main

FAST = ["--xc", "hf", "--basis", "sto-3g", "--ecp", "none", "--jk", "pyscf", "--no-forces", "--quiet"]
WATER_BOHR = "3\nwater\nO 0.0 0.0 0.2254\nH 0.0 1.4422 -0.9014\nH 0.0 -1.4422 -0.9014\n"  # numbers in Bohr
NUMBERS = np.array([[0.0, 0.0, 0.2254], [0.0, 1.4422, -0.9014], [0.0, -1.4422, -0.9014]])


def test_a_bohr_xyz_read_as_angstrom_is_refused_before_any_work(tmp_path):
    src, out = tmp_path / "w.xyz", tmp_path / "o.h5"
    src.write_text(WATER_BOHR)
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST])
    check_bad_input(r, "w.xyz", "H2O", "read as angstrom", "look like bohr", "--trust-units")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.xyz"]
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST, "--input-units", "bohr"])
    assert r.exit_code == 0 and "1 done" in r.output, r.output
    with h5py.File(out, "r") as f:  # read as Bohr
        np.testing.assert_allclose(f["H2O/conformations"][0], NUMBERS, rtol=1e-12)
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(tmp_path / "t.h5"), *FAST, "--trust-units"])
    assert r.exit_code == 0 and "done" in r.output, r.output  # the user says so: computed as given
    with h5py.File(tmp_path / "t.h5", "r") as f:  # read as Angstrom, as the user insisted
        np.testing.assert_allclose(f["H2O/conformations"][0], NUMBERS * ANGSTROM_TO_BOHR, rtol=1e-12)


def test_an_hdf5_group_labelled_bohr_holding_angstrom_is_rejected(tmp_path):
    src, out = tmp_path / "in.h5", tmp_path / "o.h5"
    x = np.array([[[0.0, 0.0, 0.1193], [0.0, 0.7632, -0.4770], [0.0, -0.7632, -0.4770]]])  # Angstrom
    with h5py.File(src, "w") as f:
        g = f.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1])
        g.create_dataset("conformations", data=x).attrs["units"] = "bohr"
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST])
    check_bad_input(r, "in.h5", "no usable molecule", "water", "read as bohr", "look like angstrom")
    assert not out.exists()
