"""Proton ownership and proton-transfer events (``nnp-md analyze protons TRAJ``).

Every hydrogen h is owned by a heavy atom of the donor/acceptor set (the union of the groups; by
default every O, N, S, F and Cl atom, one group per element). At the first frame h belongs to its nearest
heavy atom. At each later frame, with D its owner and A its nearest other heavy atom, the proton-sharing
coordinate (Marx, Tuckerman, Hutter, Parrinello, Nature 397, 601 (1999))

    delta = d(D-H) - d(A-H)

decides: when delta > ``hysteresis`` for ``persistence`` consecutive frames (each frame's nearest
A the same atom), h moves to A and one event (frame, h, D, A) is recorded at the first of those frames.
Rattling with |delta| below the window never counts, and a proton coming back counts as a second event.
Distances are minimum over periodic images (triclinic cells allowed). The default backend runs the
whole trajectory in one numba kernel (:func:`rung.md._kernels.cpu.proton_events`: per frame a cell list
of the heavy atoms, bins at least ``cutoff`` wide along each cell height, every image inside the
cutoff seen); ``backend="numpy"`` is its reference, a NumPy loop over frames on rung.core's cell list
(:func:`rung.core.neighbors.neighbor_list`; the tests also run it on the O(N^2) distances of
:func:`heavy_distances_brute`). A heavy atom farther than ``cutoff`` counts as infinitely far, so a proton
with no heavy atom inside the cutoff stays with its owner, and one that has none at the first frame is
unowned (owner -1) until a heavy atom comes inside the cutoff (no event).

Events are classified by the groups of donor and acceptor: ``counts[t, g, k]`` is the number of
events from group g to group k up to frame t (the paper's Figs. 4-5). Groups are selections by element
symbol or by 0-based atom index (``"O"``, ``"N,S"``, ``"0-5,9"``); overlapping groups are an error.

Atomic units inside (positions in Bohr; ``hysteresis`` and ``cutoff`` in Bohr; the CLI takes Angstrom).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from rung.core import units as U
from rung.core.errors import InputError
from rung.core.neighbors import neighbor_list

DEFAULT_ELEMENTS = ("O", "N", "S", "F", "Cl")


@dataclass(frozen=True)
class Trajectory:
    """numbers (n_atoms,) int; positions (frames, n_atoms, 3) Bohr; cell None or (frames, 3, 3) Bohr;
    time_fs (frames,) float64 (frame index when the file has no time)."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray | None
    time_fs: np.ndarray


@dataclass(frozen=True)
class ProtonEvents:
    """Transfer events and their counts.

    frame, hydrogen, donor, acceptor : (n_events,) int64 (atom indices 0-based)
    donor_group, acceptor_group : (n_events,) int64 indices into ``groups``
    counts : (frames, G, G) int64, cumulative donor-group -> acceptor-group events up to each frame
    owner : (frames, n_h) int64, owner (atom index, -1 none yet) of each hydrogen (``hydrogens``) per frame
    """

    groups: tuple
    hydrogens: np.ndarray
    frame: np.ndarray
    hydrogen: np.ndarray
    donor: np.ndarray
    acceptor: np.ndarray
    donor_group: np.ndarray
    acceptor_group: np.ndarray
    counts: np.ndarray
    owner: np.ndarray
    time_fs: np.ndarray
    backend: str = "numba"

    def table(self) -> str:
        """Total events by class, a plain text table."""
        g = self.groups
        w = max([len("donor -> acceptor")] + [len(a) + len(b) + 4 for a in g for b in g])
        lines = [f"{'donor -> acceptor':<{w}} {'events':>8}"]
        tot = self.counts[-1] if len(self.counts) else np.zeros((len(g), len(g)), dtype=np.int64)
        for i, a in enumerate(g):
            for k, b in enumerate(g):
                lines.append(f"{a + ' -> ' + b:<{w}} {int(tot[i, k]):>8}")
        lines.append(f"{'total':<{w}} {int(tot.sum()):>8}")
        return "\n".join(lines)

    def to_hdf5(self, path, attrs=None):
        from rung.md import __version__

        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"schema": "rung-md-proton-events", "schema_version": 1, "package_version": __version__,
                            "backend": self.backend, **(attrs or {})})
            f.attrs["groups"] = np.array(self.groups, dtype=h5py.string_dtype())
            for name in ("hydrogens", "frame", "hydrogen", "donor", "acceptor", "donor_group", "acceptor_group",
                         "counts", "owner"):
                f.create_dataset(name, data=getattr(self, name)).attrs["units"] = "1"
            f.create_dataset("time", data=self.time_fs).attrs["units"] = "fs"
        os.replace(tmp, path)


