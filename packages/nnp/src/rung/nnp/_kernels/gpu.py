"""GPU kernels (numba.cuda) and the CuPy driver; imported only when the "cupy" backend is chosen.

Same contract and equations as :mod:`rung.nnp._kernels.reference` (directed neighbour entries
grouped by centre atom, Angstrom). One call runs on the device from the positions to the forces:

1. neighbour entries (:func:`neighbour_entries`): a count-then-fill kernel, one thread per centre
   atom, tests every atom of the centre's structure (all pairs, O(n^2) per structure) and, for a
   periodic cell, only the lattice shifts S that the cutoff allows for that pair (from the fractional
   separation and the face heights, so a cell larger than twice the cutoff costs about one shift per
   pair and a cell smaller than the cutoff gets every image). Prefix sums (CuPy) give the entry
   offsets; the entries stay on the device. Sensible for the structures nnp serves (molecules,
   boxes of a few thousand atoms); for much larger structures a device cell list would be the next
   step (no GPU timing exists yet, see BENCHMARKS.md).
2. radial AEV terms: one thread per directed entry (forward: atomic adds into the centre's row;
   backward: the entry's own dE/d(vec), plain stores);
3. angular AEV terms: one thread per (centre, unordered pair of angular neighbours) triple, the
   triple found by a binary search over per-centre triple offsets (forward: atomic adds into the
   centre's row; backward: atomic adds into the two entries' dE/d(vec));
4. the species MLPs as CuPy GEMMs (:class:`rung.nnp.mlp.PackedNetworks` with ``xp=cupy``);
5. the scatter to forces and virials: one thread per entry, atomic adds.

Accumulation with float64 atomics makes the summation order (and so the last bits) vary between
runs. The host reads three scalars per call (the number of entries, the number of triples, the
shortest distance); nothing else leaves the device until the results.

The kernels are tested under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) with tiny inputs;
real-device tests are marked ``gpu``. The per-term arithmetic (cutoffs, radial Gaussians, angle factors
and the triple's derivative coefficients) is :mod:`rung.nnp._kernels.aev_body`'s, shared with the CPU
kernels and compiled here as device functions; what stays here is the GPU's own work split (one thread
per entry or triple, atomic adds) and the r_avg Gaussians, formed per triple (the CPU shares per-neighbour
factors among a centre's triples). ``tools/ptx_check.py`` loads this file on its own and compiles every
kernel, so at import time the module imports nothing from rung but ``aev_body`` (which imports only math).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import cuda

from rung.nnp._kernels import aev_body

MAX_SHF = 16  # local scratch size for ShfZ / ShfA
THREADS = 128  # threads per block

_cutoff = cuda.jit(device=True, inline="always")(aev_body.cutoff)
_cutoff_slope = cuda.jit(device=True, inline="always")(aev_body.cutoff_slope)
_radial_gauss = cuda.jit(device=True, inline="always")(aev_body.radial_gauss)
_radial_slope = cuda.jit(device=True, inline="always")(aev_body.radial_slope)
_cos_angle = cuda.jit(device=True, inline="always")(aev_body.cos_angle)
_angle_factors = cuda.jit(device=True, inline="always")(aev_body.angle_factors)
_angle_slopes = cuda.jit(device=True, inline="always")(aev_body.angle_slopes)
_pair_slopes = cuda.jit(device=True, inline="always")(aev_body.pair_slopes)


@cuda.jit
def pairs_kernel(x, xw, fw, off, cells, rch, batch, order, bstart, rc2, write, start, centre, nbr, shift, vec,
                 dist):
    """Directed entries within the cutoff, one thread per centre atom (taken in structure order).

    Count pass (``write`` False): start[i + 1] = number of entries of centre i. Fill pass: entries of
    centre i at start[i]:start[i + 1] (neighbours in structure order, then by shift). xw, fw: positions
    wrapped into the cell, Cartesian and fractional; off: the wrap (x = xw + off @ cell); rch[b, k]:
    cutoff over the height of face k of cell b (0 for an open structure, whose cell is zero).
    """
    p = cuda.grid(1)
    if p >= order.size:
        return
    i = order[p]
    b = batch[i]
    m = 0
    for q in range(bstart[b], bstart[b + 1]):
        j = order[q]
        f0 = fw[j, 0] - fw[i, 0]
        f1 = fw[j, 1] - fw[i, 1]
        f2 = fw[j, 2] - fw[i, 2]
        for s0 in range(int(math.ceil(-rch[b, 0] - f0)), int(math.floor(rch[b, 0] - f0)) + 1):
            for s1 in range(int(math.ceil(-rch[b, 1] - f1)), int(math.floor(rch[b, 1] - f1)) + 1):
                for s2 in range(int(math.ceil(-rch[b, 2] - f2)), int(math.floor(rch[b, 2] - f2)) + 1):
                    if i == j and s0 == 0 and s1 == 0 and s2 == 0:
                        continue
                    dx = xw[j, 0] - xw[i, 0] + s0 * cells[b, 0, 0] + s1 * cells[b, 1, 0] + s2 * cells[b, 2, 0]
                    dy = xw[j, 1] - xw[i, 1] + s0 * cells[b, 0, 1] + s1 * cells[b, 1, 1] + s2 * cells[b, 2, 1]
                    dz = xw[j, 2] - xw[i, 2] + s0 * cells[b, 0, 2] + s1 * cells[b, 1, 2] + s2 * cells[b, 2, 2]
                    if dx * dx + dy * dy + dz * dz >= rc2:
                        continue
                    if write:
                        e = start[i] + m
                        u0 = s0 + off[i, 0] - off[j, 0]
                        u1 = s1 + off[i, 1] - off[j, 1]
                        u2 = s2 + off[i, 2] - off[j, 2]
                        centre[e] = i
                        nbr[e] = j
                        shift[e, 0] = u0
                        shift[e, 1] = u1
                        shift[e, 2] = u2
                        v0 = x[j, 0] - x[i, 0] + u0 * cells[b, 0, 0] + u1 * cells[b, 1, 0] + u2 * cells[b, 2, 0]
                        v1 = x[j, 1] - x[i, 1] + u0 * cells[b, 0, 1] + u1 * cells[b, 1, 1] + u2 * cells[b, 2, 1]
                        v2 = x[j, 2] - x[i, 2] + u0 * cells[b, 0, 2] + u1 * cells[b, 1, 2] + u2 * cells[b, 2, 2]
                        vec[e, 0] = v0
                        vec[e, 1] = v1
                        vec[e, 2] = v2
                        dist[e] = math.sqrt(v0 * v0 + v1 * v1 + v2 * v2)
                    m += 1
    if not write:
        start[i + 1] = m


@cuda.jit
def radial_forward_kernel(species, centre, nbr, dist, Rcr, etaR, shfR, out):
    """One thread per entry: its radial terms added (atomically) into its centre's AEV row."""
    e = cuda.grid(1)
    if e >= nbr.size:
        return
    nR = shfR.size
    r = dist[e]
    fc = 0.25 * _cutoff(r, Rcr)
    i = centre[e]
    base = species[nbr[e]] * nR
    for k in range(nR):
        _, ex = _radial_gauss(r, shfR[k], etaR)
        if ex != 0.0:  # not a term left out
            cuda.atomic.add(out, (i, base + k), ex * fc)


