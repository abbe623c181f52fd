"""Unsupervised adaptive sampling over replicas (``nnp-md adaptive``), and its reweighting.

The loop (Jaffrelot Inizan et al., Chem. Sci. 12, 4889 (2021); HTMD's adaptive sampling, Doerr and
De Fabritiis, JCTC 10, 2064 (2014)): iteration k runs R replicas, each an ordinary rung.md run
(classical, RPMD or QTB: whatever the input's md keys say) from a start structure with freshly drawn
Maxwell–Boltzmann momenta. After every iteration:

1. features of every frame of every replica so far (:func:`features`): the default
   ``"heavy_distances"`` are all distances between heavy atoms (Z > 1; all atoms when fewer than two are
   heavy), invariant to rotation and translation so no alignment is needed; ``"positions"`` are the
   Cartesian coordinates (model systems; no alignment); or a user list of atom-index tuples:
   ``[i, j]`` a distance, ``[i, j, k, l]`` a dihedral as (cos, sin). Indices are 0-based.
2. a linear projection to ``components`` dimensions refit on all frames so far (:func:`fit_projection`):
   PCA (default) or tICA (lag ``lag_frames``, Pérez-Hernández et al., JCP 139, 015102 (2013)).
   PCA is the default because it needs no lag time and no transitions: the first iterations are a few
   short trajectories in one basin, whose time-lagged covariance is noise, and the aim here is geometric
   coverage, not kinetics (BENCHMARKS.md compares the two on the Müller–Brown oracle).
3. a density estimate: a histogram of the projected frames on a ``bins``^components grid spanning them.
4. the next R starts (:func:`select_starts`): a visited cell c is drawn with probability
   ``p_c ∝ n_c^(-1/T)`` (n_c frames in c, T = ``selection_temperature``; T = 1 is HTMD's 1/count
   criterion, T -> 0 the least visited cells, T -> infinity uniform over visited cells), then a frame
   uniformly inside it. Draws are with replacement and seeded by (seed, iteration). The default T = 0.5
   and 20 bins come from the Müller–Brown scan in BENCHMARKS.md (finer grids make every cell rare and
   the choice nearly uniform over frames).

Reweighting (:func:`msm_weights`): the replicas are unbiased dynamics started from a biased set of
structures, so frame counts are not Boltzmann weighted but transition counts are. A Markov state model
on the grid cells (transition counts at lag ``lag_frames`` inside each trajectory, the reversible
maximum-likelihood transition matrix by the fixed-point iteration of Prinz et al., JCP 134, 174105
(2011), its stationary distribution pi on the largest strongly connected set) gives each frame the weight
``pi_c / n_c``. Assumptions: the dynamics on the cells is Markovian at the lag and each cell is locally
equilibrated (fine cells, lag longer than the in-cell relaxation), detailed balance (no external driving),
and every cell that matters is in the connected set (frames outside get weight 0; the fraction is
reported). Weighted averages then estimate Boltzmann averages.

Files (``workdir``): ``iter_KKK/replica_RRR/`` holds each replica's md.h5, md.log, md.chk.h5;
``iter_KKK/start_RRR.xyz`` its start; ``iter_KKK/analysis.h5`` the analysis (written to a temporary file
and renamed: its presence marks the iteration done); ``iter_KKK/explored.png`` the plot;
``adaptive.log`` the coverage summary. A killed run is resumed by running the same command again: done
replicas are skipped, interrupted ones continue from their checkpoint (bit for bit), a missing
analysis is recomputed from the trajectories. Atomic units inside.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np

from rung.core import units as U
from rung.core.errors import InputError
from rung.core.mpi import comm_info

PROJECTIONS = ("pca", "tica")


@dataclass(frozen=True)
class AdaptiveConfig:
    """Options of the ``[adaptive]`` table (the rest of the input file is an ordinary md input).

    iterations, replicas : loop size; every replica runs the md input's ``steps``
    features : "heavy_distances" | "positions" | list of [i, j] (distance) / [i, j, k, l] (dihedral)
    projection : "pca" | "tica"; components : its dimension; lag_frames : tICA and MSM lag (frames)
    bins : grid cells per projected dimension (density and MSM states)
    selection_temperature : T of p_c ∝ n_c^(-1/T)
    seed : selection and replica seeds (replica seeds derive from (seed, iteration, replica))
    plot : write iter_KKK/explored.png (needs matplotlib)
    """

    iterations: int = 5
    replicas: int = 4
    features: object = "heavy_distances"
    projection: str = "pca"
    components: int = 2
    lag_frames: int = 1
    bins: int = 20
    selection_temperature: float = 0.5
    seed: int = 0
    plot: bool = True

    def __post_init__(self):
        for name in ("iterations", "replicas", "components", "lag_frames", "bins"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"adaptive.{name} must be an integer >= 1, got {v!r}")
        if self.projection not in PROJECTIONS:
            raise InputError(f"adaptive.projection must be one of {PROJECTIONS}, got {self.projection!r}")
        if not (isinstance(self.selection_temperature, (int, float)) and self.selection_temperature > 0):
            raise InputError(f"adaptive.selection_temperature must be positive, got {self.selection_temperature!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"adaptive.seed must be a non-negative integer, got {self.seed!r}")
        f = self.features
        if isinstance(f, str):
            if f not in ("heavy_distances", "positions"):
                raise InputError(f"adaptive.features must be 'heavy_distances', 'positions' or a list of atom "
                                 f"index tuples, got {f!r}")
        elif not (isinstance(f, (list, tuple)) and f and all(isinstance(t, (list, tuple)) and len(t) in (2, 4)
                                                            and all(isinstance(i, int) for i in t) for t in f)):
            raise InputError("adaptive.features as a list needs [i, j] (distance) or [i, j, k, l] (dihedral) "
                             "entries of 0-based atom indices")


@dataclass(frozen=True)
class Projection:
    """A linear projection y = (f - mean) @ components. mean (n_features,); components (n_features, k);
    eigenvalues (k,) (PCA: variances; tICA: lagged autocorrelations)."""

    kind: str
    mean: np.ndarray
    components: np.ndarray
    eigenvalues: np.ndarray

    def __call__(self, f):
        return (np.asarray(f) - self.mean) @ self.components


# --------------------------------------------------------------------------------------------- features
def check_features(spec, numbers) -> None:
    """InputError when a feature list names atoms that do not exist. numbers: (n_atoms,) int."""
    n = len(numbers)
    if isinstance(spec, str):
        return
    bad = sorted({i for t in spec for i in t if not 0 <= i < n})
    if bad:
        raise InputError(f"adaptive.features names atom(s) {bad} but the structure has {n} atoms (0-based)")
    for t in spec:
        if len(set(t)) != len(t):
            raise InputError(f"adaptive.features entry {list(t)} repeats an atom")


def features(positions, numbers, spec="heavy_distances") -> np.ndarray:
    """Features of frames. positions: (frames, n_atoms, 3) Bohr -> (frames, n_features) float64
    (distances in Bohr, dihedrals as cos and sin)."""
    x = np.asarray(positions, dtype=np.float64)
    if spec == "positions":
        return x.reshape(len(x), -1)
    if spec == "heavy_distances":
        heavy = np.flatnonzero(np.asarray(numbers) > 1)
        if heavy.size < 2:
            heavy = np.arange(x.shape[1])
        i, j = np.triu_indices(heavy.size, 1)
        return np.linalg.norm(x[:, heavy[j]] - x[:, heavy[i]], axis=-1)
    cols = []
    for t in spec:
        if len(t) == 2:
            cols.append(np.linalg.norm(x[:, t[1]] - x[:, t[0]], axis=-1))
        else:
            phi = dihedral(x[:, t[0]], x[:, t[1]], x[:, t[2]], x[:, t[3]])
            cols += [np.cos(phi), np.sin(phi)]
    return np.stack(cols, axis=1)


def dihedral(a, b, c, d) -> np.ndarray:
    """Dihedral angle a-b-c-d (radians, IUPAC sign). a, b, c, d: (frames, 3)."""
    b0, b1, b2 = a - b, c - b, d - c
    b1n = b1 / np.linalg.norm(b1, axis=-1, keepdims=True)
    v = b0 - np.sum(b0 * b1n, -1, keepdims=True) * b1n
    w = b2 - np.sum(b2 * b1n, -1, keepdims=True) * b1n
    return np.arctan2(np.sum(np.cross(b1n, v) * w, -1), np.sum(v * w, -1))


# ------------------------------------------------------------------------------------------ projection
def fit_projection(feats, k: int, kind: str = "pca", *, traj=None, lag: int = 1) -> Projection:
    """PCA or tICA of feats (frames, n_features); traj (frames,) int labels the trajectory of each frame
    (frames of one trajectory consecutive, in time order), used by tICA for lagged pairs."""
    f = np.asarray(feats, dtype=np.float64)
    k = min(k, f.shape[1])
    mean = f.mean(axis=0)
    d = f - mean
    if kind == "pca" and f.shape[1] > len(f):
        # more features than frames (all heavy-atom distances of a large system, early iterations): the
        # SVD of the frames costs frames^2 x features instead of the covariance's features^3 eigenproblem
        _, sv, vt = np.linalg.svd(d, full_matrices=False)
        return Projection("pca", mean, _sign_fixed(vt[:k].T), sv[:k] ** 2 / max(len(d) - 1, 1))
    c0 = d.T @ d / max(len(d) - 1, 1)
    if kind == "pca":
        w, v = np.linalg.eigh(c0)
        order = np.argsort(w)[::-1][:k]
        return Projection("pca", mean, _sign_fixed(v[:, order]), w[order])
    from scipy.linalg import eigh

    t = np.zeros(len(f), dtype=np.int64) if traj is None else np.asarray(traj)
    ok = np.flatnonzero(t[lag:] == t[:-lag]) if len(f) > lag else np.zeros(0, dtype=np.int64)
    if ok.size < 2:  # no lagged pairs yet: PCA is the only information
        return replace(fit_projection(f, k, "pca"), kind="tica")
    a, b = d[ok], d[ok + lag]
    ct = 0.5 * (a.T @ b + b.T @ a) / len(ok)
    c0l = 0.5 * (a.T @ a + b.T @ b) / len(ok)
    reg = 1e-10 * np.trace(c0l) / len(c0l) + 1e-300
    w, v = eigh(ct, c0l + reg * np.eye(len(c0l)))
    order = np.argsort(w)[::-1][:k]
    return Projection("tica", mean, _sign_fixed(v[:, order]), w[order])


def _sign_fixed(v):
    """Eigenvectors with their largest component positive (a deterministic sign)."""
    s = np.sign(v[np.argmax(np.abs(v), axis=0), np.arange(v.shape[1])])
    return v * np.where(s == 0, 1.0, s)


# ------------------------------------------------------------------------------- density and selection
def grid(y, bins: int):
    """A regular grid spanning y (frames, k): edges (k, bins + 1) and each frame's flat cell index (frames,)."""
    y = np.asarray(y, dtype=np.float64)
    lo, hi = y.min(axis=0), y.max(axis=0)
    pad = 1e-9 * np.maximum(hi - lo, 1.0)
    edges = np.linspace(lo - pad, hi + pad, bins + 1, axis=1)  # (k, bins + 1)
    idx = np.stack([np.clip(np.searchsorted(edges[d], y[:, d], side="right") - 1, 0, bins - 1)
                    for d in range(y.shape[1])], axis=1)
    return edges, np.ravel_multi_index(idx.T, (bins,) * y.shape[1])


