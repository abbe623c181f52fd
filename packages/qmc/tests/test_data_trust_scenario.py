"""A new user's SPICE-style workflow end to end (issue 19's "Done when"): a SPICE-like file (two molecules,
a conformation with two atoms on top of each other, SPICE's own ``dft_total_energy``, ``smiles`` and
``subset``) -> `dft-gpu run` into the same file under --property-prefix, killed midway and resumed ->
read back with a minimal SPICE-style loader -> `qmc vmc` on the good conformations only.

Checked at every step: SPICE's values never change, no conformation is computed twice, every group has
every property (NaN plus status and reason for a failure, no KeyError), no attribute holds settings of
another calculation, no traceback. The DFT is HF/STO-3G and the VMC a few walkers for a few steps: the
bookkeeping is under test, the physics has its own tests.
"""

import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("rung.dft_gpu")

from rung.core.dataset import DONE, FAILED, PENDING  # noqa: E402
from rung.dft_gpu import run as farm  # noqa: E402
from rung.dft_gpu.cli import main as dft_main  # noqa: E402
from rung.dft_gpu.scf import DFTConfig  # noqa: E402
from rung.qmc.cli import main as qmc_main  # noqa: E402
from rung.qmc.vmc import QMCResult  # noqa: E402

WATER = np.array([[0.0, 0.0, 0.2254], [0.0, 1.4422, -0.9014], [0.0, -1.4422, -0.9014]])  # Bohr
H2 = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]])
SUBSET = "SPICE-like test set"
DFT = ["--xc", "hf", "--basis", "sto-3g", "--ecp", "none", "--jk", "pyscf", "--no-forces", "--quiet",
       "--property-prefix", "rung_"]
VMC = ["--basis", "sto-3g", "--ecp", "none", "--walkers", "4", "--vmc-blocks", "2", "--vmc-steps", "2",
       "--no-jastrow", "--seed", "3"]


def _spice_file(path):
    water = np.stack([WATER, WATER, WATER * 1.03])
    water[1, 1] = water[1, 0] + [0.0, 0.0, 0.03]  # H 0.03 Bohr from O: no calculation should run on it
    spice = {}
    with h5py.File(path, "w") as f:
        for name, z, x, smiles in (("water", [8, 1, 1], water, "[O:1]([H:2])[H:3]"),
                                   ("hydrogen", [1, 1], np.stack([H2, H2 * 1.05]), "[H:1][H:2]")):
            g = f.create_group(name)
            g["atomic_numbers"] = np.array(z, dtype=np.int16)
            g.create_dataset("conformations", data=x.astype(np.float32)).attrs["units"] = "bohr"
            g["smiles"] = np.array([smiles.encode()], dtype=object)
            g["subset"] = np.array([SUBSET.encode()], dtype=object)
            e = -1.0 - np.arange(len(x)) / 10  # SPICE's own numbers, a level of theory rung did not compute
            g.create_dataset("dft_total_energy", data=e).attrs["units"] = "hartree"
            spice[name] = e
    return spice


def spice_loader(path):
    """What a SPICE loader does: every group, every conformation, the same keys (any missing one a KeyError)."""
    with h5py.File(path, "r") as f:
        keys = sorted({k for g in f.values() for k, d in g.items()
                       if isinstance(d, h5py.Dataset) and d.shape[:1] == (g["conformations"].shape[0],)
                       and k not in ("conformations", "smiles", "subset")})
        rows = []
        for name, g in f.items():
            for i in range(g["conformations"].shape[0]):
                row = {k: g[k][i] for k in keys}  # KeyError here is what a SPICE loader would hit
                row.update(name=name, index=i, smiles=g["smiles"][0].decode(), subset=g["subset"][0].decode())
                rows.append(row)
    return rows


