"""Trial functions from a dataset: the DFT rung's saved orbitals (contracts.md) or a PySCF fallback."""

import h5py
import numpy as np
import pytest
from pyscf import gto, scf

from rung.core.dataset import Molecule, create_dataset
from rung.qmc.run import QMCConfig, kernel, trial_from_dataset
from rung.qmc.system import InputError
from rung.qmc.vmc import VMCConfig

X = np.array([[0, 0, 0.2217], [0, 1.4309, -0.8867], [0, -1.4309, -0.8867]])  # Bohr


def _dataset(tmp_path, with_orbitals=True, shift=0.0, basis="ccecp-cc-pvdz"):
    ds = create_dataset(tmp_path / "w.h5", [Molecule("water", np.array([8, 1, 1]), X[None])])
    if not with_orbitals:
        return ds, None
    mol = gto.M(atom=[(z, x) for z, x in zip([8, 1, 1], X + shift)], unit="Bohr", basis=basis, ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    with h5py.File(tmp_path / "w.orbitals.h5", "w") as f:  # layout of contracts.md
        g = f.create_group("water/0")
        g["mo_coeff"], g["mo_occ"], g["mo_energy"] = mf.mo_coeff, mf.mo_occ, mf.mo_energy
        g.attrs.update(mol=mol.dumps(), xc="hf", e_tot=mf.e_tot, basis=basis, ecp="ccecp")
    with h5py.File(ds, "a") as f:
        f["water"].attrs["dft_orbitals_file"] = "w.orbitals.h5"
    return ds, mf


def test_uses_saved_orbitals_and_vmc_matches_their_energy(tmp_path):
    ds, mf = _dataset(tmp_path)
    mol, orb = trial_from_dataset(ds, "water", 0)
    assert "w.orbitals.h5" in orb.source and orb.e_tot == mf.e_tot
    res = kernel(mol, orb, QMCConfig(VMCConfig(nwalkers=60, nblocks=15, nsteps=10, seed=2), jastrow=False)).vmc
    assert abs(res.energy - mf.e_tot) < 3 * res.error


def test_run_result_round_trip(tmp_path):
    """kernel's frozen QMCRun: VMC only (dmc None), parameters as sampled, to_hdf5/from_hdf5 lossless."""
    import dataclasses

    from rung.qmc.run import QMCRun
    from rung.qmc.system import build_mol, mean_field

    mol = build_mol([1, 1], np.array([[0, 0, 0], [0, 0, 1.4]]), basis="sto-3g", ecp=None)
    run = kernel(mol, mean_field(mol), QMCConfig(VMCConfig(nwalkers=4, nblocks=2, nsteps=2, seed=1)))
    assert run.dmc is None and run.best is run.vmc and list(run.results) == ["vmc"] and "1.ee" in run.parameters
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.vmc = None
    run.to_hdf5(tmp_path / "r")
    back = QMCRun.from_hdf5(tmp_path / "r")
    assert back.dmc is None and back.vmc.energy == run.vmc.energy and back.vmc.error == run.vmc.error
    np.testing.assert_array_equal(back.vmc.trace, run.vmc.trace)
    assert back.parameters.keys() == run.parameters.keys()
    for k, v in run.parameters.items():
        np.testing.assert_array_equal(back.parameters[k], v)


def test_fallback_scf_without_orbitals(tmp_path):
    ds, _ = _dataset(tmp_path, with_orbitals=False)
    mol, orb = trial_from_dataset(ds, "water", 0)
    assert orb.source == "pyscf hf" and mol.nelec == (4, 4)


def test_orbitals_of_another_geometry_rejected(tmp_path):
    ds, _ = _dataset(tmp_path, shift=0.1)
    with pytest.raises(InputError, match="another geometry"):
        trial_from_dataset(ds, "water", 0)


def test_bad_index_and_molecule(tmp_path):
    ds, _ = _dataset(tmp_path, with_orbitals=False)
    with pytest.raises(InputError, match="out of range"):
        trial_from_dataset(ds, "water", 3)
    with pytest.raises(InputError, match="no molecule"):
        trial_from_dataset(ds, "ethanol", 0)


def test_settings_record_the_optimisation_rule():
    """qmc_settings: the default optimisation as [niter, nsteps] (the format of every earlier record); a
    non-default step rule (here the correlated step and xi) recorded beside them; the seed is not."""
    from rung.qmc.optimize import OptimizeConfig
    from rung.qmc.run import result_settings
    from rung.qmc.system import build_mol, mean_field

    mol = build_mol([1, 1], np.array([[0, 0, 0], [0, 0, 1.4]]), basis="sto-3g", ecp=None)
    orb = mean_field(mol)

    def recorded(opt):
        return result_settings(mol, orb, QMCConfig(VMCConfig(nwalkers=4), optimize=opt))["optimize"]

    assert recorded(None) is None
    assert recorded(OptimizeConfig(niter=4, nsteps=15, seed=3)) == [4, 15]
    assert recorded(OptimizeConfig(niter=4, nsteps=15, step="correlated", xi=0.5)) == [
        4, 15, {"step": "correlated", "xi": 0.5}]
