"""The Müller–Brown sampling experiment behind the adaptive-sampling oracles (and BENCHMARKS.md).

Every strategy spends the same number of Langevin steps per seed, ``replicas * iterations * steps``, with
rung's BAOAB integrator (:func:`rung.md.integrators.langevin`) on :class:`~rung.md.model_potentials.MullerBrown`,
all from basin A. Because the Müller–Brown energy is a sum over atoms, the replicas of all seeds run as
the atoms of ONE system (independent particles; one integrator call per step for everything):

- ``long``: one trajectory per seed of replicas * iterations * steps steps;
- ``replicas``: R trajectories per seed of iterations * steps steps (plain replicas, no restarts);
- ``adaptive``: iterations x R trajectories of ``steps`` steps, restarted from
  :func:`rung.md.adaptive.select_starts` on the PCA grid of all frames so far, fresh momenta each time.

``cost`` of a frame is the number of steps the seed had spent when it was recorded (replicas run side
by side, so a frame at step t of iteration k costs (k * steps + t) * R).
"""

from __future__ import annotations

import numpy as np

from rung.core import units as U
from rung.md.adaptive import AdaptiveConfig, fit_projection, grid, select_starts
from rung.md.integrators import langevin
from rung.md.model_potentials import MB_MINIMA, MullerBrown, muller_brown

KT_MB = 10.0  # kT in MB energy units: A -> C barrier 7.45 kT, A -> the C-B saddle 10.6 kT
TEMPERATURE_K = 300.0
KT = TEMPERATURE_K * U.BOLTZMANN_HARTREE_PER_K
POT = MullerBrown(KT / KT_MB, 1.0)  # Hartree per MB unit = kT / KT_MB
MASS = 1.0 * U.AMU_TO_ELECTRON_MASS
DT = 1.0 * U.FS_TO_AU_TIME
GAMMA = 1.0 / (50.0 * U.FS_TO_AU_TIME)
BOX = ((-1.5, 1.2), (-0.4, 2.0))  # MB units, the coverage grid
CELL = 0.1


def _force(x):
    return POT.compute(x)


def _run(x0, n_steps, stride, seed):
    """Trajectories of all particles: x0 (N, 2) -> frames (n_steps // stride, N, 2), MB units."""
    init_fn, step_fn = langevin(_force, DT, KT, GAMMA, seed=seed)
    x = np.zeros((len(x0), 3))
    x[:, :2] = x0
    state = init_fn(x, np.full(len(x0), MASS))
    out = []
    for t in range(1, n_steps + 1):
        state = step_fn(state)
        if t % stride == 0:
            out.append(state.positions[:, :2].copy())
    return np.array(out)


def experiment(strategy, n_seeds=20, replicas=8, iterations=8, steps=250, stride=10, seed=0,
               acfg: AdaptiveConfig | None = None):
    """Frames and costs per seed: list of (xy (frames, 2) MB units, cost (frames,) steps, traj (frames,))."""
    S, R = n_seeds, replicas
    a = np.array(MB_MINIMA["A"])
    rng_seed = 1000 * seed
    if strategy == "long":
        fr = _run(np.tile(a, (S, 1)), R * iterations * steps, stride, rng_seed)  # (T, S, 2)
        cost = np.arange(1, len(fr) + 1) * stride
        return [(fr[:, s], cost, np.zeros(len(fr), dtype=np.int64)) for s in range(S)]
    if strategy == "replicas":
        fr = _run(np.tile(a, (S * R, 1)), iterations * steps, stride, rng_seed).reshape(-1, S, R, 2)
        cost = np.arange(1, len(fr) + 1) * stride * R
        return [(fr[:, s].transpose(1, 0, 2).reshape(-1, 2), np.tile(cost, R), np.repeat(np.arange(R), len(fr)))
                for s in range(S)]
    acfg = acfg or AdaptiveConfig(replicas=R, features="positions", bins=20, seed=seed)
    starts = np.tile(a, (S * R, 1)).reshape(S, R, 2)
    xy = [[] for _ in range(S)]
    costs = [[] for _ in range(S)]
    trajs = [[] for _ in range(S)]
    for it in range(iterations):
        fr = _run(starts.reshape(-1, 2), steps, stride, rng_seed + it + 1).reshape(-1, S, R, 2)
        cost = (it * steps + np.arange(1, len(fr) + 1) * stride) * R
        for s in range(S):
            xy[s].append(fr[:, s].transpose(1, 0, 2).reshape(-1, 2))
            costs[s].append(np.tile(cost, R))
            trajs[s].append(it * R + np.repeat(np.arange(R), len(fr)))
            f = np.concatenate(xy[s])
            tr = np.concatenate(trajs[s])
            proj = fit_projection(f, acfg.components, acfg.projection, traj=tr, lag=acfg.lag_frames)
            _, cells = grid(proj(f), acfg.bins)
            rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence([acfg.seed, s, it])))
            starts[s] = f[select_starts(cells, R, acfg.selection_temperature, rng)]
    return [(np.concatenate(xy[s]), np.concatenate(costs[s]), np.concatenate(trajs[s])) for s in range(S)]


def coverage(xy) -> int:
    """Visited cells of the fixed CELL grid over BOX. xy (frames, 2) MB units."""
    (x0, x1), (y0, y1) = BOX
    nx, ny = int(round((x1 - x0) / CELL)), int(round((y1 - y0) / CELL))
    i = np.floor((xy[:, 0] - x0) / CELL).astype(int)
    j = np.floor((xy[:, 1] - y0) / CELL).astype(int)
    ok = (i >= 0) & (i < nx) & (j >= 0) & (j < ny)
    return int(np.unique(i[ok] * ny + j[ok]).size)


def basin(xy) -> np.ndarray:
    """Basin label 0 = A, 1 = C, 2 = B of each point: the nearest minimum (a Voronoi partition)."""
    m = np.array([MB_MINIMA[k] for k in ("A", "C", "B")])
    return np.argmin(np.linalg.norm(xy[:, None, :] - m[None], axis=-1), axis=1)


def first_passage(xy, cost, target="B", radius=0.15) -> float:
    """Steps spent before a frame came within radius (MB units) of the target minimum; inf if never."""
    hit = np.linalg.norm(xy - np.array(MB_MINIMA[target]), axis=1) < radius
    return float(cost[hit].min()) if hit.any() else np.inf


def exact_populations(kT_mb=KT_MB, n=801) -> np.ndarray:
    """Boltzmann populations of the basins (A, C, B) by quadrature of exp(-V/kT) on a fine grid."""
    u, v = np.meshgrid(np.linspace(-2.0, 1.6, n), np.linspace(-1.0, 2.6, n), indexing="ij")
    V = muller_brown(u, v)[0]
    w = np.exp(-(V - V.min()) / kT_mb)
    lab = basin(np.c_[u.ravel(), v.ravel()])
    return np.bincount(lab, weights=w.ravel(), minlength=3) / w.sum()
