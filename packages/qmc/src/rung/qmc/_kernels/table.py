"""Table-method kernels of :class:`rung.qmc.multideterminant.TableMultiSlater`: NumPy references (the
test oracles) and the numba kernels side by side.

For each string S of one spin (excitation degree k, holes h, particles p, sign) the minor of the table
X_S = T[h, p] (k x k) gives D_S / D_0 = sign_S det X_S. A row replacement (a walker's electron moved, a
quadrature point, a derivative row: a = A0^-1[:, i], w = d - T^T d[ref], rho = d[ref] . a) gives

    D_S' / D_0 = sign_S det [[X_S, a[h]], [-w[p], rho]] = sign_S (rho det X_S + w[p]^T adj(X_S) a[h])

so with det X_S and the adjugate adj(X_S) kept per walker (they change only when a move is accepted),
u_S = adj(X_S) a[h] costs k^2 once per column a (a point batch or the derivative rows of one electron
share it) and each replacement k operations per string. Adjugates by cofactors (no inverse, so a singular
minor is harmless).
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


@numba.njit(cache=True)
def string_minors(t, deg, holes, parts, sign):
    """numba version of :func:`string_minors_reference`; closed forms for k <= 3."""
    nw, ns, kmax = t.shape[0], deg.shape[0], holes.shape[1]
    det = np.ones((nw, ns))
    adj = np.zeros((nw, ns, kmax, kmax))
    x = np.empty((kmax, kmax))
    b = np.empty((kmax, kmax))
    for iw in range(nw):
        for s in range(ns):
            k = deg[s]
            if k == 0:
                continue
            sg = sign[s]
            for i in range(k):
                for j in range(k):
                    x[i, j] = t[iw, holes[s, i], parts[s, j]]
            if k == 1:
                det[iw, s] = sg * x[0, 0]
                adj[iw, s, 0, 0] = sg
            elif k == 2:
                det[iw, s] = sg * (x[0, 0] * x[1, 1] - x[0, 1] * x[1, 0])
                adj[iw, s, 0, 0] = sg * x[1, 1]
                adj[iw, s, 0, 1] = -sg * x[0, 1]
                adj[iw, s, 1, 0] = -sg * x[1, 0]
                adj[iw, s, 1, 1] = sg * x[0, 0]
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
                adj[iw, s, 0, 0], adj[iw, s, 0, 1], adj[iw, s, 0, 2] = sg * c00, sg * c01, sg * c02
                adj[iw, s, 1, 0], adj[iw, s, 1, 1], adj[iw, s, 1, 2] = sg * c10, sg * c11, sg * c12
                adj[iw, s, 2, 0], adj[iw, s, 2, 1], adj[iw, s, 2, 2] = sg * c20, sg * c21, sg * c22
                det[iw, s] = sg * (x[0, 0] * c00 + x[1, 0] * c01 + x[2, 0] * c02)
            else:
                for i in range(k):
                    for j in range(k):
                        # cofactor: x without row j and column i
                        r2 = 0
                        for r in range(k):
                            if r == j:
                                continue
                            c2 = 0
                            for c in range(k):
                                if c == i:
                                    continue
                                b[r2, c2] = x[r, c]
                                c2 += 1
                            r2 += 1
                        m = _det_inplace(b, k - 1)
                        adj[iw, s, i, j] = sg * m if (i + j) % 2 == 0 else -sg * m
                d = 0.0
                for j in range(k):  # expansion along column 0: det = sum_j x[j, 0] adj[0, j]
                    d += x[j, 0] * adj[iw, s, 0, j]
                det[iw, s] = d
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
