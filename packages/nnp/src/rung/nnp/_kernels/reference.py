"""NumPy reference AEV kernels (the test oracle): forward and hand-written backward.

Neighbour entries are directed: entry ``e`` belongs to centre atom ``i`` (entries grouped by centre,
``start[i]:start[i+1]``) and points to neighbour ``nbr[e]`` by ``vec[e] = x_nbr - x_i + S @ cell``
(Angstrom), ``dist[e] = |vec[e]| < Rcr``. Angular entries ``ang`` index the entries with
``dist < Rca`` (grouped by centre, ``ang_start``).

Radial feature of centre i, neighbour species s, shift k (TorchANI's definition)::

    G^R[s, k] = sum_j 0.25 exp(-EtaR (r_ij - ShfR_k)^2) fc(r_ij; Rcr),   fc(r) = 0.5 cos(pi r / Rc) + 0.5

Angular feature, unordered neighbour-species pair p, radial shift a, angle shift z, over unordered
neighbour pairs (j, k)::

    c = 0.95 cos(theta_ijk),  theta = acos(c)
    G^A[p, a, z] = sum_{j<k} 2 ((1 + cos(theta - ShfZ_z)) / 2)^Zeta exp(-EtaA ((r_ij + r_ik)/2 - ShfA_a)^2)
                               fc(r_ij; Rca) fc(r_ik; Rca)

(0.95 keeps acos differentiable at 0 and pi, as in TorchANI). The backward pass takes dE/dG and
returns dE/d(vec[e]) for every entry. Reference: J. S. Smith, O. Isayev, A. E. Roitberg,
Chem. Sci. 8, 3192 (2017); X. Gao et al., J. Chem. Inf. Model. 60, 3408 (2020) (TorchANI).
"""

from __future__ import annotations

import numpy as np


def open_pairs(x, bstart, rc):
    """Half pairs (i < j) of atoms of the same open structure closer than ``rc``, by testing all pairs.

    x : (n_atoms, 3) float64, Angstrom; bstart : (n_batch + 1,) int64, structure b holds atoms
    bstart[b]:bstart[b + 1]; rc : float, Angstrom. Returns i, j (n_pairs,) int64, d = x_j - x_i
    (n_pairs, 3) float64 and r = |d| (n_pairs,) float64, ordered by i, then j.
    """
    parts = []
    for b in range(bstart.size - 1):
        i, j = np.triu_indices(int(bstart[b + 1] - bstart[b]), 1)
        parts.append((i + bstart[b], j + bstart[b]))
    i = np.concatenate([q[0] for q in parts] + [np.zeros(0, np.int64)]).astype(np.int64)
    j = np.concatenate([q[1] for q in parts] + [np.zeros(0, np.int64)]).astype(np.int64)
    d = x[j] - x[i]
    r = np.sqrt(np.sum(d * d, axis=1))
    keep = r < rc
    return i[keep], j[keep], d[keep], r[keep]


def _fc(r, rc):
    return 0.5 * np.cos(np.pi * r / rc) + 0.5, -0.5 * np.pi / rc * np.sin(np.pi * r / rc)


def pair_index(n_species: int) -> np.ndarray:
    """(n_species, n_species) int: index of the unordered species pair in the angular block."""
    idx = np.empty((n_species, n_species), np.int64)
    p = 0
    for a in range(n_species):
        for b in range(a, n_species):
            idx[a, b] = idx[b, a] = p
            p += 1
    return idx


def _triples(ang_start, ang):
    """Unordered pairs of angular entries sharing a centre: (centre, e1, e2) arrays."""
    c, p1, p2 = [], [], []
    for i in range(ang_start.size - 1):
        n = ang_start[i + 1] - ang_start[i]
        if n < 2:
            continue
        a, b = np.triu_indices(n, 1)
        c.append(np.full(a.size, i))
        p1.append(ang[ang_start[i] + a])
        p2.append(ang[ang_start[i] + b])
    if not c:
        z = np.zeros(0, np.int64)
        return z, z, z
    return np.concatenate(c), np.concatenate(p1), np.concatenate(p2)