@cuda.jit
def radial_backward_kernel(species, centre, nbr, vec, dist, Rcr, etaR, shfR, dG, g):
    """One thread per entry: g[e] = dE/d(vec[e]) from the radial terms (stored, not added)."""
    e = cuda.grid(1)
    if e >= nbr.size:
        return
    nR = shfR.size
    r = dist[e]
    fc, dfc = _cutoff_slope(r, Rcr)
    i = centre[e]
    base = species[nbr[e]] * nR
    acc = 0.0
    for k in range(nR):
        t, ex = _radial_gauss(r, shfR[k], etaR)
        acc += dG[i, base + k] * ex * _radial_slope(t, etaR, fc, dfc)
    acc *= 0.25 / r
    for q in range(3):
        g[e, q] = acc * vec[e, q]


@cuda.jit(device=True, inline=True)
def _triple(t, tstart, ang_start, ang):
    """Centre i and entries e1, e2 of triple t: the k-th unordered pair (u < w) of i's angular entries,
    k = t - tstart[i], enumerated as k = w (w - 1) / 2 + u."""
    lo = 0
    hi = tstart.size - 1
    while hi - lo > 1:  # tstart[lo] <= t < tstart[hi]
        mid = (lo + hi) // 2
        if tstart[mid] <= t:
            lo = mid
        else:
            hi = mid
    k = t - tstart[lo]
    w = int((1.0 + math.sqrt(1.0 + 8.0 * k)) * 0.5)
    while w * (w - 1) // 2 > k:
        w -= 1
    while (w + 1) * w // 2 <= k:
        w += 1
    u = k - w * (w - 1) // 2
    a0 = ang_start[lo]
    return lo, ang[a0 + u], ang[a0 + w]


