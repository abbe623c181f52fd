"""numba CPU kernels: all-pairs search of small open structures, directed neighbour entries, fused AEV
forward, fused AEV backward, AEV Jacobian, scatter.

Same contract and equations as :mod:`rung.nnp._kernels.reference` (read its docstring). The forward
kernel runs one centre atom per iteration (parallel over centres, no write conflicts): the radial
terms over its entries, then the angular terms over unordered pairs of its angular entries, with the
angular factor separated as ``f1(theta)[z] * f2(r_avg)[a]``, and f2 split exactly into per-neighbour
factors and one exponential per triple (:func:`_neighbour_gauss`). ``Zeta`` a power of two (32 for ANI)
is raised by repeated squaring. The per-term arithmetic (cutoffs, radial Gaussians, angle factors, the
triple's derivative coefficients) is :mod:`rung.nnp._kernels.aev_body`'s, written once for these kernels
and the GPU's and compiled in here with ``inline="always"``. The backward kernel recomputes the same
quantities and writes dE/d(vec[e]) of its own entries only (again no conflicts); the serial scatter
turns those into forces and per-structure virials. Accumulation is in float64 whatever the storage dtype.
The thread count is numba's (``numba.set_num_threads``). The AEV kernels use numba's "numpy" error model
(no zero-division checks in the loops): they divide only by distances (at least the potential's minimum
distance) and by sin(theta) >= sqrt(1 - 0.95^2).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from rung.nnp._kernels import aev_body

_cutoff = numba.njit(inline="always")(aev_body.cutoff)
_cutoff_slope = numba.njit(inline="always")(aev_body.cutoff_slope)
_radial_gauss = numba.njit(inline="always")(aev_body.radial_gauss)
_radial_slope = numba.njit(inline="always")(aev_body.radial_slope)
_cos_angle = numba.njit(inline="always")(aev_body.cos_angle)
_angle_factors = numba.njit(inline="always")(aev_body.angle_factors)
_angle_slopes = numba.njit(inline="always")(aev_body.angle_slopes)
_pair_slopes = numba.njit(inline="always")(aev_body.pair_slopes)


@numba.njit(cache=True)
def directed(n, pi, pj, d, r, rca):
    """Half pairs -> directed entries grouped by centre, plus the angular subset (r < rca).

    pi, pj : (n_pairs,) int64; d : (n_pairs, 3) float64 pair vectors x_j - x_i + S @ cell;
    r : (n_pairs,) float64 lengths. Returns start, centre, nbr, vec, dist, ang_start, ang.
    """
    npair = pi.size
    start = np.zeros(n + 1, np.int64)
    for p in range(npair):
        start[pi[p] + 1] += 1
        start[pj[p] + 1] += 1
    for a in range(n):
        start[a + 1] += start[a]
    fill = start[:-1].copy()
    ne = 2 * npair
    centre = np.empty(ne, np.int64)
    nbr = np.empty(ne, np.int64)
    vec = np.empty((ne, 3), np.float64)
    dist = np.empty(ne, np.float64)
    for p in range(npair):
        i, j = pi[p], pj[p]
        e = fill[i]
        fill[i] += 1
        centre[e], nbr[e], dist[e] = i, j, r[p]
        vec[e, 0], vec[e, 1], vec[e, 2] = d[p, 0], d[p, 1], d[p, 2]
        e = fill[j]
        fill[j] += 1
        centre[e], nbr[e], dist[e] = j, i, r[p]
        vec[e, 0], vec[e, 1], vec[e, 2] = -d[p, 0], -d[p, 1], -d[p, 2]
    ang_start = np.zeros(n + 1, np.int64)
    for e in range(ne):
        if dist[e] < rca:
            ang_start[centre[e] + 1] += 1
    for a in range(n):
        ang_start[a + 1] += ang_start[a]
    ang = np.empty(ang_start[n], np.int64)
    k = 0
    for e in range(ne):  # entries are grouped by centre, so the subset is too
        if dist[e] < rca:
            ang[k] = e
            k += 1
    return start, centre, nbr, vec, dist, ang_start, ang


@numba.njit(cache=True)
def open_pairs(x, bstart, rc):
    """Half pairs of each open structure within rc by testing all pairs (see reference.open_pairs)."""
    nmax = 0
    for b in range(bstart.size - 1):
        m = bstart[b + 1] - bstart[b]
        nmax += m * (m - 1) // 2
    pi = np.empty(nmax, np.int64)
    pj = np.empty(nmax, np.int64)
    d = np.empty((nmax, 3), np.float64)
    r = np.empty(nmax, np.float64)
    k = 0
    for b in range(bstart.size - 1):
        for i in range(bstart[b], bstart[b + 1]):
            for j in range(i + 1, bstart[b + 1]):
                dx, dy, dz = x[j, 0] - x[i, 0], x[j, 1] - x[i, 1], x[j, 2] - x[i, 2]
                rr = math.sqrt(dx * dx + dy * dy + dz * dz)
                if rr < rc:
                    pi[k], pj[k], r[k] = i, j, rr
                    d[k, 0], d[k, 1], d[k, 2] = dx, dy, dz
                    k += 1
    return pi[:k], pj[:k], d[:k], r[:k]


@numba.njit(cache=True, inline="always")
def _neighbour_gauss(r, eta, shf, out):
    """Per-neighbour factors of the angular radial Gaussians, out[a] = exp(-eta r^2/4 + eta A_a r - eta A_a^2/2).

    Exact identity: exp(-eta ((r1 + r2)/2 - A)^2) = P_A(r1) P_A(r2) exp(-eta r1 r2 / 2), so a triple
    needs one exponential instead of one per shift ShfA.
    """
    for a in range(shf.size):
        A = shf[a]
        out[a] = math.exp(eta * (-0.25 * r * r + A * r - 0.5 * A * A))


@numba.njit(cache=True, inline="always")
def _angular_neighbours(dist, ang, a0, m, Rca, etaA, shfA):
    """Of the m angular neighbours ang[a0:a0 + m] of a centre: cutoffs fc, their derivatives dfc/dr and
    the r_avg Gaussian factors P (m, nA) (backward and Jacobian kernels)."""
    fca = np.empty(m)
    dfca = np.empty(m)
    P = np.empty((m, shfA.size))
    for u in range(m):
        fca[u], dfca[u] = _cutoff_slope(dist[ang[a0 + u]], Rca)
        _neighbour_gauss(dist[ang[a0 + u]], etaA, shfA, P[u])
    return fca, dfca, P


def _consts(p):
    """Kernel constants from AEVParams (float64 arrays and scalars)."""
    zeta = float(p.Zeta[0])
    nsq = int(round(np.log2(zeta))) if zeta >= 1 and 2.0 ** round(np.log2(zeta)) == zeta else -1
    pidx = np.empty((p.n_species, p.n_species), np.int64)
    k = 0
    for a in range(p.n_species):
        for b in range(a, p.n_species):
            pidx[a, b] = pidx[b, a] = k
            k += 1
    return (float(p.Rcr), float(p.Rca), float(p.EtaR[0]), np.ascontiguousarray(p.ShfR, np.float64), zeta, nsq,
            np.cos(p.ShfZ), np.sin(p.ShfZ), float(p.EtaA[0]), np.ascontiguousarray(p.ShfA, np.float64), pidx)


def aev_forward(species, start, nbr, vec, dist, ang_start, ang, p, dtype=np.float64):
    """AEVs (n_atoms, p.length) in ``dtype``; arguments as in the reference kernel."""
    out = np.empty((species.size, p.length), dtype)
    _forward(species, start, nbr, vec, dist, ang_start, ang, *_consts(p), out)
    return out


def aev_backward(species, start, nbr, vec, dist, ang_start, ang, p, dG):
    """dE/d(vec[e]) (n_entries, 3) float64 given dE/dG (n_atoms, p.length)."""
    g = np.empty((nbr.size, 3), np.float64)
    _backward(species, start, nbr, vec, dist, ang_start, ang, *_consts(p), np.ascontiguousarray(dG), g)
    return g


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _forward(species, start, nbr, vec, dist, ang_start, ang, Rcr, Rca, etaR, shfR, zeta, nsq, cosZ, sinZ,
             etaA, shfA, pidx, out):
    n = species.size
    nR, nZ, nA = shfR.size, cosZ.size, shfA.size
    L = out.shape[1]
    radlen = pidx.shape[0] * nR
    for i in prange(n):
        acc = np.zeros(L)  # this centre's AEV, accumulated in float64
        for e in range(start[i], start[i + 1]):
            r = dist[e]
            fc = 0.25 * _cutoff(r, Rcr)
            base = species[nbr[e]] * nR
            for k in range(nR):
                _, ex = _radial_gauss(r, shfR[k], etaR)
                acc[base + k] += ex * fc  # ex = 0 for a term left out
        a0, a1 = ang_start[i], ang_start[i + 1]
        m = a1 - a0
        fca = np.empty(m)  # cutoff of each angular neighbour
        P = np.empty((m, nA))  # per-neighbour factors of the r_avg Gaussians (see _neighbour_gauss)
        for u in range(m):
            fca[u] = _cutoff(dist[ang[a0 + u]], Rca)
            _neighbour_gauss(dist[ang[a0 + u]], etaA, shfA, P[u])
        _forward_triples(species, nbr, vec, dist, ang, a0, m, zeta, nsq, cosZ, sinZ, etaA, pidx, radlen, fca, P,
                         np.empty(nZ), acc)
        for k in range(L):
            out[i, k] = acc[k]


# _nrt=False (the triple loops, one call per centre): no reference counting, which numba would otherwise do
# on the array arguments of the inlined aev_body functions at every triple (11% of the forward pass, measured)
@numba.njit(cache=True, _nrt=False, error_model="numpy")
def _forward_triples(species, nbr, vec, dist, ang, a0, m, zeta, nsq, cosZ, sinZ, etaA, pidx, radlen, fca, P, f1, acc):
    """_forward's angular terms of one centre, added into acc (L,) float64; f1 (nZ,) float64 scratch."""
    nZ, nA = cosZ.size, P.shape[1]
    for u in range(m):
        e1 = ang[a0 + u]
        r1 = dist[e1]
        s1 = species[nbr[e1]]
        x1, y1, z1 = vec[e1, 0], vec[e1, 1], vec[e1, 2]
        for w in range(u + 1, m):
            e2 = ang[a0 + w]
            r2 = dist[e2]
            fcp = 2.0 * fca[u] * fca[w]
            c = _cos_angle(x1, y1, z1, vec[e2, 0], vec[e2, 1], vec[e2, 2], r1, r2)
            _angle_factors(c, cosZ, sinZ, zeta, nsq, f1, f1)  # (no slopes: f1 as the x_z scratch)
            X = math.exp(-0.5 * etaA * r1 * r2) * fcp
            base = radlen + pidx[s1, species[nbr[e2]]] * nA * nZ
            for a in range(nA):
                f2 = P[u, a] * P[w, a] * X
                for z in range(nZ):
                    acc[base + a * nZ + z] += f2 * f1[z]


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _backward(species, start, nbr, vec, dist, ang_start, ang, Rcr, Rca, etaR, shfR, zeta, nsq, cosZ, sinZ,
              etaA, shfA, pidx, dG, g):
    n = species.size
    nR, nZ = shfR.size, cosZ.size
    L = dG.shape[1]
    radlen = pidx.shape[0] * nR
    for i in prange(n):
        lam = np.empty(L)  # dE/dG of this centre, float64
        for k in range(L):
            lam[k] = dG[i, k]
        for e in range(start[i], start[i + 1]):
            r = dist[e]
            fc, dfc = _cutoff_slope(r, Rcr)
            base = species[nbr[e]] * nR
            sacc = 0.0
            for k in range(nR):
                t, ex = _radial_gauss(r, shfR[k], etaR)
                if ex != 0.0:  # not a term left out (2% of the backward pass)
                    sacc += lam[base + k] * ex * _radial_slope(t, etaR, fc, dfc)
            sacc *= 0.25 / r
            g[e, 0] = sacc * vec[e, 0]
            g[e, 1] = sacc * vec[e, 1]
            g[e, 2] = sacc * vec[e, 2]
        a0, a1 = ang_start[i], ang_start[i + 1]
        m = a1 - a0
        fca, dfca, P = _angular_neighbours(dist, ang, a0, m, Rca, etaA, shfA)
        _backward_triples(species, nbr, vec, dist, ang, a0, m, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx, radlen, fca,
                          dfca, P, lam, np.empty(nZ), np.empty(nZ), np.empty(nZ), g)


