import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from rung.sci.cli import main
from rung.sci.fcidump import write_fcidump


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
