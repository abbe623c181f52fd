"""String kernels of the multideterminant nuclear derivatives (:mod:`rung.qmc.multidet_forces`): NumPy
references (the test oracles) and the numba kernels side by side.

For each string S of one spin (excitation degree k, holes h, particles p) with X_S = T[h, p] and
Y_S = T_O[h, p] (k x k minors of the table T and of its derivative T_O along an operator matrix) and
``adj`` the signed adjugate sign_S adj(X_S) of :mod:`rung.qmc._kernels.table` (adj[i, j] =
d det X / d X[j, i]):

    u_S = sign_S tr(adj(X_S) Y_S) = d/de sign_S det(X_S + e Y_S)                (:func:`string_traces`)

and the adjoints scattered back onto the table's entries (h_j, p_i), for weights wr_S, wu_S:

    tg[h_j, p_i] += wu_S adj[i, j]
    ta[h_j, p_i] += wr_S adj[i, j] + wu_S sign_S H_S[i, j]                        (:func:`string_adjoints`)

with H_S = d/de adj(X_S + e Y_S) the mixed adjugate, so that sign_S H_S^T = d u_S / d X_S. Each entry of
adj is a (k-1) x (k-1) determinant, so H[i, j] = (-1)^(i+j) sum_r det(minor of X without row j and column
i, its row r taken from Y): no inverse, a singular minor is harmless. k = 1: H = 0; k = 2: H = adj(Y);
k = 3: mixed 2 x 2 minors; k = 4: y times the 2 x 2 minors of X.
"""

from __future__ import annotations

import numba
import numpy as np

from rung.qmc._kernels.table import _det_inplace, _minor_into


def mixed_adjugate_reference(x, y):
    """NumPy reference: d/de adj(x + e y) at e = 0 for x, y (..., k, k) float64 (adj[i, j] = (-1)^(i+j)
    det of x without row j and column i)."""
    k = x.shape[-1]
    out = np.zeros(x.shape)
    if k < 2:
        return out
    for i in range(k):
        for j in range(k):
            mx = np.delete(np.delete(x, j, axis=-2), i, axis=-1)
            my = np.delete(np.delete(y, j, axis=-2), i, axis=-1)
            for r in range(k - 1):
                m = mx.copy()
                m[..., r, :] = my[..., r, :]
                out[..., i, j] += (-1) ** (i + j) * np.linalg.det(m)
    return out


def string_traces_reference(adj, to, deg, holes, parts):
    """NumPy reference of :func:`string_traces`: adj (nw, ns, kmax, kmax) signed adjugates, to (nw, n, m)
    -> u (nw, ns) float64."""
    kmax = holes.shape[1]
    valid = (np.arange(kmax)[None, :] < deg[:, None]).astype(float)  # (ns, kmax)
    y = to[:, holes[:, :, None], parts[:, None, :]] * valid[:, :, None] * valid[:, None, :]  # (nw, ns, k, k)
    return np.einsum("wsij,wsji->ws", adj, y)


def string_adjoints_reference(t, to, adj, wr, wu, deg, holes, parts, sign):
    """NumPy reference of :func:`string_adjoints`.

    Parameters
    ----------
    t, to : (nw, n, m) float64 — the table T and its derivative T_O
    adj : (nw, ns, kmax, kmax) float64 — signed adjugates sign_S adj(X_S)
    wr, wu : (nw, ns) float64 — weights of d R_S / d X_S and of d u_S / d (X_S, Y_S)
    deg, holes, parts, sign : the strings' excitations (:func:`rung.qmc.multideterminant._string_tables`)

    Returns
    -------
    tg, ta : (nw, n, m) float64 (module docstring)
    """
    nw, n, m = t.shape
    tg, ta = np.zeros((nw, n, m)), np.zeros((nw, n, m))
    for k in np.unique(deg):
        if k == 0:
            continue
        sel = np.flatnonzero(deg == k)
        h, p = holes[sel, :k], parts[sel, :k]  # (nsel, k)
        x = t[:, h[:, :, None], p[:, None, :]]  # (nw, nsel, k, k): x[j, i] = T[h_j, p_i]
        y = to[:, h[:, :, None], p[:, None, :]]
        a = adj[:, sel, :k, :k]
        hm = mixed_adjugate_reference(x, y) * sign[sel][:, None, None]
        g = np.swapaxes(wu[:, sel, None, None] * a, -1, -2)  # (nw, nsel, k(j), k(i))
        b = np.swapaxes(wr[:, sel, None, None] * a + wu[:, sel, None, None] * hm, -1, -2)
        rows, cols = np.broadcast_to(h[:, :, None], x.shape[1:]), np.broadcast_to(p[:, None, :], x.shape[1:])
        for w in range(nw):
            np.add.at(tg[w], (rows, cols), g[w])
            np.add.at(ta[w], (rows, cols), b[w])
    return tg, ta


@numba.njit(cache=True)
def string_traces(adj, to, deg, holes, parts):
    """numba version of :func:`string_traces_reference`: k^2 operations per string."""
    nw, ns = adj.shape[0], deg.shape[0]
    u = np.zeros((nw, ns))
    for iw in range(nw):
        for s in range(ns):
            acc = 0.0
            for i in range(deg[s]):
                for j in range(deg[s]):
                    acc += adj[iw, s, i, j] * to[iw, holes[s, j], parts[s, i]]
            u[iw, s] = acc
    return u