# _nrt=False (the triple loops, one call per centre): no reference counting, which numba would otherwise do
# on the array arguments of the inlined aev_body functions at every triple (see _forward_triples)
@numba.njit(cache=True, _nrt=False, error_model="numpy")
def _backward_triples(species, nbr, vec, dist, ang, a0, m, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx, radlen, fca, dfca,
                      P, lam, xb, f1, df1, g):
    """_backward's angular terms of one centre, added into g (n_entries, 3) float64; xb, f1, df1 (nZ,) scratch."""
    nZ, nA = cosZ.size, shfA.size
    for u in range(m):
        e1 = ang[a0 + u]
        r1 = dist[e1]
        s1 = species[nbr[e1]]
        x1, y1, z1 = vec[e1, 0], vec[e1, 1], vec[e1, 2]
        g1x = 0.0
        g1y = 0.0
        g1z = 0.0
        for w in range(u + 1, m):
            e2 = ang[a0 + w]
            r2 = dist[e2]
            x2, y2, z2 = vec[e2, 0], vec[e2, 1], vec[e2, 2]
            c = _cos_angle(x1, y1, z1, x2, y2, z2, r1, r2)
            s = _angle_factors(c, cosZ, sinZ, zeta, nsq, xb, f1)
            _angle_slopes(c, s, cosZ, sinZ, zeta, xb, f1, df1)
            ravg = 0.5 * (r1 + r2)
            X = math.exp(-0.5 * etaA * r1 * r2)
            base = radlen + pidx[s1, species[nbr[e2]]] * nA * nZ
            A = 0.0
            Bc = 0.0
            Br = 0.0
            for a in range(nA):
                t = ravg - shfA[a]
                f2 = P[u, a] * P[w, a] * X
                M = 0.0
                N = 0.0
                for z in range(nZ):
                    lz = lam[base + a * nZ + z]
                    M += lz * f1[z]
                    N += lz * df1[z]
                A += M * f2
                Br += M * (-2.0 * etaA * t * f2)
                Bc += N * f2
            fc1, fc2 = fca[u], fca[w]
            fcp = fc1 * fc2
            dcos = 2.0 * fcp * Bc
            dravg = 2.0 * fcp * Br
            k1, k2 = _pair_slopes(A, dcos, dravg, c, r1, r2, fc1, fc2, dfca[u], dfca[w])
            h = dcos * 0.95 / (r1 * r2)
            g1x += k1 * x1 + h * x2
            g1y += k1 * y1 + h * y2
            g1z += k1 * z1 + h * z2
            g[e2, 0] += k2 * x2 + h * x1
            g[e2, 1] += k2 * y2 + h * y1
            g[e2, 2] += k2 * z2 + h * z1
        g[e1, 0] += g1x
        g[e1, 1] += g1y
        g[e1, 2] += g1z


