"""Results visible while the farm runs (periodic in-place merges), --retry-failed, status --json.

The SCF kernel is replaced by a cheap stand-in (the farm's bookkeeping is what is tested): the
energy is minus the sum of squared coordinates, and the failures are chosen by the test.
"""

import json

import h5py
import numpy as np
from click.testing import CliRunner

from rung.core.dataset import Molecule, create_dataset
from rung.dft_gpu import run as farm
from rung.dft_gpu.scf import DFTConfig, DFTResult, SCFNotConverged
from rung.dft_gpu.cli import main

WATER = np.array([[0.0, 0, 0.22], [0, 1.44, -0.9], [0, -1.44, -0.9]])
CONFIG = DFTConfig(xc="hf", basis="sto-3g", ecp=None, jk="pyscf")


def _input(path, n=6):
    confs = WATER + 0.01 * np.arange(n)[:, None, None]
    create_dataset(path, [Molecule("water", np.array([8, 1, 1]), confs)])
    return confs


def _fake(seen, fail=()):
    def compute(molecule, index, config):
        seen.append(index)
        if index in fail:
            raise SCFNotConverged("no strategy converged (test)")
        e = -float(np.sum(molecule.conformations[index] ** 2))
        return DFTResult(energy=e, dipole=np.zeros(3), scf_cycles=5, strategy="diis", jk_backend="pyscf",
                         wall_time_s=0.1, mol=None, mo_coeff=None, mo_occ=None, mo_energy=None,
                         gradient=np.full((3, 3), index, float), gradient_scf_energy=e, gradient_scf_cycles=0)
    return compute


def _in_file(out):
    """Conformations whose energy is in the HDF5 file itself (the journals not read)."""
    with h5py.File(out, "r") as f:
        if "dft_total_energy" not in f["water"]:
            return []
        return [int(i) for i in np.flatnonzero(np.isfinite(f["water/dft_total_energy"][()]))]


def test_results_are_merged_while_the_farm_runs(tmp_path, monkeypatch):
    src, out = tmp_path / "in.h5", tmp_path / "out.h5"
    confs = _input(src)
    seen, visible = [], []
    compute = _fake(seen)

    def watching(molecule, index, config):
        visible.append(_in_file(out))  # what a reader of the file sees when this conformation starts
        return compute(molecule, index, config)

    monkeypatch.setattr(farm, "kernel", watching)
    s = farm.run(src, out, CONFIG, progress=False, merge_every=2)
    assert s.n_done == 6 and seen == list(range(6))
    assert visible == [[], [], [0, 1], [0, 1], [0, 1, 2, 3], [0, 1, 2, 3]]
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["water/dft_total_energy"][()], -np.sum(confs**2, axis=(1, 2)))
    assert not (tmp_path / "out.h5.journal").exists()


def test_retry_failed_recomputes_only_the_failures_and_replaces_them(tmp_path, monkeypatch):
    src, out = tmp_path / "in.h5", tmp_path / "out.h5"
    _input(src)
    seen = []
    monkeypatch.setattr(farm, "kernel", _fake(seen, fail={1, 4}))
    s = farm.run(src, out, CONFIG, progress=False)
    assert (s.n_done, s.n_failed) == (4, 2)
    seen.clear()
    s = farm.run(src, out, CONFIG, progress=False)  # a plain rerun leaves the failures alone
    assert seen == [] and s.n_failed == 2
    monkeypatch.setattr(farm, "kernel", _fake(seen, fail={4}))
    s = farm.run(src, out, CONFIG, progress=False, retry_failed=True)
    assert sorted(seen) == [1, 4] and (s.n_done, s.n_failed) == (5, 1)
    with h5py.File(out, "r") as f:
        g = f["water"]
        assert g["dft_status"][()].tolist() == [1, 1, 1, 1, 2, 1]
        assert g["dft_error"][1] == b"" and b"no strategy converged" in g["dft_error"][4]
        assert np.isfinite(g["dft_total_energy"][1]) and np.isnan(g["dft_total_energy"][4])
    st = json.loads(CliRunner().invoke(main, ["status", "--json", str(out)]).output)
    assert st["counts"] == {"done": 5, "failed": 1, "pending": 0}
    assert st["failures"] == [{"molecule": "water", "index": 4,
                               "reason": "SCFNotConverged: no strategy converged (test)"}]
    assert st["molecules"] == {"water": {"done": 5, "failed": 1, "pending": 0}}
    assert st["settings"]["xc"] == "hf"


