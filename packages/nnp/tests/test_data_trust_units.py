"""`nnp eval` refuses coordinates in a wrong length unit before any work, and --trust-units overrides it."""

from click.testing import CliRunner

from rung.core.testing import check_bad_input
from rung.nnp.cli import main

WATER_BOHR = "3\nwater\nO 0.0 0.0 0.2254\nH 0.0 1.4422 -0.9014\nH 0.0 -1.4422 -0.9014\n"  # numbers in Bohr


def test_a_bohr_xyz_is_refused_and_no_output_written(ani1x_file, tmp_path):
    src, out = tmp_path / "w.xyz", tmp_path / "w.h5"
    src.write_text(WATER_BOHR)
    r = CliRunner().invoke(main, ["eval", str(src), "--model", str(ani1x_file), "--out", str(out)])
    check_bad_input(r, "w.xyz", "read as angstrom", "look like bohr", "--trust-units")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.xyz"]
    r = CliRunner().invoke(main, ["eval", str(src), "--model", str(ani1x_file), "--out", str(out), "--trust-units"])
    assert r.exit_code == 0 and "1 conformation(s) evaluated" in r.output, r.output


def test_foreign_nnp_values_are_refused_and_the_prefix_writes_beside_them(ani1x_file, tmp_path):
    import h5py
    import numpy as np

    src = tmp_path / "w.h5"
    x = np.array([[[0.0, 0.0, 0.2254], [0.0, 1.4422, -0.9014], [0.0, -1.4422, -0.9014]]])  # Bohr
    with h5py.File(src, "w") as f:
        g = f.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1])
        g.create_dataset("conformations", data=x).attrs["units"] = "bohr"
        g["nnp_energy"] = np.array([1.0])  # someone else's number under the plain name
    before = src.read_bytes()
    r = CliRunner().invoke(main, ["eval", str(src), "--model", str(ani1x_file)])
    check_bad_input(r, "w.h5", "water/nnp_energy without nnp_status", "--property-prefix")
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["w.h5"]
    r = CliRunner().invoke(main, ["eval", str(src), "--model", str(ani1x_file), "--property-prefix", "rung_"])
    assert r.exit_code == 0 and "1 conformation(s) evaluated" in r.output, r.output
    with h5py.File(src, "r") as f:
        assert f["water/nnp_energy"][()].tolist() == [1.0] and "nnp_status" not in f["water"]
        assert f["water/rung_nnp_status"][()].tolist() == [1]
        assert -77 < f["water/rung_nnp_energy"][0] < -76 and f["water/rung_nnp_energy"].attrs["units"] == "hartree"


def test_an_empty_xyz_is_one_line_and_no_output(ani1x_file, tmp_path):
    """Issue 19's 'empty xyz (every CLI)' for nnp eval: one line naming the file, exit 2, nothing written."""
    src = tmp_path / "empty.xyz"
    src.write_text("")
    r = CliRunner().invoke(main, ["eval", str(src), "--model", str(ani1x_file), "--out", str(tmp_path / "e.h5")])
    check_bad_input(r, "empty.xyz", "no structure")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.xyz"]
