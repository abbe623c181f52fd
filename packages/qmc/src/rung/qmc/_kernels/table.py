"""Table-method kernels of :class:`rung.qmc.multideterminant.TableMultiSlater`: NumPy references (the
test oracles) and the numba kernels side by side.

For each string S of one spin (excitation degree k, holes h, particles p, sign) the minor of the table
X_S = T[h, p] (k x k) gives D_S / D_0 = sign_S det X_S. A row replacement (a walker's electron moved, a
quadrature point, a derivative row: a = A0^-1[:, i], w = d - T^T d[ref], rho = d[ref] . a) gives

    D_S' / D_0 = sign_S det [[X_S, a[h]], [-w[p], rho]] = sign_S (rho det X_S + w[p]^T adj(X_S) a[h])

so with det X_S and the adjugate adj(X_S) kept per walker (they change only when a move is accepted),
u_S = adj(X_S) a[h] costs k^2 once per column a (a point batch or the derivative rows of one electron
share it) and each replacement k operations per string. Adjugates by cofactors (no inverse, so a singular
minor is harmless; closed forms for k <= 4).

Summed over the strings with the CI weights this is linear in the replacement row d: the ratio vector
(:func:`ratio_vectors_reference`, through :func:`ratio_gradient`) gives every ratio of one electron as
d . beta. Accepted moves: :func:`accept`
(Sherman-Morrison of A0^-1 and T, the moved spin's minors, psi through the unchanged partial contraction
of the other spin, O(unique strings) per walker; numba only, the NumPy backend of
:class:`~rung.qmc.multideterminant.TableMultiSlater` is its oracle). The partial contractions themselves
(:func:`contract`, O(N_det)) are rebuilt only when the moving spin changes.
"""

from __future__ import annotations

import numba
import numpy as np


def string_minors_reference(t, deg, holes, parts, sign):
    """NumPy reference. t (nw, n, m); deg (ns,) int; holes, parts (ns, kmax) int (padded); sign (ns,).
    Returns sign det X_S (nw, ns) and sign adj(X_S) (nw, ns, kmax, kmax) (zero-padded; adj = 1 for k = 1,
    0 for k = 0)."""
    nw, ns, kmax = t.shape[0], deg.shape[0], holes.shape[1]
    det, adj = np.ones((nw, ns)), np.zeros((nw, ns, kmax, kmax))
    for k in np.unique(deg):
        sel = np.flatnonzero(deg == k)
        if k == 0:
            continue
        x = t[:, holes[sel, :k][:, :, None], parts[sel, :k][:, None, :]]  # (nw, nsel, k, k)
        det[:, sel] = sign[sel] * np.linalg.det(x)
        if k == 1:
            adj[:, sel, 0, 0] = sign[sel]
            continue
        for i in range(k):
            for j in range(k):  # adj[i, j] = (-1)^(i+j) det of x without row j and column i
                minor = np.delete(np.delete(x, j, axis=-2), i, axis=-1)
                adj[:, sel, i, j] = sign[sel] * (-1) ** (i + j) * np.linalg.det(minor)
    return det, adj


def replaced_reference(det, adj, a, w, rho, deg, holes, parts):
    """NumPy reference. det (nw, ns), adj (nw, ns, kmax, kmax) from :func:`string_minors_reference`;
    a (nw, G, n) (one column of A0^-1 per group of replacements), w (nw, G, R, m), rho (nw, G, R)
    -> D_S'/D_0 (nw, G, R, ns)."""
    kmax = holes.shape[1]
    valid = np.arange(kmax)[None, :] < deg[:, None]  # (ns, kmax)
    ah = a[:, :, holes] * valid  # (nw, G, ns, kmax)
    wp = w[..., parts] * valid  # (nw, G, R, ns, kmax)
    out = rho[..., None] * det[:, None, None, :] + np.einsum("wgrsi,wsij,wgsj->wgrs", wp, adj, ah)
    out[..., deg == 0] = rho[..., None]
    return out


