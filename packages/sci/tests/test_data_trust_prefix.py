"""`sci run --from-dataset`: another code's ``sci_*`` values are refused, never overwritten, and
--property-prefix writes rung's beside them; a DFT failure recorded under a prefix is seen."""

import h5py
import numpy as np
from click.testing import CliRunner

from rung.core.dataset import Molecule, ResultWriter, create_dataset
from rung.core.testing import check_bad_input
from rung.sci.cli import main


def test_foreign_sci_values_stay_and_rung_writes_under_the_prefix(tmp_path):
    x = np.array([[[0, 0, 0], [0, 0, 3.0]], [[0, 0, 0], [0, 0, 3.2]]])
    ds = create_dataset(tmp_path / "lih.h5", [Molecule("lih", np.array([3, 1]), x)])
    w = ResultWriter(ds, "rung_dft", {"total_energy": "hartree"})
    w.record("lih", 1, error="SCFNotConverged: test")
    w.merge()
    with h5py.File(ds, "a") as f:
        f["lih"].create_dataset("sci_total_energy", data=[-7.9, -7.8]).attrs["units"] = "hartree"
    args = ["run", "--from-dataset", str(ds), "--basis", "sto-3g", "--ecp", "", "--max-det", "1e4"]
    check_bad_input(CliRunner().invoke(main, args), "lih/sci_total_energy without sci_status", "--property-prefix")
    r = CliRunner().invoke(main, [*args, "--property-prefix", "rung_"])
    assert r.exit_code == 0, r.output
    from pyscf import fci, gto, scf

    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", basis="sto-3g", unit="Bohr", verbose=0)
    e_fci = fci.FCI(scf.RHF(mol).run()).kernel()[0]
    with h5py.File(ds, "r") as f:
        g = f["lih"]
        assert g["sci_total_energy"][()].tolist() == [-7.9, -7.8] and "sci_status" not in g
        assert abs(g["rung_sci_total_energy"][0] - e_fci) < 1e-6 and g["rung_sci_status"][()].tolist() == [1, 2]
        assert b"failed at the dft rung (rung_dft_status: SCFNotConverged" in g["rung_sci_error"][1]
