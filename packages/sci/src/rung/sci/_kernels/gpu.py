"""GPU path (CuPy + numba.cuda), imported only when the ``cupy`` backend is used or in tests.

* ``sparse_matvec``: H x of the Davidson step with the sparse H on the device (cuSPARSE via
  cupyx.scipy.sparse), ``H x = diag x + U x + U^T x``;
* ``pt2_terms`` (numba.cuda): the per-determinant EN-PT2 terms of ``rung.sci.pt2`` (estimator of its
  module docstring), summed on the device by ``accumulate``;
* ``diagonals`` (numba.cuda): <D|H|D> of bit-string determinants, one thread per determinant.

The numba.cuda kernels also run under the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which is how
the tests check them without a device.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

THREADS = 128


def csr_to_device(m):
    import cupyx.scipy.sparse as csp

    return csp.csr_matrix(m)


def sparse_matvec(hs):
    """Device matvec for a :class:`rung.sci.hamiltonian.SparseH`: x (n,) or (n, k) CuPy -> H x."""
    import cupy as cp

    u = csr_to_device(hs.upper)
    ut = csr_to_device(hs.upper.T.tocsr())
    d = cp.asarray(hs.diag)

    def matvec(x):
        dd = d if x.ndim == 1 else d[:, None]
        return dd * x + u @ x + ut @ x

    return matvec


@cuda.jit
def _pt2_terms_kernel(ad, as_, t, hdiag, e0, n_draws, out):
    i = cuda.grid(1)
    if i < out.shape[0]:
        num = ad[i] * ad[i]
        if n_draws > 0:
            num += 2.0 * ad[i] * as_[i] + (as_[i] * as_[i] - t[i] / n_draws) / (1.0 - 1.0 / n_draws)
        out[i] = num / (e0 - hdiag[i])


def pt2_terms(ad, as_, t, hdiag, e0: float, n_draws: int):
    """Per-determinant EN-PT2 terms (u,) float64, Hartree (arrays on host or device)."""
    out = cuda.device_array(ad.shape[0], dtype=np.float64) if _on_device(ad) else np.empty(ad.shape[0])
    blocks = max(1, math.ceil(ad.shape[0] / THREADS))
    _pt2_terms_kernel[blocks, THREADS](ad, as_, t, hdiag, float(e0), int(n_draws), out)
    return out


def _on_device(a) -> bool:
    return type(a).__module__.startswith("cupy")


def accumulate(ad, as_, t, hdiag, e0, n_draws) -> float:
    """Sum of :func:`pt2_terms` on the device (drop-in for ``rung.sci.pt2.accumulate_cpu``)."""
    import cupy as cp

    arrays = [cp.asarray(a) for a in (ad, as_, t, hdiag)]
    return float(cp.asarray(pt2_terms(*arrays, e0, n_draws)).sum())


@cuda.jit
def _diag_kernel(dets, h1, eri, out):
    i = cuda.grid(1)
    if i >= dets.shape[0]:
        return
    norb = h1.shape[0]
    e = 0.0
    for p in range(norb):
        for sp in range(2):
            if (dets[i, sp, p >> 6] >> (p & 63)) & 1:
                e += h1[p, p]
                for q in range(norb):
                    for sq in range(2):
                        if (dets[i, sq, q >> 6] >> (q & 63)) & 1:
                            if sq == sp and q > p:
                                e += eri[p, p, q, q] - eri[p, q, q, p]
                            elif sp == 0 and sq == 1:
                                e += eri[p, p, q, q]
    out[i] = e


def diagonals(dets, h1, eri):
    """<D|H|D> (n,) float64, Hartree, for dets (n, 2, nw) uint64 (host or device arrays)."""
    n = dets.shape[0]
    out = cuda.device_array(n, dtype=np.float64) if _on_device(dets) else np.empty(n)
    _diag_kernel[max(1, math.ceil(n / THREADS)), THREADS](dets.view(np.int64), h1, eri, out)
    return out
