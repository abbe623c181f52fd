"""CPU kernels for density-fitted J/K: BLAS GEMMs through NumPy, tensor unpacking by PySCF's C code.

One aux block ``B[L, p, q]`` (``L`` in the block) is contracted at a time:

    rho[n, L]   = sum_pq B[L,p,q] D_n[p,q]                 (GEMM, B viewed as (nblk, nao*nao))
    J_n[p, q]  += sum_L rho[n, L] B[L,p,q]                 (GEMM)
    X[i, L, q]  = sum_p F[p, i] B[L,q,p]                   (GEMM, all factors of all D_n at once)
    K_n[q, s]  += sign * sum_{iL} X[i,L,q] X[i,L,s]        (SYRK through ``x.T @ x``)

where ``D_n = sum_i sign_i F[:, i] F[:, i]^T`` is the factorised density (occupied orbitals scaled by
sqrt(occupation), or the eigenvectors of ``D_n``). Density matrices without a symmetric factorisation
(``hermi=0``) take the direct form ``K_n = sum_L B_L D_n B_L`` (two GEMMs, cost ~ naux * nao^3).
Reference: Weigend, Phys. Chem. Chem. Phys. 4, 4285 (2002) for the occupied-orbital RI-K.

Everything here is BLAS or PySCF's compiled helpers, so nothing is JIT-compiled: a numba kernel for
the unpacking was measured to cost ~0.8 s of compilation/cache loading per process for no speed gain
(PySCF's OpenMP ``unpack_tril`` is as fast), which is 4% of a glycine SCF.
"""

from __future__ import annotations

import numpy as np
from pyscf import lib

from rung.core.backend import get_array_module


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


def contract_block(block, dm_flat, factors, groups, direct, vj, vk, j_from_factors=False) -> None:
    """Add one aux block's contribution to J and K (in place).

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
    """
    xp = get_array_module(block)  # NumPy here; the GPU kernels call this same code with CuPy arrays
    nblk, nao, _ = block.shape
    flat = block.reshape(nblk, nao * nao)
    x = None
    if vk is not None and factors is not None and factors.shape[0]:
        x = factors @ block.reshape(nblk * nao, nao).T  # (R, nblk*nao): X[i, L, q]
    if vj is not None:
        if j_from_factors:
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
