"""GPU kernels: numba.cuda kernels under the CUDA simulator (tiny inputs); the CuPy path on a device."""

import os

import numpy as np
import pytest

from rung.core.backend import gpu_available

sim = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and not gpu_available(),
                         reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA device")


@sim
def test_pt2_terms_kernel_matches_cpu():
    from rung.sci._kernels import gpu
    from rung.sci.pt2 import accumulate_cpu

    rng = np.random.default_rng(0)
    ad, as_, t = rng.normal(size=(3, 7))
    t = np.abs(t)
    hdiag = rng.normal(size=7) + 3.0
    for n_draws in (0, 5):
        terms = gpu.pt2_terms(ad, as_, t, hdiag, -1.0, n_draws)
        assert terms.sum() == pytest.approx(accumulate_cpu(ad, as_, t, hdiag, -1.0, n_draws), rel=1e-12)


@sim
def test_diagonal_kernel_matches_cpu():
    from rung.sci._kernels import cpu, gpu
    from rung.sci.determinants import Layout
    from rung.sci.testing import random_hamiltonian

    ham = random_hamiltonian(4, (2, 1), seed=3)
    lay = Layout(4, 2, 1)
    dets = lay.from_occupations([[0, 1], [1, 3], [0, 2]], [[0], [3], [2]])
    np.testing.assert_allclose(gpu.diagonals(dets, ham.h1, ham.eri), cpu.diagonals(dets, ham.h1, ham.eri), atol=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no CUDA device")
def test_cupy_backend_matches_cpu(h2o_small):
    from rung.sci import cipsi

    cfg = cipsi.CIPSIConfig(max_det=2000)
    a = cipsi.kernel(h2o_small, cfg, backend="numba", log=None)
    b = cipsi.kernel(h2o_small, cfg, backend="cupy", log=None)
    assert b.backend == "cupy"
    assert b.e_var[0] == pytest.approx(a.e_var[0], abs=1e-8)
    assert b.e_pt2 == pytest.approx(a.e_pt2, abs=1e-8)


def test_cupy_backend_without_device_raises(h2o_small):
    from rung.core.backend import BackendUnavailable
    from rung.sci import cipsi

    if gpu_available():
        pytest.skip("a device is present")
    with pytest.raises(BackendUnavailable):
        cipsi.kernel(h2o_small, cipsi.CIPSIConfig(max_det=10), backend="cupy", log=None)