@numba.njit(cache=True)
def _det_inplace(b, n):
    """Determinant of b[:n, :n] by Gaussian elimination with partial pivoting (b is overwritten)."""
    det = 1.0
    for c in range(n):
        piv = c
        big = abs(b[c, c])
        for r in range(c + 1, n):
            if abs(b[r, c]) > big:
                big = abs(b[r, c])
                piv = r
        if big == 0.0:
            return 0.0
        if piv != c:
            for j in range(c, n):
                tmp = b[c, j]
                b[c, j] = b[piv, j]
                b[piv, j] = tmp
            det = -det
        det *= b[c, c]
        inv = 1.0 / b[c, c]
        for r in range(c + 1, n):
            f = b[r, c] * inv
            if f != 0.0:
                for j in range(c + 1, n):
                    b[r, j] -= f * b[c, j]
    return det


@numba.njit(cache=True, inline="always")
def _minor_into(b, x, y, ry, j, i, k):
    """b[:k-1, :k-1] = the k x k matrix x without row j and column i, its row ry (a row of the minor; -1:
    none) taken from y instead."""
    r2 = 0
    for row in range(k):
        if row == j:
            continue
        src = y if r2 == ry else x
        c2 = 0
        for col in range(k):
            if col == i:
                continue
            b[r2, c2] = src[row, col]
            c2 += 1
        r2 += 1