class _Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so the farm records nothing more and merges nothing."""


def test_spice_workflow_build_kill_resume_load_and_climb_to_qmc(tmp_path, monkeypatch):
    path = tmp_path / "spice.h5"
    spice = _spice_file(path)
    runner = CliRunner()

    # 1. into SPICE's file itself: refused without a prefix (SPICE's dft_total_energy has no rung provenance)
    r = runner.invoke(dft_main, ["run", str(path), "--out", str(path), *DFT[:-2]])
    assert r.exit_code == 2 and "never replaced" in r.stderr and "Traceback" not in r.output

    # 2. killed after three conformations (the overlapping one failed among them), a torn journal line left
    real, computed, kill_at = farm.kernel, [], [3]

    def compute(molecule, index, config):
        if len(computed) in kill_at:
            raise _Killed
        computed.append((molecule.name, index))
        return real(molecule, index, config)

    monkeypatch.setattr(farm, "kernel", compute)
    with pytest.raises(_Killed):
        farm.run(path, path, DFTConfig(xc="hf", basis="sto-3g", ecp=None, jk="pyscf", forces=False),
                 progress=False, property_prefix="rung_")
    journal = tmp_path / "spice.h5.journal" / "rank00000.jsonl"
    with open(journal, "ab") as fh:
        fh.write(b'{"rung": "rung_dft", "molecule": "hydrogen", "ind')  # the kill tore this record
    assert sorted(computed) == [("water", 0), ("water", 1), ("water", 2)]  # largest molecule first
    kill_at.clear()

    # 3. resumed with the same command: nothing recorded before the kill is computed again
    r = runner.invoke(dft_main, ["run", str(path), "--out", str(path), *DFT])
    assert r.exit_code == 0, r.output
    assert "4 done, 1 failed, 0 pending (2 computed now, 0 failed)" in r.output
    assert sorted(computed[3:]) == [("hydrogen", 0), ("hydrogen", 1)]
    assert not journal.parent.exists()

    # 4. read back as SPICE loaders read: every group has every property; failures NaN with status and reason
    rows = {(row["name"], row["index"]): row for row in spice_loader(path)}
    assert len(rows) == 5 and {row["subset"] for row in rows.values()} == {SUBSET}
    for (name, i), row in rows.items():
        assert row["dft_total_energy"] == spice[name][i]  # SPICE's own value, unchanged
        if (name, i) == ("water", 1):
            assert row["rung_dft_status"] == FAILED and np.isnan(row["rung_dft_total_energy"])
            assert b"atoms 0 and 1" in row["rung_dft_error"]
        else:
            assert row["rung_dft_status"] == DONE and row["rung_dft_error"] == b""
            assert np.isfinite(row["rung_dft_total_energy"]) and row["rung_dft_total_energy"] != row["dft_total_energy"]
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["rung_dft_settings"])["basis"] == "sto-3g" and "dft_settings" not in f.attrs
        assert dict(f["water/dft_total_energy"].attrs) == {"units": "hartree"}

    # 5. QMC on the good conformations only: the rejected one is refused before any work
    r = runner.invoke(qmc_main, ["vmc", str(path), "--molecule", "water", "--index", "1", *VMC])
    assert r.exit_code == 2 and "water[1] failed at the dft rung (rung_dft_status: ConformationError" in r.stderr
    assert "Traceback" not in r.output
    good = [k for k, row in rows.items() if row["rung_dft_status"] == DONE]
    for name, i in good:
        r = runner.invoke(qmc_main, ["vmc", str(path), "--molecule", name, "--index", str(i), *VMC,
                                     "--out", str(tmp_path / f"{name}{i}")])
        assert r.exit_code == 0 and "E(VMC)" in r.output, r.output

    rows = {(row["name"], row["index"]): row for row in spice_loader(path)}
    for (name, i), row in rows.items():
        assert row["dft_total_energy"] == spice[name][i]
        if (name, i) == ("water", 1):
            assert row["qmc_status"] == PENDING and np.isnan(row["qmc_total_energy"])
            continue
        own = QMCResult.from_hdf5(tmp_path / f"{name}{i}.vmc.h5")  # the run's own result file
        assert row["qmc_status"] == DONE
        assert (row["qmc_total_energy"], row["qmc_total_energy_error"]) == (own.energy, own.error) and own.error > 0
        assert abs(row["qmc_total_energy"] - row["rung_dft_total_energy"]) < 3.0  # this molecule (4 walkers: loose)
        s = json.loads(row["qmc_settings"])
        assert (s["method"], s["nwalkers"], s["vmc_blocks"], s["basis"]) == ("vmc", 4, 2, "sto-3g")
    with h5py.File(path, "r") as f:  # per-conformation settings live in qmc_settings, not in shared attributes
        assert set(f["water/qmc_total_energy"].attrs) == {"units", "settings"}
        assert f["water/rung_dft_total_energy"].attrs["xc"] == "hf"
