"""ANI-1x against TorchANI (float64 model) on two paracetamol geometries: AEVs, atomic energies,
energies and forces of one network (member 0) and of the 8-network ensemble."""

import numpy as np
import pytest

from rung.nnp import load_model
from rung.nnp._kernels import reference
from rung.nnp.ani import build_entries

GEOMS = ["paracetamol_eq", "paracetamol_pert1"]
TOL = {"float64": (1e-7, 1e-6), "float32": (1e-5, 1e-5)}  # (energy Ha, forces Ha/A)


@pytest.mark.parametrize("geom", GEOMS)
def test_aev_matches_torchani(ani1x_file, paracetamol, geom):
    d = paracetamol[geom]
    pot = load_model(ani1x_file, member=0, dtype="float64", backend="numpy")
    p = pot.model.aev
    e = build_entries(d["coordinates"], np.zeros(20, np.int64), 1, None, p.Rcr, p.Rca)
    args = (pot.species_index(d["species"]), e.start, e.nbr, e.vec, e.dist, e.ang_start, e.ang, p)
    np.testing.assert_allclose(reference.aev_forward(*args), d["aev"], rtol=0, atol=1e-10)
    from rung.nnp._kernels import cpu

    np.testing.assert_allclose(cpu.aev_forward(*args), d["aev"], rtol=0, atol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("geom", GEOMS)
def test_energy_forces_match_torchani(ani1x_file, paracetamol, geom, dtype, backend):
    d = paracetamol[geom]
    etol, ftol = TOL[dtype]
    ens = load_model(ani1x_file, dtype=dtype, backend=backend)
    one = load_model(ani1x_file, member=0, dtype=dtype, backend=backend)
    r = ens.evaluate(d["coordinates"], d["species"])
    r1 = one.evaluate(d["coordinates"], d["species"])
    assert abs(r.energy[0] - d["energy_ens"]) < etol
    assert abs(r1.energy[0] - d["energy_single"]) < etol
    np.testing.assert_allclose(r.forces, d["forces_ens"], rtol=0, atol=ftol)
    np.testing.assert_allclose(r1.forces, d["forces_single"], rtol=0, atol=ftol)
    np.testing.assert_allclose(r.atomic_energies, d["atomic_energies_ens"], rtol=0, atol=etol)
    assert r.energy_members.shape == (8, 1) and r.spread[0] > 0
    np.testing.assert_allclose(r.energy_members[0, 0], r1.energy[0], rtol=0, atol=etol)
    assert r1.spread[0] == 0.0
