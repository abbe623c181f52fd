"""A ``<rung>_*`` dataset that no ResultWriter made (no ``<rung>_status`` beside it) is someone else's data:
check_foreign refuses it before any work, and the merge never writes into it."""

import h5py
import numpy as np
import pytest

from rung.core import dataset as ds
from rung.core.errors import InputError

WATER = np.array([[[0.0, 0.0, 0.0], [1.81, 0.0, 0.0], [-0.45, 1.75, 0.0]]])


def test_foreign_values_are_refused_and_left_as_they_are(tmp_path):
    path = ds.create_dataset(tmp_path / "d.h5", [ds.Molecule("water", np.array([8, 1, 1]), WATER)])
    with h5py.File(path, "a") as f:
        f["water"].create_dataset("qmc_total_energy", data=[-76.43]).attrs["units"] = "hartree"  # another code's
    before = path.read_bytes()
    with pytest.raises(ds.DatasetError, match="water/qmc_total_energy without qmc_status: rung did not write"):
        ds.check_foreign(path, "qmc")
    ds.check_foreign(path, "rung_qmc")  # under a prefix: nothing of rung_qmc there
    w = ds.ResultWriter(path, "qmc", {"total_energy": "hartree"})
    w.record("water", 0, {"total_energy": -76.3})
    with pytest.raises(ds.DatasetError, match="--property-prefix"):
        w.merge()
    assert path.read_bytes() == before  # nothing written; the result waits in the journal
    assert w.status()[("water", 0)] == ds.DONE
    w = ds.ResultWriter(path, "rung_qmc", {"total_energy": "hartree"})
    w.record("water", 0, {"total_energy": -76.3})
    w.merge()
    with h5py.File(path, "r") as f:
        assert f["water/qmc_total_energy"][()].tolist() == [-76.43]
        assert f["water/rung_qmc_total_energy"][()].tolist() == [-76.3]
    ds.check_foreign(path, "rung_qmc")  # its own datasets, with their status: not foreign


def test_property_prefix_is_checked():
    assert [ds.property_prefix(p) for p in ("", None, "rung", "rung_", "my_set2_")] == ["", "", "rung_", "rung_",
                                                                                       "my_set2_"]
    for bad in ("9x", "a-b", "a/b", "_x"):
        with pytest.raises(InputError, match="--property-prefix"):
            ds.property_prefix(bad)
