"""CPU kernels for density-fitted J/K: a numba micro-kernel on the packed tensor, BLAS SYRK, PySCF unpacking.

Two layouts of an aux block of the tensor ``B[L, p, q]`` (symmetric in ``p, q``), chosen by the engine
when it is built (:func:`takes_packed`):

- packed, ``(nblk, nao (nao+1)/2)``: each ``B_L`` as its lower triangle (PySCF's ``cderi`` layout),
  for the micro-kernel path (:func:`contract_block`);
- square, ``(nblk, nao, nao)``: for plain GEMMs (:func:`contract_block_generic`, also the GPU path).

With the factorised density ``D_n = sum_g sign_g F_g F_g^T`` (a group ``g`` is one set of factors:
occupied orbitals scaled by sqrt(occupation), or the positive/negative eigenvectors of ``D_n``):

    X_g[q, L, i] = sum_p B[L,q,p] F_g[p, i]                (half-transform)
    rho[n, L]    = sum_g sign_g sum_qi X_g[q,L,i] F_g[q,i] (fitted density, from X)
    J_n[p, q]   += sum_L rho[n, L] B[L,p,q]
    K_n[q, s]   += sum_g sign_g sum_{Li} X_g[q,L,i] X_g[s,L,i]   (SYRK, BLAS)

On the packed path the half-transform runs on the register-blocked micro-kernel of
:mod:`rung.dft_gpu._kernels._simd` (driver ``fused_block``), which reads each packed element once and
uses it for both ``(q, p)`` and ``(p, q)`` (half the memory of the square tensor, same speed).
J is accumulated on the packed triangle right after each aux function's half-transform, while ``B_L``
is in cache, so each aux function is read from memory once per call for J and K together. What the
micro-kernel does not cover goes through plain GEMMs: J alone (GEMMs on the packed block with the
symmetrised packed density), and densities without a symmetric factorisation (``hermi=0``:
``K_n = sum_L B_L D_n B_L`` on the unpacked block, two GEMMs, cost ~ naux * nao^3).
Reference: Weigend, Phys. Chem. Chem. Phys. 4, 4285 (2002) for the occupied-orbital RI-K.
"""

from __future__ import annotations

import numpy as np
from pyscf import lib

from rung.core.backend import get_array_module

#: Packed tensor and the numba micro-kernel (:mod:`._simd`): True, False (square tensor, BLAS), or
#: None (automatic: on CPUs with AVX-512 for ``nao >= MICROKERNEL_MIN_NAO``). Read when an engine is
#: built (it decides the layout of the cached tensor). The micro-kernel is correct on every CPU but
#: only faster than OpenBLAS with 512-bit vectors, and its module costs the process numba's JIT
#: start-up once, more than the whole J/K time of a small molecule's SCF (timings: BENCHMARKS.md).
USE_MICROKERNEL: bool | None = None
MICROKERNEL_MIN_NAO = 120
#: Aux functions per block on the packed path: a small block makes short SYRKs, a large one a K
#: intermediate ``nao * nblk * nocc`` that spills from L2 to L3 (the sweep: BENCHMARKS.md).
PACKED_BLOCK = 64


def takes_packed(nao: int) -> bool:
    """The engine should keep the tensor packed and contract it with :func:`contract_block`."""
    if USE_MICROKERNEL is not None:
        return USE_MICROKERNEL
    if nao < MICROKERNEL_MIN_NAO:
        return False
    from rung.dft_gpu._kernels import _simd

    return _simd.HAVE_AVX512


