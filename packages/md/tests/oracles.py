"""Analytic oracles for the MD tests (independent of the code under test).

Harmonic oscillator, P-bead path integral (hbar = 1). With V = 1/2 m w^2 q^2 on every bead and the
springs of the ring polymer (omega_P = P / beta), the orthogonal normal-mode transform q~ = C^T q
makes the sampled Hamiltonian (at beta_P = beta / P) a sum of independent oscillators of frequency
Omega_k^2 = w^2 + omega_k^2, omega_k = 2 omega_P sin(k pi / P). Equipartition per mode at beta_P gives
<q~_k^2> = 1 / (beta_P m Omega_k^2) = P / (beta m Omega_k^2), hence, per Cartesian dimension:

  <V>    = (1/P) sum_j 1/2 m w^2 <q_j^2> = (1/P) sum_k 1/2 m w^2 <q~_k^2> = 1/(2 beta) sum_k w^2 / Omega_k^2
  K_prim = P/(2 beta) - (1/P) sum_k 1/2 m omega_k^2 <q~_k^2> = 1/(2 beta) sum_k (1 - omega_k^2/Omega_k^2)
         = 1/(2 beta) sum_k w^2 / Omega_k^2
  K_cv   = 1/(2 beta) + 1/(2P) m w^2 sum_{k>=1} <q~_k^2>   (sum_j (q_j - qbar)^2 = sum_{k>=1} q~_k^2)
         = 1/(2 beta) sum_k w^2 / Omega_k^2                 (Omega_0 = w)

so all three equal E_P = (1/(2 beta)) sum_{k=0}^{P-1} w^2 / (w^2 + 4 omega_P^2 sin^2(k pi/P)), which tends
to (w/4) coth(beta w / 2) as P -> infinity and is 1/(2 beta) for P = 1.

Finite time step: for the harmonic force the BAOAB / PILE-L step is linear in each normal mode,
z' = M z + g xi with z = (q~_k, p~_k), so the stationary covariance of the discrete scheme solves the
discrete Lyapunov equation S = M S M^T + g g^T; :func:`baoab_mode_variance` builds M and g from the
definition of the splitting (B A O A B) and returns the exact finite-dt <q~_k^2>.
"""

import numpy as np
from scipy.linalg import solve_discrete_lyapunov


def exact_path_integral_energy(w, beta, P):
    """E_P per dimension (= <V> = <K_prim> = <K_cv>) for the P-bead harmonic oscillator, hbar = 1."""
    k = np.arange(P)
    wk = 2.0 * (P / beta) * np.sin(k * np.pi / P)
    return 0.5 / beta * np.sum(w * w / (w * w + wk * wk))


def baoab_mode_variance(w, m, beta, P, dt, gamma0, lam=1.0, cayley=False):
    """Exact stationary <q~_k^2> (P,) of the B A(dt/2) O(dt) A(dt/2) B ring-polymer scheme, harmonic V."""
    kT_P = P / beta
    wk = 2.0 * kT_P * np.sin(np.arange(P) * np.pi / P)
    out = np.empty(P)
    for k in range(P):
        t = dt / 2
        if cayley:
            h = 0.25 * (wk[k] * t) ** 2
            A = np.array([[(1 - h) / (1 + h), t / m / (1 + h)], [-m * wk[k] ** 2 * t / (1 + h), (1 - h) / (1 + h)]])
        elif wk[k] == 0:
            A = np.array([[1.0, t / m], [0.0, 1.0]])
        else:
            c, s = np.cos(wk[k] * t), np.sin(wk[k] * t)
            A = np.array([[c, s / (m * wk[k])], [-m * wk[k] * s, c]])
        B = np.array([[1.0, 0.0], [-m * w * w * dt / 2, 1.0]])
        g = gamma0 if k == 0 else 2 * lam * wk[k]
        c1 = np.exp(-g * dt)
        O = np.diag([1.0, c1])
        noise = np.array([0.0, np.sqrt(m * kT_P * (1 - c1 * c1))])
        M = B @ A @ O @ A @ B
        gvec = B @ A @ noise
        S = solve_discrete_lyapunov(M, np.outer(gvec, gvec))
        out[k] = S[0, 0]
    return out


def estimators_from_mode_variance(var, w, m, beta, P):
    """(<V>, <K_prim>, <K_cv>) per dimension from normal-mode variances <q~_k^2>."""
    wk = 2.0 * (P / beta) * np.sin(np.arange(P) * np.pi / P)
    v = 0.5 * m * w * w * var.sum() / P
    kprim = 0.5 * P / beta - 0.5 * m * np.sum(wk * wk * var) / P
    kcv = 0.5 / beta + 0.5 * m * w * w * var[1:].sum() / P
    return v, kprim, kcv


