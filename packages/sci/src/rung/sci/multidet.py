"""The sci rung's ``/MultiDet`` export: active-space determinants to QMCPACK's multideterminant layout.

The file layout, its reader and its validation belong to :mod:`rung.core.multidet` (the contract's one
owner, with the field-by-field comparison against QMCPACK's reader and Quantum Package's writer); this
module only adds the frozen-core orbitals to the sci rung's active-space strings (:func:`from_active`).
"""

from __future__ import annotations

import numpy as np

from rung.core.multidet import MultiDet, popcount, read_multidet, validate, write_multidet


def _shift_left(words: np.ndarray, shift: int) -> np.ndarray:
    """Multi-word left shift of (n, nw) uint64 strings into (n, nw_out) words."""
    n, nw = words.shape
    nw_out = (nw * 64 + shift + 63) // 64
    out = np.zeros((n, nw_out), np.uint64)
    q, r = divmod(shift, 64)
    for k in range(nw):
        out[:, k + q] |= words[:, k] << np.uint64(r)
        if r and k + q + 1 < nw_out:
            out[:, k + q + 1] |= words[:, k] >> np.uint64(64 - r)
    return out


def from_active(dets: np.ndarray, coef: np.ndarray, ncore: int, nstate: int) -> MultiDet:
    """:class:`MultiDet` of active-space determinants with ``ncore`` frozen orbitals below them.

    Parameters
    ----------
    dets : (n, 2, nw) uint64, active-space strings (alpha, beta), bit i of word k = active orbital 64 k + i
    coef : (n,) or (n, nroots) float64, CI coefficients; column 0 is the ground state, the others are
        written as ``Coeff_1`` ... (QMCPACK's ``ext_level``)
    ncore : frozen doubly occupied orbitals, written as set bits 0 .. ncore-1 of both strings
    nstate : orbitals spanned, ``ncore + norb``

    Determinants are ordered by decreasing ``|coef[:, 0]|``.
    """
    nbits = max(1, (nstate + 63) // 64)
    coef = np.asarray(coef, np.float64)
    coef = coef[:, None] if coef.ndim == 1 else coef
    out = []
    core = np.zeros(nbits, np.uint64)
    for p in range(ncore):
        core[p // 64] |= np.uint64(1) << np.uint64(p % 64)
    for s in range(2):
        w = _shift_left(np.ascontiguousarray(dets[:, s, :]), ncore)
        if w.shape[1] < nbits:
            w = np.concatenate([w, np.zeros((w.shape[0], nbits - w.shape[1]), np.uint64)], axis=1)
        if np.any(w[:, nbits:]):
            raise ValueError(f"determinants use orbitals beyond nstate={nstate}")
        out.append(w[:, :nbits] | core[None, :])
    order = np.argsort(-np.abs(coef[:, 0]), kind="stable")
    excited = np.ascontiguousarray(coef[order, 1:].T) if coef.shape[1] > 1 else None
    return MultiDet(out[0][order], out[1][order], coef[order, 0].copy(), int(nstate), excited=excited)


__all__ = ["MultiDet", "from_active", "popcount", "read_multidet", "validate", "write_multidet"]
