"""SPICE's per-molecule labels, ``smiles`` and ``subset``, are carried from the input (SPICE HDF5 groups, or
extxyz ``smiles=``/``subset=`` keys) into every dataset rung writes, as SPICE stores them."""

import h5py
import numpy as np
from ase import Atoms
from ase.io import write

from rung.core import dataset as ds

NH4 = np.array([[0.0, 0.0, 0.0], [1.93, 0.0, 0.0], [-0.64, 1.82, 0.0], [-0.64, -0.91, 1.58], [-0.64, -0.91, -1.58]])
SMILES = "[H:2][N+:1]([H:3])([H:4])[H:5]"
SUBSET = "SPICE PubChem Set 1 Single Points Dataset v1.2"


def _labels(path, group):
    with h5py.File(path, "r") as f:
        g = f[group]
        return {k: g[k][()][0].decode() for k in ("smiles", "subset") if k in g}


def test_spice_groups_keep_their_smiles_and_subset(tmp_path):
    src = tmp_path / "spice.hdf5"
    with h5py.File(src, "w") as f:  # SPICE 2's layout: (1,) variable-length byte strings
        g = f.create_group("ammonium")
        g["atomic_numbers"] = np.array([7, 1, 1, 1, 1], dtype=np.int16)
        g.create_dataset("conformations", data=NH4[None].astype(np.float32)).attrs["units"] = "bohr"
        g["smiles"] = np.array([SMILES.encode()], dtype=object)
        g["subset"] = np.array([SUBSET.encode()], dtype=object)
        w = f.create_group("water")  # no labels: none invented
        w["atomic_numbers"] = np.array([8, 1, 1], dtype=np.int16)
        w.create_dataset("conformations", data=np.array([[[0, 0, 0], [1.81, 0, 0], [-0.45, 1.75, 0]]])).attrs["units"] = "bohr"
    mols = ds.read_structures(src)
    assert [(m.name, m.charge, m.smiles, m.subset) for m in mols] == [("ammonium", 1, SMILES, SUBSET),
                                                                         ("water", 0, None, None)]
    out = ds.create_dataset(tmp_path / "out.h5", mols)
    assert _labels(out, "ammonium") == {"smiles": SMILES, "subset": SUBSET}
    assert _labels(out, "water") == {}
    assert [(m.smiles, m.subset) for m in ds.read_hdf5(out)][0] == (SMILES, SUBSET)


def test_extxyz_smiles_and_subset_keys(tmp_path):
    frames = []
    for k in range(2):
        a = Atoms("NH4", positions=(NH4 + 0.02 * k) * 0.529177210903)
        a.info.update(name="ammonium", smiles=SMILES, subset=SUBSET)  # no charge: from the SMILES, as in SPICE
        frames.append(a)
    frames.append(Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    write(tmp_path / "m.xyz", frames, format="extxyz")
    mols = {m.name: m for m in ds.read_structures(tmp_path / "m.xyz")}
    assert mols["ammonium"].n_conf == 2 and mols["ammonium"].charge == 1
    assert (mols["ammonium"].smiles, mols["ammonium"].subset) == (SMILES, SUBSET)
    assert (mols["H2O"].smiles, mols["H2O"].subset) == (None, None)
    out = ds.create_dataset(tmp_path / "out.h5", list(mols.values()))
    assert _labels(out, "ammonium") == {"smiles": SMILES, "subset": SUBSET}
