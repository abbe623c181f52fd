"""The per-conformation result type (rung.dft_gpu.scf.DFTResult): its fields are the values the farm
stores as the dataset's ``dft_*`` properties for the same conformation, and its HDF5 file gives back
the same result.

Oracle: the farm's dataset (written through rung.core.dataset.ResultWriter, read back with h5py) for
the mapping; the result itself for the round trip (every field compared exactly).
"""

import h5py
import numpy as np
import pytest

from rung.core.dataset import Molecule, create_dataset
from rung.core.errors import InputError
from rung.core.units import ANGSTROM_TO_BOHR
from rung.dft_gpu.run import run
from rung.dft_gpu.scf import UNITS, DFTConfig, DFTResult, kernel

WATER = np.array([[0, 0, 0.119262], [0, 0.763239, -0.477047], [0, -0.763239, -0.477047]]) * ANGSTROM_TO_BOHR
CONFIG = DFTConfig(xc="hf", basis="6-31g", ecp=None, jk="pyscf")
FIELDS = ("energy", "dipole", "scf_cycles", "strategy", "jk_backend", "wall_time_s", "mo_coeff", "mo_occ",
          "mo_energy", "gradient", "gradient_scf_energy", "gradient_scf_cycles")


def _water():
    return Molecule("water", np.array([8, 1, 1]), np.stack([WATER, WATER + 0.02]))


def test_fields_are_the_farms_dataset_values(tmp_path):
    """Conformation 1 through kernel and through the farm: every dft_* property equals the field it
    comes from, bit for bit (the SCF is deterministic), the wall time aside."""
    src, out = tmp_path / "in.h5", tmp_path / "out.h5"
    create_dataset(src, [_water()])
    assert run(src, out, CONFIG, progress=False).n_done == 2
    res = kernel(_water(), 1, CONFIG)
    with h5py.File(out, "r") as f:
        g = f["water"]
        stored = {k[len("dft_"):]: g[k][1] for k in g if k.startswith("dft_")}
        units = {k[len("dft_"):]: g[k].attrs.get("units") for k in g if k.startswith("dft_")}
    assert set(res.values()) == set(UNITS) <= set(stored)  # and dft_status, dft_error, ...
    assert units["total_gradient"] == "hartree/bohr" and units["dipole"] == "e*bohr"
    assert stored["total_energy"] == res.energy and stored["gradient_scf_energy"] == res.gradient_scf_energy
    np.testing.assert_array_equal(stored["total_gradient"], res.gradient)
    np.testing.assert_array_equal(stored["dipole"], res.dipole)
    assert res.gradient.shape == (3, 3) and res.dipole.shape == (3,) and res.gradient.dtype == np.float64
    assert (stored["scf_cycles"], stored["gradient_scf_cycles"], stored["converged"]) == (
        res.scf_cycles, res.gradient_scf_cycles, 1)
    assert stored["scf_strategy"].decode() == res.strategy == "diis"
    assert stored["jk_backend"].decode() == res.jk_backend == "pyscf-df"
    assert stored["wall_time"] > 0 and res.wall_time_s > 0


@pytest.mark.parametrize("forces", [True, False])
def test_hdf5_round_trip(tmp_path, forces):
    res = kernel(_water(), 0, DFTConfig(xc="hf", basis="6-31g", ecp=None, jk="pyscf", forces=forces))
    assert (res.gradient is not None) == forces and ("total_gradient" in res.values()) == forces
    res.to_hdf5(tmp_path / "r.h5")
    back = DFTResult.from_hdf5(tmp_path / "r.h5")
    for name in FIELDS:
        a, b = getattr(res, name), getattr(back, name)
        if a is None:
            assert b is None, name
        else:
            np.testing.assert_array_equal(a, b, err_msg=name)
            assert type(a) is type(b), name
    assert back.mol.dumps() == res.mol.dumps() and back.mol.nelectron == 10
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f.attrs["schema"] == "rung.dft_result" and f.attrs["backend"] == "pyscf-df"
        assert f["total_energy"].attrs["units"] == "hartree" and f["mo_energy"].attrs["units"] == "hartree"


def test_from_hdf5_refuses_another_file(tmp_path):
    create_dataset(tmp_path / "d.h5", [_water()])
    with pytest.raises(InputError, match="not a rung.dft_result file"):
        DFTResult.from_hdf5(tmp_path / "d.h5")