@numba.njit(cache=True)
def _walker_minors(t, deg, holes, parts, sign, det, adj, x, b):
    """string_minors of one walker: t (n, m) its table; writes det (ns,) and adj (ns, kmax, kmax) in place;
    x, b (kmax, kmax) scratch."""
    ns = deg.shape[0]
    for s in range(ns):
        k = deg[s]
        if k == 0:
            det[s] = 1.0
            continue
        sg = sign[s]
        for i in range(k):
            for j in range(k):
                x[i, j] = t[holes[s, i], parts[s, j]]
        if k == 1:
            det[s] = sg * x[0, 0]
            adj[s, 0, 0] = sg
        elif k == 2:
            det[s] = sg * (x[0, 0] * x[1, 1] - x[0, 1] * x[1, 0])
            adj[s, 0, 0] = sg * x[1, 1]
            adj[s, 0, 1] = -sg * x[0, 1]
            adj[s, 1, 0] = -sg * x[1, 0]
            adj[s, 1, 1] = sg * x[0, 0]
        elif k == 3:
            c00 = x[1, 1] * x[2, 2] - x[1, 2] * x[2, 1]
            c01 = x[0, 2] * x[2, 1] - x[0, 1] * x[2, 2]
            c02 = x[0, 1] * x[1, 2] - x[0, 2] * x[1, 1]
            c10 = x[1, 2] * x[2, 0] - x[1, 0] * x[2, 2]
            c11 = x[0, 0] * x[2, 2] - x[0, 2] * x[2, 0]
            c12 = x[0, 2] * x[1, 0] - x[0, 0] * x[1, 2]
            c20 = x[1, 0] * x[2, 1] - x[1, 1] * x[2, 0]
            c21 = x[0, 1] * x[2, 0] - x[0, 0] * x[2, 1]
            c22 = x[0, 0] * x[1, 1] - x[0, 1] * x[1, 0]
            adj[s, 0, 0], adj[s, 0, 1], adj[s, 0, 2] = sg * c00, sg * c01, sg * c02
            adj[s, 1, 0], adj[s, 1, 1], adj[s, 1, 2] = sg * c10, sg * c11, sg * c12
            adj[s, 2, 0], adj[s, 2, 1], adj[s, 2, 2] = sg * c20, sg * c21, sg * c22
            det[s] = sg * (x[0, 0] * c00 + x[1, 0] * c01 + x[2, 0] * c02)
        elif k == 4:  # Laplace expansion in the 2 x 2 minors of rows (0, 1) and of rows (2, 3)
            s0 = x[0, 0] * x[1, 1] - x[1, 0] * x[0, 1]
            s1 = x[0, 0] * x[1, 2] - x[1, 0] * x[0, 2]
            s2 = x[0, 0] * x[1, 3] - x[1, 0] * x[0, 3]
            s3 = x[0, 1] * x[1, 2] - x[1, 1] * x[0, 2]
            s4 = x[0, 1] * x[1, 3] - x[1, 1] * x[0, 3]
            s5 = x[0, 2] * x[1, 3] - x[1, 2] * x[0, 3]
            c5 = x[2, 2] * x[3, 3] - x[3, 2] * x[2, 3]
            c4 = x[2, 1] * x[3, 3] - x[3, 1] * x[2, 3]
            c3 = x[2, 1] * x[3, 2] - x[3, 1] * x[2, 2]
            c2 = x[2, 0] * x[3, 3] - x[3, 0] * x[2, 3]
            c1 = x[2, 0] * x[3, 2] - x[3, 0] * x[2, 2]
            c0 = x[2, 0] * x[3, 1] - x[3, 0] * x[2, 1]
            det[s] = sg * (s0 * c5 - s1 * c4 + s2 * c3 + s3 * c2 - s4 * c1 + s5 * c0)
            adj[s, 0, 0] = sg * (x[1, 1] * c5 - x[1, 2] * c4 + x[1, 3] * c3)
            adj[s, 0, 1] = sg * (-x[0, 1] * c5 + x[0, 2] * c4 - x[0, 3] * c3)
            adj[s, 0, 2] = sg * (x[3, 1] * s5 - x[3, 2] * s4 + x[3, 3] * s3)
            adj[s, 0, 3] = sg * (-x[2, 1] * s5 + x[2, 2] * s4 - x[2, 3] * s3)
            adj[s, 1, 0] = sg * (-x[1, 0] * c5 + x[1, 2] * c2 - x[1, 3] * c1)
            adj[s, 1, 1] = sg * (x[0, 0] * c5 - x[0, 2] * c2 + x[0, 3] * c1)
            adj[s, 1, 2] = sg * (-x[3, 0] * s5 + x[3, 2] * s2 - x[3, 3] * s1)
            adj[s, 1, 3] = sg * (x[2, 0] * s5 - x[2, 2] * s2 + x[2, 3] * s1)
            adj[s, 2, 0] = sg * (x[1, 0] * c4 - x[1, 1] * c2 + x[1, 3] * c0)
            adj[s, 2, 1] = sg * (-x[0, 0] * c4 + x[0, 1] * c2 - x[0, 3] * c0)
            adj[s, 2, 2] = sg * (x[3, 0] * s4 - x[3, 1] * s2 + x[3, 3] * s0)
            adj[s, 2, 3] = sg * (-x[2, 0] * s4 + x[2, 1] * s2 - x[2, 3] * s0)
            adj[s, 3, 0] = sg * (-x[1, 0] * c3 + x[1, 1] * c1 - x[1, 2] * c0)
            adj[s, 3, 1] = sg * (x[0, 0] * c3 - x[0, 1] * c1 + x[0, 2] * c0)
            adj[s, 3, 2] = sg * (-x[3, 0] * s3 + x[3, 1] * s1 - x[3, 2] * s0)
            adj[s, 3, 3] = sg * (x[2, 0] * s3 - x[2, 1] * s1 + x[2, 2] * s0)
        else:
            for i in range(k):
                for j in range(k):
                    _minor_into(b, x, x, -1, j, i, k)  # cofactor: x without row j and column i
                    m = _det_inplace(b, k - 1)
                    adj[s, i, j] = sg * m if (i + j) % 2 == 0 else -sg * m
            d = 0.0
            for j in range(k):  # expansion along column 0: det = sum_j x[j, 0] adj[0, j]
                d += x[j, 0] * adj[s, 0, j]
            det[s] = d


