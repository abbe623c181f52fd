import json
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


def _journal_fsyncs(monkeypatch, log):
    """Log ("fsync", file name) for every fsync of a journal file (by its descriptor's path)."""
    real = os.fsync

    def fsync(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if ".journal/" in name:
            log.append(("fsync", Path(name).name))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def test_group_commit_fsyncs_in_groups_and_at_close(tmp_path, monkeypatch):
    """The journal is fsync'd after sync_every records, at the first record sync_seconds after the last
    fsync, and at close; never more often."""
    path = ds.create_dataset(tmp_path / "d.h5", [water(300)])
    log, clock = [], [0.0]
    _journal_fsyncs(monkeypatch, log)
    monkeypatch.setattr(ds.time, "monotonic", lambda: clock[0])
    w = ds.ResultWriter(path, "toy", {"energy": "hartree"}, sync_every=100, sync_seconds=1.0)
    for i in range(250):
        w.record("water", i, {"energy": -1.0})
    assert len(log) == 2  # after records 100 and 200
    w.close()
    assert len(log) == 3
    clock[0] = 0.5
    w.record("water", 250, {"energy": -1.0})  # reopened at 0.5 s
    clock[0] = 1.4
    w.record("water", 251, {"energy": -1.0})
    assert len(log) == 3
    clock[0] = 1.6  # 1.1 s after the last fsync (the reopening)
    w.record("water", 252, {"energy": -1.0})
    assert len(log) == 4
    w.close()
    assert len(log) == 4  # nothing left to fsync
    assert w.merge() == 253


KILLED = """
import os, signal, sys
from rung.core import dataset as ds
w = ds.ResultWriter(sys.argv[1], "toy", {"energy": "hartree"}, sync_every=10**6, sync_seconds=1e9)
for i in range(50):
    w.record("water", i, {"energy": -1.0 - i})
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_between_records_loses_nothing_flushed_and_the_merge_fsyncs_first(tmp_path, monkeypatch):
    """A writer SIGKILLed after 50 records that were never fsync'd: every one of them is recorded (the OS
    had them), and the next merge fsyncs that journal before it reads a line of it."""
    path = ds.create_dataset(tmp_path / "d.h5", [water(60)])
    p = subprocess.run([sys.executable, "-c", KILLED, str(path)], capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr
    st = ds.ResultWriter(path, "toy", {}).status()
    assert [st[("water", i)] for i in range(60)] == [ds.DONE] * 50 + [ds.PENDING] * 10
    log = []
    _journal_fsyncs(monkeypatch, log)
    plan = ds.ResultWriter._plan
    monkeypatch.setattr(ds.ResultWriter, "_plan", lambda self, files: (log.append(("plan",)), plan(self, files))[1])
    assert ds.ResultWriter(path, "toy", {"energy": "hartree"}).merge() == 50
    assert log[:2] == [("fsync", "rank00000.jsonl"), ("plan",)]
    e, _ = ds.read_property(path, "water", "toy_energy")
    np.testing.assert_array_equal(e[:50], -1.0 - np.arange(50))


def _dataset_make(d):
    """What the merge relies on and a reader sees of a dataset, beyond its values."""
    dcpl = d.id.get_create_plist()
    attrs = {k: (v, type(v), getattr(v, "dtype", None)) for k, v in d.attrs.items()}
    return (d.shape, d.dtype, d.fillvalue.tobytes() if hasattr(d.fillvalue, "tobytes") else d.fillvalue,
            dcpl.get_layout(), dcpl.get_alloc_time(), dcpl.get_fill_time(), d.id.get_offset() is not None,
            d.id.get_type().get_class(), attrs, d[()].tobytes())


def test_a_layout_step_gives_every_molecule_the_same_datasets(tmp_path):
    """The layout step makes one molecule's datasets and copies them for the others of the same shape:
    each copy is contiguous and allocated (written in place), filled, typed and attributed as the first
    (strings, numbers and flags read back as they were written)."""
    meta = {"xc": "wb97m-d3bj", "grid": 3, "conv_tol": 1e-9, "forces": True, "version": np.float64(1.5)}
    path = ds.create_dataset(tmp_path / "d.h5", [water(4, n) for n in ("a", "b", "c")] + [water(2, "d")])
    w = ds.ResultWriter(path, "dft", UNITS, metadata=meta, shapes=SHAPES)
    w.record("b", 1, {"energy": -1.0, "gradient": np.ones((3, 3)), "note": "x" * 70, "cycles": 12})
    w.merge()  # b's datasets are made first (it has a record), a and c copy them, d has its own shape
    with h5py.File(path) as f:
        names = sorted(k for k in f["b"] if k.startswith("dft_"))
        assert len(names) == 6 and all(names == sorted(k for k in f[m] if k.startswith("dft_")) for m in "acd")
        for k in names:
            first = _dataset_make(f["b"][k])
            assert first[8]["xc"][0] == "wb97m-d3bj" and first[8]["forces"][0] == np.True_
            assert first[8]["units"][0] == UNITS.get(k[4:], "dimensionless")
            for mol in "acd":  # b's string widths are its record's, at least the others' 64 bytes
                assert _dataset_make(f[mol][k])[2:9] == first[2:9], (mol, k)
            assert _dataset_make(f["a"][k]) == _dataset_make(f["c"][k]), k
    e, _ = ds.read_property(path, "b", "dft_energy")
    assert np.isnan(e[[0, 2, 3]]).all() and e[1] == -1.0


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


def test_read_xyz_names_and_groups_by_identity(tmp_path):
    """The user's names (name= in the comment line, or another key) and grouping by identity: frames of
    one molecule interleaved with another's form one molecule each, in the frames' order."""
    from ase import Atoms
    from ase.io import write

    def w(x, name=None, **info):
        a = Atoms("OH2", positions=[[0, 0, 0], [x, 0, 0], [-0.24, 0.93, 0]])
        a.info.update(info, **({"name": name} if name else {}))
        return a

    nh3 = Atoms("NH3", positions=[[0, 0, 0], [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    write(tmp_path / "m.xyz", [w(0.96, "water"), nh3, w(0.97, "water"), w(0.98), nh3, w(0.99, "water"),
                               w(0.95, "hydroxide_like", charge=0, multiplicity=3)], format="extxyz")
    mols = {m.name: m for m in ds.read_structures(tmp_path / "m.xyz")}
    assert {k: m.n_conf for k, m in mols.items()} == {"water": 3, "H3N": 2, "H2O": 1, "hydroxide_like": 1}
    np.testing.assert_allclose(mols["water"].conformations[:, 1, 0] / ANGSTROM_TO_BOHR, [0.96, 0.97, 0.99])
    assert mols["hydroxide_like"].multiplicity == 3
    # another key, and one name given to different atoms is refused naming the frames
    write(tmp_path / "k.xyz", [w(0.96, label="w1"), w(0.97, label="w1")], format="extxyz")
    assert [(m.name, m.n_conf) for m in ds.read_structures(tmp_path / "k.xyz", name_key="label")] == [("w1", 2)]
    nh3.info["name"] = "water"
    write(tmp_path / "bad.xyz", [w(0.96, "water"), nh3], format="extxyz")
    with pytest.raises(ds.DatasetError, match="frames 0 and 1 are both named 'water'"):
        ds.read_structures(tmp_path / "bad.xyz")


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


# ------------------------------------------------------------------ the merge: incremental, batched, kill-safe
UNITS = {"energy": "hartree", "gradient": "hartree/bohr", "note": "dimensionless", "cycles": "dimensionless"}
SHAPES = {"energy": ("f", ()), "gradient": ("f", ("n_atoms", 3)), "note": ("s", ()), "cycles": ("i", ())}


def _records():
    """A journal's worth of records: done, failed, recomputed, replaced (without a gradient), long strings."""
    g = np.arange(9.0).reshape(3, 3)
    return [
        ("water", 0, dict(values={"energy": -76.0, "gradient": g, "note": "a", "cycles": 7})),
        ("water", 1, dict(values={"energy": -76.1, "gradient": g + 1, "note": "b" * 300, "cycles": 8})),
        ("w2", 1, dict(error="SCFNotConverged: " + "x" * 500)),
        ("water", 2, dict(values={"energy": -76.2, "gradient": g + 2, "note": "é", "cycles": 9})),
        ("water", 0, dict(values={"energy": -75.9, "note": "again"})),              # a later record wins
        ("water", 1, dict(values={"energy": -76.5, "note": "r"}, replace=True)),   # drops gradient, cycles
        ("w2", 0, dict(values={"energy": -1.5, "gradient": g[:2], "cycles": 3})),
        ("water", 2, dict(error="killed by the scheduler")),                       # failed, values kept
    ]