@numba.njit(cache=True)
def _mixed_adjugate(x, y, k, out, b):
    """out[:k, :k] = d/de adj(x + e y) of the k x k matrices x, y, any k (b (kmax, kmax) scratch); the
    general path (k >= 5 in :func:`string_adjoints`)."""
    for i in range(k):
        for j in range(k):
            acc = 0.0
            for r in range(k - 1):  # the minor of x without row j and column i, its row r from y
                _minor_into(b, x, y, r, j, i, k)
                acc += _det_inplace(b, k - 1)
            out[i, j] = acc if (i + j) % 2 == 0 else -acc


@numba.njit(cache=True, inline="always")
def _two_others(a, b):
    """The two indices of 0..3 other than a != b, ascending."""
    lo = 0 if a != 0 and b != 0 else (1 if a != 1 and b != 1 else 2)
    return lo, 6 - a - b - lo


@numba.njit(cache=True)
def _mixed_adjugate4(x, y, out, m2):
    """out = d/de adj(x + e y) of 4 x 4 matrices: each entry is the derivative of a 3 x 3 cofactor,
    sum_(r, c) y[r, c] times the signed 2 x 2 minor of x left without row r and column c; the 36 2 x 2
    minors of x (m2 (4, 4, 4, 4) scratch, rows a < b, columns c < d) are computed once."""
    for a in range(4):
        for b in range(a + 1, 4):
            for c in range(4):
                for d in range(c + 1, 4):
                    m2[a, b, c, d] = x[a, c] * x[b, d] - x[a, d] * x[b, c]
    for i in range(4):  # column left out of the cofactor
        for j in range(4):  # row left out
            acc = 0.0
            pr = 0
            for r in range(4):
                if r == j:
                    continue
                ra, rb = _two_others(j, r)
                pc = 0
                for c in range(4):
                    if c == i:
                        continue
                    ca, cb = _two_others(i, c)
                    term = y[r, c] * m2[ra, rb, ca, cb]
                    acc += term if (pr + pc) % 2 == 0 else -term
                    pc += 1
                pr += 1
            out[i, j] = acc if (i + j) % 2 == 0 else -acc


@numba.njit(cache=True)
def string_adjoints(t, to, adj, wr, wu, deg, holes, parts, sign):
    """numba version of :func:`string_adjoints_reference`: the mixed adjugate inline for k <= 3 (H = 0,
    adj(Y), mixed 2 x 2 minors), from the 2 x 2 minors of X for k = 4 (:func:`_mixed_adjugate4`), k^2 (k-1)
    determinants of order k-1 beyond."""
    nw, n, m = t.shape
    ns, kmax = deg.shape[0], holes.shape[1]
    tg, ta = np.zeros((nw, n, m)), np.zeros((nw, n, m))
    x, y, hm = np.empty((kmax, kmax)), np.empty((kmax, kmax)), np.empty((kmax, kmax))
    b, m2 = np.empty((kmax, kmax)), np.empty((4, 4, 4, 4))
    for iw in range(nw):
        tgw, taw, tw, tow = tg[iw], ta[iw], t[iw], to[iw]
        for s in range(ns):
            k = deg[s]
            if k == 0:
                continue
            cr, cu = wr[iw, s], wu[iw, s]
            if k == 1:  # H = 0
                a = adj[iw, s, 0, 0]
                tgw[holes[s, 0], parts[s, 0]] += cu * a
                taw[holes[s, 0], parts[s, 0]] += cr * a
                continue
            cus = cu * sign[s]
            if k == 2:  # H = adj(Y): H[i, j] = (-1)^(i+j) Y[1-j, 1-i]
                h0, h1, p0, p1 = holes[s, 0], holes[s, 1], parts[s, 0], parts[s, 1]
                a00, a01, a10, a11 = adj[iw, s, 0, 0], adj[iw, s, 0, 1], adj[iw, s, 1, 0], adj[iw, s, 1, 1]
                tgw[h0, p0] += cu * a00
                tgw[h1, p0] += cu * a01
                tgw[h0, p1] += cu * a10
                tgw[h1, p1] += cu * a11
                taw[h0, p0] += cr * a00 + cus * tow[h1, p1]
                taw[h1, p0] += cr * a01 - cus * tow[h0, p1]
                taw[h0, p1] += cr * a10 - cus * tow[h1, p0]
                taw[h1, p1] += cr * a11 + cus * tow[h0, p0]
                continue
            for j in range(k):
                for i in range(k):
                    x[j, i] = tw[holes[s, j], parts[s, i]]
                    y[j, i] = tow[holes[s, j], parts[s, i]]
            if k == 3:  # mixed 2 x 2 minors inline: rows (r0, r1) without j, columns (c0, c1) without i
                for i in range(3):
                    c0, c1 = (1 if i == 0 else 0), (1 if i == 2 else 2)
                    for j in range(3):
                        r0, r1 = (1 if j == 0 else 0), (1 if j == 2 else 2)
                        v = (y[r0, c0] * x[r1, c1] + x[r0, c0] * y[r1, c1] - y[r0, c1] * x[r1, c0]
                             - x[r0, c1] * y[r1, c0])
                        hm[i, j] = v if (i + j) % 2 == 0 else -v
            elif k == 4:
                _mixed_adjugate4(x, y, hm, m2)
            else:
                _mixed_adjugate(x, y, k, hm, b)
            for j in range(k):
                hj = holes[s, j]
                for i in range(k):
                    pi = parts[s, i]
                    a = adj[iw, s, i, j]
                    tgw[hj, pi] += cu * a
                    taw[hj, pi] += cr * a + cus * hm[i, j]
    return tg, ta
