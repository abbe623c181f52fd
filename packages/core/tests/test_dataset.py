import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from rung.core import dataset as ds
from rung.core.units import ANGSTROM_TO_BOHR


def water(n_conf=3, name="water"):
    rng = np.random.default_rng(1)
    x = np.array([[0.0, 0.0, 0.0], [1.8, 0.0, 0.0], [-0.45, 1.75, 0.0]])
    return ds.Molecule(name, np.array([8, 1, 1]), x + 0.05 * rng.standard_normal((n_conf, 3, 3)))


def test_round_trip(tmp_path):
    path = ds.create_dataset(tmp_path / "d.h5", [water(), water(2, "w2")])
    mols = ds.read_hdf5(path)
    assert [m.name for m in mols] == ["w2", "water"]
    np.testing.assert_array_equal(mols[1].conformations, water().conformations)
    w = ds.ResultWriter(path, "dft", {"total_energy": "hartree", "total_gradient": "hartree/bohr", "iterations": "dimensionless"},
                        metadata={"xc": "wb97m-d3bj"})
    assert len(w.pending()) == 5
    w.record("water", 1, {"total_energy": -76.4, "total_gradient": np.ones((3, 3)), "iterations": 12})
    w.record("w2", 0, error="SCF did not converge")
    assert w.merge() == 2
    e, unit = ds.read_property(path, "water", "dft_total_energy")
    assert unit == "hartree" and e[1] == -76.4 and np.isnan(e[0]) and np.isnan(e[2])
    it, _ = ds.read_property(path, "water", "dft_iterations")
    assert it.tolist() == [-1, 12, -1]
    err, _ = ds.read_property(path, "w2", "dft_error")
    assert err[0].decode() == "SCF did not converge"
    with h5py.File(path) as f:
        assert f.attrs["schema"] == ds.SCHEMA and f["water/dft_total_energy"].attrs["xc"] == "wb97m-d3bj"
        assert f["water/conformations"].attrs["units"] == "bohr"
    assert ds.summarize(path, "dft") == {"pending": 3, "done": 1, "failed": 1}
    assert not list((tmp_path / "d.h5.journal").glob("*.jsonl"))


def test_non_finite_result_is_refused(tmp_path):
    path = ds.create_dataset(tmp_path / "d.h5", [water()])
    w = ds.ResultWriter(path, "dft", {"total_energy": "hartree"})
    with pytest.raises(ValueError, match="not finite"):
        w.record("water", 0, {"total_energy": np.nan})
    with pytest.raises(KeyError, match="declared units"):
        w.record("water", 0, {"dipole": 1.0})


def test_rerun_keeps_existing_file(tmp_path):
    path = ds.create_dataset(tmp_path / "d.h5", [water()])
    ds.create_dataset(path, [water()])  # same structures: resume
    with pytest.raises(ds.DatasetError, match="different structures"):
        ds.create_dataset(path, [water(2)])


WORKER = """
import sys, time
import numpy as np
from rung.core import dataset as ds
path, delay = sys.argv[1], float(sys.argv[2])
w = ds.ResultWriter(path, "toy", {"energy": "hartree", "gradient": "hartree/bohr"})
for name, i in w.pending():
    x = ds.read_hdf5(path, [name])[0].conformations[i]
    w.record(name, i, {"energy": float(np.sum(x**2)), "gradient": 2 * x})
    print(name, i, flush=True)
    time.sleep(delay)
w.merge()
"""


def _run(path, delay=0.0):
    return subprocess.Popen([sys.executable, "-c", WORKER, str(path), str(delay)], stdout=subprocess.PIPE, text=True)


def _contents(path):
    out = {}
    with h5py.File(path) as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[()]) if isinstance(v, h5py.Dataset) else None)
    return out