def _expected(records, n={"water": 3, "w2": 2}):
    """The merge's meaning, written out record by record (the oracle of the batched merge)."""
    fill = {"energy": np.nan, "gradient": np.nan, "note": "", "cycles": -1}
    out = {(m, i): {"status": ds.PENDING, "error": "", **fill} for m in n for i in range(n[m])}
    for mol, i, kw in records:
        row = out[(mol, i)]
        if kw.get("replace"):
            row.update(fill)
        row["status"] = ds.FAILED if "error" in kw else ds.DONE
        row["error"] = kw.get("error", "")
        row.update(kw.get("values", {}))
    return out


def _check(path, expected):
    with h5py.File(path) as f:
        for (mol, i), row in expected.items():
            g = f[mol]
            assert g["dft_status"][i] == row["status"], (mol, i)
            assert g["dft_error"][i].decode() == row["error"], (mol, i)
            assert g["dft_note"][i].decode() == row["note"], (mol, i)
            assert g["dft_cycles"][i] == row["cycles"], (mol, i)
            np.testing.assert_array_equal(g["dft_energy"][i], row["energy"], err_msg=f"{mol}[{i}]")
            np.testing.assert_array_equal(g["dft_gradient"][i], np.broadcast_to(row["gradient"], g["dft_gradient"].shape[1:]))