def aev_jacobian(species, start, nbr, vec, dist, ang_start, ang, p):
    """dG_i/d(vec[e]) of each entry's centre i, (n_entries, 3, p.length) float64 (see reference.aev_jacobian)."""
    J = np.zeros((nbr.size, 3, p.length), np.float64)
    _jacobian(species, start, nbr, vec, dist, ang_start, ang, *_consts(p), J)
    return J


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _jacobian(species, start, nbr, vec, dist, ang_start, ang, Rcr, Rca, etaR, shfR, zeta, nsq, cosZ, sinZ,
              etaA, shfA, pidx, J):
    # the backward kernel with dE/dG = one unit vector per AEV element: same terms, written instead of contracted
    n = species.size
    nR, nZ = shfR.size, cosZ.size
    radlen = pidx.shape[0] * nR
    for i in prange(n):
        for e in range(start[i], start[i + 1]):
            r = dist[e]
            fc, dfc = _cutoff_slope(r, Rcr)
            base = species[nbr[e]] * nR
            for k in range(nR):
                t, ex = _radial_gauss(r, shfR[k], etaR)
                if ex != 0.0:  # not a term left out
                    d = 0.25 / r * ex * _radial_slope(t, etaR, fc, dfc)
                    for c in range(3):
                        J[e, c, base + k] = d * vec[e, c]
        a0, a1 = ang_start[i], ang_start[i + 1]
        m = a1 - a0
        fca, dfca, P = _angular_neighbours(dist, ang, a0, m, Rca, etaA, shfA)
        _jacobian_triples(species, nbr, vec, dist, ang, a0, m, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx, radlen, fca,
                          dfca, P, np.empty(nZ), np.empty(nZ), np.empty(nZ), J)