def select_starts(cells, n: int, temperature: float, rng: np.random.Generator) -> np.ndarray:
    """n frame indices: a visited cell with p_c ∝ n_c^(-1/T), then a frame uniformly inside it.
    cells: (frames,) int cell of every frame."""
    cells = np.asarray(cells)
    visited, counts = np.unique(cells, return_counts=True)
    logp = -np.log(counts) / temperature
    p = np.exp(logp - logp.max())
    p /= p.sum()
    pick = rng.choice(visited.size, size=n, p=p)
    return np.array([rng.choice(np.flatnonzero(cells == visited[c])) for c in pick], dtype=np.int64)


# ------------------------------------------------------------------------------------------ reweighting
def msm_weights(cells, traj, lag: int = 1, *, tol: float = 1e-10, max_iter: int = 100000):
    """Frame weights from a reversible MSM on ``cells`` (module docstring).

    cells : (frames,) int, the state of each frame; traj : (frames,) int, its trajectory (consecutive,
    time ordered). Returns (weights (frames,) summing to 1, zero outside the connected set;
    fraction of frames outside it).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    cells, traj = np.asarray(cells), np.asarray(traj)
    states, s = np.unique(cells, return_inverse=True)
    m = states.size
    ok = np.flatnonzero(traj[lag:] == traj[:-lag]) if len(cells) > lag else np.zeros(0, dtype=np.int64)
    c = coo_matrix((np.ones(ok.size), (s[ok], s[ok + lag])), shape=(m, m)).toarray()
    _, comp = connected_components(c, directed=True, connection="strong")
    sizes = np.bincount(comp, weights=c.sum(1))
    active = comp == np.argmax(sizes)
    ca = c[np.ix_(active, active)]
    sym = ca + ca.T
    i, j = np.nonzero(sym)  # x_ij lives on the observed edges only
    cs = sym[i, j]
    ci = ca.sum(1)
    x = cs.copy()  # reversible MLE fixed point: x_ij <- (c_ij + c_ji) / (c_i / x_i + c_j / x_j)
    pi_old = pi_a = np.full(ca.shape[0], 1.0 / ca.shape[0])  # no transitions at all: nothing to weigh
    for _ in range(max_iter if cs.size else 0):
        xi = np.bincount(i, weights=x, minlength=ca.shape[0])
        q = ci / xi
        x = cs / (q[i] + q[j])
        pi_a = xi / xi.sum()
        if pi_old is not None and np.max(np.abs(pi_a - pi_old)) <= tol * pi_a.max():
            break
        pi_old = pi_a
    pi = np.zeros(m)
    pi[active] = pi_a
    n = np.bincount(s, minlength=m)
    w = pi[s] / n[s]
    return w / w.sum(), float(np.mean(~active[s]))


# ------------------------------------------------------------------------------------------ the driver
def replica_seed(seed: int, iteration: int, replica: int) -> int:
    """The md seed of a replica: a hash of (seed, iteration, replica) below 2^63."""
    a, b = np.random.SeedSequence([seed, iteration, replica]).generate_state(2, np.uint32)
    return int((int(a) << 31) ^ int(b)) & (2**63 - 1)


def parse_input(path):
    """An adaptive input file -> (MDConfig, AdaptiveConfig): the ``[adaptive]`` table and an ordinary md input."""
    from rung.md.config import parse_config, read_toml

    path = Path(path)
    data = read_toml(path)
    ad = data.pop("adaptive", None)
    if ad is None:
        raise InputError(f"{path}: an adaptive input needs an [adaptive] table (iterations, replicas, ...)")
    unknown = set(ad) - set(AdaptiveConfig.__dataclass_fields__)
    if unknown:
        raise InputError(f"unknown [adaptive] key(s) {sorted(unknown)}; known: "
                         f"{sorted(AdaptiveConfig.__dataclass_fields__)}")
    if "selection_temperature" in ad and isinstance(ad["selection_temperature"], int):
        ad["selection_temperature"] = float(ad["selection_temperature"])
    return parse_config(data, path.parent), AdaptiveConfig(**ad)


@dataclass(frozen=True)
class IterationResult:
    """The analysis of one iteration (the arrays of ``iter_KKK/analysis.h5``).

    frame_id : (frames, 3) int (iteration, replica, frame) of every frame so far
    projected : (frames, k) float64 projected features; cells : (frames,) int grid cell
    edges : (k, bins + 1) grid edges; weights : (frames,) MSM frame weights
    selected : (replicas,) int rows of frame_id chosen as next starts
    starts : (replicas, n_atoms, 3) float64, Bohr, their positions
    coverage : visited cells of this iteration's grid
    """

    iteration: int
    projection: Projection
    frame_id: np.ndarray
    projected: np.ndarray
    cells: np.ndarray
    edges: np.ndarray
    weights: np.ndarray
    disconnected_fraction: float
    selected: np.ndarray
    starts: np.ndarray
    coverage: int
    extra: dict = field(default_factory=dict)

    def to_hdf5(self, path):
        from rung.md import __version__

        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        with h5py.File(tmp, "w") as f:
            f.attrs.update({"schema": "rung-md-adaptive-iteration", "schema_version": 1,
                            "package_version": __version__, "backend": "numpy", "iteration": self.iteration,
                            "projection": self.projection.kind, "coverage": self.coverage,
                            "disconnected_fraction": self.disconnected_fraction})
            for k, v in self.extra.items():
                f.attrs[k] = v
            for name, data, unit in (("projection_mean", self.projection.mean, "feature units"),
                                     ("projection_components", self.projection.components, "1"),
                                     ("projection_eigenvalues", self.projection.eigenvalues, "feature units^2"),
                                     ("frame_id", self.frame_id, "1"), ("projected", self.projected, "feature units"),
                                     ("cells", self.cells, "1"), ("edges", self.edges, "feature units"),
                                     ("weights", self.weights, "1"), ("selected", self.selected, "1"),
                                     ("starts", self.starts, "bohr")):
                f.create_dataset(name, data=np.asarray(data)).attrs["units"] = unit
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def from_hdf5(cls, path):
        with h5py.File(path, "r") as f:
            a = {k: np.array(f[k]) for k in f}
            at = dict(f.attrs)
        proj = Projection(str(at["projection"]), a["projection_mean"], a["projection_components"],
                          a["projection_eigenvalues"])
        known = {"schema", "schema_version", "package_version", "backend", "iteration", "projection", "coverage",
                 "disconnected_fraction"}
        extra = {k: v.item() if isinstance(v, np.generic) else v for k, v in at.items() if k not in known}
        return cls(int(at["iteration"]), proj, a["frame_id"], a["projected"], a["cells"], a["edges"], a["weights"],
                   float(at["disconnected_fraction"]), a["selected"], a["starts"], int(at["coverage"]), extra)


def _replica_dir(workdir, it, r):
    return Path(workdir) / f"iter_{it:03d}" / f"replica_{r:03d}"


def read_positions(h5md) -> np.ndarray:
    """Centroid positions of a rung H5MD file, (frames, n_atoms, 3) Bohr."""
    from rung.md.output import read_centroid

    return read_centroid(h5md)["positions"]


def _write_start(template, positions, path):
    from ase.io import write

    atoms = template.copy()
    atoms.positions = positions * U.BOHR_TO_ANGSTROM
    tmp = Path(str(path) + ".tmp.xyz")
    write(tmp, atoms, format="extxyz", parallel=False)  # ASE would write on its world rank 0 only
    os.replace(tmp, path)


def _run_replica(config, rdir, progress=False, comm=None):
    """Run (or finish, or skip) one replica in rdir; every case is safe after a kill. True when it ran.
    comm : the replica's communicator (its beads over those ranks) or None; its rank 0 decides."""
    from rung.md.output import read_checkpoint
    from rung.md.simulation import run

    chk = rdir / f"{config.output.prefix}.chk.h5"
    step = -1  # -1: no usable checkpoint
    if comm_info(comm)[0] == 0:
        if chk.exists():
            try:
                step = read_checkpoint(chk)[0].step
            except ValueError:
                pass
    if comm is not None:
        step = comm.bcast(step, root=0)
    if step >= config.steps:
        return False
    run(config, workdir=rdir, restart=step >= 0, overwrite=step < 0, progress=progress, comm=comm)
    return True