@cuda.jit
def angular_forward_kernel(species, nbr, vec, dist, ang_start, ang, tstart, Rca, zeta, nsq, cosZ, sinZ, etaA,
                           shfA, pidx, radlen, out):
    """One thread per triple (centre i, entries e1, e2): its angular terms added into i's AEV row."""
    t = cuda.grid(1)
    if t >= tstart[tstart.size - 1]:
        return
    i, e1, e2 = _triple(t, tstart, ang_start, ang)
    nZ, nA = cosZ.size, shfA.size
    f1 = cuda.local.array(MAX_SHF, np.float64)
    r1 = dist[e1]
    r2 = dist[e2]
    fcp = 2.0 * _cutoff(r1, Rca) * _cutoff(r2, Rca)
    c = _cos_angle(vec[e1, 0], vec[e1, 1], vec[e1, 2], vec[e2, 0], vec[e2, 1], vec[e2, 2], r1, r2)
    _angle_factors(c, cosZ, sinZ, zeta, nsq, f1, f1)  # (no slopes: f1 as the x_z scratch)
    ravg = 0.5 * (r1 + r2)
    base = radlen + pidx[species[nbr[e1]], species[nbr[e2]]] * nA * nZ
    for a in range(nA):
        ta = ravg - shfA[a]
        f2 = math.exp(-etaA * ta * ta) * fcp
        for z in range(nZ):
            cuda.atomic.add(out, (i, base + a * nZ + z), f2 * f1[z])


@cuda.jit
def angular_backward_kernel(species, nbr, vec, dist, ang_start, ang, tstart, Rca, zeta, nsq, cosZ, sinZ, etaA,
                            shfA, pidx, radlen, dG, g):
    """One thread per triple: its dE/d(vec[e1]) and dE/d(vec[e2]) added (atomically) into g."""
    t = cuda.grid(1)
    if t >= tstart[tstart.size - 1]:
        return
    i, e1, e2 = _triple(t, tstart, ang_start, ang)
    nZ, nA = cosZ.size, shfA.size
    f1 = cuda.local.array(MAX_SHF, np.float64)
    df1 = cuda.local.array(MAX_SHF, np.float64)
    xb = cuda.local.array(MAX_SHF, np.float64)
    r1 = dist[e1]
    r2 = dist[e2]
    fc1, dfc1 = _cutoff_slope(r1, Rca)
    fc2, dfc2 = _cutoff_slope(r2, Rca)
    c = _cos_angle(vec[e1, 0], vec[e1, 1], vec[e1, 2], vec[e2, 0], vec[e2, 1], vec[e2, 2], r1, r2)
    s = _angle_factors(c, cosZ, sinZ, zeta, nsq, xb, f1)
    _angle_slopes(c, s, cosZ, sinZ, zeta, xb, f1, df1)
    ravg = 0.5 * (r1 + r2)
    base = radlen + pidx[species[nbr[e1]], species[nbr[e2]]] * nA * nZ
    A = 0.0
    Bc = 0.0
    Br = 0.0
    for a in range(nA):
        ta = ravg - shfA[a]
        f2 = math.exp(-etaA * ta * ta)
        df2 = -2.0 * etaA * ta * f2
        M = 0.0
        N = 0.0
        for z in range(nZ):
            lam = dG[i, base + a * nZ + z]
            M += lam * f1[z]
            N += lam * df1[z]
        A += M * f2
        Br += M * df2
        Bc += N * f2
    fcp = fc1 * fc2
    dcos = 2.0 * fcp * Bc
    dravg = 2.0 * fcp * Br
    k1, k2 = _pair_slopes(A, dcos, dravg, c, r1, r2, fc1, fc2, dfc1, dfc2)
    inv12 = 0.95 / (r1 * r2)
    for q in range(3):
        cuda.atomic.add(g, (e1, q), k1 * vec[e1, q] + dcos * inv12 * vec[e2, q])
        cuda.atomic.add(g, (e2, q), k2 * vec[e2, q] + dcos * inv12 * vec[e1, q])