# _nrt=False (the triple loops, one call per centre): no reference counting, which numba would otherwise do
# on the array arguments of the inlined aev_body functions at every triple (see _forward_triples)
@numba.njit(cache=True, _nrt=False, error_model="numpy")
def _jacobian_triples(species, nbr, vec, dist, ang, a0, m, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx, radlen, fca, dfca,
                      P, xb, f1, df1, J):
    """_jacobian's angular terms of one centre, added into J (n_entries, 3, L) float64; xb, f1, df1 (nZ,) scratch."""
    nZ, nA = cosZ.size, shfA.size
    for u in range(m):
        e1 = ang[a0 + u]
        r1 = dist[e1]
        s1 = species[nbr[e1]]
        v1 = vec[e1]
        for w in range(u + 1, m):
            e2 = ang[a0 + w]
            r2 = dist[e2]
            v2 = vec[e2]
            c = _cos_angle(v1[0], v1[1], v1[2], v2[0], v2[1], v2[2], r1, r2)
            s = _angle_factors(c, cosZ, sinZ, zeta, nsq, xb, f1)
            _angle_slopes(c, s, cosZ, sinZ, zeta, xb, f1, df1)
            ravg = 0.5 * (r1 + r2)
            X = math.exp(-0.5 * etaA * r1 * r2)
            base = radlen + pidx[s1, species[nbr[e2]]] * nA * nZ
            fc1, fc2 = fca[u], fca[w]
            fcp2 = 2.0 * fc1 * fc2
            hh = 0.95 / (r1 * r2)
            for a in range(nA):
                f2 = P[u, a] * P[w, a] * X
                dr2 = -2.0 * etaA * (ravg - shfA[a]) * f2
                for z in range(nZ):
                    A = f1[z] * f2
                    dcos = fcp2 * df1[z] * f2
                    dravg = fcp2 * f1[z] * dr2
                    k1, k2 = _pair_slopes(A, dcos, dravg, c, r1, r2, fc1, fc2, dfca[u], dfca[w])
                    h = dcos * hh
                    col = base + a * nZ + z
                    for q in range(3):
                        J[e1, q, col] += k1 * v1[q] + h * v2[q]
                        J[e2, q, col] += k2 * v2[q] + h * v1[q]


