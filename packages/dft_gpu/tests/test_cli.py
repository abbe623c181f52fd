"""The `dft-gpu` command line: through click's CliRunner, and once end to end as a subprocess."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from click.testing import CliRunner

from rung.dft_gpu.cli import main
from rung.core.testing import check_bad_input

XYZ = """3
water
O 0.0 0.0 0.1193
H 0.0 0.7632 -0.4770
H 0.0 -0.7632 -0.4770
3
water
O 0.0 0.0 0.1193
H 0.0 0.7632 -0.4770
H 0.0 -0.7632 0.4770
2
squashed
H 0 0 0
H 0 0 0.001
"""
FAST = ["--xc", "hf", "--basis", "sto-3g", "--ecp", "none", "--jk", "pyscf"]


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    for cmd in ("run", "status"):
        out = CliRunner().invoke(main, [cmd, "--help"])
        assert out.exit_code == 0 and "--help" in out.output


def test_help_imports_no_chemistry():
    code = ("import sys; from rung.dft_gpu.cli import main; "
            "print(sorted(m for m in ('pyscf', 'h5py', 'mpi4py', 'ase') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_run_and_status(tmp_path):
    src, out = tmp_path / "mols.xyz", tmp_path / "set.h5"
    src.write_text(XYZ)
    runner = CliRunner()
    r = runner.invoke(main, ["run", str(src), "--out", str(out), *FAST, "--no-forces", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "2 done, 1 failed, 0 pending" in r.output
    with h5py.File(out, "r") as f:
        assert f["H2O/dft_total_energy"].shape == (2,) and "dft_total_gradient" not in f["H2O"]
        assert np.all(np.isfinite(f["H2O/dft_total_energy"][()]))
    s = runner.invoke(main, ["status", str(out)])
    assert s.exit_code == 0, s.output
    assert "2 done, 1 failed, 0 pending" in s.output
    assert "failed H2[0]: ConformationError: atoms 0 and 1" in s.output
    assert "xc=hf" in s.output and "wall time" in s.output


def test_bad_input_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.xyz"
    bad.write_text("1\nx\nQq 0 0 0\n")
    r = CliRunner().invoke(main, ["run", str(bad), "--out", str(tmp_path / "o.h5"), *FAST])
    assert r.exit_code != 0 and "cannot parse structures" in r.output
    r = CliRunner().invoke(main, ["run", str(bad), "--out", str(tmp_path / "o.h5"), "--jk", "pyscf", "--backend", "numba"])
    assert r.exit_code != 0 and "engine only" in r.output


def test_end_to_end_subprocess(tmp_path):
    src, out = tmp_path / "mols.xyz", tmp_path / "set.h5"
    src.write_text(XYZ)
    exe = Path(sys.executable).with_name("dft-gpu")
    r = subprocess.run([str(exe), "run", str(src), "--out", str(out), *FAST], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "dft-gpu run 3/3 (100%)" in r.stderr  # not a terminal: plain progress lines
    r = subprocess.run([str(exe), "status", str(out)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "2 done, 1 failed, 0 pending" in r.stdout


def _nothing_written(tmp_path, before):
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_empty_xyz_is_refused(tmp_path):
    src = tmp_path / "empty.xyz"
    src.write_text("")
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(tmp_path / "o.h5"), *FAST])
    check_bad_input(r, "empty.xyz", "empty file")
    _nothing_written(tmp_path, ["empty.xyz"])


def test_truncated_hdf5_input_is_refused(tmp_path):
    from rung.core.dataset import Molecule, create_dataset

    full = create_dataset(tmp_path / "full.h5", [Molecule("h2", np.array([1, 1]), np.zeros((40, 2, 3)) + [0, 0, 1.4] * np.arange(2)[:, None])])
    data = full.read_bytes()
    src = tmp_path / "cut.h5"
    src.write_bytes(data[: len(data) // 2])
    full.unlink()
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(tmp_path / "o.h5"), *FAST])
    check_bad_input(r, "cut.h5")
    _nothing_written(tmp_path, ["cut.h5"])


def test_corrupt_out_is_refused_and_kept(tmp_path):
    src, out = tmp_path / "mols.xyz", tmp_path / "set.h5"
    src.write_text(XYZ.split("2\nsquashed")[0])
    out.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST])
    check_bad_input(r, "set.h5", "not a readable HDF5 file")
    assert out.read_bytes() == b"\x89HDF\r\n\x1a\n" + b"\0" * 100
    _nothing_written(tmp_path, ["mols.xyz", "set.h5"])


def test_bad_option_and_status_of_a_non_dataset(tmp_path):
    src = tmp_path / "mols.xyz"
    src.write_text(XYZ)
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(tmp_path / "o.h5"), *FAST, "--energy-grid", "12"])
    check_bad_input(r, "energy_grid", "12")
    r = CliRunner().invoke(main, ["status", str(src)])  # read-only: no journal folder left beside the file
    check_bad_input(r, "mols.xyz")
    _nothing_written(tmp_path, ["mols.xyz"])


def test_units_are_never_guessed(tmp_path):
    """HDF5 coordinates without a 'units' attribute are refused; --input-units says what they are."""
    from rung.core.units import ANGSTROM_TO_BOHR

    src, out = tmp_path / "nounits.h5", tmp_path / "o.h5"
    with h5py.File(src, "w") as f:
        g = f.create_group("h2")
        g["atomic_numbers"] = np.array([1, 1])
        g["conformations"] = np.array([[[0, 0, 0], [0, 0, 0.74]]])  # Angstrom, but the file does not say
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST, "--no-forces", "--quiet"])
    check_bad_input(r, "nounits.h5", "h2/conformations has no 'units' attribute", "--input-units")
    _nothing_written(tmp_path, ["nounits.h5"])
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST, "--no-forces", "--quiet",
                                  "--input-units", "angstrom"])
    assert r.exit_code == 0 and "1 done" in r.output, r.output
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["h2/conformations"][0, 1, 2], 0.74 * ANGSTROM_TO_BOHR, rtol=1e-15)
        assert f["h2/conformations"].attrs["units"] == "bohr"
