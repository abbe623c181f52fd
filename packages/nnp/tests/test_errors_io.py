"""Model files (NeuroChem -> HDF5 round trip, corrupt files) and bad input errors."""

import numpy as np
import pytest

from rung.nnp import load_model
from rung.nnp.model import ModelFileError, read_model, save_model


def test_hdf5_roundtrip_equals_neurochem(ani1x_file, tmp_path, paracetamol):
    from rung.nnp.fetch import cache_dir
    from rung.nnp.neurochem import read_ensemble

    folder = cache_dir() / "ani-1x_8x"
    if not folder.is_dir():
        pytest.skip("NeuroChem folder not in the cache")
    m = read_ensemble(folder, name="ani-1x", member=3)
    path = save_model(m, tmp_path / "m3.h5")
    d = paracetamol["paracetamol_pert1"]
    a = load_model(folder, member=3, dtype="float64").evaluate(d["coordinates"], d["species"])
    b = load_model(path, dtype="float64").evaluate(d["coordinates"], d["species"])
    c = load_model(ani1x_file, member=3, dtype="float64").evaluate(d["coordinates"], d["species"])
    assert a.energy[0] == b.energy[0] == c.energy[0]
    np.testing.assert_array_equal(a.forces, b.forces)
    assert read_model(path).provenance["source"] == "NeuroChem"


def test_corrupt_model_files(ani1x_file, tmp_path):
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(ani1x_file.read_bytes()[:100000])
    with pytest.raises(ModelFileError, match="trunc.h5"):
        load_model(trunc)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError, match="not a readable HDF5"):
        load_model(junk)
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(ModelFileError, match="not a rung.nnp model"):
        load_model(other)
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "missing.h5")


def test_corrupt_neurochem(tmp_path):
    from rung.nnp.neurochem import read_network

    bad = tmp_path / "ANN-H.nnf"
    bad.write_bytes(b"1114=\nBZh91AY&SYgarbage")
    with pytest.raises(ModelFileError, match="corrupt bzip2"):
        read_network(bad)


def test_missing_weights_message(tmp_path, monkeypatch):
    from rung.nnp.fetch import WeightsMissing

    monkeypatch.setenv("RUNG_CACHE", str(tmp_path))
    with pytest.raises(WeightsMissing, match="nnp fetch ani-1x"):
        load_model("ani-1x")


def test_bad_inputs(single64):
    x = np.array([[0.0, 0, 0], [0.96, 0, 0], [-0.2, 0.9, 0]])
    with pytest.raises(ValueError, match="element Cl .* not covered"):
        single64.evaluate(x, [8, 1, 17])
    with pytest.raises(ValueError, match="overlapping atoms"):
        single64.evaluate(np.array([[0.0, 0, 0], [0.01, 0, 0], [1.0, 0, 0]]), [8, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        single64.evaluate(np.full((3, 3), np.nan), [8, 1, 1])
    with pytest.raises(ValueError, match="singular"):
        single64.evaluate(x, [8, 1, 1], cell=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="member 9 out of range"):
        single64.model.select(9)
    with pytest.raises(ValueError, match="backend"):
        load_model(single64.model and "ani-1x", backend="tpu")
    from rung.core.backend import BackendUnavailable

    if not __import__("rung.core.backend", fromlist=["x"]).gpu_available():
        with pytest.raises(BackendUnavailable):
            from rung.nnp.ani import ANIPotential

            ANIPotential(single64.model, backend="cupy")


def test_nnp_potential_without_its_engine_is_an_input_error(monkeypatch):
    import sys

    from rung.core.errors import InputError
    from rung.nnp.potential import nnp_potential

    monkeypatch.setitem(sys.modules, "rung.nnp", None)  # rung.nnp present only in part
    with pytest.raises(InputError, match="needs the rung.nnp engine"):
        nnp_potential({"model": "ani-1x"})