def pack_density(dms: np.ndarray) -> np.ndarray:
    """``(D + D^T)`` packed, diagonal halved: ``rho[L] = sum_pq B[L,p,q] D[q,p] = packed(B_L) . this``.

    Parameters
    ----------
    dms : (n_dm, nao, nao) float64

    Returns
    -------
    (n_dm, nao*(nao+1)//2) float64
    """
    nao = dms.shape[-1]
    out = lib.pack_tril(dms + dms.transpose(0, 2, 1))
    diag = np.arange(nao)
    out[:, diag * (diag + 1) // 2 + diag] *= 0.5
    return out


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

    Parameters
    ----------
    block : (nblk, nao*(nao+1)//2) float64 (packed) or (nblk, nao, nao) float64 (square)
        Aux block of the Cholesky-decomposed tensor, Hartree^(1/2). A square block goes to
        :func:`contract_block_generic` (same contract as there); the rest of this list is for a
        packed one.
    dm_flat : (n_dm, nao*(nao+1)//2) float64 or None
        :func:`pack_density` of the density matrices; None when J is not requested.
    factors, groups, direct, vk, j_from_factors :
        As in :func:`contract_block_generic`.
    vj : (n_dm, nao*(nao+1)//2) float64 or None
        J accumulator, packed.
    work : dict, optional
        Kept by the caller over the blocks of one call, so that the work arrays are allocated (and
        their pages faulted in) once per call rather than once per block. It also keeps the call's
        zero-padded copy of ``factors`` (filled at the first block only): start a new dict per call.
    """
    if block.ndim == 3:
        contract_block_generic(block, dm_flat, factors, groups, direct, vj, vk, j_from_factors)
        return
    nblk, npair = block.shape
    nao = (int(np.sqrt(8 * npair + 1)) - 1) // 2
    work = {} if work is None else work
    do_j = False
    if vk is not None and factors is not None and factors.shape[0]:
        from rung.dft_gpu._kernels._simd import fused_block

        ranks = np.array([r1 - r0 for _, r0, r1, _ in groups], dtype=np.int64)
        ldf = 8 * ((int(ranks.max()) + 7) // 8)
        if "f" not in work or work["f"].size != len(groups) * nao * ldf:
            f = work["f"] = _aligned_zeros(len(groups) * nao * ldf)
            f3 = f.reshape(len(groups), nao, ldf)
            for g, (_, r0, r1, _) in enumerate(groups):
                f3[g, :, :r1 - r0] = factors[r0:r1].T
        f = work["f"]
        # row stride of X_g: a multiple of 8 with an odd number of cache lines, so that the rows the
        # micro-kernel revisits spread over all L1 sets (an even stride maps them onto a few sets)
        ldxs = 8 * ((nblk * ranks + 7) // 8)
        ldxs += 8 * ((ldxs // 8 + 1) % 2)
        xoffs = np.concatenate([[0], np.cumsum(nao * ldxs)[:-1]]).astype(np.int64)
        if "x" not in work or work["x"].size < nao * ldxs.sum():
            work["x"] = np.empty(int(nao * ldxs.sum()))
        x = work["x"]
        rho = np.empty((len(groups), nblk))
        do_j = vj is not None and j_from_factors
        fused_block(np.ascontiguousarray(block).reshape(-1), nblk, nao, f, ldf, ranks, xoffs, ldxs,
                    np.array([g[0] for g in groups], dtype=np.int64), np.array([float(g[3]) for g in groups]),
                    x, rho, vj if do_j else np.zeros((0, 1)), do_j)
        for g, (idm, _, _, sign) in enumerate(groups):
            w = x[xoffs[g]:xoffs[g] + nao * ldxs[g]].reshape(nao, ldxs[g])[:, :nblk * ranks[g]]
            if sign > 0:
                vk[idm] += w @ w.T  # NumPy calls SYRK for a @ a.T
            else:
                vk[idm] -= w @ w.T
    if vj is not None and not do_j:
        vj += (dm_flat @ block.T) @ block
    if direct:
        if "square" not in work or work["square"].shape[0] < nblk:
            work["square"] = np.empty((nblk, nao, nao))
        square = unpack_tril(block, nao, out=work["square"][:nblk])
        contract_block_generic(square, None, None, [], direct, None, vk)


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
