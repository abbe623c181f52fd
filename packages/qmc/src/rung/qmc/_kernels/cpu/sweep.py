"""Drift-diffusion sweep, one electron (numba, CPU).

``sweep_propose`` and ``sweep_accept`` replace the ~40 NumPy calls per electron of
:func:`rung.qmc.vmc.sweep` for psi = D_up D_down exp(J) (its generic path is their oracle). Between them
the caller evaluates the orbitals (value, gradient, Laplacian) at the proposed positions (one AO pass,
one GEMM). The determinant keeps A = M^-1 (orbital k, electron n) and the orbitals of every electron
at its current position; a move of electron i (row i of M) with orbital values v is accepted by
Sherman-Morrison in place: A' = A - A[:, i] (v A - e_i)^T / (v . A[:, i]).

``sweep_accept_table`` is the acceptance for the table-method multi-Slater expansion: its ratio vector
beta (psi'/psi = phi(r') . beta) takes the place of A[:, i] in the test, and the accepted walkers'
tables are updated as :func:`rung.qmc._kernels.table.accept` does.
"""

from __future__ import annotations

import numba
import numpy as np

from ..table import _accepted_walker, _walker_ratio_gradient, accepted_total
from .jastrow import jastrow_electron


@numba.njit(cache=True, inline="always")
def _limited(gx, gy, gz, tau):
    """Umrigar-limited drift factor (:func:`rung.qmc.vmc.limit_drift`, a = 1)."""
    av2t = (gx * gx + gy * gy + gz * gz) * tau
    if av2t > 1e-12:
        return (np.sqrt(1.0 + 2.0 * av2t) - 1.0) / av2t
    return 1.0


@numba.njit(cache=True, inline="always")
def _orbital_dot(mo, inv_i, w):
    """sum_k mo[c, w, k] inv_i[w, k] for c = 0..3: the determinant ratio of a one-electron move and the
    ratio times grad log D, walker w; mo (5, nw, norb) orbitals (value, gradient, ...) at the position,
    inv_i (nw, norb) the electron's column of A = M^-1."""
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    t3 = 0.0
    for k in range(inv_i.shape[1]):
        a = inv_i[w, k]
        t0 += mo[0, w, k] * a
        t1 += mo[1, w, k] * a
        t2 += mo[2, w, k] * a
        t3 += mo[3, w, k] * a
    return t0, t1, t2, t3


@numba.njit(cache=True, inline="always")
def _decide(w, new, vbar_old, mo_new, inv_i, x, u, tau, fixed_node, use_j, j_cur, jv, jg):
    """Metropolis-Hastings test of walker w's proposed move (:func:`sweep_accept`): inv_i (nw, norb) the
    ratio vector over the orbitals mo_new (5, nw, norb) at the new position, x (3,) the current position,
    jv (nw, 1), jg (nw, 1, 3) J_e and its gradient at new. Returns (accepted, J_e change, displacement^2)."""
    t0, t1, t2, t3 = _orbital_dot(mo_new, inv_i, w)
    delta = jv[w, 0] - j_cur[w] if use_j else 0.0
    ratio = t0 * np.exp(delta)
    gx = t1 / t0 + jg[w, 0, 0]
    gy = t2 / t0 + jg[w, 0, 1]
    gz = t3 / t0 + jg[w, 0, 2]
    f = _limited(gx, gy, gz, tau)
    fwd = 0.0
    bwd = 0.0
    dd = 0.0
    for c in range(3):
        g = gx if c == 0 else (gy if c == 1 else gz)
        a = new[w, c] - x[c] - tau * vbar_old[w, c]
        b = x[c] - new[w, c] - tau * (g * f)
        fwd += a * a
        bwd += b * b
        dd += (new[w, c] - x[c]) ** 2
    prob = ratio * ratio * np.exp((fwd - bwd) / (2.0 * tau))
    acc = u[w] < prob
    if fixed_node and not ratio > 0:
        acc = False
    return acc, delta, dd