@numba.njit(cache=True)
def string_minors(t, deg, holes, parts, sign):
    """numba version of :func:`string_minors_reference`; closed forms for k <= 4."""
    nw, ns, kmax = t.shape[0], deg.shape[0], holes.shape[1]
    det = np.ones((nw, ns))
    adj = np.zeros((nw, ns, kmax, kmax))
    x = np.empty((kmax, kmax))
    b = np.empty((kmax, kmax))
    for iw in range(nw):
        _walker_minors(t[iw], deg, holes, parts, sign, det[iw], adj[iw], x, b)
    return det, adj


@numba.njit(cache=True)
def replaced(det, adj, a, w, rho, deg, holes, parts):
    """numba version of :func:`replaced_reference`: u_S = adj(X_S) a[h] once per group, then k
    operations per string and replacement."""
    nw, ng, nr = rho.shape
    ns, kmax = deg.shape[0], holes.shape[1]
    out = np.empty((nw, ng, nr, ns))
    u = np.empty((ns, kmax))
    for iw in range(nw):
        for g in range(ng):
            for s in range(ns):
                for i in range(deg[s]):
                    acc = 0.0
                    for j in range(deg[s]):
                        acc += adj[iw, s, i, j] * a[iw, g, holes[s, j]]
                    u[s, i] = acc
            for r in range(nr):
                rh = rho[iw, g, r]
                for s in range(ns):
                    v = rh * det[iw, s]
                    for i in range(deg[s]):
                        v += w[iw, g, r, parts[s, i]] * u[s, i]
                    out[iw, g, r, s] = v
    return out


# -- ratio vectors and accepted moves ---------------------------------------------------------------
# psi is linear in the orbital row of any one electron, so with the other electrons fixed
# psi(r_e = r') / psi = sum_j phi_j(r') beta_j: with u_S = adj(X_S) a[h] (a = A0^-1[:, i]) and
# z = sum_S (Y_S / q) sum_l u_S[l] e_{p_l} (the particle columns; Y the other spin contracted with the
# CI coefficients, q = psi / (D0_up D0_dn)), the bordered-determinant formula above summed over the
# strings gives beta = z + (a - T z) on the reference columns. One beta serves the ratio, gradient and
# Laplacian at any position of the electron (value, derivative rows) and the ECP quadrature points.
# z = g a / q with g[p, h] = sum_S Y_S adj_S[i, j] over the strings' (particle p_i, hole h_j) pairs
# (:func:`ratio_gradient`): the string sum does not depend on the electron, so it is done once per walker
# state (after an accepted move, in :func:`accept`) and each electron's beta is an m x n product.


def ratio_vectors_reference(a, t, adj, y, q, deg, holes, parts, ref):
    """The ratio vectors string by string (the NumPy backend, and the oracle of the numba backend's
    :func:`ratio_gradient` path).

    Parameters
    ----------
    a : (nw, G, n) float64 — columns of A0^-1 (one per electron asked for)
    t : (nw, n, m) float64 — the table A0^-1 Phi; adj : (nw, ns, kmax, kmax) — sign adj(X_S) of every string
    y : (nw, ns) float64 — the other spin's string ratios contracted with the CI coefficients
    q : (nw,) float64 — psi / (D0_up D0_dn); deg, holes, parts : the strings' excitations; ref : (n,) int
        the reference's columns

    Returns
    -------
    beta : (nw, G, m) float64 — psi(r_e = r') / psi = sum_j phi_j(r') beta[w, g, j]
    """
    kmax = holes.shape[1]
    valid = np.arange(kmax)[None, :] < deg[:, None]  # (ns, kmax)
    u = np.einsum("wsij,wgsj->wgsi", adj, a[:, :, holes] * valid) * valid * (y / q[:, None])[:, None, :, None]
    z = np.zeros(a.shape[:2] + (t.shape[2],))
    np.add.at(z, (slice(None), slice(None), parts), u)
    beta = z.copy()
    beta[:, :, ref] += a - np.einsum("wjm,wgm->wgj", t, z)
    return beta