def test_killed_writer_resumes_to_same_file(tmp_path):
    mols = [water(6), water(5, "w2")]
    ref = ds.create_dataset(tmp_path / "ref.h5", mols)
    assert _run(ref).wait() == 0
    path = ds.create_dataset(tmp_path / "d.h5", mols)
    p = _run(path, delay=0.3)
    for _ in range(3):  # let a few results land, then SIGKILL mid-run
        p.stdout.readline()
    p.send_signal(signal.SIGKILL)
    p.wait()
    # a torn last line from a kill during a write must be ignored
    jf = next((tmp_path / "d.h5.journal").glob("*.jsonl"))
    with open(jf, "ab") as fh:
        fh.write(b'{"rung": "toy", "molecule": "water", "ind')
    done_before = sum(v == ds.DONE for v in ds.ResultWriter(path, "toy", {}).status().values())
    assert 3 <= done_before < 11
    p = _run(path)
    redone = p.stdout.read().split("\n")
    assert p.wait() == 0
    assert len([r for r in redone if r]) == 11 - done_before  # nothing recomputed
    a, b = _contents(ref), _contents(path)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_read_spice_layout(tmp_path):
    path = tmp_path / "spice.hdf5"
    x = water(2).conformations
    with h5py.File(path, "w") as f:  # as in SPICE 2: float32 Bohr, int16 numbers, smiles as a 1-string dataset
        g = f.create_group("[NH4+]")
        g["atomic_numbers"] = np.array([7, 1, 1, 1, 1], dtype=np.int16)
        c = g.create_dataset("conformations", data=np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32))
        c.attrs["units"] = "bohr"
        g["smiles"] = np.array([b"[H:2][N+:1]([H:3])([H:4])[H:5]"], dtype=object)
        g["dft_total_energy"] = np.array([-56.9, -56.8])
        g = f.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1], dtype=np.int16)
        c = g.create_dataset("conformations", data=x / ANGSTROM_TO_BOHR)
        c.attrs["units"] = "angstrom"
        g["smiles"] = np.array([b"[O:1]([H:2])[H:3]"], dtype=object)
    mols = {m.name: m for m in ds.read_structures(path)}
    assert mols["[NH4+]"].charge == 1 and mols["water"].charge == 0
    assert mols["[NH4+]"].conformations.dtype == np.float64
    np.testing.assert_allclose(mols["water"].conformations, x, atol=1e-12)


def test_smiles_charge():
    assert ds.smiles_charge("CC(=O)[O-]") == -1
    assert ds.smiles_charge("[Fe+2].[Cl-].[Cl-]") == 0
    assert ds.smiles_charge("[NH3++]") == 2


def test_read_xyz_groups_frames(tmp_path):
    from ase import Atoms
    from ase.io import write

    frames = [Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]) for _ in range(2)]
    frames.append(Atoms("NH3", positions=[[0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]))
    frames[-1].info["charge"] = 0
    write(tmp_path / "m.xyz", frames, format="extxyz")
    mols = ds.read_structures(tmp_path / "m.xyz")
    assert [(m.name, m.n_conf) for m in mols] == [("H2O", 2), ("H3N", 1)]
    np.testing.assert_allclose(mols[0].conformations[0, 1, 0], 0.96 * ANGSTROM_TO_BOHR)


@pytest.mark.parametrize(
    "numbers, coords, match",
    [
        ([8, 1, 119], np.zeros((1, 3, 3)), "unknown element"),
        ([8, 1, 1], np.full((1, 3, 3), np.nan), "NaN"),
        ([8, 1], np.zeros((1, 3, 3)), "shape"),
    ],
)
def test_bad_molecules(numbers, coords, match):
    with pytest.raises(ds.DatasetError, match=match):
        ds.Molecule("m", np.array(numbers), coords)


def test_bad_files(tmp_path):
    (tmp_path / "bad.xyz").write_text("2\n\nXx 0 0 0\nH 0 0 1\n")
    with pytest.raises(ds.DatasetError, match="bad.xyz"):
        ds.read_structures(tmp_path / "bad.xyz")
    path = ds.create_dataset(tmp_path / "d.h5", [water(50)])
    data = path.read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(ds.DatasetError, match="truncated"):
        ds.read_structures(tmp_path / "cut.h5")
    with pytest.raises(ds.DatasetError, match="no such file"):
        ds.read_structures(tmp_path / "missing.h5")


def test_electron_checks():
    assert ds.check_electrons([8, 1, 1], 0, 1) == 10
    with pytest.raises(ds.DatasetError, match="parity"):
        ds.check_electrons([8, 1, 1], 0, 2)
    with pytest.raises(ds.DatasetError, match="parity"):
        ds.check_electrons([8, 1], 0, 1)
    with pytest.raises(ds.DatasetError, match="on top of each other"):
        ds.check_geometry([[0, 0, 0], [0, 0, 0.01], [1, 1, 1]])