@numba.njit(cache=True, inline="always")
def _move(w, e, new, det_configs, configs, configs_j, use_j, j_logval, delta):
    """Walker w's electron e to new[w] in the three copies of the walkers, J updated."""
    if use_j:
        j_logval[w] += delta
    for c in range(3):
        det_configs[w, e, c] = new[w, c]
        configs[w, e, c] = new[w, c]
        if use_j:
            configs_j[w, e, c] = new[w, c]


@numba.njit(cache=True)
def sweep_propose(x, mo_i, inv_i, step, tau, use_j, configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms,
                  L_ee, L_en, L_eecusp, L_encusp):
    """Drift at the current position and the proposed move of one electron, every walker.

    Parameters
    ----------
    x : (nw, 3) float64, Bohr — current position; mo_i : (5, nw, norb) float64 — cached orbitals (value,
        gradient, Laplacian) of the electron; inv_i : (nw, norb) float64 — its column of A = M^-1
    step : (nw, 3) float64, Bohr — sqrt(tau) x standard normal; tau : float, a.u.
    use_j and the rest: the Jastrow (arguments of :func:`jastrow_electron`; configs_j (nw, ne, 3) Bohr)

    Returns
    -------
    new : (nw, 3) Bohr — x + tau vbar(x) + step; vbar : (nw, 3) Bohr^-1 — limited drift at x;
    j_cur : (nw,) — J_e at x (0 without a Jastrow)
    """
    nw = x.shape[0]
    new = np.empty((nw, 3))
    vbar = np.empty((nw, 3))
    jv, jg = _jastrow_at(x, use_j, configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en,
                         L_eecusp, L_encusp)
    j_cur = jv[:, 0].copy()
    for w in range(nw):
        t0, t1, t2, t3 = _orbital_dot(mo_i, inv_i, w)
        gx = t1 / t0 + jg[w, 0, 0]
        gy = t2 / t0 + jg[w, 0, 1]
        gz = t3 / t0 + jg[w, 0, 2]
        f = _limited(gx, gy, gz, tau)
        vbar[w, 0] = gx * f
        vbar[w, 1] = gy * f
        vbar[w, 2] = gz * f
        for c in range(3):
            new[w, c] = x[w, c] + tau * vbar[w, c] + step[w, c]
    return new, vbar, j_cur


@numba.njit(cache=True)
def _jastrow_at(new, use_j, configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en, L_eecusp,
                L_encusp):
    """J_e (nw, 1) and grad_e J (nw, 1, 3) with electron e at the proposed positions new (nw, 3) Bohr;
    zeros without a Jastrow (use_j False)."""
    nw = new.shape[0]
    jv = np.zeros((nw, 1))
    jg = np.zeros((nw, 1, 3))
    if use_j:
        jv, jg, _ = jastrow_electron(new.reshape(nw, 1, 3), configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp,
                                     atoms, L_ee, L_en, L_eecusp, L_encusp, 1)
    return jv, jg