@cuda.jit
def scatter_kernel(centre, nbr, vec, g, batch, f, w):
    """One thread per entry: f[centre] += g, f[nbr] -= g, w[structure] -= g (x) vec (atomic adds)."""
    e = cuda.grid(1)
    if e >= nbr.size:
        return
    i, j = centre[e], nbr[e]
    b = batch[i]
    for q in range(3):
        cuda.atomic.add(f, (i, q), g[e, q])
        cuda.atomic.add(f, (j, q), -g[e, q])
        for k in range(3):
            cuda.atomic.add(w, (b, q, k), -g[e, q] * vec[e, k])


def _launch(kernel, n, *args):
    if n > 0:
        kernel[(n + THREADS - 1) // THREADS, THREADS](*args)


class DeviceEntries(NamedTuple):
    """Directed neighbour entries on the device, grouped by centre (contract of reference.py).

    start, ang_start : (n_atoms + 1,) int64; centre, nbr : (n_entries,) int64; shift : (n_entries, 3)
    int64 lattice shifts S with vec = x_nbr - x_centre + S @ cell; vec : (n_entries, 3) float64 and
    dist : (n_entries,) float64, Angstrom; ang : (n_ang,) int64, the entries with dist < Rca;
    tstart : (n_atoms + 1,) int64 offsets of each centre's angular triples; n_triples : int, their total.
    """

    start: object
    centre: object
    nbr: object
    shift: object
    vec: object
    dist: object
    ang_start: object
    ang: object
    tstart: object
    n_triples: int


def _offsets(counts, xp):
    """Exclusive prefix sum with the total appended: (n + 1,) int64."""
    out = xp.zeros(counts.size + 1, np.int64)
    out[1:] = xp.cumsum(counts)
    return out


def triple_starts(ang_start, xp):
    """Offsets of each centre's unordered pairs of angular entries, (n_atoms + 1,) int64."""
    m = xp.diff(ang_start)
    return _offsets(m * (m - 1) // 2, xp)


def neighbour_entries(xp, x, batch, n_batch, cells, Rcr, Rca) -> DeviceEntries:
    """Directed neighbour entries within ``Rcr`` of every structure, built on the device of ``xp``.

    Parameters
    ----------
    xp : cupy (or numpy, for the CUDA simulator)
    x : (n_atoms, 3) float64, Angstrom (host or device)
    batch : (n_atoms,) int64 structure index (host or device); atoms of a structure need not be adjacent
    n_batch : int
    cells : None (open structures) or (n_batch, 3, 3) float64 host array, Angstrom, rows are lattice
        vectors, periodic in all three directions
    Rcr, Rca : float, Angstrom, radial and angular cutoffs (Rca <= Rcr)
    """
    x = xp.ascontiguousarray(xp.asarray(x, dtype=np.float64))
    batch = xp.asarray(batch, dtype=np.int64)
    n = x.shape[0]
    if cells is None:
        cells_h = np.zeros((n_batch, 3, 3))
        rch = np.zeros((n_batch, 3))
        fw = xp.zeros((n, 3))
        off = xp.zeros((n, 3), np.int64)
        xw = x
    else:
        cells_h = np.array(cells, dtype=np.float64).reshape(n_batch, 3, 3)  # a copy: cells may be a read-only view
        # cutoff over face heights, a hair larger so that rounding cannot drop a shift (the distance decides)
        from rung.core.neighbors import cell_heights  # here, not at the top: tools/ptx_check.py loads this
        # module with numba-cuda and NumPy alone installed, to compile the kernels above

        rch = np.array([Rcr / cell_heights(c) for c in cells_h]) * (1.0 + 1e-9) + 1e-9
        inv = xp.asarray(np.linalg.inv(cells_h))
        frac = xp.einsum("na,nab->nb", x, inv[batch])
        offf = xp.floor(frac)
        fw = frac - offf
        fw[fw >= 1.0] = 0.0  # -1e-17 wraps to 1.0 in floating point
        off = offf.astype(np.int64)
        xw = xp.einsum("na,nab->nb", fw, xp.asarray(cells_h)[batch])
        fw, xw = xp.ascontiguousarray(fw), xp.ascontiguousarray(xw)
    cells_d, rch = xp.asarray(cells_h), xp.asarray(rch)
    order = xp.argsort(batch).astype(np.int64)
    bstart = xp.searchsorted(batch[order], xp.arange(n_batch + 1)).astype(np.int64)
    rc2 = float(Rcr) ** 2
    start = xp.zeros(n + 1, np.int64)
    geometry = (x, xw, fw, off, cells_d, rch, batch, order, bstart, rc2)
    # count pass; its output arguments are unused placeholders (one element each: no null device pointer)
    one_i = xp.zeros(1, np.int64)
    _launch(pairs_kernel, n, *geometry, False, start, one_i, one_i, xp.zeros((1, 3), np.int64), xp.zeros((1, 3)),
            xp.zeros(1))
    start = xp.cumsum(start)
    ne = int(start[n]) if n else 0
    centre, nbr, dist = xp.empty(ne, np.int64), xp.empty(ne, np.int64), xp.empty(ne, np.float64)
    shift, vec = xp.empty((ne, 3), np.int64), xp.empty((ne, 3), np.float64)
    _launch(pairs_kernel, n if ne else 0, *geometry, True, start, centre, nbr, shift, vec, dist)
    ang = xp.nonzero(dist < Rca)[0].astype(np.int64)  # entries are grouped by centre, so the subset is too
    n_ang = xp.bincount(centre[ang], minlength=n).astype(np.int64) if ang.size else xp.zeros(n, np.int64)
    ang_start = _offsets(n_ang, xp)
    tstart = triple_starts(ang_start, xp)
    return DeviceEntries(start, centre, nbr, shift, vec, dist, ang_start, ang, tstart, int(tstart[n]))


def kernel_constants(p):
    """Constants for the kernels from AEVParams (those of the CPU kernels); at most MAX_SHF shifts.

    Returns Rcr, Rca, etaR, shfR, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx (float64/int64 host arrays and
    Python scalars; nsq as in :func:`rung.nnp._kernels.aev_body.angle_factors`).
    """
    from rung.nnp._kernels.cpu import _consts

    Rcr, Rca, etaR, shfR, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx = _consts(p)
    if max(cosZ.size, shfA.size) > MAX_SHF:
        raise NotImplementedError(f"the GPU kernels allow at most {MAX_SHF} ShfZ/ShfA values")
    return Rcr, Rca, etaR, shfR, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx


def _on(xp, consts):
    return tuple(xp.asarray(c) if isinstance(c, np.ndarray) else c for c in consts)


def aev_forward(species, ent, consts, out):
    """Add the AEVs of every centre into ``out`` (n_atoms, length) float64, zeroed by the caller.

    species : (n_atoms,) int64; ent : entries with centre, nbr, vec, dist, ang_start, ang and, when
    present, tstart (:class:`DeviceEntries`, or :class:`rung.nnp.ani.Entries` under the simulator);
    consts : :func:`kernel_constants`, arrays on the device of ``out``.
    """
    Rcr, Rca, etaR, shfR, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx = consts
    tstart, n_triples = _triples(ent)
    _launch(radial_forward_kernel, ent.nbr.shape[0], species, ent.centre, ent.nbr, ent.dist, Rcr, etaR, shfR, out)
    _launch(angular_forward_kernel, n_triples, species, ent.nbr, ent.vec, ent.dist, ent.ang_start, ent.ang,
            tstart, Rca, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx, pidx.shape[0] * shfR.size, out)


def aev_backward(species, ent, consts, dG, g):
    """g (n_entries, 3) float64 = dE/d(vec[e]) given dE/dG (n_atoms, length) float64 (g is overwritten)."""
    Rcr, Rca, etaR, shfR, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx = consts
    tstart, n_triples = _triples(ent)
    _launch(radial_backward_kernel, ent.nbr.shape[0], species, ent.centre, ent.nbr, ent.vec, ent.dist, Rcr, etaR,
            shfR, dG, g)
    _launch(angular_backward_kernel, n_triples, species, ent.nbr, ent.vec, ent.dist, ent.ang_start, ent.ang,
            tstart, Rca, zeta, nsq, cosZ, sinZ, etaA, shfA, pidx, pidx.shape[0] * shfR.size, dG, g)


def _triples(ent):
    """Triple offsets and count of ``ent`` (computed here for host entries, e.g. rung.nnp.ani.Entries)."""
    if isinstance(ent, DeviceEntries):
        return ent.tstart, ent.n_triples
    tstart = triple_starts(ent.ang_start, np)
    return tstart, int(tstart[-1])


def scatter(centre, nbr, vec, g, batch, f, w):
    """Add forces (n_atoms, 3) and virials (n_batch, 3, 3) of the entry derivatives g into f and w."""
    _launch(scatter_kernel, nbr.shape[0], centre, nbr, vec, g, batch, f, w)


class GPUEngine:
    """Neighbour entries, AEVs, MLPs and the backward pass on a CUDA device (CuPy arrays, numba.cuda
    kernels); the model's constants are copied to the device once."""

    def __init__(self, model, dtype, xp=None):
        from rung.core.backend import select
        from rung.nnp.mlp import PackedNetworks

        # xp: CuPy (default; raises BackendUnavailable without CuPy and a device), or NumPy for
        # running this pipeline under numba's CUDA simulator in the tests
        cp = select("gpu") if xp is None else xp

        self.cp, self.model, self.dtype = cp, model, dtype
        self.nets = PackedNetworks(model, dtype, xp=cp)
        self.consts = _on(cp, kernel_constants(model.aev))  # fails early on unsupported constants

    def run(self, x, species, batch, n_batch, cells, need_grad, min_distance=0.0):
        """Network outputs (M, n_atoms) float64, forces (n_atoms, 3) and virials (n_batch, 3, 3) float64
        (None without ``need_grad``), all returned on the host.

        x : (n_atoms, 3) float64 Angstrom; species, batch : (n_atoms,) int64; cells : None or
        (n_batch, 3, 3) float64 Angstrom; min_distance : float, Angstrom, closer atoms raise ValueError.
        """
        from rung.core.backend import to_host

        cp, p = self.cp, self.model.aev
        b = cp.asarray(batch, dtype=np.int64)
        ent = neighbour_entries(cp, x, b, n_batch, cells, p.Rcr, p.Rca)
        if ent.dist.size and float(ent.dist.min()) < min_distance:
            k = int(cp.argmin(ent.dist))
            r = float(ent.dist[k])
            i, j = sorted((int(ent.centre[k]), int(ent.nbr[k])))
            raise ValueError(f"atoms {i} and {j} are {r:.3g} Angstrom apart (overlapping atoms; "
                             f"minimum allowed {min_distance} Angstrom)")
        sp = cp.asarray(species, dtype=np.int64)
        G = cp.zeros((sp.size, p.length), np.float64)
        aev_forward(sp, ent, self.consts, G)
        out, dG = self.nets(sp, G.astype(self.dtype), grad=need_grad)
        if not need_grad:
            return to_host(out), None, None
        g = cp.empty((ent.nbr.size, 3), np.float64)
        aev_backward(sp, ent, self.consts, cp.ascontiguousarray(dG, dtype=np.float64), g)
        f = cp.zeros((sp.size, 3), np.float64)
        w = cp.zeros((n_batch, 3, 3), np.float64)
        scatter(ent.centre, ent.nbr, ent.vec, g, b, f, w)
        return to_host(out), to_host(f), to_host(w)