def ratio_gradient_reference(adj, y, deg, holes, parts, m, n):
    """NumPy reference of :func:`ratio_gradient`.

    Parameters
    ----------
    adj : (nw, ns, kmax, kmax) float64 — sign adj(X_S) of every string; y : (nw, ns) float64 — the other
        spin's string ratios contracted with the CI coefficients; deg, holes, parts : the strings'
        excitations; m, n : int — the table's columns (orbitals) and rows (electrons)

    Returns
    -------
    g : (nw, m, n) float64 — g[w, p, h] = sum_S y_S sum_{i, j < k_S: p_i = p, h_j = h} adj_S[i, j], so that
        the ratio vector of the electron with A0^-1 column a is z = g a / q plus the reference columns'
        a - T z (:func:`ratio_vectors_reference`)
    """
    kmax = holes.shape[1]
    valid = np.arange(kmax)[None, :] < deg[:, None]  # (ns, kmax)
    wadj = adj * y[:, :, None, None] * valid[:, :, None] * valid[:, None, :]
    g = np.zeros((adj.shape[0], m, n))
    for i in range(kmax):
        for j in range(kmax):
            np.add.at(g, (slice(None), parts[:, i], holes[:, j]), wadj[:, :, i, j])
    return g


@numba.njit(cache=True)
def _walker_ratio_gradient(adj, y, deg, holes, parts, g):
    """:func:`ratio_gradient` of one walker: adj (ns, kmax, kmax), y (ns,) -> g (m, n), overwritten."""
    g[:, :] = 0.0
    for s in range(deg.shape[0]):
        c = y[s]
        for i in range(deg[s]):
            row = g[parts[s, i]]
            for j in range(deg[s]):
                row[holes[s, j]] += c * adj[s, i, j]


@numba.njit(cache=True)
def ratio_gradient(adj, y, deg, holes, parts, m, n):
    """numba version of :func:`ratio_gradient_reference`: k^2 operations per string, once per state of the
    walker (not per electron: every electron's ratio vector is then an m x n product)."""
    nw = adj.shape[0]
    g = np.zeros((nw, m, n))
    for w in range(nw):
        _walker_ratio_gradient(adj[w], y[w], deg, holes, parts, g[w])
    return g


@numba.njit(cache=True)
def _accepted_walker(w, i, v5, mo, inv, t, det, adj, sign0, logdet0, ref, deg, holes, parts, sign, x, b, va, wv, a):
    """The updates of walker w's accepted move that need no other walker (:func:`accept`): its electron
    (row i) moved to orbital rows v5[:, w] (5, m), cached in mo; Sherman-Morrison of A0^-1 (nw, n, n) and
    of T (nw, n, m) in place (T += a w^T / rho, w = d - T^T d[ref], d = v5[0, w]), the string minors of
    walker w (det (nw, ns), adj (nw, ns, kmax, kmax)) and the reference determinant's sign0, logdet0 (nw,)
    by its ratio rho. x, b, va, wv, a: scratch."""
    n, m = inv.shape[1], t.shape[2]
    d = v5[0, w]
    for c in range(5):
        for col in range(m):
            mo[c, w, i, col] = v5[c, w, col]
    rho = 0.0
    for j in range(n):
        a[j] = inv[w, j, i]
        rho += d[ref[j]] * a[j]
    for col in range(m):
        acc = d[col]
        for j in range(n):
            acc -= t[w, j, col] * d[ref[j]]
        wv[col] = acc
    for l in range(n):
        acc = 0.0
        for k in range(n):
            acc += d[ref[k]] * inv[w, k, l]
        va[l] = acc
    va[i] -= 1.0
    for j in range(n):
        f = a[j] / rho
        for col in range(m):
            t[w, j, col] += f * wv[col]
        for l in range(n):
            inv[w, j, l] -= f * va[l]
    _walker_minors(t[w], deg, holes, parts, sign, det[w], adj[w], x, b)
    if rho < 0:
        sign0[w] = -sign0[w]
    logdet0[w] += np.log(np.abs(rho))


