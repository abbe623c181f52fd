"""GPU path: numba.cuda kernels under the CUDA simulator (tiny inputs) against rung.core's neighbour
list and the NumPy reference; the full CuPy pipeline against TorchANI on a real device (marked gpu)."""

import numba
import numpy as np
import pytest

from rung.nnp.ani import build_entries

simulator = pytest.mark.skipif(not numba.config.ENABLE_CUDASIM, reason="needs NUMBA_ENABLE_CUDASIM=1 (set by make test)")

# water, ammonia-like N-H and a carbon: 6 atoms, H/C/N/O, Angstrom
X6 = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0],
               [2.9, 0.1, 0.2], [3.3, 0.9, -0.3], [1.2, -1.3, 0.4]])
Z6 = np.array([8, 1, 1, 7, 1, 6])
# a triclinic cell with face heights below the cutoff (many images), atoms partly outside the cell
CELL = np.array([[4.0, 0.0, 0.0], [1.1, 3.8, 0.0], [-0.7, 0.6, 4.3]])
X5 = np.array([[0.1, 0.2, 0.3], [1.0, 0.1, 0.2], [-0.4, 1.1, 4.5], [2.9, 4.1, -0.5], [5.3, 0.9, 1.0]])


def _core_pairs(x, rc, cell):
    from rung.core.neighbors import canonical, neighbor_list

    return canonical(neighbor_list(x, rc, cell, half=True))


def _half(ent, atoms):
    """The device's directed entries of the centres ``atoms`` as rung.core's half list: sorted [i, j, S]
    rows, atoms numbered within their structure."""
    from rung.core.neighbors import Pairs, canonical

    mine = np.isin(ent.centre, atoms)
    i, j, s = ent.centre[mine], ent.nbr[mine], ent.shift[mine]
    neg = (s[:, 0] < 0) | ((s[:, 0] == 0) & ((s[:, 1] < 0) | ((s[:, 1] == 0) & (s[:, 2] < 0))))
    keep = (i < j) | ((i == j) & ~neg)
    local = np.full(atoms.max() + 1, -1)
    local[atoms] = np.arange(atoms.size)
    return canonical(Pairs(local[i[keep]], local[j[keep]], s[keep]))


@simulator
def test_device_pairs_match_core():
    """Molecule and a small triclinic box, in one batch with interleaved atoms: the same pairs as
    rung.core's cell list, each structure on its own, with vec = x_j - x_i + S @ cell and |vec|."""
    from rung.nnp._kernels import gpu

    rc, rca = 5.2, 3.5
    # structure 0: the molecule, open; two open structures interleaved in the atom order
    batch = np.array([0, 1, 0, 1, 0, 1])
    ent = gpu.neighbour_entries(np, X6, batch, 2, None, rc, rca)
    for b in range(2):
        atoms = np.nonzero(batch == b)[0]
        np.testing.assert_array_equal(_half(ent, atoms), _core_pairs(X6[atoms], rc, None))
    assert np.all(batch[ent.centre] == batch[ent.nbr])
    cells = np.stack([CELL, 1.3 * CELL])
    x = np.concatenate([X5, X5[:3] + 0.2])
    batch = np.array([0, 0, 1, 0, 1, 0, 1, 0])
    ent = gpu.neighbour_entries(np, x, batch, 2, cells, rc, rca)
    for b in range(2):
        atoms = np.nonzero(batch == b)[0]
        core = _core_pairs(x[atoms], rc, cells[b])
        assert np.any(core[:, 0] == core[:, 1])  # images of an atom itself
        np.testing.assert_array_equal(_half(ent, atoms), core)
    # entries grouped by centre, vectors from the unwrapped positions, angular subset
    assert np.all(np.diff(ent.centre) >= 0) and np.all(ent.start == np.searchsorted(ent.centre, np.arange(9)))
    vec = x[ent.nbr] - x[ent.centre] + np.einsum("ea,eab->eb", ent.shift, cells[batch[ent.centre]])
    np.testing.assert_allclose(ent.vec, vec, atol=1e-12)
    np.testing.assert_allclose(ent.dist, np.linalg.norm(vec, axis=1), atol=1e-12)
    assert np.all(ent.dist < rc)
    np.testing.assert_array_equal(ent.ang, np.nonzero(ent.dist < rca)[0])
    np.testing.assert_array_equal(np.diff(ent.ang_start), np.bincount(ent.centre[ent.ang], minlength=8))


