"""Davidson-Liu eigensolver for the lowest roots of a large symmetric matrix.

Block Davidson (E. R. Davidson, J. Comput. Phys. 17, 87 (1975); B. Liu, 1978): project onto a
growing orthonormal subspace V, diagonalize ``V^T A V``, extend V by the preconditioned residuals
``(theta - diag)^-1 (A x - theta x)`` of the unconverged roots, restart from the current Ritz vectors
when V reaches ``max_space``. Works with NumPy or CuPy arrays (``xp`` of the guess).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rung.core.backend import get_array_module, to_host


@dataclass(frozen=True)
class DavidsonResult:
    """``energies`` (nroots,) ascending; ``vectors`` (n, nroots); ``converged`` per root; ``iterations``."""

    energies: np.ndarray
    vectors: object
    converged: np.ndarray
    iterations: int


def davidson(matvec: Callable, diag, guess, *, tol: float = 1e-7, max_iter: int = 200, max_space: int | None = None,
             log: Callable[[str], None] | None = None) -> DavidsonResult:
    """Lowest ``guess.shape[1]`` eigenpairs of the operator ``matvec``.

    Parameters
    ----------
    matvec : callable, (n, k) -> (n, k)
    diag : (n,) float64, the operator's diagonal (preconditioner)
    guess : (n, nroots) float64, independent starting vectors
    tol : float
        Convergence on the residual norm ``|A x - theta x|`` (same unit as the matrix).
    """
    xp = get_array_module(guess)
    n, k = guess.shape
    if n <= k:
        raise ValueError(f"{k} roots asked in a space of {n} determinants")
    max_space = max_space or max(8 * k, 24)
    max_space = min(max_space, n)
    v, _ = xp.linalg.qr(guess)
    av = matvec(v)
    conv = np.zeros(k, bool)
    theta = None
    for it in range(1, max_iter + 1):
        a = v.T @ av
        a = 0.5 * (a + a.T)
        w, s = xp.linalg.eigh(a)
        theta = w[:k]
        x = v @ s[:, :k]
        ax = av @ s[:, :k]
        r = ax - x * theta[None, :]
        rnorm = to_host(xp.linalg.norm(r, axis=0))
        conv = rnorm < tol
        if log:
            log(f"davidson {it}: E0 = {float(theta[0]):.10f}, max residual {rnorm.max():.2e}")
        if conv.all():
            return DavidsonResult(to_host(theta), x, conv, it)
        todo = xp.asarray(np.flatnonzero(~conv))
        denom = theta[todo][None, :] - diag[:, None]
        denom = xp.where(xp.abs(denom) < 1e-8, 1e-8, denom)
        t = r[:, todo] / denom
        if v.shape[1] + todo.shape[0] > max_space:
            v, av = x, ax
        t /= xp.linalg.norm(t, axis=0)[None, :]
        t -= v @ (v.T @ t)
        t -= v @ (v.T @ t)
        norms = xp.linalg.norm(t, axis=0)
        keep = to_host(norms) > 1e-6  # relative to unit-norm corrections: new directions only
        if not keep.any():
            return DavidsonResult(to_host(theta), x, conv, it)
        t, _ = xp.linalg.qr(t[:, xp.asarray(np.flatnonzero(keep))])
        t -= v @ (v.T @ t)
        t /= xp.linalg.norm(t, axis=0)[None, :]
        v = xp.concatenate([v, t], axis=1)
        av = xp.concatenate([av, matvec(t)], axis=1)
    return DavidsonResult(to_host(theta), x, conv, max_iter)


__all__ = ["DavidsonResult", "davidson"]
