"""Cell-list neighbour search for open and periodic (orthorhombic or triclinic) systems.

``neighbor_list(positions, cutoff, cell)`` returns every pair closer than ``cutoff`` as index arrays
``i, j`` and integer lattice shifts ``S``, such that the pair vector is

    d_ij = x_j - x_i + S @ cell          (cell rows are the lattice vectors a, b, c)

Atoms are sorted into bins in fractional coordinates; bin widths are at least ``cutoff`` measured
perpendicular to the cell faces (height h_k = V / |a_l x a_m|), so each atom looks at its own bin and
``ceil(cutoff / bin height)`` bins on each side. A bin reached across a boundary carries the lattice
shift, which also gives the periodic images of an atom itself and covers cutoffs larger than half (or
all) of the cell. Cost is O(N) at fixed density. The search runs in numba (two passes: count, then
fill, parallel over atoms); :func:`neighbor_list_reference` is the O(N^2) NumPy oracle.

:class:`NeighborList` adds a Verlet skin: pairs are searched within ``cutoff + skin`` and the list is
reused until some atom has moved more than ``skin / 2`` since the last build (or the cell changed).
Positions and lengths are in any one unit (Bohr inside rung).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class Pairs:
    """Neighbour pairs. i, j : (n_pairs,) int64; shifts : (n_pairs, 3) int64 lattice translations."""

    i: np.ndarray
    j: np.ndarray
    shifts: np.ndarray

    def vectors(self, positions, cell=None) -> np.ndarray:
        """Pair vectors d_ij = x_j - x_i + S @ cell, (n_pairs, 3), units of positions."""
        d = positions[self.j] - positions[self.i]
        if cell is not None:
            d = d + self.shifts @ np.asarray(cell, dtype=positions.dtype)
        return d


def _check(positions, cutoff, cell):
    x = np.ascontiguousarray(positions, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("positions contain NaN or infinite values")
    if not cutoff > 0:
        raise ValueError(f"cutoff must be positive, got {cutoff}")
    if cell is not None:
        cell = np.asarray(cell, dtype=np.float64)
        if cell.shape != (3, 3):
            raise ValueError(f"cell must be a (3, 3) matrix of lattice vectors (rows), got {cell.shape}")
        if abs(np.linalg.det(cell)) < 1e-12:
            raise ValueError("cell is singular (zero volume)")
    return x, cell


def cell_heights(cell) -> np.ndarray:
    """Distances between opposite faces of a cell (3,), units of the cell (rows are lattice vectors)."""
    c = np.asarray(cell, dtype=np.float64)
    vol = abs(np.linalg.det(c))
    return np.array([vol / np.linalg.norm(np.cross(c[(k + 1) % 3], c[(k + 2) % 3])) for k in range(3)])


def neighbor_list(positions, cutoff: float, cell=None, *, half: bool = True) -> Pairs:
    """All pairs with |d_ij| < cutoff.

    Parameters
    ----------
    positions : (n_atoms, 3) float64
    cutoff : float, units of positions
    cell : (3, 3) float64 or None
        Lattice vectors as rows for a periodic system (all three directions periodic); None: open.
    half : bool
        True: each pair once (j > i, or an atom's own image with the lexicographically positive
        shift). False: both (i, j, S) and (j, i, -S).
    """
    x, cell = _check(positions, cutoff, cell)
    n = x.shape[0]
    periodic = cell is not None
    if periodic:
        frac = x @ np.linalg.inv(cell)
        offset = np.floor(frac)
        frac = frac - offset  # wrapped into [0, 1)
        frac[frac >= 1.0] = 0.0  # -1e-17 wraps to 1.0 in floating point
        h = cell_heights(cell)
        box = cell
    else:
        lo = x.min(axis=0) if n else np.zeros(3)
        ext = np.maximum((x.max(axis=0) - lo) if n else np.ones(3), cutoff)
        frac = (x - lo) / ext
        offset = np.zeros_like(frac)
        h = ext
        box = np.diag(ext)
    nb = np.maximum(1, np.floor(h * BINS_PER_CUTOFF / cutoff)).astype(np.int64)
    limit = 4 * n + 64  # keep empty bins from dominating in dilute systems
    if nb.prod() > limit:
        nb = np.maximum(1, np.floor(nb * (limit / nb.prod()) ** (1 / 3))).astype(np.int64)
    reach = np.ceil(cutoff * nb / h - 1e-12).astype(np.int64)
    order, start, binof = _bin(frac, nb)
    xs = np.ascontiguousarray((frac @ box)[order])  # positions inside the box, sorted by bin
    off = offset.astype(np.int64)  # the wrap of each atom, to give shifts for the unwrapped positions
    args = (xs, box, nb, _stencil(reach), periodic, cutoff * cutoff, start, binof[order], order, off)
    counts = np.zeros(n, np.int64)
    empty = np.empty(0, np.int64)
    _search = _search_parallel if n >= PARALLEL_MIN_ATOMS else _search_serial
    _search(*args, counts, counts, empty, empty, np.empty((0, 3), np.int64), False)
    begin = np.zeros(n, np.int64)
    np.cumsum(counts[:-1], out=begin[1:])
    total = int(counts.sum())
    ii, jj, ss = np.empty(total, np.int64), np.empty(total, np.int64), np.empty((total, 3), np.int64)
    _search(*args, counts, begin, ii, jj, ss, True)
    if not half:  # the mirror images, bit-for-bit the same pairs seen from the other atom
        ii, jj, ss = np.concatenate([ii, jj]), np.concatenate([jj, ii]), np.concatenate([ss, -ss])
    return Pairs(ii, jj, ss)


BINS_PER_CUTOFF = 1  # bins of one cutoff: fewer atoms per bin do not pay for the larger stencil (BENCHMARKS.md)


def _negative(s):
    """Rows of s that are lexicographically negative, (n,) bool."""
    first = np.where(s[:, 0] != 0, s[:, 0], np.where(s[:, 1] != 0, s[:, 1], s[:, 2]))
    return first < 0


def _stencil(reach):
    """Bin offsets to visit, (n_offsets, 3) int64: zero and the lexicographically positive half (the
    pair from the mirrored offset is the same pair seen from the other atom)."""
    g = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), -1).reshape(-1, 3)
    g = np.concatenate([np.zeros((1, 3), np.int64), g[~_negative(g) & np.any(g != 0, axis=1)]])
    return np.ascontiguousarray(g, dtype=np.int64)


@numba.njit(cache=True)
def _bin(frac, nb):
    n = frac.shape[0]
    binof = np.empty(n, np.int64)
    nbins = nb[0] * nb[1] * nb[2]
    start = np.zeros(nbins + 1, np.int64)
    for a in range(n):
        b = 0
        for k in range(3):
            c = min(max(int(frac[a, k] * nb[k]), 0), nb[k] - 1)
            b = b * nb[k] + c
        binof[a] = b
        start[b + 1] += 1
    for b in range(nbins):
        start[b + 1] += start[b]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for a in range(n):
        order[fill[binof[a]]] = a
        fill[binof[a]] += 1
    return order, start, binof


def _search_py(xs, box, nb, stencil, periodic, rc2, start, sbin, order, off, counts, begin, out_i, out_j, out_s, write):
    """Half list among bin-sorted positions xs (p, q index xs). Two passes: count (write=False), then
    fill with the input's atom indices, shifts for the unwrapped positions (S + o_i - o_j), and the
    canonical orientation (i < j, or an atom's own image with a lexicographically positive shift)."""
    n = xs.shape[0]
    for p in numba.prange(n):
        b = sbin[p]
        c0 = b // (nb[1] * nb[2])
        c1 = (b // nb[2]) % nb[1]
        c2 = b % nb[2]
        m = 0
        pos = begin[p]
        for t in range(stencil.shape[0]):
            e0 = c0 + stencil[t, 0]
            e1 = c1 + stencil[t, 1]
            e2 = c2 + stencil[t, 2]
            s0 = e0 // nb[0]
            s1 = e1 // nb[1]
            s2 = e2 // nb[2]
            if not periodic and (s0 != 0 or s1 != 0 or s2 != 0):
                continue
            bb = ((e0 - s0 * nb[0]) * nb[1] + (e1 - s1 * nb[1])) * nb[2] + (e2 - s2 * nb[2])
            tx = xs[p, 0] - s0 * box[0, 0] - s1 * box[1, 0] - s2 * box[2, 0]
            ty = xs[p, 1] - s0 * box[0, 1] - s1 * box[1, 1] - s2 * box[2, 1]
            tz = xs[p, 2] - s0 * box[0, 2] - s1 * box[1, 2] - s2 * box[2, 2]
            q0 = p + 1 if t == 0 else start[bb]  # stencil[0] is the own bin
            for q in range(q0, start[bb + 1]):
                dx = xs[q, 0] - tx
                dy = xs[q, 1] - ty
                dz = xs[q, 2] - tz
                if dx * dx + dy * dy + dz * dz < rc2:
                    if write:
                        i = order[p]
                        j = order[q]
                        u0 = s0 + off[i, 0] - off[j, 0]
                        u1 = s1 + off[i, 1] - off[j, 1]
                        u2 = s2 + off[i, 2] - off[j, 2]
                        neg = u0 < 0 or (u0 == 0 and (u1 < 0 or (u1 == 0 and u2 < 0)))
                        if i > j or (i == j and neg):
                            i, j, u0, u1, u2 = j, i, -u0, -u1, -u2
                        out_i[pos + m] = i
                        out_j[pos + m] = j
                        out_s[pos + m, 0] = u0
                        out_s[pos + m, 1] = u1
                        out_s[pos + m, 2] = u2
                    m += 1
        if not write:
            counts[p] = m


# Threads pay off only for large systems; below PARALLEL_MIN_ATOMS (and on a crowded machine) the
# thread start-up and spinning cost more than the search itself.
PARALLEL_MIN_ATOMS = 4096
_search_serial = numba.njit(cache=True)(_search_py)
_search_parallel = numba.njit(parallel=True, cache=True)(_search_py)


def neighbor_list_reference(positions, cutoff: float, cell=None, *, half: bool = True) -> Pairs:
    """O(N^2) NumPy oracle for :func:`neighbor_list` (same output contract, sorted by i, j, shift)."""
    x, cell = _check(positions, cutoff, cell)
    n = x.shape[0]
    if cell is None:
        shifts = np.zeros((1, 3), np.int64)
    else:
        frac = x @ np.linalg.inv(cell)
        spread = np.ceil(frac.max(axis=0) - frac.min(axis=0)) if n else np.zeros(3)
        r = (np.ceil(cutoff / cell_heights(cell)) + spread).astype(np.int64)  # inputs need not be wrapped
        grid = np.meshgrid(*[np.arange(-k, k + 1) for k in r], indexing="ij")
        shifts = np.stack([g.ravel() for g in grid], axis=1)
    out = []
    for s in shifts:
        t = s @ cell if cell is not None else np.zeros(3)
        d = x[None, :, :] - x[:, None, :] + t  # (n, n, 3): x_j - x_i + t
        ii, jj = np.nonzero(np.einsum("ijk,ijk->ij", d, d) < cutoff * cutoff)
        keep = ~((ii == jj) & ~np.any(s))
        if half:
            pos = tuple(s) > (0, 0, 0)
            keep &= (jj > ii) | ((jj == ii) & pos)
        for a, b in zip(ii[keep], jj[keep]):
            out.append((a, b, *s))
    arr = np.array(sorted(out), dtype=np.int64).reshape(-1, 5)
    return Pairs(arr[:, 0], arr[:, 1], arr[:, 2:])


def canonical(p: Pairs) -> np.ndarray:
    """Pairs as a sorted (n_pairs, 5) array [i, j, S], for comparing lists regardless of order."""
    arr = np.column_stack([p.i, p.j, p.shifts]).astype(np.int64)
    return arr[np.lexsort(arr.T[::-1])]


class NeighborList:
    """A reusable neighbour list with a Verlet skin.

    ``update(positions, cell)`` rebuilds (returns True) on the first call, when the cell changes, or
    when some atom moved more than ``skin / 2`` since the last build; otherwise keeps the pairs, which
    then still contain every pair within ``cutoff`` (they were searched within ``cutoff + skin``).
    Use :meth:`Pairs.vectors` with the current positions, and mask by ``cutoff`` where it matters.
    """

    def __init__(self, cutoff: float, skin: float = 0.0, *, half: bool = True):
        if skin < 0:
            raise ValueError("skin must be >= 0")
        self.cutoff, self.skin, self.half = float(cutoff), float(skin), half
        self.pairs: Pairs | None = None
        self.builds = 0
        self._x0 = self._cell0 = None

    def update(self, positions, cell=None) -> bool:
        x = np.asarray(positions, dtype=np.float64)
        c = None if cell is None else np.asarray(cell, dtype=np.float64)
        if self.pairs is not None and x.shape == self._x0.shape:
            same_cell = (c is None and self._cell0 is None) or (
                c is not None and self._cell0 is not None and np.array_equal(c, self._cell0)
            )
            moved = np.max(np.sum((x - self._x0) ** 2, axis=1), initial=0.0)
            if same_cell and moved <= (0.5 * self.skin) ** 2:
                return False
        self.pairs = neighbor_list(x, self.cutoff + self.skin, c, half=self.half)
        self._x0, self._cell0 = x.copy(), None if c is None else c.copy()
        self.builds += 1
        return True
