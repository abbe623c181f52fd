import subprocess
import sys

import h5py
import numpy as np
import pytest
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
    # the DMC replaces the optimisation's VMC values of h2[0]: a different calculation, so --replace
    r = CliRunner().invoke(main, ["dmc", str(ds), *common, "--params", str(tmp_path / "p.h5"), "--tau", "0.05",
                                  "--blocks", "3", "--steps", "4", "--equil-blocks", "1", "--replace",
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
    assert r.exit_code == 2  # bad input (rung.core.cli)
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
    assert r.exit_code == 2 and "--walkers" in r.output


FAST = ["--basis", "sto-3g", "--ecp", "none", "--walkers", "4", "--vmc-blocks", "2", "--vmc-steps", "2"]


def _refused_before_work(r, *words):
    """Bad input: exit code 2, one line on stderr naming the problem, printed before any SCF or sampling
    (the line 'H2[0]: 2 electrons, ... orbitals' comes after the SCF)."""
    assert r.exit_code == 2, r.output
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in r.output and r.stdout == ""


@pytest.fixture
def h2_xyz(tmp_path):
    xyz = tmp_path / "h2.xyz"
    xyz.write_text(H2_XYZ)
    return xyz


@pytest.mark.parametrize("cmd, args, words", [
    ("vmc", ["--walkers", "0"], ["'--walkers'"]),
    ("vmc", ["--vmc-blocks", "1", "--vmc-steps", "1"], ["--vmc-blocks", "1 sample"]),
    ("vmc", ["--vmc-blocks", "0"], ["'--vmc-blocks'"]),
    ("dmc", ["--tau", "0"], ["'--tau'"]),
    ("dmc", ["--tau", "-0.01"], ["'--tau'"]),
    ("dmc", ["--blocks", "2", "--equil-blocks", "2"], ["--blocks", "0 averaged steps"]),
    ("dmc", ["--blocks", "2", "--equil-blocks", "1", "--steps", "1"], ["--blocks", "1 averaged steps"]),
])
def test_bad_settings_refused_before_running(h2_xyz, tmp_path, cmd, args, words):
    r = CliRunner().invoke(main, [cmd, str(h2_xyz), *FAST, *args, "--out", str(tmp_path / "res")])
    _refused_before_work(r, *words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2.xyz"]


def test_gpu_backend_without_a_gpu_refused(h2_xyz, tmp_path):
    from rung.core.backend import gpu_available

    if gpu_available():
        pytest.skip("a GPU is usable here")
    r = CliRunner().invoke(main, ["vmc", str(h2_xyz), *FAST, "--backend", "cupy", "--out", str(tmp_path / "res")])
    _refused_before_work(r, "--backend", "CuPy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2.xyz"]


def test_empty_xyz(tmp_path):
    xyz = tmp_path / "empty.xyz"
    xyz.write_text("")
    _refused_before_work(CliRunner().invoke(main, ["vmc", str(xyz), *FAST]), "empty.xyz", "empty file")


def test_corrupt_checkpoint_and_multidet(h2_xyz, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    r = CliRunner().invoke(main, ["vmc", str(h2_xyz), *FAST, "--multidet", str(bad)])
    _refused_before_work(r, "bad.h5", "not a readable /MultiDet file")
    r = CliRunner().invoke(main, ["dmc", str(h2_xyz), *FAST, "--blocks", "3", "--steps", "2", "--equil-blocks", "1",
                                  "--checkpoint", str(bad), "--trace", str(tmp_path / "trace.h5")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert r.stderr.splitlines()[-1].startswith("Error: ") and "bad.h5: corrupt or unreadable checkpoint" in r.stderr
    assert "E(VMC)" not in r.output and "dmc block" not in r.output  # nothing sampled, nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5", "h2.xyz"]
    assert bad.read_bytes() == b"\x89HDF\r\n\x1a\n" + b"\0" * 64


def _multidet(path, complete):
    with h5py.File(path, "w") as f:
        g = f.create_group("MultiDet")
        g["NbDet"], g["nstate"], g["Nbits"] = 1, 2, 1
        g["Coeff"], g["CI_Alpha"], g["CI_Beta"] = np.array([1.0]), np.array([[1]], np.int64), np.array([[1]], np.int64)
        if complete is not None:
            g.attrs["complete"] = complete
    return path


def test_incomplete_multidet_refused_unless_allowed(h2_xyz, tmp_path):
    from rung.qmc.multideterminant import read_multidet
    from rung.qmc.system import InputError

    part = _multidet(tmp_path / "part.h5", False)
    r = CliRunner().invoke(main, ["vmc", str(h2_xyz), *FAST, "--multidet", str(part)])
    _refused_before_work(r, "part.h5", "unfinished sci run", "--allow-incomplete")
    with pytest.raises(InputError, match="unfinished"):
        read_multidet(part)
    assert read_multidet(part, allow_incomplete=True).coef.tolist() == [1.0]
    assert read_multidet(_multidet(tmp_path / "done.h5", True)).occ_up == ((0,),)
    assert read_multidet(_multidet(tmp_path / "foreign.h5", None)).occ_down == ((0,),)  # no mark: read


def test_impossible_geometry_refused(tmp_path):
    xyz = tmp_path / "squashed.xyz"
    xyz.write_text("2\n\nH 0 0 0\nH 0 0 0.017\n")
    _refused_before_work(CliRunner().invoke(main, ["vmc", str(xyz), *FAST]), "atoms 0 and 1", "Bohr apart")


def test_conformation_failed_at_dft_refused(tmp_path):
    from rung.core.dataset import Molecule, ResultWriter, create_dataset

    x = np.array([[[0, 0, 0], [0, 0, 1.4]], [[0, 0, 0], [0, 0, 1.5]]])
    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), x)])
    w = ResultWriter(ds, "dft", {"total_energy": "hartree"})
    w.record("h2", 1, error="SCFNotConverged: SCF not converged")
    w.merge()
    before = ds.read_bytes()
    r = CliRunner().invoke(main, ["vmc", str(ds), *FAST, "--index", "1"])
    _refused_before_work(r, "h2[1] failed at the dft rung", "SCFNotConverged")
    assert ds.read_bytes() == before


def test_results_never_silently_replaced_or_mixed(tmp_path):
    """A done conformation is recomputed only with the same settings, and another level of theory is not
    added beside the dataset's, unless --replace; qmc_settings says what each value is."""
    import json

    from rung.core.dataset import Molecule, create_dataset, read_property

    x = np.array([[[0, 0, 0], [0, 0, 1.4]], [[0, 0, 0], [0, 0, 1.5]]])
    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), x)])
    dmc = ["dmc", str(ds), *FAST, "--no-jastrow", "--blocks", "3", "--steps", "2", "--equil-blocks", "1", "--forces"]
    assert CliRunner().invoke(main, dmc).exit_code == 0
    e0 = read_property(ds, "h2", "qmc_total_energy")[0][0]
    settings = json.loads(read_property(ds, "h2", "qmc_settings")[0][0])
    assert settings["method"] == "dmc" and settings["nwalkers"] == 4 and settings["dmc_tau"] == 0.01
    before = ds.read_bytes()
    test_vmc = ["vmc", str(ds), *FAST, "--no-jastrow", "--walkers", "3"]
    r = CliRunner().invoke(main, test_vmc)  # a small test VMC over the DMC value
    _refused_before_work(r, "h2[0] already holds another QMC calculation", "method 'dmc' there, 'vmc' now", "--replace")
    r = CliRunner().invoke(main, [*test_vmc, "--index", "1"])  # a VMC beside DMC values
    _refused_before_work(r, "of h2[0] are at another level", "method 'dmc' there, 'vmc' now")
    assert ds.read_bytes() == before
    r = CliRunner().invoke(main, [*dmc, "--seed", "5"])  # the same calculation again (another seed): allowed
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, [*test_vmc, "--replace"])
    assert r.exit_code == 0, r.output
    e, _ = read_property(ds, "h2", "qmc_total_energy")
    assert e[0] != e0 and np.isnan(e[1])
    assert json.loads(read_property(ds, "h2", "qmc_settings")[0][0])["nwalkers"] == 3
    assert np.isnan(read_property(ds, "h2", "qmc_total_gradient")[0][0]).all()  # the DMC forces went with it
    assert np.isnan(read_property(ds, "h2", "qmc_dmc_energy")[0][0])


