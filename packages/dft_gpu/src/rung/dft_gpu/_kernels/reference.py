"""NumPy reference kernels for density-fitted J and K: the test oracle (slow, written for clarity).

With the Cholesky-decomposed 3-index tensor ``B[L, p, q]`` (``(pq|rs) ~ sum_L B[L,p,q] B[L,r,s]``),
for each density matrix ``D``:

    J[p, q] = sum_L B[L,p,q] sum_rs B[L,r,s] D[s,r]
    K[p, s] = sum_L sum_qr B[L,p,q] D[q,r] B[L,r,s]

These are the definitions, contracted directly (no factorisation of ``D``); the fast kernels in
``cpu.py`` and ``gpu.py`` must agree with them.
"""

from __future__ import annotations

import numpy as np


def unpack_tril(packed: np.ndarray, nao: int) -> np.ndarray:
    """Unpack lower-triangle-packed symmetric matrices (PySCF ``pack_tril`` order).

    Parameters
    ----------
    packed : (n, nao*(nao+1)//2) float64
        Row ``k`` holds the lower triangle of matrix ``k``, row-major (``p >= q``).
    nao : int

    Returns
    -------
    (n, nao, nao) float64, symmetric in the last two axes.
    """
    rows, cols = np.tril_indices(nao)
    out = np.zeros((packed.shape[0], nao, nao))
    out[:, rows, cols] = packed
    out[:, cols, rows] = packed
    return out


def get_jk(cderi: np.ndarray, dms: np.ndarray, with_j: bool = True, with_k: bool = True):
    """J and K for a batch of density matrices from the full (unpacked) 3-index tensor.

    Parameters
    ----------
    cderi : (naux, nao, nao) float64
        Cholesky-decomposed 3-index tensor, Hartree^(1/2) (symmetric in the last two axes).
    dms : (n_dm, nao, nao) float64
        Density matrices in the AO basis (need not be symmetric).

    Returns
    -------
    vj, vk : (n_dm, nao, nao) float64, Hartree, or None where not requested.
    """
    vj = vk = None
    if with_j:
        rho = np.einsum("Lrs,nsr->nL", cderi, dms)
        vj = np.einsum("nL,Lpq->npq", rho, cderi)
    if with_k:
        vk = np.stack([np.einsum("Lpq,Lqs->ps", np.einsum("Lpq,qr->Lpr", cderi, d), cderi) for d in dms])
    return vj, vk
