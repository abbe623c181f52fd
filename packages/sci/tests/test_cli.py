import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from rung.sci.cli import main
from rung.sci.fcidump import write_fcidump
from rung.core.testing import check_bad_input


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_run_fcidump_resume_and_show(h2o_small, tmp_path):
    fd = write_fcidump(h2o_small, tmp_path / "FCIDUMP")
    out = tmp_path / "wf.h5"
    r = CliRunner().invoke(main, ["run", str(fd), "--max-det", "1e2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "iter   1" in r.output and "E_var =" in r.output
    r2 = CliRunner().invoke(main, ["run", str(fd), "--max-det", "4e2", "--out", str(out)])
    assert r2.exit_code == 0, r2.output
    assert "resuming" in r2.output
    r3 = CliRunner().invoke(main, ["show", str(out)])
    assert r3.exit_code == 0 and "determinants over 8 orbitals" in r3.output


def test_bad_fcidump_message(tmp_path):
    p = tmp_path / "FCIDUMP"
    p.write_text(" &FCI NORB=2,NELEC=6,MS2=0,\n &END\n 1.0 1 1 1 1\n 0.0 0 0 0 0\n")
    r = CliRunner().invoke(main, ["run", str(p), "--out", str(tmp_path / "wf.h5")])
    assert r.exit_code != 0 and "do not fit 4 spin orbitals" in r.output


def test_from_dataset_records_sci_properties(tmp_path):
    from rung.core.dataset import Molecule, create_dataset, read_property

    ds = create_dataset(tmp_path / "lih.h5", [Molecule("lih", np.array([3, 1]), np.array([[0, 0, 0], [0, 0, 3.0]]))])
    r = CliRunner().invoke(main, ["run", "--from-dataset", str(ds), "--basis", "sto-3g", "--ecp", "",
                                  "--max-det", "1e4"])
    assert r.exit_code == 0, r.output
    e, unit = read_property(ds, "lih", "sci_total_energy")
    assert unit == "hartree"
    from pyscf import fci, gto, scf

    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", basis="sto-3g", unit="Bohr", verbose=0)
    e_fci = fci.FCI(scf.RHF(mol).run()).kernel()[0]
    assert abs(e[0] - e_fci) < 1e-6
    assert (tmp_path / "lih.lih.0.sci.h5").exists()


def test_end_to_end_subprocess(h2o_small, tmp_path):
    fd = write_fcidump(h2o_small, tmp_path / "FCIDUMP")
    out = tmp_path / "wf.h5"
    p = subprocess.run([sys.executable, "-m", "rung.sci.cli", "run", str(fd), "--max-det", "50", "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert out.exists() and "n_det" in p.stdout


@pytest.mark.parametrize("option, value", [("--max-det", "0"), ("--max-det", "-5"), ("--nroots", "0"),
                                           ("--growth", "1.0"), ("--growth", "0.5"), ("--min-last-step", "-0.1")])
def test_out_of_range_options_name_the_option(h2o_small, tmp_path, option, value):
    fd = write_fcidump(h2o_small, tmp_path / "FCIDUMP")
    r = CliRunner().invoke(main, ["run", str(fd), "--out", str(tmp_path / "wf.h5"), option, value])
    check_bad_input(r, f"'{option}'", value)
    assert not (tmp_path / "wf.h5").exists()


def test_empty_inputs(tmp_path):
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    check_bad_input(CliRunner().invoke(main, ["run", str(empty), "--out", str(tmp_path / "wf.h5")]), "empty.xyz")
    check_bad_input(CliRunner().invoke(main, ["run", "--from-dataset", str(empty)]), "empty.xyz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.xyz"]


def test_corrupt_out_or_another_hamiltonian_is_refused_and_kept(h2o_small, tmp_path):
    from rung.sci.fcidump import Hamiltonian

    fd = write_fcidump(h2o_small, tmp_path / "FCIDUMP")
    out = tmp_path / "wf.h5"
    out.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # a torn file
    check_bad_input(CliRunner().invoke(main, ["run", str(fd), "--out", str(out)]), "wf.h5", "not a readable")
    assert out.read_bytes() == b"\x89HDF\r\n\x1a\n" + b"\0" * 64
    out.unlink()
    assert CliRunner().invoke(main, ["run", str(fd), "--max-det", "50", "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    h = h2o_small
    other = write_fcidump(Hamiltonian(h.h1, h.eri, h.ecore + 1.0, h.nelec, h.orbsym), tmp_path / "OTHER")
    r = CliRunner().invoke(main, ["run", str(other), "--max-det", "50", "--out", str(out)])
    check_bad_input(r, "wf.h5", "another Hamiltonian")
    assert out.read_bytes() == before


def test_show_refuses_a_file_without_multidet(tmp_path):
    import h5py

    xyz = tmp_path / "h2.xyz"
    xyz.write_text("2\n\nH 0 0 0\nH 0 0 0.74\n")
    check_bad_input(CliRunner().invoke(main, ["show", str(xyz)]), "h2.xyz")
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_group("water")
    check_bad_input(CliRunner().invoke(main, ["show", str(tmp_path / "d.h5")]), "d.h5", "no /MultiDet")


def test_show_prints_energies_kind_and_settings(h2o_small, tmp_path):
    import h5py

    from rung.sci import cipsi

    out = tmp_path / "wf.h5"
    res = cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=300, pt2_threshold=0.0, stochastic_min_det=100,
                                               pt2_samples=4), checkpoint=out, log=None)
    r = CliRunner().invoke(main, ["show", str(out), "--top", "2"])
    assert r.exit_code == 0, r.output
    got = {line.split("=")[0].strip(): line.split("=")[1].split()[0] for line in r.output.splitlines() if "= " in line
           and line.startswith("E_")}
    assert float(got["E_var[0]"]) == pytest.approx(res.e_var[0], abs=1e-8)
    assert float(got["E_PT2"]) == pytest.approx(res.e_pt2, abs=1e-8)
    assert float(got["E_var+PT2"]) == pytest.approx(res.e_var[0] + res.e_pt2, abs=1e-8)
    assert float(got["E_extrap"]) == pytest.approx(res.e_extrapolated, abs=1e-8)
    assert f"± {res.pt2_error:.1e} Ha (semi-stochastic, 4 samples, every pair" in r.output
    assert f"space: {res.n_det} determinants of 8 active orbitals" in r.output and ", complete" in r.output
    assert "max_det=300" in r.output and "pt2_threshold=0.0" in r.output and "stochastic_min_det=100" in r.output
    assert len([x for x in r.output.splitlines() if "alpha [" in x]) == 2
    with h5py.File(tmp_path / "qp.h5", "w") as f, h5py.File(out) as g:
        g.copy("MultiDet", f)  # a /MultiDet without rung.sci results (as Quantum Package writes one)
    r = CliRunner().invoke(main, ["show", str(tmp_path / "qp.h5")])
    assert r.exit_code == 0 and "energies unknown" in r.output and "E_var" not in r.output


def test_an_unfinished_run_is_marked_incomplete(h2o_small, tmp_path):
    from rung.sci import cipsi
    from rung.sci.multidet import read_multidet

    out = tmp_path / "wf.h5"

    def kill_at_second_iteration(line):  # the first iteration's expansion is on disk, the run unfinished
        if line.startswith("iter   2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=400, pt2_threshold=0.0), checkpoint=out,
                     log=kill_at_second_iteration)
    assert read_multidet(out).complete is False
    r = CliRunner().invoke(main, ["show", str(out)])
    assert r.exit_code == 0 and "INCOMPLETE" in r.output
    r = CliRunner().invoke(main, ["run", str(write_fcidump(h2o_small, tmp_path / "FCIDUMP")), "--max-det", "400",
                                  "--pt2-threshold", "0", "--out", str(out)])
    assert r.exit_code == 0 and "resuming" in r.output
    assert read_multidet(out).complete is True
    r = CliRunner().invoke(main, ["show", str(out)])
    assert r.exit_code == 0 and ", complete" in r.output


def test_from_dataset_skips_what_the_dft_rung_rejected(tmp_path):
    """A conformation failed at the DFT rung, or with atoms on top of each other, is failed here with the
    reason and never computed; the others are."""
    from rung.core.dataset import Molecule, ResultWriter, create_dataset, read_property

    x = np.array([[[0, 0, 0], [0, 0, 1.4]], [[0, 0, 0], [0, 0, 1.5]], [[0, 0, 0], [0, 0, 0.03]]])
    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), x)])
    w = ResultWriter(ds, "dft", {"total_energy": "hartree"})
    w.record("h2", 1, error="SCFNotConverged: no strategy converged")
    w.merge()
    r = CliRunner().invoke(main, ["run", "--from-dataset", str(ds), "--basis", "sto-3g", "--ecp", ""])
    assert r.exit_code == 0, r.output
    status, _ = read_property(ds, "h2", "sci_status")
    error, _ = read_property(ds, "h2", "sci_error")
    e, _ = read_property(ds, "h2", "sci_total_energy")
    assert status.tolist() == [1, 2, 2] and np.isfinite(e[0]) and np.isnan(e[1:]).all()
    assert b"failed at the dft rung (SCFNotConverged" in error[1] and b"atoms 0 and 1" in error[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2.h2.0.sci.h5", "h2.h5"]