def contract_reference(r, rows, cols, coef, nrow):
    """NumPy reference of :func:`contract`: y[w, rows[I]] += coef[I] r[w, cols[I]].

    Parameters
    ----------
    r : (nw, ncol) float64 — one spin's string ratios; rows, cols : (ndet,) int — each determinant's string
        of the other spin (row of y) and of this spin (column of r); coef : (ndet,) float64; nrow : int

    Returns
    -------
    y : (nw, nrow) float64
    """
    from scipy.sparse import coo_matrix

    c = coo_matrix((coef, (rows, cols)), shape=(nrow, r.shape[1])).tocsr()
    return np.asarray(c @ r.T).T


@numba.njit(cache=True)
def contract(r, rows, cols, coef, nrow):
    """The partial CI contraction y[w, a] = sum_{I: rows[I] = a} coef[I] r[w, cols[I]] (nw, nrow), straight
    from the determinants' string indices (no sparse matrix kept): one pass over the determinants, the
    walkers the inner loop (a transposed copy of r), so each determinant is read once for all walkers.
    Arguments as :func:`contract_reference`."""
    nw, ncol = r.shape
    rt = np.empty((ncol, nw))
    for w in range(nw):
        for col in range(ncol):
            rt[col, w] = r[w, col]
    yt = np.zeros((nrow, nw))
    for k in range(coef.shape[0]):
        c = coef[k]
        dst = yt[rows[k]]
        src = rt[cols[k]]
        for w in range(nw):
            dst[w] += c * src[w]
    y = np.empty((nw, nrow))
    for w in range(nw):
        for row in range(nrow):
            y[w, row] = yt[row, w]
    return y


@numba.njit(cache=True)
def accepted_total(mask, det, y_same, q):
    """q[w] = det[w] . y_same[w] (psi / (D0_up D0_dn)) for the walkers in mask (nw,) bool, in place: after
    moves of one spin only its string ratios det (nw, ns) changed, and y_same (nw, ns), the other spin
    contracted with the coefficients, still holds (O(ns) per walker, not O(N_det))."""
    for w in range(det.shape[0]):
        if mask[w]:
            acc = 0.0
            for col in range(det.shape[1]):
                acc += det[w, col] * y_same[w, col]
            q[w] = acc


@numba.njit(cache=True)
def accept(mask, i, v5, mo, inv, t, det, adj, sign0, logdet0, y_same, q, g, ref, deg, holes, parts, sign):
    """Accepted moves of one electron (row i of spin s), every table quantity of spin s updated in place for
    the walkers in ``mask``; the other spin's partial contraction (the strings of spin s contracted with the
    coefficients) is left to the caller, who marks it stale (it is rebuilt when that spin is next needed).

    Parameters
    ----------
    mask : (nw,) bool; i : int — the electron's row; v5 : (5, nw, m) float64 — orbital values, gradients,
        Laplacians at the new positions; mo : (5, nw, n, m) — the cached orbitals of spin s
    inv : (nw, n, n) A0^-1; t : (nw, n, m) T; det : (nw, ns) sign det X_S; adj : (nw, ns, kmax, kmax);
    sign0, logdet0 : (nw,) of the reference determinant of spin s
    y_same : (nw, ns) the other spin contracted with C (unchanged by the move); q : (nw,) psi / (D0_up D0_dn)
        (recomputed, :func:`accepted_total`); g : (nw, m, n) :func:`ratio_gradient` (recomputed)
    ref, deg, holes, parts, sign : spin s's tables
    """
    nw, n, m = t.shape
    kmax = holes.shape[1]
    x, b = np.empty((kmax, kmax)), np.empty((kmax, kmax))
    va, wv, a = np.empty(n), np.empty(m), np.empty(n)
    for w in range(nw):
        if not mask[w]:
            continue
        _accepted_walker(w, i, v5, mo, inv, t, det, adj, sign0, logdet0, ref, deg, holes, parts, sign, x, b, va, wv,
                         a)
        _walker_ratio_gradient(adj[w], y_same[w], deg, holes, parts, g[w])
    accepted_total(mask, det, y_same, q)
