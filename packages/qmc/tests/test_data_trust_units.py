"""`qmc vmc` refuses coordinates in a wrong length unit before any work; --trust-units overrides it."""

from click.testing import CliRunner

from rung.core.testing import check_bad_input
from rung.qmc.cli import main

FAST = ["--basis", "sto-3g", "--ecp", "none", "--walkers", "4", "--vmc-blocks", "2", "--vmc-steps", "2",
        "--no-jastrow"]


def test_an_angstrom_xyz_read_as_bohr_is_refused_before_any_work(tmp_path):
    src = tmp_path / "w.xyz"
    src.write_text("3\n\nO 0.0 0.0 0.1193\nH 0.0 0.7632 -0.4770\nH 0.0 -0.7632 -0.4770\n")
    # an xyz is Angstrom: give it as a dataset labelled bohr instead (the usual mistake: a wrong attribute)
    import h5py
    import numpy as np
    from ase.io import read

    ds = tmp_path / "w.h5"
    with h5py.File(ds, "w") as f:
        g = f.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1])
        g.create_dataset("conformations", data=read(src).positions[None]).attrs["units"] = "bohr"
    r = CliRunner().invoke(main, ["vmc", str(ds), *FAST])
    check_bad_input(r, "w.h5", "water", "read as bohr", "look like angstrom", "--trust-units")
    assert "E(VMC)" not in r.output
    r = CliRunner().invoke(main, ["vmc", str(src), *FAST])  # the same numbers read as Angstrom: fine
    assert r.exit_code == 0 and "E(VMC)" in r.output, r.output


def test_foreign_qmc_values_are_refused_and_the_prefix_writes_beside_them(tmp_path):
    import h5py
    import numpy as np

    from rung.core.dataset import Molecule, create_dataset

    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), np.array([[0, 0, 0], [0, 0, 1.4]]))])
    with h5py.File(ds, "a") as f:
        f["h2"].create_dataset("qmc_total_energy", data=[-1.17]).attrs["units"] = "hartree"  # another code's
    before = ds.read_bytes()
    r = CliRunner().invoke(main, ["vmc", str(ds), *FAST])
    check_bad_input(r, "h2.h5", "h2/qmc_total_energy without qmc_status", "--property-prefix")
    assert r.stdout == "" and ds.read_bytes() == before
    r = CliRunner().invoke(main, ["vmc", str(ds), *FAST, "--property-prefix", "rung_"])
    assert r.exit_code == 0 and "E(VMC)" in r.output, r.output
    import json

    with h5py.File(ds, "r") as f:
        g = f["h2"]
        assert g["qmc_total_energy"][()].tolist() == [-1.17] and "qmc_status" not in g
        assert g["rung_qmc_status"][()].tolist() == [1] and np.isfinite(g["rung_qmc_total_energy"][0])
        assert json.loads(g["rung_qmc_settings"][0])["nwalkers"] == 4
    r = CliRunner().invoke(main, ["vmc", str(ds), *FAST, "--walkers", "6", "--property-prefix", "rung_"])
    check_bad_input(r, "h2[0] already holds another QMC calculation", "nwalkers 4 there, 6 now")
    # `qmc show` finds what rung wrote under the prefix (never the foreign values), with or without the option
    from rung.core.dataset import read_property
    from rung.qmc.stats import format_value

    e, _ = read_property(ds, "h2", "rung_qmc_total_energy")
    err, _ = read_property(ds, "h2", "rung_qmc_total_energy_error")
    for extra in ([], ["--property-prefix", "rung_"], ["--property-prefix", "rung"]):
        r = CliRunner().invoke(main, ["show", str(ds), *extra])
        assert r.exit_code == 0, r.output
        assert "rung_qmc_* properties" in r.output and "h2[0]: done" in r.output
        assert format_value(e[0], err[0]) in r.output and "nwalkers 4" in r.output and "-1.17" not in r.output
    check_bad_input(CliRunner().invoke(main, ["show", str(ds), "--property-prefix", "other_"]), "h2.h5",
                    "no other_qmc_* results", "rung_")
