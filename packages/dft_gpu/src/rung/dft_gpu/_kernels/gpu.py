"""GPU kernels for density-fitted J/K (CuPy + cuBLAS); the same contractions as ``cpu.py``.

Imported lazily by :mod:`rung.dft_gpu.jk` only when the ``cupy`` backend is selected. Every array
argument is a CuPy array on the current device; GEMMs go to cuBLAS through ``cupy.matmul``.
"""

from __future__ import annotations

import cupy as cp

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


def contract_block(block, dm_flat, factors, groups, direct, vj, vk, j_from_factors=False) -> None:
    """Add one aux block's contribution to J and K in place (see ``cpu.contract_block``; CuPy arrays)."""
    nblk, nao, _ = block.shape
    flat = block.reshape(nblk, nao * nao)
    x = None
    if vk is not None and factors is not None and factors.shape[0]:
        x = factors @ block.reshape(nblk * nao, nao).T  # (R, nblk*nao): X[i, L, q]
    if vj is not None:
        if j_from_factors:
            t = cp.matmul(x.reshape(-1, nblk, nao), factors[:, :, None])[:, :, 0]  # (R, nblk)
            rho = cp.zeros((vj.shape[0], nblk))
            for idm, r0, r1, sign in groups:
                rho[idm] += sign * t[r0:r1].sum(axis=0)
        else:
            rho = dm_flat @ flat.T  # (n_dm, nblk)
        vj += rho @ flat
    if vk is None:
        return
    if x is not None:
        for idm, r0, r1, sign in groups:
            xs = x[r0:r1].reshape((r1 - r0) * nblk, nao)
            if sign > 0:
                vk[idm] += xs.T @ xs
            else:
                vk[idm] -= xs.T @ xs
    for idm, d in direct:
        y = (block.reshape(nblk * nao, nao) @ d).reshape(nblk, nao, nao)  # Y[L, p, r] = (B_L D)[p, r]
        vk[idm] += cp.tensordot(y, block, axes=([0, 2], [0, 1]))