# ------------------------------------------------------------------------------------------- reading
def read_trajectory(path) -> Trajectory:
    """A rung H5MD file (centroid) or anything ASE reads (all frames) -> Trajectory (Bohr)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"trajectory {path} does not exist")
    if h5py.is_hdf5(path):
        from rung.md.output import read_centroid

        try:
            c = read_centroid(path)
        except KeyError as err:
            raise InputError(f"{path} is HDF5 but not an H5MD file from rung ({err})") from err
        return Trajectory(c["numbers"], c["positions"], c["cell"], c["time_ps"] * 1e3)  # ps -> fs
    from ase.io import read

    try:
        frames = read(path, index=":")
    except Exception as err:  # ASE raises many types for unreadable files
        raise InputError(f"cannot read trajectory {path}: {err}") from err
    if not frames:
        raise InputError(f"trajectory {path} has no frames")
    x = np.array([a.positions for a in frames]) * U.ANGSTROM_TO_BOHR
    periodic = all(np.all(a.pbc) for a in frames)
    cell = np.array([np.asarray(a.cell) for a in frames]) * U.ANGSTROM_TO_BOHR if periodic else None
    return Trajectory(frames[0].numbers.astype(np.int64), x, cell, np.arange(len(frames), dtype=np.float64))


# -------------------------------------------------------------------------------------------- groups
def parse_groups(specs, numbers) -> tuple[tuple, np.ndarray]:
    """Group names and each atom's group (-1: none) from {name: selection}; None: one group per element of
    DEFAULT_ELEMENTS present. A selection is a comma list of element symbols and 0-based indices / ranges a-b."""
    from ase.data import atomic_numbers, chemical_symbols

    numbers = np.asarray(numbers)
    n = numbers.size
    if not specs:
        present = [e for e in DEFAULT_ELEMENTS if np.any(numbers == atomic_numbers[e])]
        specs = {e: e for e in present}
    names, member = tuple(specs), np.full(n, -1, dtype=np.int64)
    for g, (name, sel) in enumerate(specs.items()):
        mask = np.zeros(n, dtype=bool)
        for tok in str(sel).split(","):
            tok = tok.strip()
            if not tok:
                continue
            if tok[0].isdigit():
                a, _, b = tok.partition("-")
                try:
                    lo, hi = int(a), int(b) if b else int(a)
                except ValueError:
                    raise InputError(f"group {name!r}: cannot read selection {tok!r}") from None
                if not 0 <= lo <= hi < n:
                    raise InputError(f"group {name!r}: atoms {tok} do not exist (the trajectory has {n} atoms)")
                mask[lo:hi + 1] = True
            elif tok in atomic_numbers and tok in chemical_symbols:
                mask |= numbers == atomic_numbers[tok]
            else:
                raise InputError(f"group {name!r}: {tok!r} is neither an element symbol nor an atom index")
        if np.any(numbers[mask] == 1):
            raise InputError(f"group {name!r} selects hydrogen atoms; groups are donor/acceptor heavy atoms")
        if not mask.any():
            raise InputError(f"group {name!r} ({sel}) selects no atom")
        clash = mask & (member >= 0)
        if clash.any():
            raise InputError(f"groups {names[member[clash][0]]!r} and {name!r} overlap (atom {np.flatnonzero(clash)[0]})")
        member[mask] = g
    return names, member


# ---------------------------------------------------------------------------------------- distances
def heavy_pairs(x, hyd, heavy, cutoff, cell=None):
    """(hydrogen, heavy) pairs closer than ``cutoff``, nearest periodic image, from the cell list.
    x (n_atoms, 3) Bohr; hyd, heavy index arrays. Returns h (n_pairs,) index into hyd, k index into
    heavy, d (n_pairs,) Bohr; a pair seen through several images keeps its shortest distance."""
    sub = np.concatenate([hyd, heavy])
    p = neighbor_list(x[sub], cutoff, cell)
    d = np.linalg.norm(p.vectors(x[sub], cell), axis=1)
    nh = hyd.size
    i, j = p.i, p.j
    swap = i >= nh  # (hydrogen, heavy) with the hydrogen first
    i, j = np.where(swap, j, i), np.where(swap, i, j)
    ok = (i < nh) & (j >= nh)
    return i[ok], j[ok] - nh, d[ok]


def heavy_distances(x, hyd, heavy, cutoff, cell=None) -> np.ndarray:
    """Dense distances (n_h, n_heavy), Bohr, inf beyond ``cutoff`` (from :func:`heavy_pairs`)."""
    h, k, d = heavy_pairs(x, hyd, heavy, cutoff, cell)
    out = np.full((hyd.size, heavy.size), np.inf)
    np.minimum.at(out, (h, k), d)
    return out


def heavy_distances_brute(x, hyd, heavy, cutoff, cell=None) -> np.ndarray:
    """The O(N^2) oracle of :func:`heavy_distances`: minimum image over the 27 neighbouring cells
    (valid when the cutoff is below half the smallest cell height)."""
    d = x[heavy][None, :, :] - x[hyd][:, None, :]  # (n_h, n_heavy, 3)
    if cell is None:
        r = np.linalg.norm(d, axis=-1)
    else:
        s = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T @ cell
        frac = d @ np.linalg.inv(cell)
        d = (frac - np.round(frac)) @ cell
        r = np.min(np.linalg.norm(d[:, :, None, :] + s[None, None], axis=-1), axis=-1)
    return np.where(r < cutoff, r, np.inf)


def _nearest(h, k, d, nh):
    """Per hydrogen the nearest heavy atom (lowest index among ties) and its distance; -1, inf if none."""
    best_k, best_d = np.full(nh, -1), np.full(nh, np.inf)
    if h.size:
        order = np.lexsort((k, d, h))
        first = order[np.r_[True, h[order][1:] != h[order][:-1]]]
        best_k[h[first]], best_d[h[first]] = k[first], d[first]
    return best_k, best_d


# ------------------------------------------------------------------------------------------ detector
def detect(traj: Trajectory, groups=None, *, hysteresis: float = 0.3 * U.ANGSTROM_TO_BOHR,
           persistence: int = 1, cutoff: float = 2.5 * U.ANGSTROM_TO_BOHR, backend: str = "numba") -> ProtonEvents:
    """Ownership and transfer events of every hydrogen (module docstring). Lengths in Bohr.

    backend : "numba" (the whole trajectory in one cell-list kernel, :func:`rung.md._kernels.cpu.proton_events`)
        or "numpy" (the reference: a loop over frames in NumPy on the pairs of :func:`heavy_pairs`)."""
    if backend not in ("numba", "numpy"):
        raise InputError(f"backend must be 'numba' or 'numpy', got {backend!r}")
    numbers = np.asarray(traj.numbers)
    hyd = np.flatnonzero(numbers == 1)
    if hyd.size == 0:
        raise InputError("the trajectory has no hydrogen atoms")
    if not hysteresis >= 0 or not cutoff > 0 or not (isinstance(persistence, (int, np.integer)) and persistence >= 1):
        raise InputError(f"need hysteresis >= 0, cutoff > 0 and persistence >= 1, got {hysteresis}, {cutoff}, "
                         f"{persistence}")
    names, member = parse_groups(groups, numbers)
    heavy = np.flatnonzero(member >= 0)
    if heavy.size < 2:
        raise InputError(f"need at least two donor/acceptor atoms, the groups select {heavy.size}")
    if backend == "numba":
        owner, ev = _detect_numba(traj, hyd, heavy, cutoff, hysteresis, persistence)
        return _events(names, member, hyd, heavy, owner, ev, traj.time_fs, "numba")
    nf, nh = len(traj.positions), hyd.size
    owner = np.zeros((nf, nh), dtype=np.int64)  # index into heavy
    pending = np.full(nh, -1)  # candidate acceptor (index into heavy) and since which frame
    since = np.zeros(nh, dtype=np.int64)
    events = []
    for t in range(nf):
        cell = None if traj.cell is None else traj.cell[t]
        h, k, d = heavy_pairs(traj.positions[t], hyd, heavy, cutoff, cell)
        if t == 0:
            owner[0] = _nearest(h, k, d, nh)[0]
            continue
        cur = owner[t - 1].copy()
        mine = k == cur[h]
        d_own = np.full(nh, np.inf)
        np.minimum.at(d_own, h[mine], d[mine])
        other, d_other = _nearest(h[~mine], k[~mine], d[~mine], nh)
        with np.errstate(invalid="ignore"):
            delta = d_own - d_other  # inf - inf = nan: nobody near -> no event
        over = (cur >= 0) & (np.nan_to_num(delta, nan=-np.inf) > hysteresis)
        fresh = over & (pending != other)
        since[fresh] = t
        pending = np.where(over, other, -1)
        move = over & (t - since + 1 >= persistence)
        for i in np.flatnonzero(move):
            events.append((since[i], hyd[i], heavy[cur[i]], heavy[other[i]]))
            cur[i] = other[i]
        pending[move] = -1
        free = cur < 0  # no owner yet: the first heavy atom inside the cutoff takes it, not an event
        cur[free] = other[free]
        owner[t] = cur
    ev = np.array(events, dtype=np.int64).reshape(-1, 4)
    return _events(names, member, hyd, heavy, owner, ev, traj.time_fs, "numpy")


def _events(names, member, hyd, heavy, owner, ev, time_fs, backend) -> ProtonEvents:
    """ProtonEvents from owner (frames, n_h) and events (n, 4) rows (frame, hydrogen atom, donor atom,
    acceptor atom), atom indices 0-based; events sorted by (frame, hydrogen)."""
    ev = ev[np.lexsort(ev.T[::-1])] if len(ev) else ev.reshape(0, 4)
    nf, G = len(owner), len(names)
    dg, ag = member[ev[:, 2]], member[ev[:, 3]]
    counts = np.zeros((nf, G, G), dtype=np.int64)
    np.add.at(counts, (ev[:, 0], dg, ag), 1)
    return ProtonEvents(names, hyd, ev[:, 0], ev[:, 1], ev[:, 2], ev[:, 3], dg, ag, np.cumsum(counts, axis=0),
                        np.where(owner >= 0, heavy[owner], -1), np.asarray(time_fs), backend)


def _detect_numba(traj, hyd, heavy, cutoff, hysteresis, persistence):
    """Owner (frames, n_h) as atom indices into ``heavy`` and events (n, 4) as atom indices, numba kernel."""
    from rung.md._kernels.cpu import bin_grid, proton_events

    x = np.ascontiguousarray(traj.positions, dtype=np.float64)
    xh, xk = np.ascontiguousarray(x[:, hyd]), np.ascontiguousarray(x[:, heavy])
    nf = len(x)
    periodic = traj.cell is not None
    if periodic:
        cells = np.ascontiguousarray(np.broadcast_to(traj.cell, (nf, 3, 3)), dtype=np.float64)
        origins = np.zeros((nf, 3))
    else:  # a box around every atom of each frame, a little larger so no atom sits on its face
        sub = x[:, np.concatenate([hyd, heavy])]
        lo, hi = sub.min(axis=1), sub.max(axis=1)
        pad = 1e-6 * np.maximum(hi - lo, 1.0) + 1e-6
        origins = lo - pad
        cells = np.zeros((nf, 3, 3))
        cells[:, [0, 1, 2], [0, 1, 2]] = hi - lo + 2 * pad
    inv, nb, reach = bin_grid(cells, float(cutoff))
    owner, ev = proton_events(xh, xk, cells, inv, nb, reach, origins, periodic, float(cutoff), float(hysteresis),
                              int(persistence))
    if len(ev):
        ev = np.c_[ev[:, 0], hyd[ev[:, 1]], heavy[ev[:, 2]], heavy[ev[:, 3]]]
    return owner, ev.reshape(-1, 4)


def plot_counts(ev: ProtonEvents, path) -> bool:
    """Cumulative events per donor -> acceptor class over time; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, a in enumerate(ev.groups):
        for k, b in enumerate(ev.groups):
            if ev.counts.size and ev.counts[-1, i, k]:
                ax.step(ev.time_fs, ev.counts[:, i, k], where="post", label=f"{a} -> {b}")
    ax.set_xlabel("time (fs)")
    ax.set_ylabel("transfer events (cumulative)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