def _journal_all(path, records, shapes=SHAPES):
    w = ds.ResultWriter(path, "dft", UNITS, shapes=shapes)
    for mol, i, r in records:
        w.record(mol, i, **r)
    w.close()
    return w


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_batched_merge_means_the_records_in_order(tmp_path, batch):
    path = ds.create_dataset(tmp_path / "d.h5", [water(3), ds.Molecule("w2", [1, 1], [[0, 0, 0], [0, 0, 1.4]] * np.ones((2, 1, 1)))])
    recs = _records()
    w = _journal_all(path, recs[:4])
    assert w.merge(batch=batch) == 4  # first merge: the datasets are created (layout step)
    _check(path, _expected(recs[:4]))
    w = _journal_all(path, recs[4:])
    assert w.merge(batch=batch) == 4  # in place
    _check(path, _expected(recs))
    assert not (tmp_path / "d.h5.journal").exists()


def _raw_ranges(path):
    """Byte ranges of the result datasets' raw data: the only bytes an in-place merge may change."""
    out = []
    with h5py.File(path) as f:
        for g in f.values():
            for name, d in g.items():
                if name.startswith("dft_"):
                    out.append((d.id.get_offset(), d.id.get_storage_size()))
    return out


def test_merge_into_an_existing_layout_changes_only_raw_data(tmp_path):
    """The incremental merge: no copy of the file (same inode), and outside the result datasets' data
    not one byte of the file changes -- HDF5's structure is never written in place."""
    path = ds.create_dataset(tmp_path / "d.h5", [water(3), ds.Molecule("w2", [1, 1], [[0, 0, 0], [0, 0, 1.4]] * np.ones((2, 1, 1)))])
    recs = _records()
    _journal_all(path, recs[:4]).merge()
    before, inode = path.read_bytes(), path.stat().st_ino
    _journal_all(path, recs[4:]).merge()
    after = path.read_bytes()
    assert path.stat().st_ino == inode and len(after) == len(before)
    changed = np.flatnonzero(np.frombuffer(before, np.uint8) != np.frombuffer(after, np.uint8))
    inside = np.zeros(changed.size, bool)
    for off, size in _raw_ranges(path):
        inside |= (changed >= off) & (changed < off + size)
    assert changed.size and inside.all(), f"{(~inside).sum()} bytes changed outside the datasets' data"
    _check(path, _expected(recs))