def _centres(start):
    return np.repeat(np.arange(start.size - 1), np.diff(start))


def aev_forward(species, start, nbr, vec, dist, ang_start, ang, p, dtype=np.float64):
    """AEVs, (n_atoms, p.length) in ``dtype``.

    Parameters
    ----------
    species : (n_atoms,) int, model species index
    start : (n_atoms + 1,) int; nbr : (n_entries,) int; vec : (n_entries, 3) float, Angstrom
    dist : (n_entries,) float, Angstrom; ang_start : (n_atoms + 1,) int; ang : (n_ang,) int
    p : AEVParams
    dtype : storage dtype of the result (computed in float64)
    """
    n, S = species.size, p.n_species
    nR, nA, nZ = p.ShfR.size, p.ShfA.size, p.ShfZ.size
    centre = _centres(start)
    fc, _ = _fc(dist, p.Rcr)
    rad = 0.25 * np.exp(-p.EtaR[0] * (dist[:, None] - p.ShfR) ** 2) * fc[:, None]  # (E, nR)
    GR = np.zeros((n, S, nR))
    np.add.at(GR, (centre, species[nbr]), rad)
    c, e1, e2 = _triples(ang_start, ang)
    GA = np.zeros((n, p.n_pairs, nA, nZ))
    if c.size:
        t = _angular_terms(vec, dist, e1, e2, p)
        pidx = pair_index(S)[species[nbr[e1]], species[nbr[e2]]]
        np.add.at(GA, (c, pidx), t["term"])
    return np.concatenate([GR.reshape(n, -1), GA.reshape(n, -1)], axis=1).astype(dtype)


def _angular_terms(vec, dist, e1, e2, p):
    v1, v2, r1, r2 = vec[e1].astype(np.float64), vec[e2].astype(np.float64), dist[e1], dist[e2]
    cos = 0.95 * np.sum(v1 * v2, axis=1) / (r1 * r2)
    sin = np.sqrt(1.0 - cos * cos)
    cz, sz = np.cos(p.ShfZ), np.sin(p.ShfZ)
    x = 0.5 * (1.0 + cos[:, None] * cz + sin[:, None] * sz)  # (T, nZ)
    zeta = p.Zeta[0]
    f1 = x**zeta
    df1 = zeta * x ** (zeta - 1) * 0.5 * (cz - sz * (cos / sin)[:, None])  # d f1 / d cos
    ravg = 0.5 * (r1 + r2)
    f2 = np.exp(-p.EtaA[0] * (ravg[:, None] - p.ShfA) ** 2)  # (T, nA)
    df2 = -2.0 * p.EtaA[0] * (ravg[:, None] - p.ShfA) * f2
    fc1, dfc1 = _fc(r1, p.Rca)
    fc2, dfc2 = _fc(r2, p.Rca)
    fcp = fc1 * fc2
    term = 2.0 * f2[:, :, None] * f1[:, None, :] * fcp[:, None, None]  # (T, nA, nZ)
    return dict(v1=v1, v2=v2, r1=r1, r2=r2, cos=cos, f1=f1, df1=df1, f2=f2, df2=df2, fc1=fc1, fc2=fc2,
                dfc1=dfc1, dfc2=dfc2, fcp=fcp, term=term)