@simulator
def test_cuda_kernels_in_simulator(single64):
    """Per-entry radial and per-triple angular kernels, forward and backward, and the scatter against
    the NumPy reference on the device-built entries (molecule) to 1e-10."""
    from rung.nnp._kernels import gpu, reference

    p = single64.model.aev
    ent = gpu.neighbour_entries(np, X6, np.zeros(6, np.int64), 1, None, p.Rcr, p.Rca)
    assert ent.n_triples > 20
    sp = single64.species_index(Z6)
    args = (sp, ent.start, ent.nbr, ent.vec, ent.dist, ent.ang_start, ent.ang, p)
    consts = gpu.kernel_constants(p)
    G = np.zeros((6, p.length))
    gpu.aev_forward(sp, ent, consts, G)
    G_ref = reference.aev_forward(*args)
    assert np.abs(G_ref[:, p.n_species * p.ShfR.size:]).max() > 0.1  # angular terms present
    np.testing.assert_allclose(G, G_ref, rtol=0, atol=1e-10 * np.abs(G_ref).max())
    dG = np.random.default_rng(0).normal(size=G.shape)
    g = np.full((ent.nbr.size, 3), np.nan)  # overwritten by the radial kernel
    gpu.aev_backward(sp, ent, consts, dG, g)
    g_ref = reference.aev_backward(*args, dG)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-10 * np.abs(g_ref).max())
    f = np.zeros((6, 3))
    w = np.zeros((1, 3, 3))
    gpu.scatter(ent.centre, ent.nbr, ent.vec, g_ref, np.zeros(6, np.int64), f, w)
    f_ref, w_ref = reference.scatter(ent.start, ent.nbr, ent.vec, g_ref, np.zeros(6, np.int64), 1)
    np.testing.assert_allclose(f, f_ref, atol=1e-12)
    np.testing.assert_allclose(w, w_ref, atol=1e-12)
    # host entries from rung.nnp.ani (the CPU list) through the same kernels
    e = build_entries(X6, np.zeros(6, np.int64), 1, None, p.Rcr, p.Rca)
    G2 = np.zeros((6, p.length))
    gpu.aev_forward(sp, e, consts, G2)
    np.testing.assert_allclose(G2, G_ref, rtol=0, atol=1e-10 * np.abs(G_ref).max())


@simulator
@pytest.mark.parametrize("zeta", [5.0, 3.5])
def test_cuda_kernels_zeta_not_a_power_of_two(single64, zeta):
    """Zeta other than ANI's 32 (a power of two: squarings), where the shared angle factors take x**zeta:
    the forward and backward kernels against the NumPy reference to 1e-10."""
    import dataclasses

    from rung.nnp._kernels import gpu, reference

    p = dataclasses.replace(single64.model.aev, Zeta=np.array([zeta]))
    ent = gpu.neighbour_entries(np, X6, np.zeros(6, np.int64), 1, None, p.Rcr, p.Rca)
    sp = single64.species_index(Z6)
    args = (sp, ent.start, ent.nbr, ent.vec, ent.dist, ent.ang_start, ent.ang, p)
    consts = gpu.kernel_constants(p)
    assert consts[5] == -1  # nsq: no squarings
    G = np.zeros((6, p.length))
    gpu.aev_forward(sp, ent, consts, G)
    G_ref = reference.aev_forward(*args)
    np.testing.assert_allclose(G, G_ref, rtol=0, atol=1e-10 * np.abs(G_ref).max())
    dG = np.random.default_rng(1).normal(size=G.shape)
    g = np.zeros((ent.nbr.size, 3))
    gpu.aev_backward(sp, ent, consts, dG, g)
    g_ref = reference.aev_backward(*args, dG)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-10 * np.abs(g_ref).max())