KILLED_MERGE = """
import os, sys
from rung.core import dataset as ds
path, where = sys.argv[1], sys.argv[2]
w = ds.ResultWriter(path, "dft", {"energy": "hartree", "gradient": "hartree/bohr", "note": "", "cycles": ""},
                    shapes={"energy": ("f", ()), "gradient": ("f", ("n_atoms", 3)), "note": ("s", ()), "cycles": ("i", ())})
if where == "values":  # die after the first batch's in-place writes, before any msync
    apply = ds.ResultWriter._apply
    ds.ResultWriter._apply = lambda self, *a: (apply(self, *a), os._exit(9))
else:  # die in the layout step, after the copy was changed, before it replaces the file
    ds.os.replace = lambda *a: os._exit(9)
w.merge(batch=2)
"""


@pytest.mark.parametrize("where", ["values", "layout"])
def test_killed_merge_is_repaired_by_merging_again(tmp_path, where):
    mols = [water(3), ds.Molecule("w2", [1, 1], [[0, 0, 0], [0, 0, 1.4]] * np.ones((2, 1, 1)))]
    recs = _records()
    path = ds.create_dataset(tmp_path / "d.h5", mols)
    _journal_all(path, recs[:4] if where == "values" else [])
    if where == "values":
        ds.ResultWriter(path, "dft", UNITS, shapes=SHAPES).merge()
    _journal_all(path, recs[4:] if where == "values" else recs)
    p = subprocess.run([sys.executable, "-c", KILLED_MERGE, str(path), where], capture_output=True, text=True)
    assert p.returncode == 9, p.stderr
    want = _expected(recs)
    # the file is readable, nothing it says is done is wrong, and the journals still say everything
    st = ds.ResultWriter(path, "dft", UNITS).status()
    assert st == {k: row["status"] for k, row in want.items()}
    with h5py.File(path) as f:
        for (mol, i), row in want.items():
            if "dft_status" in f[mol] and f[mol]["dft_status"][i] == ds.DONE:
                assert f[mol]["dft_energy"][i] == row["energy"] or where == "values" and (mol, i) not in \
                    {(m, j) for m, j, _ in recs[4:]}
    assert ds.ResultWriter(path, "dft", UNITS, shapes=SHAPES).merge() == (4 if where == "values" else 8)
    _check(path, want)


def test_older_layouts_are_rewritten_once_then_merged_in_place(tmp_path):
    """Files written before the in-place merge (variable-length strings, storage never allocated,
    chunked) keep their values and get the in-place layout."""
    path = ds.create_dataset(tmp_path / "d.h5", [water(3)])
    with h5py.File(path, "a") as f:
        g = f["water"]
        g.create_dataset("dft_status", data=np.array([1, 0, 2], np.int8), chunks=(1,))
        g.create_dataset("dft_error", data=["", "", "old failure"], dtype=h5py.string_dtype())
        g.create_dataset("dft_energy", data=[-76.0, np.nan, np.nan], fillvalue=np.nan).attrs["units"] = "hartree"
        g.create_dataset("dft_cycles", shape=(3,), dtype=np.int64, fillvalue=-1)  # never written: no storage
    w = ds.ResultWriter(path, "dft", UNITS)
    w.record("water", 1, {"energy": -76.1, "cycles": 4})
    w.merge()
    with h5py.File(path) as f:
        g = f["water"]
        assert g["dft_status"][()].tolist() == [1, 1, 2] and g["dft_status"].dtype == np.int8
        assert [e.decode() for e in g["dft_error"][()]] == ["", "", "old failure"]
        assert g["dft_energy"][()].tolist()[:2] == [-76.0, -76.1] and g["dft_energy"].attrs["units"] == "hartree"
        assert g["dft_cycles"][()].tolist() == [-1, 4, -1]
        for name in ("dft_status", "dft_error", "dft_energy", "dft_cycles"):
            assert g[name].id.get_offset() is not None, name


