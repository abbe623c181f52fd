"""CPU kernels for density-fitted J/K: a numba half-transform micro-kernel, BLAS SYRK, PySCF unpacking.

One aux block ``B[L, p, q]`` (``L`` in the block) is contracted at a time. With the factorised density
``D_n = sum_g sign_g F_g F_g^T`` (a group ``g`` is one set of factors: occupied orbitals scaled by
sqrt(occupation), or the positive/negative eigenvectors of ``D_n``):

    X_g[q, L, i] = sum_p B[L,q,p] F_g[p, i]                (half-transform, numba micro-kernel)
    rho[n, L]    = sum_g sign_g sum_qi X_g[q,L,i] F_g[q,i] (fitted density, from X)
    J_n[p, q]   += sum_L rho[n, L] B[L,p,q]                (while B_L is still in cache; lower triangle)
    K_n[q, s]   += sum_g sign_g sum_{Li} X_g[q,L,i] X_g[s,L,i]   (SYRK, BLAS)

so each aux function of the tensor is read from memory once per call for J and K together. The
half-transform runs on :mod:`rung.dft_gpu._kernels._simd`'s register-blocked micro-kernel
(driven by :mod:`rung.dft_gpu._kernels._fused`), which reads
the tensor rows in place where OpenBLAS first packs them (aspirin, one AVX-512 core: ~40 GFLOP/s for
OpenBLAS, ~47 for the micro-kernel streaming the tensor from memory, ~59 on a block held in L2). :func:`contract_block_generic` is the same algebra as plain GEMMs on any
array module (NumPy/BLAS, CuPy/cuBLAS); the CPU path falls back to it for what the micro-kernel does
not cover: densities without a symmetric factorisation (``hermi=0``: ``K_n = sum_L B_L D_n B_L``, two
GEMMs, cost ~ naux * nao^3), J from an inexactly factorised density, CPUs without AVX-512.
Reference: Weigend, Phys. Chem. Chem. Phys. 4, 4285 (2002) for the occupied-orbital RI-K.
"""

from __future__ import annotations

import numpy as np
from pyscf import lib

from rung.core.backend import get_array_module

#: Half-transform on the numba micro-kernel (:mod:`._fused`): True, False (BLAS), or None (automatic:
#: on CPUs with AVX-512 for ``nao >= MICROKERNEL_MIN_NAO``). The micro-kernel is correct on every CPU
#: but only faster than OpenBLAS with 512-bit vectors, and its module costs the process numba's JIT
#: start-up once (~0.65 s measured), more than the whole J/K time of a small molecule's SCF.
USE_MICROKERNEL: bool | None = None
MICROKERNEL_MIN_NAO = 120


def _use_microkernel(nao: int) -> bool:
    if USE_MICROKERNEL is not None:
        return USE_MICROKERNEL
    if nao < MICROKERNEL_MIN_NAO:
        return False
    from rung.dft_gpu._kernels import _simd

    return _simd.HAVE_AVX512


def unpack_tril(packed: np.ndarray, nao: int, out: np.ndarray | None = None) -> np.ndarray:
    """Unpack lower-triangle-packed symmetric matrices (PySCF order) into ``out``.

    Parameters
    ----------
    packed : (n, nao*(nao+1)//2) float64
    nao : int
    out : (n, nao, nao) float64, optional
        Destination buffer (C-contiguous); allocated when None.

    Returns
    -------
    (n, nao, nao) float64
    """
    packed = np.ascontiguousarray(packed, dtype=np.float64)
    if packed.shape[1] != nao * (nao + 1) // 2:
        raise ValueError(f"packed rows have {packed.shape[1]} entries, expected {nao * (nao + 1) // 2} for nao={nao}")
    return lib.unpack_tril(packed, filltriu=lib.SYMMETRIC, out=out)


def _aligned_zeros(n: int) -> np.ndarray:
    """Zeroed float64 array of length ``n`` starting on a 64-byte boundary."""
    buf = np.zeros(n + 8)
    off = (-buf.ctypes.data % 64) // 8
    return buf[off:off + n]


