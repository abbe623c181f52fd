import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from rung.qmc.cli import main

H2_XYZ = "2\n\nH 0 0 0\nH 0 0 0.74\n"


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    for cmd in ("vmc", "dmc", "optimize"):
        assert cmd in result.output


def test_optimize_then_dmc_into_dataset(tmp_path):
    """Dataset in, qmc_* properties out; optimised parameters passed from `optimize` to `dmc`."""
    from rung.core.dataset import Molecule, create_dataset, read_property

    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 1.4]]))])
    common = ["--basis", "cc-pvdz", "--ecp", "none", "--walkers", "20", "--vmc-blocks", "3", "--vmc-steps", "4"]
    r = CliRunner().invoke(main, ["optimize", str(ds), *common, "--iterations", "2", "--opt-steps", "4",
                                  "--save", str(tmp_path / "p.h5")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["dmc", str(ds), *common, "--params", str(tmp_path / "p.h5"), "--tau", "0.05",
                                  "--blocks", "3", "--steps", "4", "--equil-blocks", "1",
                                  "--checkpoint", str(tmp_path / "c.chk"), "--trace", str(tmp_path / "t.h5")])
    assert r.exit_code == 0, r.output
    assert "E(DMC)" in r.output
    e, unit = read_property(ds, "h2", "qmc_total_energy")
    err, _ = read_property(ds, "h2", "qmc_total_energy_error")
    assert unit == "hartree" and np.isfinite(e[0]) and err[0] > 0
    assert -1.3 < e[0] < -1.0
    d, _ = read_property(ds, "h2", "qmc_dmc_energy")
    assert d[0] == e[0]
    assert np.isfinite(read_property(ds, "h2", "qmc_vmc_kinetic")[0][0])


def test_vmc_xyz_subprocess(tmp_path):
    xyz = tmp_path / "h2.xyz"
    xyz.write_text(H2_XYZ)
    out = subprocess.run([sys.executable, "-m", "rung.qmc.cli", "vmc", str(xyz), "--basis", "sto-3g", "--ecp", "none",
                          "--walkers", "10", "--vmc-blocks", "2", "--vmc-steps", "3", "--no-jastrow",
                          "--out", str(tmp_path / "res")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "E(VMC)" in out.stdout
    from rung.qmc.vmc import QMCResult

    r = QMCResult.from_hdf5(tmp_path / "res.vmc.h5")
    assert r.method == "vmc" and r.nwalkers == 10 and f"{r.energy:.4f}"[:5] in out.stdout


def test_missing_ecp_cli(tmp_path):
    xyz = tmp_path / "xe.xyz"
    xyz.write_text("1\n\nXe 0 0 0\n")
    r = CliRunner().invoke(main, ["vmc", str(xyz), "--basis", "def2-svp", "--ecp", "ccecp"])
    assert r.exit_code == 1
    assert "no 'ccecp' pseudopotential" in r.output


def test_vmc_forces_into_dataset(tmp_path):
    """`qmc vmc --forces` prints the forces and writes qmc_*_gradient (minus the forces) with errors."""
    from rung.core.dataset import Molecule, create_dataset, read_property

    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 1.1]]))])
    r = CliRunner().invoke(main, ["vmc", str(ds), "--basis", "cc-pvdz", "--ecp", "none", "--walkers", "20",
                                  "--vmc-blocks", "4", "--vmc-steps", "5", "--forces", "--force-every", "2"])
    assert r.exit_code == 0, r.output
    assert "forces, VMC, Hartree/Bohr" in r.output
    g, unit = read_property(ds, "h2", "qmc_total_gradient")
    err, _ = read_property(ds, "h2", "qmc_total_gradient_error")
    assert unit == "hartree/bohr" and g.shape == (1, 2, 3) and np.all(err[0] > 0)
    np.testing.assert_allclose(g[0].sum(0), 0.0, atol=1e-6)  # space warp: the forces sum to zero
    assert g[0, 0, 2] > 0 > g[0, 1, 2]  # at 1.1 Bohr the atoms repel (RHF force 0.22 Ha/Bohr): F_0z < 0
    np.testing.assert_array_equal(read_property(ds, "h2", "qmc_vmc_gradient")[0], g)


def test_bad_force_options(tmp_path):
    xyz = tmp_path / "h2.xyz"
    xyz.write_text(H2_XYZ)
    r = CliRunner().invoke(main, ["vmc", str(xyz), "--forces", "--force-every", "0", "--ecp", "none"])
    assert r.exit_code == 2 and "--force-every" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["vmc", str(xyz), "--walkers", "0", "--ecp", "none"])
    assert r.exit_code == 2 and "nwalkers" in r.output
