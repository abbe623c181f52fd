"""GPU kernels for density-fitted J/K (CuPy + cuBLAS); the same contractions as ``cpu.py``.

Imported lazily by :mod:`rung.dft_gpu.jk` only when the ``cupy`` backend is selected. Every array
argument is a CuPy array on the current device; GEMMs go to cuBLAS through ``cupy.matmul``.
"""

from __future__ import annotations

import cupy as cp

from rung.dft_gpu._kernels import cpu

_TRIL_CACHE: dict = {}


def _tril_indices(nao: int):
    if nao not in _TRIL_CACHE:
        rows, cols = cp.tril_indices(nao)
        _TRIL_CACHE[nao] = (rows, cols)
    return _TRIL_CACHE[nao]


def unpack_tril(packed, nao: int, out=None):
    """Unpack lower-triangle-packed symmetric matrices on the device.

    Parameters
    ----------
    packed : (n, nao*(nao+1)//2) float64, CuPy
    nao : int
    out : (n, nao, nao) float64, CuPy, optional

    Returns
    -------
    (n, nao, nao) float64, CuPy
    """
    rows, cols = _tril_indices(nao)
    if out is None:
        out = cp.empty((packed.shape[0], nao, nao))
    out[:, rows, cols] = packed
    out[:, cols, rows] = packed
    return out


# The block contraction is array-generic: the same GEMMs, through cuBLAS for CuPy arrays.
contract_block = cpu.contract_block_generic
