"""GPU path: numba.cuda kernels under the CUDA simulator (tiny inputs) against the NumPy reference;
the full CuPy pipeline against TorchANI on a real device (marked gpu)."""

import numba
import numpy as np
import pytest

from rung.nnp.ani import build_entries


@pytest.mark.skipif(not numba.config.ENABLE_CUDASIM, reason="needs NUMBA_ENABLE_CUDASIM=1 (set by make test)")
def test_cuda_kernels_in_simulator(single64):
    from rung.nnp._kernels import gpu, reference

    x = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0],
                  [2.9, 0.1, 0.2], [3.3, 0.9, -0.3], [1.2, -1.3, 0.4]])
    z = np.array([8, 1, 1, 7, 1, 6])
    p = single64.model.aev
    e = build_entries(x, np.zeros(6, np.int64), 1, None, p.Rcr, p.Rca)
    sp = single64.species_index(z)
    args = (sp, e.start, e.nbr, e.vec, e.dist, e.ang_start, e.ang, p)
    G = np.zeros((6, p.length))
    gpu.aev_forward(*args, G)
    np.testing.assert_allclose(G, reference.aev_forward(*args), rtol=1e-12, atol=1e-14)
    dG = np.random.default_rng(0).normal(size=G.shape)
    g = np.zeros((e.nbr.size, 3))
    gpu.aev_backward(*args, dG, g)
    g_ref = reference.aev_backward(*args, dG)
    np.testing.assert_allclose(g, g_ref, rtol=1e-11, atol=1e-12)
    f = np.zeros((6, 3))
    w = np.zeros((1, 3, 3))
    gpu.scatter(e.centre, e.nbr, e.vec, g_ref, np.zeros(6, np.int64), f, w)
    f_ref, w_ref = reference.scatter(e.start, e.nbr, e.vec, g_ref, np.zeros(6, np.int64), 1)
    np.testing.assert_allclose(f, f_ref, atol=1e-12)
    np.testing.assert_allclose(w, w_ref, atol=1e-12)


@pytest.mark.skipif(not numba.config.ENABLE_CUDASIM, reason="needs NUMBA_ENABLE_CUDASIM=1 (set by make test)")
def test_gpu_pipeline_in_simulator(single64):
    """GPUEngine end to end (kernels, MLP, scatter) with NumPy arrays under the simulator."""
    from rung.nnp._kernels.gpu import GPUEngine

    x = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [2.9, 0.1, 0.2], [3.3, 0.9, -0.3]])
    z = np.array([8, 1, 1, 8, 1])
    cell = np.eye(3) * 4.0  # periodic, smaller than the cutoff
    ref = single64.evaluate(x, z, cell=cell, virial=True)
    p = single64.model.aev
    batch = np.zeros(5, np.int64)
    ent = build_entries(x, batch, 1, cell[None], p.Rcr, p.Rca)
    out, f, w = GPUEngine(single64.model, np.float64, xp=np).run(single64.species_index(z), ent, batch, 1, True)
    e = out.sum() + single64.model.self_energies[single64.species_index(z)].sum()
    assert abs(e - ref.energy[0]) < 1e-10
    np.testing.assert_allclose(f, ref.forces, atol=1e-10)
    np.testing.assert_allclose(w, ref.virial, atol=1e-10)


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
