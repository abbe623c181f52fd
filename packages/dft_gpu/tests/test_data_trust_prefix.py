"""SPICE's own ``dft_*`` values are never replaced: `dft-gpu run spice.h5 --out spice.h5` is refused, and
with --property-prefix rung's results land beside them (``rung_dft_*``) with their provenance."""

import json

import h5py
import numpy as np
from click.testing import CliRunner

from rung.core.testing import check_bad_input
from rung.dft_gpu.cli import main

FAST = ["--xc", "hf", "--basis", "sto-3g", "--ecp", "none", "--jk", "pyscf", "--no-forces", "--quiet"]
WATER = np.array([[0.0, 0.0, 0.2254], [0.0, 1.4422, -0.9014], [0.0, -1.4422, -0.9014]])  # Bohr


def _spice(path):
    with h5py.File(path, "w") as f:
        g = f.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1], dtype=np.int16)
        g.create_dataset("conformations", data=np.stack([WATER, WATER * 1.02]).astype(np.float32)).attrs["units"] = "bohr"
        g["smiles"] = np.array([b"[O:1]([H:2])[H:3]"], dtype=object)
        g.create_dataset("dft_total_energy", data=np.array([-76.4, -76.39])).attrs["units"] = "hartree"


def test_foreign_dft_values_stay_and_rung_writes_under_the_prefix(tmp_path):
    spice = tmp_path / "spice.h5"
    _spice(spice)
    with h5py.File(spice, "r") as f:
        theirs = f["water/dft_total_energy"][()].copy()
    r = CliRunner().invoke(main, ["run", str(spice), "--out", str(spice), *FAST])
    check_bad_input(r, "spice.h5", "water/dft_total_energy", "never replaced", "--property-prefix")
    r = CliRunner().invoke(main, ["run", str(spice), "--out", str(spice), *FAST, "--property-prefix", "rung"])
    assert r.exit_code == 0 and "2 done, 0 failed" in r.output, r.output
    with h5py.File(spice, "r") as f:
        g = f["water"]
        np.testing.assert_array_equal(g["dft_total_energy"][()], theirs)  # untouched, values and attributes
        assert dict(g["dft_total_energy"].attrs) == {"units": "hartree"}
        assert "dft_status" not in g and "dft_settings" not in f.attrs
        ours = g["rung_dft_total_energy"]
        assert ours.attrs["units"] == "hartree" and ours.attrs["xc"] == "hf" and ours.attrs["basis"] == "sto-3g"
        assert list(g["rung_dft_status"][()]) == [1, 1]
        assert np.all(np.isfinite(ours[()])) and np.all(np.abs(ours[()] - theirs) > 0.1)  # sto-3g HF, not theirs
        assert json.loads(f.attrs["rung_dft_settings"])["xc"] == "hf"
    # a rerun with the same prefix resumes (nothing to compute); status reads the prefixed rung
    r = CliRunner().invoke(main, ["run", str(spice), "--out", str(spice), *FAST, "--property-prefix", "rung_"])
    assert r.exit_code == 0 and "(0 computed now" in r.output, r.output
    s = CliRunner().invoke(main, ["status", str(spice), "--property-prefix", "rung_", "--json"])
    assert s.exit_code == 0 and json.loads(s.output)["counts"]["done"] == 2, s.output
    s = CliRunner().invoke(main, ["status", str(spice)])  # without the option: where rung's results are
    assert s.exit_code == 0 and "0 done" in s.output and "dft-gpu status --property-prefix rung_" in s.output, s.output
    s = CliRunner().invoke(main, ["status", str(spice), "--json"])
    assert json.loads(s.output)["other_prefixes"] == ["rung_"]
    s = CliRunner().invoke(main, ["status", str(spice), "--property-prefix", "rung_", "--json"])
    assert json.loads(s.output)["other_prefixes"] == []
    r = CliRunner().invoke(main, ["run", str(spice), "--out", str(spice), *FAST, "--property-prefix", "9-x"])
    check_bad_input(r, "--property-prefix", "9-x")


def test_a_rung_above_sees_a_failure_recorded_under_a_prefix(tmp_path):
    from rung.core.dataset import DatasetError, Molecule, ResultWriter, check_not_failed, create_dataset

    ds = create_dataset(tmp_path / "d.h5", [Molecule("water", np.array([8, 1, 1]), np.stack([WATER, WATER]))])
    w = ResultWriter(ds, "rung_dft", {"total_energy": "hartree"})
    w.record("water", 1, error="SCFNotConverged: no strategy converged")
    w.merge()
    check_not_failed(ds, "water", 0)
    import pytest

    with pytest.raises(DatasetError, match=r"water\[1\] failed at the dft rung \(rung_dft_status: SCFNotConverged"):
        check_not_failed(ds, "water", 1)