def test_merge_of_many_records_is_fast(tmp_path):
    """20 000 records in one merge: today's per-record HDF5 writes took ~0.85 ms each (17 s)."""
    n = 20_000
    path = ds.create_dataset(tmp_path / "d.h5", [ds.Molecule("h2", [1, 1], np.tile([[0, 0, 0], [0, 0, 1.4]], (n, 1, 1)))])
    w = ds.ResultWriter(path, "toy", {"energy": "hartree"})
    w.journal_dir.mkdir()
    lines = [json.dumps({"rung": "toy", "molecule": "h2", "index": i, "status": "done", "error": "",
                         "values": {"energy": {"kind": "f", "shape": [], "data": [-1.0 - i]}}}) for i in range(n)]
    (w.journal_dir / "rank00000.jsonl").write_text("\n".join(lines) + "\n")
    t = time.perf_counter()
    assert w.merge() == n
    assert time.perf_counter() - t < 4.0
    e, _ = ds.read_property(path, "h2", "toy_energy")
    np.testing.assert_array_equal(e, -1.0 - np.arange(n))


def test_sealed_segments_merge_while_a_rank_still_records(tmp_path):
    path = ds.create_dataset(tmp_path / "d.h5", [water(4)])
    other = ds.ResultWriter(path, "dft", UNITS, rank=1)
    other.record("water", 0, {"energy": -1.0})
    other.record("water", 1, {"energy": -2.0})
    assert other.seal() == 2
    other.record("water", 2, {"energy": -3.0})  # still open: the merge must leave it alone
    me = ds.ResultWriter(path, "dft", UNITS)
    me.record("water", 3, {"energy": -4.0})
    assert me.merge(sealed_only=True) == 3
    e, _ = ds.read_property(path, "water", "dft_energy")
    assert e[[0, 1, 3]].tolist() == [-1.0, -2.0, -4.0] and np.isnan(e[2])
    assert [p.name for p in (tmp_path / "d.h5.journal").iterdir()] == ["rank00001.jsonl"]
    assert ds.summarize(path, "dft") == {"pending": 0, "done": 4, "failed": 0}
    other.record("water", 2, {"energy": -3.5})
    other.close()
    assert me.merge() == 2
    e, _ = ds.read_property(path, "water", "dft_energy")
    assert e.tolist() == [-1.0, -2.0, -3.5, -4.0] and not (tmp_path / "d.h5.journal").exists()


def test_every_molecule_carries_every_property_a_spice_loader_reads(tmp_path):
    """A writer that declares no shapes, results for one molecule only (one failed): after the merge every
    group holds every dft_* dataset (NaN / -1 / "" and status pending or failed), per-atom axes sized by
    its own atom count, so a loader that reads the same keys from every group (as SPICE loaders do) works."""
    h2 = ds.Molecule("h2", [1, 1], [[0, 0, 0], [0, 0, 1.4]] * np.ones((2, 1, 1)))
    path = ds.create_dataset(tmp_path / "d.h5", [water(3), h2, ds.Molecule("he", [2], np.zeros((1, 1, 3)))])
    w = ds.ResultWriter(path, "dft", UNITS)
    w.record("h2", 0, {"energy": -1.1, "gradient": np.ones((2, 3)), "note": "ok", "cycles": 7})
    w.record("h2", 1, error="SCF did not converge")
    w.merge()
    keys = ["dft_energy", "dft_gradient", "dft_note", "dft_cycles", "dft_status", "dft_error"]
    with h5py.File(path) as f:
        loaded = {mol: {k: g[k][()] for k in keys} for mol, g in f.items()}  # no KeyError
        for mol, g in f.items():
            assert {k for k in g if k.startswith("dft_")} == set(keys), mol
            assert g["dft_gradient"].shape == (*g["conformations"].shape[:2], 3), mol
            assert g["dft_gradient"].attrs["units"] == UNITS["gradient"]
    assert np.isnan(loaded["water"]["dft_energy"]).all() and (loaded["water"]["dft_status"] == ds.PENDING).all()
    assert (loaded["water"]["dft_cycles"] == -1).all() and loaded["he"]["dft_gradient"].shape == (1, 1, 3)
    assert loaded["h2"]["dft_energy"][0] == -1.1 and np.isnan(loaded["h2"]["dft_energy"][1])
    assert list(loaded["h2"]["dft_status"]) == [ds.DONE, ds.FAILED]
    # a later record of another molecule writes in place into the datasets laid out above
    ino = os.stat(path).st_ino
    w.record("water", 2, {"energy": -76.0, "gradient": np.zeros((3, 3)), "note": "", "cycles": 9})
    w.merge()
    assert os.stat(path).st_ino == ino
    assert ds.read_property(path, "water", "dft_energy")[0][2] == -76.0