def analyse(iteration, frame_id, positions, numbers, acfg: AdaptiveConfig, feats=None) -> IterationResult:
    """Features -> projection -> density -> next starts, on all frames so far.
    frame_id (frames, 3) int; positions (frames, n_atoms, 3) Bohr, frames of a trajectory consecutive;
    feats (frames, n_features): the features of those frames when already computed (else computed here)."""
    feats = features(positions, numbers, acfg.features) if feats is None else feats
    traj = frame_id[:, 0] * 1_000_000 + frame_id[:, 1]
    proj = fit_projection(feats, acfg.components, acfg.projection, traj=traj, lag=acfg.lag_frames)
    y = proj(feats)
    edges, cells = grid(y, acfg.bins)
    w, outside = msm_weights(cells, traj, acfg.lag_frames)
    rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence([acfg.seed, iteration, 7])))
    sel = select_starts(cells, acfg.replicas, acfg.selection_temperature, rng)
    return IterationResult(iteration, proj, frame_id, y, cells, edges, w, outside, sel, positions[sel],
                           int(np.unique(cells).size))


def plot_iteration(res: IterationResult, path) -> bool:
    """Projected frames coloured by iteration, the next starts marked; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    y = res.projected if res.projected.shape[1] > 1 else np.c_[res.projected, np.zeros(len(res.projected))]
    fig, ax = plt.subplots(figsize=(5, 4.2))
    sc = ax.scatter(y[:, 0], y[:, 1], c=res.frame_id[:, 0], s=3, cmap="viridis")
    ax.scatter(y[res.selected, 0], y[res.selected, 1], marker="x", c="red", s=40, label="next starts")
    fig.colorbar(sc, ax=ax, label="iteration")
    ax.set_xlabel(f"{res.projection.kind} 1")
    ax.set_ylabel(f"{res.projection.kind} 2" if res.projected.shape[1] > 1 else "")
    ax.set_title(f"iteration {res.iteration}: {len(y)} frames, {res.coverage} cells")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def replica_groups(world_size: int, bead_ranks: int) -> int:
    """Number of replica groups of ``bead_ranks`` ranks each in a world of ``world_size`` ranks: world
    rank w is rank ``w % bead_ranks`` of group ``w // bead_ranks``, and replica r runs on group
    ``r % groups``. InputError when the ranks do not divide into groups."""
    if not isinstance(bead_ranks, int) or bead_ranks < 1 or world_size % bead_ranks:
        raise InputError(f"bead ranks per replica ({bead_ranks}) must be a positive divisor of the number "
                         f"of MPI ranks ({world_size})")
    return world_size // bead_ranks


def run_adaptive(config, acfg: AdaptiveConfig, workdir=".", *, comm=None, bead_ranks: int = 1,
                 progress=False) -> list[IterationResult]:
    """The adaptive loop (module docstring); resumes whatever a killed run left in ``workdir``.

    config : the :class:`rung.md.config.MDConfig` every replica runs (its structure is the first start)
    comm : mpi4py communicator or None (serial). Two levels of parallelism: the ranks split
        (``comm.Split``) into groups of ``bead_ranks`` ranks (:func:`replica_groups`); replica r runs on
        group r % groups, its beads spread over the group's ranks (:class:`rung.md.parallel.BeadForces`).
        The rank 0 of each group writes its replicas' outputs and reads their frames back; the frames
        are gathered on rank 0, which alone does the analysis and selection, and broadcasts the result.
        Replica seeds depend on (seed, iteration, replica) only, so the trajectories do not depend on
        the number of ranks.
    Returns the analyses of all iterations (on every rank). Each new analysis records its timings
    (``extra``: ``replica_wall_s`` the slowest group's replica phase, ``replica_cpu_s`` the largest CPU
    time of a rank in it, ``gather_wait_s`` the longest wait
    of a group for the others, ``selection_s`` rank 0's reading of new frames, features, projection,
    density, MSM and selection).
    """
    import time

    from ase.io import read

    from rung.md.simulation import read_system

    workdir = Path(workdir)
    rank, size = comm_info(comm)
    groups = replica_groups(size, bead_ranks)
    group = rank // bead_ranks
    sub = None
    if comm is not None and bead_ranks > 1:
        sub = comm.Split(group, rank)
    leader = comm_info(sub)[0] == 0
    system = read_system(config)
    check_features(acfg.features, system.numbers)
    template = read(config.structure, parallel=False)
    results = []
    frames = {}  # rank 0: (iteration, replica) -> (positions, features) of the replicas so far
    starts = np.repeat(system.positions[None], acfg.replicas, axis=0)
    prefix = config.output.prefix
    for it in range(acfg.iterations):
        idir = workdir / f"iter_{it:03d}"
        ana = idir / "analysis.h5"
        done = ana.exists() if rank == 0 else None
        if comm is not None:
            done = comm.bcast(done, root=0)
        if done:
            res = IterationResult.from_hdf5(ana) if rank == 0 else None
        else:
            if rank == 0:
                idir.mkdir(parents=True, exist_ok=True)
            if comm is not None:
                comm.Barrier()
            t0, c0 = time.perf_counter(), time.process_time()
            mine = {}
            for r in range(group, acfg.replicas, groups):
                rdir = _replica_dir(workdir, it, r)
                start = idir / f"start_{r:03d}.xyz"
                if leader:
                    rdir.mkdir(parents=True, exist_ok=True)
                    _write_start(template, starts[r], start)
                if sub is not None:
                    sub.Barrier()  # the start file exists before the group's ranks read it
                rcfg = replace(config, structure=str(start.resolve()), seed=replica_seed(acfg.seed, it, r))
                _run_replica(rcfg, rdir, progress, comm=sub)
                if leader:
                    mine[r] = read_positions(rdir / f"{prefix}.h5")
            t_run, c_run = time.perf_counter() - t0, time.process_time() - c0
            if comm is None:
                gathered, waits, t_runs, c_runs = [mine], [0.0], [t_run], [c_run]
            else:
                t1 = time.perf_counter()
                comm.Barrier()
                waits = comm.gather(time.perf_counter() - t1, root=0)
                gathered = comm.gather(mine, root=0)
                t_runs = comm.gather(t_run, root=0)
                c_runs = comm.gather(c_run, root=0)
            res = None
            if rank == 0:
                t2 = time.perf_counter()
                for g in gathered:
                    frames.update({(it, r): (x, features(x, system.numbers, acfg.features)) for r, x in g.items()})
                for k in range(it + 1):  # after a resume: frames of earlier iterations from their files
                    for r in range(acfg.replicas):
                        if (k, r) not in frames:
                            x = read_positions(_replica_dir(workdir, k, r) / f"{prefix}.h5")
                            frames[k, r] = (x, features(x, system.numbers, acfg.features))
                keys = [(k, r) for k in range(it + 1) for r in range(acfg.replicas)]
                ids = np.concatenate([np.c_[np.full(len(frames[k][0]), k[0]), np.full(len(frames[k][0]), k[1]),
                                            np.arange(len(frames[k][0]))] for k in keys])
                res = analyse(it, ids, np.concatenate([frames[k][0] for k in keys]), system.numbers, acfg,
                              feats=np.concatenate([frames[k][1] for k in keys]))
                res.extra.update({"replica_wall_s": max(t_runs), "replica_cpu_s": max(c_runs),
                                  "gather_wait_s": max(waits), "selection_s": time.perf_counter() - t2,
                                  "ranks": size, "bead_ranks": bead_ranks})
                res.to_hdf5(ana)
                if acfg.plot:
                    plot_iteration(res, idir / "explored.png")
                _write_summary(workdir, results + [res])
        if comm is not None:
            res = comm.bcast(res, root=0)
        results.append(res)
        starts = res.starts
    if rank == 0:
        _write_summary(workdir, results)
    return results


def _write_summary(workdir, results):
    lines = ["# rung-md adaptive sampling: iteration frames coverage_cells projection eigenvalues... "
             "disconnected_fraction replica_wall_s selection_s\n"]
    for r in results:
        t = [r.extra.get(k, float("nan")) for k in ("replica_wall_s", "selection_s")]
        lines.append(f"{r.iteration:5d} {len(r.frame_id):8d} {r.coverage:6d} {r.projection.kind} "
                     + " ".join(f"{e:.4g}" for e in r.projection.eigenvalues) + f" {r.disconnected_fraction:.3f}"
                     + f" {t[0]:.4g} {t[1]:.4g}\n")
    tmp = Path(workdir) / "adaptive.log.tmp"
    tmp.write_text("".join(lines))
    os.replace(tmp, Path(workdir) / "adaptive.log")