def contract_block(block, dm_flat, factors, groups, direct, vj, vk, j_from_factors=False, work=None) -> None:
    """Add one aux block's contribution to J and K (in place), NumPy arrays on the CPU.

    Same contract as :func:`contract_block_generic`; the factorised exchange (and J, when the factors
    reproduce the densities) runs through :func:`rung.dft_gpu._kernels._fused.fused_block`. ``work``:
    a dict the caller keeps over the blocks of one call, so that the work arrays are allocated (and
    their pages faulted in) once per call rather than once per block.
    """
    nblk, nao, _ = block.shape
    if vk is None or factors is None or not factors.shape[0] or not _use_microkernel(nao):
        contract_block_generic(block, dm_flat, factors, groups, direct, vj, vk, j_from_factors)
        return
    from rung.dft_gpu._kernels._fused import fused_block

    n_dm = vk.shape[0]
    work = {} if work is None else work
    ranks = np.array([r1 - r0 for _, r0, r1, _ in groups], dtype=np.int64)
    ldf = 8 * ((int(ranks.max()) + 7) // 8)
    if "f" not in work or work["f"].size != len(groups) * nao * ldf:
        f = work["f"] = _aligned_zeros(len(groups) * nao * ldf)
        f3 = f.reshape(len(groups), nao, ldf)
        for g, (_, r0, r1, _) in enumerate(groups):
            f3[g, :, :r1 - r0] = factors[r0:r1].T
    f = work["f"]
    xoffs = np.concatenate([[0], np.cumsum(nao * nblk * ranks)[:-1]]).astype(np.int64)
    if "x" not in work or work["x"].size < nao * nblk * ranks.sum():
        work["x"] = np.empty(int(nao * nblk * ranks.sum()))
    x = work["x"]
    rho = np.empty((len(groups), nblk))
    do_j = vj is not None and j_from_factors
    vj_lower = np.zeros((n_dm, nao * nao) if do_j else (0, 1))
    fused_block(np.ascontiguousarray(block).reshape(-1), nblk, nao, f, ldf, ranks, xoffs,
                np.array([g[0] for g in groups], dtype=np.int64), np.array([float(g[3]) for g in groups]),
                x, rho, vj_lower, do_j)
    if do_j:
        low = vj_lower.reshape(n_dm, nao, nao)
        vj += (low + low.transpose(0, 2, 1)).reshape(n_dm, nao * nao)
        vj[:, ::nao + 1] -= low.reshape(n_dm, nao * nao)[:, ::nao + 1]
    if vj is not None and not do_j:
        contract_block_generic(block, dm_flat, None, [], [], vj, None)
    for g, (idm, _, _, sign) in enumerate(groups):
        w = x[xoffs[g]:xoffs[g] + nao * nblk * ranks[g]].reshape(nao, nblk * ranks[g])
        if sign > 0:
            vk[idm] += w @ w.T  # NumPy calls SYRK for a @ a.T
        else:
            vk[idm] -= w @ w.T
    if direct:
        contract_block_generic(block, None, None, [], direct, None, vk)


def contract_block_generic(block, dm_flat, factors, groups, direct, vj, vk, j_from_factors=False, work=None) -> None:
    """Add one aux block's contribution to J and K (in place), plain GEMMs on NumPy or CuPy arrays.

    Parameters
    ----------
    block : (nblk, nao, nao) float64, C-contiguous
        Aux block of the Cholesky-decomposed tensor, Hartree^(1/2).
    dm_flat : (n_dm, nao*nao) float64 or None
        Density matrices, flattened; None when J is not requested.
    factors : (R, nao) float64 or None
        Transposed density factors of all matrices, stacked (``F^T``).
    groups : list of (idm, r0, r1, sign)
        Rows ``r0:r1`` of ``factors`` belong to density ``idm`` with sign ``sign`` (+1 or -1).
    direct : list of (idm, D) with D (nao, nao) float64
        Densities with no symmetric factorisation (direct K).
    vj : (n_dm, nao*nao) float64 or None
        J accumulator.
    vk : (n_dm, nao, nao) float64 or None
        K accumulator; factorised contributions fill it fully (``x.T @ x`` is symmetric).
    j_from_factors : bool
        The factors reproduce every density exactly: take ``rho[L] = sum_iq X[i,L,q] F[q,i]`` from
        the K intermediate instead of a second pass over the block.
    work : dict, optional
        Unused here (the CPU path's per-call work arrays).
    """
    xp = get_array_module(block)  # NumPy here; the GPU kernels call this same code with CuPy arrays
    nblk, nao, _ = block.shape
    flat = block.reshape(nblk, nao * nao)
    x = None
    if vk is not None and factors is not None and factors.shape[0]:
        x = factors @ block.reshape(nblk * nao, nao).T  # (R, nblk*nao): X[i, L, q]
    if vj is not None:
        if j_from_factors and x is not None:
            t = xp.matmul(x.reshape(-1, nblk, nao), factors[:, :, None])[:, :, 0]  # (R, nblk)
            rho = xp.zeros((vj.shape[0], nblk))
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
        vk[idm] += xp.tensordot(y, block, axes=([0, 2], [0, 1]))