def test_show_result_file_and_dataset(tmp_path):
    """`qmc show` prints energy, error bar, forces, plateau flag and settings of a --out result file and of
    a dataset's qmc_* properties (the same numbers); a non-qmc or corrupt file is one line, exit 2."""
    from rung.core.dataset import Molecule, create_dataset, read_property
    from rung.core.testing import check_bad_input
    from rung.qmc.stats import format_value
    from rung.qmc.vmc import QMCResult

    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 1.1]]))])
    r = CliRunner().invoke(main, ["vmc", str(ds), *FAST, "--forces", "--out", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    res = QMCResult.from_hdf5(tmp_path / "res.vmc.h5")
    r = CliRunner().invoke(main, ["show", str(tmp_path / "res.vmc.h5")])
    assert r.exit_code == 0, r.output
    assert res.summary() in r.output and "plateau:" in r.output and "forces, VMC, Hartree/Bohr" in r.output
    assert "4 walkers" in r.output and format_value(res.forces[0, 2], res.forces_error[0, 2]) in r.output
    r = CliRunner().invoke(main, ["show", str(ds)])
    assert r.exit_code == 0, r.output
    e, _ = read_property(ds, "h2", "qmc_total_energy")
    err, _ = read_property(ds, "h2", "qmc_total_energy_error")
    assert "h2[0]: done" in r.output and format_value(e[0], err[0]) in r.output
    assert "forces (best estimate)" in r.output and "settings: " in r.output and "basis sto-3g" in r.output
    bare = create_dataset(tmp_path / "bare.h5", [Molecule("h2", np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 1.1]]))])
    check_bad_input(CliRunner().invoke(main, ["show", str(bare)]), "bare.h5", "no qmc_* results")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    check_bad_input(CliRunner().invoke(main, ["show", str(tmp_path / "junk.h5")]), "junk.h5")
    check_bad_input(CliRunner().invoke(main, ["show", str(tmp_path / "none.h5")]), "none.h5")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    check_bad_input(CliRunner().invoke(main, ["show", str(tmp_path / "other.h5")]), "other.h5", "neither")