def block_mean(x, nblocks=20):
    """Mean and blocked standard error of a time series (blocks longer than the correlation time)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x) // nblocks * nblocks
    b = x[len(x) - n:].reshape(nblocks, -1).mean(axis=1)
    return b.mean(), b.std(ddof=1) / np.sqrt(nblocks)


# --- QTB: the discrete scheme with coloured noise, and exact quantum references --------------------------
#
# Harmonic B A O A B with the QTB's O step p' = a1 p + sigma eta_n is linear: z_{n+1} = M z_n + b eta_n
# with z = (x, p) at step boundaries, M = B A O A B and b = B A (0, sigma) (the same matrices as
# baoab_mode_variance); p before O is (A B z_n)_p and p' = a1 p + sigma eta_n. For stationary noise of
# per-sample power spectrum g(w) (white: g = 1) every second moment is an integral over the Nyquist band
# of |response(w)|^2 g(w): (1/pi) int_0^pi dphi |H(e^{i phi})|^2 g(phi / dt), H = (e^{i phi} - M)^{-1} b.


def baoab_harmonic_responses(w0, m, dt, gamma, phi):
    """Responses (x, p_pre, p_post) (len(phi),) complex of harmonic B A O A B to unit noise at e^{i phi}."""
    a1 = np.exp(-gamma * dt)
    B = np.array([[1.0, 0.0], [-m * w0 * w0 * dt / 2, 1.0]])
    A = np.array([[1.0, dt / 2 / m], [0.0, 1.0]])
    O = np.diag([1.0, a1])
    M = B @ A @ O @ A @ B
    b = B @ A @ np.array([0.0, 1.0])
    z = np.exp(1j * np.asarray(phi))
    mats = z[:, None, None] * np.eye(2)[None] - M[None]
    h = np.linalg.solve(mats, np.broadcast_to(b, (len(z), 2))[..., None])[..., 0]  # (nphi, 2): z_n per eta_n
    pre = (A @ B @ h.T)[1]
    return h[:, 0], pre, a1 * pre + 1.0


def qtb_harmonic_moments(w0, m, kT, dt, gamma, g, nphi=200000):
    """Exact stationary <x^2> (Bohr^2) and <p'^2> (post-O, m_e^2 Bohr^2 / au^2) of the harmonic QTB scheme.

    g : callable, per-sample noise spectrum g(w) (w in Hartree); the noise variance per step is
    m kT (1 - a1^2) g. Midpoint rule on a uniform phi grid (the resonance is a few hundred points wide).
    """
    a1 = np.exp(-gamma * dt)
    phi = (np.arange(nphi) + 0.5) * np.pi / nphi
    x, _, post = baoab_harmonic_responses(w0, m, dt, gamma, phi)
    weight = g(phi / dt) * m * kT * (1.0 - a1 * a1)
    return float(np.mean(np.abs(x) ** 2 * weight)), float(np.mean(np.abs(post) ** 2 * weight))


def sinc_dvr_kinetic(x, m):
    """Colbert-Miller sinc-DVR kinetic energy matrix on the uniform grid x (hbar = 1)."""
    dx = x[1] - x[0]
    d = np.arange(len(x))[:, None] - np.arange(len(x))[None, :]
    off = 2.0 / np.where(d == 0, 1, d) ** 2
    return np.where(d == 0, np.pi ** 2 / 3, off) * (-1.0) ** d / (2 * m * dx * dx)


def thermal_dvr(x, m, v, kT):
    """(<x>, <(x - <x>)^2>, <V>) of the quantum canonical ensemble of H = p^2/2m + V(x) on the grid x."""
    e, c = np.linalg.eigh(sinc_dvr_kinetic(x, m) + np.diag(v))
    w = np.exp(-(e - e[0]) / kT)
    rho = (c * c) @ (w / w.sum())  # the diagonal of the density matrix on the grid
    mean = rho @ x
    return float(mean), float(rho @ (x - mean) ** 2), float(rho @ v)


def path_integral_grid(x, m, v, kT, P):
    """(<x>, <(x - <x>)^2>, <V>) of the primitive P-bead path integral (what RPMD samples) on the grid x.

    rho_P = (e^{-beta_P V/2} K e^{-beta_P V/2})^P with the free-particle kernel
    K(x, x') = sqrt(m / (2 pi beta_P)) exp(-m (x - x')^2 / (2 beta_P)) dx, beta_P = 1 / (P kT), hbar = 1;
    every bead has the distribution diag(rho_P) / tr(rho_P).
    """
    bp = 1.0 / (P * kT)
    dx = x[1] - x[0]
    k = np.sqrt(m / (2 * np.pi * bp)) * np.exp(-m * (x[:, None] - x[None, :]) ** 2 / (2 * bp)) * dx
    h = np.exp(-0.5 * bp * (v - v.min()))
    base = h[:, None] * k * h[None, :]
    rho = None
    while P:  # rho_P up to a scale: binary powers, rescaled as they go (only ratios are used)
        if P & 1:
            rho = base if rho is None else rho @ base
            rho = rho / np.abs(rho).max()
        base = base @ base
        base = base / np.abs(base).max()
        P >>= 1
    d = np.diag(rho) / np.trace(rho)
    mean = d @ x
    return float(mean), float(d @ (x - mean) ** 2), float(d @ v)
