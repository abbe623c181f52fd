"""Ring-polymer normal modes: the orthogonal transform, the free-polymer frequencies and propagators.

A ring polymer of ``P`` beads at inverse temperature beta is sampled with the Hamiltonian (i-PI
convention, every bead at beta_P = beta / P)

    H_P = sum_j [ |p_j|^2 / 2m + 1/2 m omega_P^2 |q_j - q_{j+1}|^2 + V(q_j) ],   omega_P = 1 / (beta_P hbar),

with q_{P+1} = q_1. The real orthogonal matrix ``C`` (P, P) diagonalises the springs: with
``q~_k = sum_j C_jk q_j`` the free part is sum_k |p~_k|^2 / 2m + 1/2 m omega_k^2 |q~_k|^2 with

    omega_k = 2 omega_P sin(k pi / P),   k = 0 .. P-1,

    C_jk = sqrt(1/P)                      k = 0           (the centroid mode, sqrt(P) x centroid)
           sqrt(2/P) cos(2 pi j k / P)    1 <= k < P/2
           sqrt(1/P) (-1)^j               k = P/2         (P even)
           sqrt(2/P) sin(2 pi j k / P)    P/2 < k < P

(M. Ceriotti, M. Parrinello, T. E. Markland, D. E. Manolopoulos, J. Chem. Phys. 133, 124104 (2010);
i-PI ``utils/nmtransform.py``). Each mode evolves freely as a harmonic oscillator, exactly:

    [q, p](t) = [[cos wt, sin wt / (m w)], [-m w sin wt, cos wt]] [q, p](0)          (w = 0: free flight)

or with the Cayley transform of the same generator A = [[0, 1/m], [-m w^2, 0]],

    cay(tA) = (1 - tA/2)^-1 (1 + tA/2) = 1/(1 + w^2 t^2/4) [[1 - w^2 t^2/4, t/m], [-m w^2 t, 1 - w^2 t^2/4]],

which is strongly stable for stiff modes (R. Korol, N. Bou-Rabee, T. F. Miller III, J. Chem. Phys.
151, 124103 (2019)). For P = 1 the transform is the identity (C = [[1.0]]) and both propagators are
the free flight q + t p / m, so ring-polymer integrators reduce exactly to classical ones.

Shapes: bead arrays are (P, n_atoms, 3); normal-mode arrays likewise (mode index first).
"""

from __future__ import annotations

import numpy as np


def normal_mode_matrix(P: int) -> np.ndarray:
    """The orthogonal bead -> normal-mode matrix C, (P, P) float64 (``q~ = C^T q``)."""
    if P < 1:
        raise ValueError(f"number of beads must be >= 1, got {P}")
    j = np.arange(P)[:, None]
    k = np.arange(P)[None, :]
    c = np.empty((P, P))
    c[:, :] = np.sqrt(2.0 / P) * np.where(k < P / 2, np.cos(2 * np.pi * j * k / P), np.sin(2 * np.pi * j * k / P))
    c[:, 0] = np.sqrt(1.0 / P)
    if P % 2 == 0:
        c[:, P // 2] = np.sqrt(1.0 / P) * (-1.0) ** np.arange(P)
    if P == 1:
        c[0, 0] = 1.0
    return c


def normal_mode_frequencies(P: int, omega_P: float) -> np.ndarray:
    """Free ring-polymer frequencies omega_k = 2 omega_P sin(k pi / P), (P,) float64, a.u. of 1/time."""
    return 2.0 * omega_P * np.sin(np.arange(P) * np.pi / P)


def to_normal_modes(x, C, out=None, work=None) -> np.ndarray:
    """Bead coordinates (P, n, 3) -> normal-mode coordinates (P, n, 3): x~_k = sum_j C_jk x_j.

    Evaluated with a real FFT over the bead axis (O(P log P), no BLAS threads): with
    F_k = sum_j x_j exp(-2 pi i j k / P), x~_0 = F_0 / sqrt(P), x~_k = sqrt(2/P) Re F_k (k < P/2),
    x~_{P/2} = F_{P/2} / sqrt(P), x~_k = sqrt(2/P) Im F_{P-k} (k > P/2). ``C`` fixes P.
    out : (P, n, 3) float64 to write into; work : (P // 2 + 1, n, 3) complex128 scratch. Reusing both
    over steps avoids fresh pages for every call (page faults cost more than the FFT at P = 32).
    """
    P = C.shape[0]
    if P == 1:
        return x * C[0, 0] if out is None else np.multiply(x, C[0, 0], out=out)
    from rung.md._kernels.cpu import nm_unpack

    F = np.fft.rfft(x, axis=0, out=work)
    out = np.empty(x.shape) if out is None else out
    # modes 1..(P-1)//2 are the cos modes, the mirrored ones the sin modes (one pass: strided
    # NumPy multiplies on the complex views cost 5x the FFT itself)
    nm_unpack(F, out, np.sqrt(1.0 / P), np.sqrt(2.0 / P))
    return out


def from_normal_modes(xt, C, work=None) -> np.ndarray:
    """Normal-mode coordinates (P, n, 3) -> bead coordinates (P, n, 3): x_j = sum_k C_jk x~_k (inverse real FFT).
    work : (P // 2 + 1, n, 3) complex128 scratch (as in :func:`to_normal_modes`); the result is a new array."""
    P = C.shape[0]
    if P == 1:
        return xt * C[0, 0]
    from rung.md._kernels.cpu import nm_pack

    G = np.empty((P // 2 + 1,) + xt.shape[1:], dtype=np.complex128) if work is None else work
    nm_pack(np.ascontiguousarray(xt, dtype=np.float64), G, np.sqrt(P), np.sqrt(P / 2.0))
    return np.fft.irfft(G, n=P, axis=0)


def free_propagator(omega_k, t: float, kind: str = "exact") -> np.ndarray:
    """Mass-free coefficients of the free ring-polymer step over time ``t`` for every mode.

    Returns a (4, P) array ``(a, b, c, d)`` with ``q' = a q + b p / m`` and ``p' = c m q + d p``.

    Parameters
    ----------
    omega_k : (P,) float64, a.u. of 1/time
    t : float, a.u. of time
    kind : "exact" (the harmonic flow) or "cayley" (Korol, Bou-Rabee and Miller 2019)
    """
    w = np.asarray(omega_k, dtype=np.float64)
    out = np.empty((4, w.size))
    if kind == "exact":
        wt = w * t
        out[0] = np.cos(wt)
        safe = np.where(w > 0, w, 1.0)
        out[1] = np.where(w > 0, np.sin(wt) / safe, t)
        out[2] = -w * np.sin(wt)
        out[3] = np.cos(wt)
    elif kind == "cayley":
        h = 0.25 * (w * t) ** 2
        out[0] = (1.0 - h) / (1.0 + h)
        out[1] = t / (1.0 + h)
        out[2] = -w * w * t / (1.0 + h)
        out[3] = out[0]
    else:
        raise ValueError(f"unknown ring-polymer propagator {kind!r}; use 'exact' or 'cayley'")
    return out