@numba.njit(cache=True)
def sweep_accept(i, new, vbar_old, mo_new, inv, mo_cache, sign, logdet, det_configs, configs, u, tau, fixed_node,
                 use_j, j_cur, j_logval, configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en,
                 L_eecusp, L_encusp):
    """Metropolis-Hastings test of the proposed moves of electron e (row i of its spin's determinant) and,
    for the accepted walkers, every state update in place.

    Parameters
    ----------
    new : (nw, 3) Bohr; vbar_old : (nw, 3) — from :func:`sweep_propose`; mo_new : (5, nw, norb) orbitals at new
    inv : (nw, norb, n) A = M^-1 of the spin; mo_cache : (5, nw, n, norb) cached orbitals; sign, logdet : (nw,)
        of the whole determinant product; det_configs, configs, configs_j : (nw, ne, 3) the determinant's,
        the driver's and the Jastrow's copies of the walkers (e is moved in all three)
    u : (nw,) uniform random numbers; fixed_node: reject moves that change the sign of psi
    j_cur : (nw,) J_e at the current positions; j_logval : (nw,) J

    Returns
    -------
    ok : (nw,) bool accepted; d2 : (nw,) proposed squared displacements, Bohr^2
    """
    nw = new.shape[0]
    norb = inv.shape[1]
    n = inv.shape[2]
    ok = np.zeros(nw, np.bool_)
    d2 = np.empty(nw)
    jv, jg = _jastrow_at(new, use_j, configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en,
                         L_eecusp, L_encusp)
    vA = np.empty(n)
    col = np.empty(norb)
    inv_i = inv[:, :, i]
    for w in range(nw):
        acc, delta, d2[w] = _decide(w, new, vbar_old, mo_new, inv_i, det_configs[w, e], u, tau, fixed_node, use_j,
                                    j_cur, jv, jg)
        if not acc:
            continue
        ok[w] = True
        # Sherman-Morrison: A' = A - A[:, i] (v A - e_i)^T / ratio_D
        for m in range(n):
            s = 0.0
            for k in range(norb):
                s += mo_new[0, w, k] * inv[w, k, m]
            vA[m] = s
        rd = vA[i]
        vA[i] -= 1.0
        for k in range(norb):
            col[k] = inv[w, k, i]
        for k in range(norb):
            ck = col[k] / rd
            for m in range(n):
                inv[w, k, m] -= ck * vA[m]
        for q in range(5):
            for k in range(norb):
                mo_cache[q, w, i, k] = mo_new[q, w, k]
        if rd < 0:
            sign[w] = -sign[w]
        logdet[w] += np.log(np.abs(rd))
        _move(w, e, new, det_configs, configs, configs_j, use_j, j_logval, delta)
    return ok, d2


@numba.njit(cache=True)
def sweep_accept_table(i, new, vbar_old, mo_new, beta, det_configs, configs, u, tau, fixed_node, use_j, j_cur,
                       j_logval, mo, inv, t, det, adj, sign0, logdet0, y_same, q, g, ref, deg, holes, parts, sign,
                       configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en, L_eecusp, L_encusp):
    """:func:`sweep_accept` for the table-method multi-Slater expansion
    (:class:`rung.qmc.multideterminant.TableMultiSlater`): the same test with its ratio vector beta
    (nw, m) of electron e in place of the inverse's column, then for the accepted walkers the table
    updates of :func:`rung.qmc._kernels.table.accept` (arguments mo ... sign as there, spin of e): no
    O(N_det) work per move, psi from the other spin's unchanged partial contraction y_same.
    Returns ok (nw,) bool, d2 (nw,) Bohr^2."""
    nw = new.shape[0]
    n, m = inv.shape[1], t.shape[2]
    kmax = holes.shape[1]
    x, b = np.empty((kmax, kmax)), np.empty((kmax, kmax))
    va, wv, a = np.empty(n), np.empty(m), np.empty(n)
    ok = np.zeros(nw, np.bool_)
    d2 = np.empty(nw)
    jv, jg = _jastrow_at(new, use_j, configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en,
                         L_eecusp, L_encusp)
    for w in range(nw):
        acc, delta, d2[w] = _decide(w, new, vbar_old, mo_new, beta, det_configs[w, e], u, tau, fixed_node, use_j,
                                    j_cur, jv, jg)
        if not acc:
            continue
        ok[w] = True
        _accepted_walker(w, i, mo_new, mo, inv, t, det, adj, sign0, logdet0, ref, deg, holes, parts, sign, x, b, va,
                         wv, a)
        _walker_ratio_gradient(adj[w], y_same[w], deg, holes, parts, g[w])
        _move(w, e, new, det_configs, configs, configs_j, use_j, j_logval, delta)
    accepted_total(ok, det, y_same, q)
    return ok, d2