def scatter(start, nbr, vec, gvec, batch, n_batch):
    """Forces (n_atoms, 3) and per-structure virials (n_batch, 3, 3), float64 (see reference.scatter)."""
    f = np.zeros((start.size - 1, 3))
    w = np.zeros((n_batch, 3, 3))
    _scatter(start, nbr, vec, gvec, batch, f, w)
    return f, w


@numba.njit(cache=True)
def _scatter(start, nbr, vec, g, batch, f, w):
    for i in range(start.size - 1):
        b = batch[i]
        for e in range(start[i], start[i + 1]):
            j = nbr[e]
            for q in range(3):
                f[i, q] += g[e, q]
                f[j, q] -= g[e, q]
                for k in range(3):
                    w[b, q, k] -= g[e, q] * vec[e, k]


@numba.njit(cache=True)
def scatter_columns(centre, nbr, Y, out):
    """Per-entry derivatives to atoms: out[centre[e]] -= Y[e], out[nbr[e]] += Y[e].

    centre, nbr : (n_e,) int64; Y : (n_e, 3, K) float64, d(something of centre)/d(vec[e]) with
    vec[e] = x_nbr - x_centre; out : (n_atoms, 3, K) float64 (any strides), accumulates d/dx.
    """
    for e in range(centre.size):
        i, j = centre[e], nbr[e]
        for q in range(3):
            for k in range(Y.shape[2]):
                out[i, q, k] -= Y[e, q, k]
                out[j, q, k] += Y[e, q, k]