def aev_backward(species, start, nbr, vec, dist, ang_start, ang, p, dG):
    """dE/d(vec[e]) for every entry, (n_entries, 3), given dE/dG (n_atoms, p.length)."""
    S = p.n_species
    nR, nA, nZ = p.ShfR.size, p.ShfA.size, p.ShfZ.size
    dG = np.asarray(dG, dtype=np.float64)
    n = species.size
    centre = _centres(start)
    fc, dfc = _fc(dist, p.Rcr)
    ex = 0.25 * np.exp(-p.EtaR[0] * (dist[:, None] - p.ShfR) ** 2)
    drad = ex * (-2.0 * p.EtaR[0] * (dist[:, None] - p.ShfR) * fc[:, None] + dfc[:, None])  # (E, nR)
    lam = dG[:, : S * nR].reshape(n, S, nR)[centre, species[nbr]]
    v = vec.astype(np.float64)
    g = (np.sum(lam * drad, axis=1) / dist)[:, None] * v
    c, e1, e2 = _triples(ang_start, ang)
    if c.size:
        t = _angular_terms(vec, dist, e1, e2, p)
        pidx = pair_index(S)[species[nbr[e1]], species[nbr[e2]]]
        lamA = dG[:, S * nR:].reshape(n, p.n_pairs, nA, nZ)[c, pidx]  # (T, nA, nZ)
        A = np.einsum("taz,ta,tz->t", lamA, t["f2"], t["f1"])
        dcos = 2.0 * t["fcp"] * np.einsum("taz,ta,tz->t", lamA, t["f2"], t["df1"])
        dravg = 2.0 * t["fcp"] * np.einsum("taz,ta,tz->t", lamA, t["df2"], t["f1"])
        dr1 = 2.0 * A * t["dfc1"] * t["fc2"] + 0.5 * dravg
        dr2 = 2.0 * A * t["fc1"] * t["dfc2"] + 0.5 * dravg
        v1, v2, r1, r2, cs = t["v1"], t["v2"], t["r1"], t["r2"], t["cos"]
        g1 = (dr1 / r1)[:, None] * v1 + dcos[:, None] * (0.95 * v2 / (r1 * r2)[:, None] - (cs / r1**2)[:, None] * v1)
        g2 = (dr2 / r2)[:, None] * v2 + dcos[:, None] * (0.95 * v1 / (r1 * r2)[:, None] - (cs / r2**2)[:, None] * v2)
        np.add.at(g, e1, g1)
        np.add.at(g, e2, g2)
    return g


def aev_jacobian(species, start, nbr, vec, dist, ang_start, ang, p):
    """dG_i/d(vec[e]) for the centre i of every entry e, (n_entries, 3, p.length) float64.

    The backward pass is linear in dE/dG and each entry's result depends on its own centre's dE/dG
    only, so seeding every atom with the same unit vector gives one AEV element's column for all
    entries at once (``p.length`` backward passes).
    """
    J = np.empty((nbr.size, 3, p.length))
    seed = np.zeros((species.size, p.length))
    for k in range(p.length):
        seed[:, k] = 1.0
        J[:, :, k] = aev_backward(species, start, nbr, vec, dist, ang_start, ang, p, seed)
        seed[:, k] = 0.0
    return J


def scatter(start, nbr, vec, gvec, batch, n_batch):
    """Forces (n_atoms, 3) = -dE/dx and virials (n_batch, 3, 3) = -sum_e g_e (x) vec_e per structure."""
    centre = _centres(start)
    g = np.asarray(gvec, dtype=np.float64)
    f = np.zeros((start.size - 1, 3))
    np.add.at(f, centre, g)
    np.add.at(f, nbr, -g)
    w = np.zeros((n_batch, 3, 3))
    np.add.at(w, batch[centre], -g[:, :, None] * np.asarray(vec, dtype=np.float64)[:, None, :])
    return f, w


def scatter_columns(centre, nbr, Y, out):
    """Per-entry derivatives to atoms, in place: out[centre[e]] -= Y[e], out[nbr[e]] += Y[e].

    centre, nbr : (n_e,) int64; Y : (n_e, 3, K) float64, d(something of the centre)/d(vec[e]) with
    vec[e] = x_nbr - x_centre; out : (n_atoms, 3, K) float64, accumulates d/dx.
    """
    np.subtract.at(out, centre, Y)
    np.add.at(out, nbr, Y)
