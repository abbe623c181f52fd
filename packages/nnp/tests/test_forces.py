"""Analytic forces and virials against finite differences (rung.core kit), and the numba kernels
against the NumPy reference kernels."""

import numpy as np
import pytest

from rung.core.testing import check_backend_agreement, check_forces_fd
from rung.nnp import load_model
from rung.nnp.ani import build_entries
from rung.nnp.testing import water_box


def test_forces_fd_molecule(single64, paracetamol):
    d = paracetamol["paracetamol_pert1"]
    check_forces_fd(single64, d["coordinates"], d["species"], h=1e-4, atol=2e-7, rtol=1e-5)


def test_forces_and_virial_fd_periodic(single64):
    x, z, cell = water_box(2, seed=3)  # 6.2 A box: smaller than 2 Rcr, images of atoms themselves count
    check_forces_fd(single64, x, z, cell, h=1e-4, atol=2e-7, rtol=1e-5, virial=True, n_checks=12)


def test_ensemble_forces_fd(ani1x_file):
    from ase.build import molecule

    pot = load_model(ani1x_file, dtype="float64")
    a = molecule("CH3CONH2")
    check_forces_fd(pot, a.positions, a.numbers, h=1e-4, atol=2e-7, rtol=1e-5)


def _kernel_outputs(x, z, cell, pot, backend):
    from rung.nnp.ani import _kernels

    k = _kernels(backend)
    p = pot.model.aev
    e = build_entries(x, np.zeros(len(z), np.int64), 1, None if cell is None else cell[None], p.Rcr, p.Rca)
    sp = pot.species_index(z)
    G = k.aev_forward(sp, e.start, e.nbr, e.vec, e.dist, e.ang_start, e.ang, p)
    dG = np.random.default_rng(1).normal(size=G.shape)
    g = k.aev_backward(sp, e.start, e.nbr, e.vec, e.dist, e.ang_start, e.ang, p, dG)
    f, w = k.scatter(e.start, e.nbr, e.vec, g, np.zeros(len(z), np.int64), 1)
    return G, g, f, w


@pytest.mark.parametrize("periodic", [False, True])
def test_numba_kernels_match_reference(single64, periodic):
    x, z, cell = water_box(2, seed=5)
    if not periodic:
        cell = None
    check_backend_agreement(_kernel_outputs, x, z, cell, single64, backends=("numpy", "numba"),
                            rtol=1e-11, atol=1e-11)


def test_thread_counts_agree(single64):
    import numba

    x, z, cell = water_box(3, seed=2)
    n0 = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        r1 = single64.evaluate(x, z, cell=cell, virial=True)
        numba.set_num_threads(max(2, n0) if numba.config.NUMBA_NUM_THREADS >= 2 else 1)
        r2 = single64.evaluate(x, z, cell=cell, virial=True)
    finally:
        numba.set_num_threads(n0)
    np.testing.assert_allclose(r1.energy, r2.energy, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r1.forces, r2.forces, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r1.virial, r2.virial, rtol=0, atol=1e-10)


def _mlp_by_hand(model, species, G):
    """Each member's network applied atom by atom from the Layer weights (no packing), and the
    gradient of the mean energy by the chain rule: the oracle of PackedNetworks."""
    M = len(model.members)
    out = np.zeros((M, len(species)))
    dG = np.zeros_like(G)
    for m, nets in enumerate(model.members):
        for i, s in enumerate(species):
            h, ders = G[i], []
            for layer in nets[s].layers:
                zz = layer.weight @ h + layer.bias
                if layer.activation == "celu0.1":
                    h, d = np.where(zz > 0, zz, 0.1 * np.expm1(10 * np.minimum(zz, 0))), np.where(zz > 0, 1.0, np.exp(10 * np.minimum(zz, 0)))
                else:
                    h, d = zz, np.ones_like(zz)
                ders.append(d)
            out[m, i] = h[0]
            g = np.full(1, 1.0 / M)
            for layer, d in zip(reversed(nets[s].layers), reversed(ders)):
                g = (g * d) @ layer.weight
            dG[i] += g
    return out, dG


@pytest.mark.parametrize("block", [None, 2])
def test_packed_networks_match_by_hand(ani1x_file, block):
    from rung.nnp.mlp import PackedNetworks

    model = load_model(ani1x_file, dtype="float64").model
    rng = np.random.default_rng(3)
    species = rng.integers(len(model.species), size=9)
    G = rng.uniform(0, 0.5, size=(9, model.aev.length))
    out, dG = PackedNetworks(model, np.float64, block=block)(species, G)
    ref_out, ref_dG = _mlp_by_hand(model, species, G)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-12)
    np.testing.assert_allclose(dG, ref_dG, rtol=0, atol=1e-12)


def test_open_pairs_numba_reference_and_cell_list():
    from rung.core.neighbors import neighbor_list
    from rung.nnp._kernels import cpu, reference

    rng = np.random.default_rng(4)
    sizes = [1, 7, 0, 30]  # an empty structure and a lone atom included
    bstart = np.concatenate([[0], np.cumsum(sizes)])
    x = rng.uniform(0, 6, size=(bstart[-1], 3))
    got = cpu.open_pairs(x, bstart, 3.5)
    ref = reference.open_pairs(x, bstart, 3.5)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    found = set()
    for b in range(len(sizes)):
        p = neighbor_list(x[bstart[b]:bstart[b + 1]], 3.5, None, half=True)
        found |= {tuple(sorted((int(i) + bstart[b], int(j) + bstart[b]))) for i, j in zip(p.i, p.j)}
    assert found == set(zip(got[0].tolist(), got[1].tolist())) and len(found) > 20


def test_all_pairs_and_cell_list_give_the_same_model(single64, paracetamol, monkeypatch):
    import rung.nnp.ani as ani

    d = paracetamol["paracetamol_pert1"]
    x = np.concatenate([d["coordinates"], d["coordinates"] + 0.3])
    z = np.tile(d["species"], 2)
    b = np.repeat([0, 1], len(d["species"]))
    r = single64.evaluate(x, z, batch=b)
    monkeypatch.setattr(ani, "ALL_PAIRS_MAX_ATOMS", 0)
    rc = single64.evaluate(x, z, batch=b)
    np.testing.assert_allclose(r.energy, rc.energy, rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.forces, rc.forces, rtol=0, atol=1e-10)