def _h2_two_dets(path):
    """A two-determinant H2 expansion (HF and the paired double excitation) with its RHF/sto-3g orbitals."""
    from pyscf import gto, scf

    mol = gto.M(atom="H 0 0 0; H 0 0 0.74", basis="sto-3g", verbose=0)
    mf = scf.RHF(mol).run()
    with h5py.File(path, "w") as f:
        g = f.create_group("MultiDet")
        g["NbDet"], g["nstate"], g["Nbits"] = 2, 2, 1
        g["Coeff"] = np.array([0.99, -0.11])
        g["CI_Alpha"] = g["CI_Beta"] = np.array([[1], [2]], np.int64)
        o = f.create_group("orbitals")
        for k in ("mo_coeff", "mo_occ", "mo_energy"):
            o[k] = getattr(mf, k)
        for k, v in (("mol", mol.dumps()), ("xc", "hf"), ("e_tot", mf.e_tot), ("basis", "sto-3g"), ("ecp", "")):
            o.attrs[k] = v
    return path


def test_multidet_truncation_options_and_unoptimised_dmc_warning(h2_xyz, tmp_path):
    wf = _h2_two_dets(tmp_path / "wf.h5")
    total = 0.99**2 + 0.11**2
    r = CliRunner().invoke(main, ["vmc", str(h2_xyz), *FAST, "--multidet", str(wf), "--weight", "0.5"])
    assert r.exit_code == 0, r.output
    assert f"wf.h5: 1 determinants kept, {0.99**2 / total:.4f} of the expansion's sum of c^2" in r.stderr
    r = CliRunner().invoke(main, ["vmc", str(h2_xyz), *FAST, "--multidet", str(wf), "--min-coef", "0.05"])
    assert r.exit_code == 0 and "wf.h5: 2 determinants kept, 1.0000" in r.stderr, r.output
    assert "warning" not in r.stderr  # VMC: no warning
    r = CliRunner().invoke(main, ["vmc", str(h2_xyz), *FAST, "--multidet", str(wf), "--min-coef", "0.5",
                                  "--max-dets", "5"])
    assert r.exit_code == 0 and "wf.h5: 1 determinants kept" in r.stderr, r.output
    r = CliRunner().invoke(main, ["dmc", str(h2_xyz), *FAST, "--multidet", str(wf), "--blocks", "3", "--steps", "2",
                                  "--equil-blocks", "1"])
    assert r.exit_code == 0 and "warning: multideterminant DMC with a Jastrow not optimised" in r.stderr, r.output
    r = CliRunner().invoke(main, ["dmc", str(h2_xyz), *FAST, "--multidet", str(wf), "--no-jastrow", "--blocks", "3",
                                  "--steps", "2", "--equil-blocks", "1"])
    assert r.exit_code == 0 and "warning" not in r.stderr, r.output
    for opt, value in (("--weight", "1.5"), ("--weight", "0"), ("--min-coef", "-1")):
        r = CliRunner().invoke(main, ["vmc", str(h2_xyz), *FAST, "--multidet", str(wf), opt, value])
        assert r.exit_code == 2 and opt in r.stderr and "Traceback" not in r.output, r.output


def test_optimize_ci_keeps_replace_flag(tmp_path, monkeypatch):
    """`qmc optimize --optimize-ci` on a dataset without --replace checks the record with replace=False
    (a dataclasses.replace import inside the command once rebound the flag to a function: truthy)."""
    import rung.qmc.run
    from rung.core.dataset import Molecule, create_dataset

    seen = []

    def check_record(*args, replace, **kw):
        seen.append(replace)
        raise RuntimeError("stop before the run")

    monkeypatch.setattr(rung.qmc.run, "check_record", check_record)
    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 1.4]]))])
    wf = _h2_two_dets(tmp_path / "wf.h5")
    r = CliRunner().invoke(main, ["optimize", str(ds), "--basis", "sto-3g", "--ecp", "none", "--multidet", str(wf),
                                  "--optimize-ci", "--save", str(tmp_path / "p.h5")])
    assert isinstance(r.exception, RuntimeError), r.output
    assert seen == [False]