def test_retry_failed_leaves_impossible_input_failed(tmp_path, monkeypatch):
    """A conformation with NaN coordinates fails only itself, and a retry does not compute it."""
    src, out = tmp_path / "in.h5", tmp_path / "out.h5"
    x = WATER + np.zeros((3, 1, 1))
    x[1, 2, 0] = np.nan
    with h5py.File(src, "w") as f:
        g = f.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1])
        g.create_dataset("conformations", data=x).attrs["units"] = "bohr"
    seen = []
    monkeypatch.setattr(farm, "kernel", _fake(seen))
    for retry in (False, True):
        s = farm.run(src, out, CONFIG, progress=False, retry_failed=retry)
        assert (s.n_done, s.n_failed) == (2, 1) and 1 not in seen
    assert "NaN" in farm.status(out)["failures"][0][2]


def test_foreign_dft_data_is_never_replaced(tmp_path, monkeypatch):
    """`dft-gpu run spice.h5 --out spice.h5`: SPICE's own dft_total_energy has no rung provenance."""
    spice = tmp_path / "spice.h5"
    with h5py.File(spice, "w") as f:
        g = f.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1], dtype=np.int16)
        g.create_dataset("conformations", data=WATER[None].astype(np.float32)).attrs["units"] = "bohr"
        g["dft_total_energy"] = np.array([-76.4])
    before = spice.read_bytes()
    seen = []
    monkeypatch.setattr(farm, "kernel", _fake(seen))
    r = CliRunner().invoke(main, ["run", str(spice), "--out", str(spice), "--xc", "hf", "--basis", "sto-3g",
                                  "--ecp", "none", "--jk", "pyscf", "--quiet"])
    assert r.exit_code == 2 and "water/dft_total_energy" in r.output and "rung did not write" in r.output
    assert seen == [] and spice.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spice.h5"]


def test_xyz_molecules_named_by_the_user_and_grouped_by_identity(tmp_path, monkeypatch):
    """dft-gpu run on an extxyz whose frames name their molecule (--name-key), interleaved: one group per
    named molecule (not per formula or per run of frames), each carrying every dft_* dataset although
    one molecule only failed (a SPICE-style loader reads the same keys from every group)."""
    from ase import Atoms
    from ase.io import write

    def frame(symbols, x, label):
        a = Atoms(symbols, positions=x * 0.529177)
        a.info["label"] = label
        return a

    nh3 = np.array([[0.0, 0, 0], [1.9, 0, 0], [0, 1.9, 0], [0, 0, 1.9]])
    write(tmp_path / "in.xyz", [frame("OH2", WATER, "water"), frame("NH3", nh3, "ammonia"),
                                frame("OH2", WATER + 0.01, "water")], format="extxyz")

    def compute(molecule, index, config):
        if molecule.name == "ammonia":
            raise SCFNotConverged("no strategy converged (test)")
        return _fake([])(molecule, index, config)

    monkeypatch.setattr(farm, "kernel", compute)
    out = tmp_path / "out.h5"
    r = CliRunner().invoke(main, ["run", str(tmp_path / "in.xyz"), "--out", str(out), "--jk", "pyscf", "--xc", "hf",
                                  "--basis", "sto-3g", "--ecp", "none", "--name-key", "label", "--quiet"])
    assert r.exit_code == 0, r.output
    with h5py.File(out, "r") as f:
        assert sorted(f) == ["ammonia", "water"] and f["water/conformations"].shape == (2, 3, 3)
        keys = sorted(k for k in f["water"] if k.startswith("dft_"))
        assert sorted(k for k in f["ammonia"] if k.startswith("dft_")) == keys and "dft_total_gradient" in keys
        assert f["ammonia/dft_total_gradient"].shape == (1, 4, 3) and np.isnan(f["ammonia/dft_total_energy"][0])
        assert list(f["ammonia/dft_status"][()]) == [2] and list(f["water/dft_status"][()]) == [1, 1]
