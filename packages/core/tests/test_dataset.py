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


def test_check_conformation_is_geometry_and_electrons():
    x = np.array([[0.0, 0, 0], [0, 0, 1.8], [1.7, 0, -0.5]])
    assert ds.check_conformation([8, 1, 1], x) == 10
    assert ds.check_conformation([8, 1, 1], x, charge=1, multiplicity=2) == 9
    assert ds.check_conformation([8, 1, 1], x, core_electrons=2) == 8  # ccECP oxygen: 2 core electrons
    with pytest.raises(ds.DatasetError, match="atoms 1 and 2 are 0.032 Bohr apart"):  # 0.017 Angstrom
        ds.check_conformation([8, 1, 1], [[0, 0, 0], [0, 0, 1.8], [0, 0.032, 1.8]])
    with pytest.raises(ds.DatasetError, match="multiplicity 1 is impossible with 9 electrons"):
        ds.check_conformation([8, 1, 1], x, charge=1)


def test_check_not_failed(tmp_path):
    path = ds.create_dataset(tmp_path / "d.h5", [water(3)])
    ds.check_not_failed(path, "water", 0)  # no DFT rung yet: nothing to refuse
    w = ds.ResultWriter(path, "dft", {"total_energy": "hartree"})
    w.record("water", 0, {"total_energy": -76.0})
    w.record("water", 1, error="SCFNotConverged: no strategy converged")
    w.merge()
    ds.check_not_failed(path, "water", 0)
    ds.check_not_failed(path, "water", 2)
    with pytest.raises(ds.DatasetError, match=r"water\[1\] failed at the dft rung \(SCFNotConverged: no strategy"):
        ds.check_not_failed(path, "water", 1)


def test_empty_structure_files_and_read_only_status(tmp_path):
    for text in ("", "\n  \n"):
        (tmp_path / "empty.xyz").write_text(text)
        with pytest.raises(ds.DatasetError, match="empty.xyz: empty file"):
            ds.read_structures(tmp_path / "empty.xyz")
    path = ds.create_dataset(tmp_path / "d.h5", [water(2)])
    assert ds.summarize(path, "qmc") == {"pending": 2, "done": 0, "failed": 0}
    with pytest.raises(ds.DatasetError, match="not a readable HDF5"):
        ds.summarize(tmp_path / "empty.xyz", "dft")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.h5", "empty.xyz"]  # no journal folders left


def test_replace_clears_the_earlier_calculation_and_recorded_reads_journals(tmp_path):
    path = ds.create_dataset(tmp_path / "d.h5", [water(2)])
    units = {"energy": "hartree", "gradient": "hartree/bohr", "settings": "dimensionless"}
    w = ds.ResultWriter(path, "qmc", units)
    w.record("water", 0, {"energy": -76.4, "gradient": np.ones((3, 3)), "settings": "dmc"})
    w.record("water", 1, {"energy": -76.3, "settings": "vmc"})
    w.merge()
    w.record("water", 0, {"energy": -76.2, "settings": "vmc"}, replace=True)  # no gradient this time
    assert w.recorded("settings") == {("water", 0): "vmc", ("water", 1): "vmc"}  # the journal is newer
    assert w.recorded("gradient") == {}  # the replacing record has none (water 1 never had one)
    w.merge()
    g, _ = ds.read_property(path, "water", "qmc_gradient")
    e, _ = ds.read_property(path, "water", "qmc_energy")
    assert np.isnan(g).all() and e.tolist() == [-76.2, -76.3]
    assert w.recorded("gradient") == {} and w.recorded("energy") == {("water", 0): -76.2, ("water", 1): -76.3}
    assert not (tmp_path / "d.h5.journal").exists()


def test_units_are_never_guessed(tmp_path):
    from rung.core.units import BOHR_TO_NM

    path = tmp_path / "x.h5"
    x = water(1).conformations
    with h5py.File(path, "w") as f:
        f.create_group("a")["atomic_numbers"] = np.array([8, 1, 1])
        f["a"]["conformations"] = x  # no units attribute
        f.create_group("b")["atomic_numbers"] = np.array([8, 1, 1])
        f["b"].create_dataset("conformations", data=x * BOHR_TO_NM).attrs["units"] = "nm"  # H5MD's unit
    with pytest.raises(ds.DatasetError, match="a/conformations has no 'units' attribute"):
        ds.read_hdf5(path)
    np.testing.assert_allclose(ds.read_hdf5(path, ["b"])[0].conformations, x, rtol=1e-14)
    np.testing.assert_array_equal(ds.read_structures(path, units="bohr")[0].conformations, x)
    (tmp_path / "h2.xyz").write_text("2\n\nH 0 0 0\nH 0 0 1.4\n")
    assert ds.read_structures(tmp_path / "h2.xyz", units="bohr")[0].conformations[0, 1, 2] == 1.4
    with pytest.raises(ds.DatasetError, match="unknown unit 'furlong'"):
        ds.read_structures(tmp_path / "h2.xyz", units="furlong")