@simulator
def test_gpu_pipeline_in_simulator(single64, ani1x_file):
    """ANIPotential with backend "cupy" driven by NumPy arrays under the simulator (neighbours, kernels,
    MLP, scatter all through the GPU engine) equals the numba backend: a periodic cell smaller than the
    cutoff, a batch of two open molecules with interleaved atoms, atoms without neighbours; overlapping
    atoms raise."""
    from rung.nnp import load_model
    from rung.nnp._kernels.gpu import GPUEngine

    pot = load_model(ani1x_file, member=0, dtype="float64", backend="numba")
    pot._gpu, pot.backend = GPUEngine(pot.model, np.float64, xp=np), "cupy"  # the cupy branch, NumPy arrays
    x = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [2.9, 0.1, 0.2], [3.3, 0.9, -0.3]])
    z = np.array([8, 1, 1, 8, 1])
    cell = np.eye(3) * 4.0  # periodic, smaller than the cutoff
    for kw in [dict(cell=cell), dict(batch=np.array([0, 1, 0, 1, 0]))]:
        ref = single64.evaluate(x, z, virial=True, **kw)
        r = pot.evaluate(x, z, virial=True, **kw)
        assert r.backend == "cupy"
        np.testing.assert_allclose(r.energy, ref.energy, rtol=0, atol=1e-10)
        np.testing.assert_allclose(r.forces, ref.forces, atol=1e-10)
        np.testing.assert_allclose(r.virial, ref.virial, atol=1e-10)
    far = np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]])  # no neighbour entries at all
    np.testing.assert_allclose(pot.evaluate(far, [1, 8]).energy, single64.evaluate(far, [1, 8]).energy, atol=1e-12)
    with pytest.raises(ValueError, match="atoms 1 and 3 are 0.05 Angstrom apart"):
        pot.evaluate(np.vstack([x[:3], x[1] + [0.05, 0.0, 0.0]]), z[:4])


@pytest.mark.gpu
def test_cupy_backend_matches_torchani(ani1x_file, paracetamol):
    from rung.core.backend import gpu_available

    if numba.config.ENABLE_CUDASIM or not gpu_available():
        pytest.skip("needs a CUDA device and CuPy (and no simulator)")
    from rung.nnp import load_model

    d = paracetamol["paracetamol_pert1"]
    r = load_model(ani1x_file, dtype="float64", backend="cupy").evaluate(d["coordinates"], d["species"])
    assert abs(r.energy[0] - d["energy_ens"]) < 1e-7
    np.testing.assert_allclose(r.forces, d["forces_ens"], atol=1e-6)


@pytest.mark.gpu
def test_device_pairs_match_core_on_device():
    """The neighbour kernel on a real device: a 648-atom water box, the same pairs as rung.core."""
    from rung.core.backend import gpu_available

    if numba.config.ENABLE_CUDASIM or not gpu_available():
        pytest.skip("needs a CUDA device and CuPy (and no simulator)")
    import cupy

    from rung.nnp._kernels import gpu
    from rung.nnp.testing import water_box

    x, z, cell = water_box(6)
    ent = gpu.neighbour_entries(cupy, x, np.zeros(len(z), np.int64), 1, cell[None], 5.2, 3.5)
    host = gpu.DeviceEntries(*(a.get() if hasattr(a, "get") else a for a in ent))
    np.testing.assert_array_equal(_half(host, np.arange(len(z))), _core_pairs(x, 5.2, cell))
