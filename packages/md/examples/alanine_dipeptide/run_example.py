"""Adaptive sampling against plain replicas on alanine dipeptide (ANI-1x): Ramachandran coverage.

    python run_example.py [adaptive.toml]   # in this folder; rerun to resume

Cost (measured): 2 x 48,000 ANI-1x steps of 22 atoms, 3.5 ms of CPU a step (about 6 CPU min).

1. ``nnp-md adaptive adaptive.toml --workdir runs/adaptive`` (through the Python API): ``iterations``
   x ``replicas`` runs of ``steps`` steps, restarted from frames chosen on the (phi, psi) features.
2. The baseline: ``replicas`` plain runs of ``iterations * steps`` steps from the same structure, with
   the seeds of the adaptive iteration 0 (so that iteration is the first ``steps`` of each plain run).
3. Coverage at equal cost: after k iterations (k * replicas * steps steps in both), the number of
   20 x 20 degree cells of the Ramachandran plane visited by any frame so far. Written to
   results_<input>.txt, ramachandran_<input>.png (the visited (phi, psi) per iteration, both
   methods) and coverage_<input>.png; the runs go to runs/<input>/ (<input>: the input's stem).
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from rung.md.adaptive import dihedral, parse_input, read_positions, replica_seed, run_adaptive
from rung.md.simulation import run

HERE = Path(__file__).resolve().parent
PHI, PSI = (1, 3, 5, 6), (3, 5, 6, 8)
CELL_DEG = 20


def phi_psi(x):
    """x (frames, 22, 3) -> (frames, 2) degrees."""
    return np.degrees(np.stack([dihedral(*(x[:, i] for i in t)) for t in (PHI, PSI)], axis=1))


def coverage(angles):
    n = 360 // CELL_DEG
    idx = np.floor((angles + 180.0) / CELL_DEG).astype(int) % n
    return np.unique(idx[:, 0] * n + idx[:, 1]).size


def main(name="adaptive.toml"):
    config, acfg = parse_input(HERE / name)
    K, R, S = acfg.iterations, acfg.replicas, config.steps
    every = config.output.trajectory_every
    tag = Path(name).stem
    work = HERE / "runs" / tag
    run_adaptive(config, acfg, work / "adaptive")
    for r in range(R):  # plain replicas; a finished one is skipped, a killed one continues
        rdir = work / "plain" / f"replica_{r:03d}"
        rdir.mkdir(parents=True, exist_ok=True)
        chk = rdir / "md.chk.h5"
        rcfg = replace(config, steps=K * S, seed=replica_seed(acfg.seed, 0, r))
        if not (rdir / "done").exists():
            run(rcfg, workdir=rdir, restart=chk.exists(), overwrite=not chk.exists(), progress=False)
            (rdir / "done").touch()

    # angles by iteration: adaptive iteration k; plain frames of steps (k S, (k + 1) S]
    ada = [[phi_psi(read_positions(work / "adaptive" / f"iter_{k:03d}" / f"replica_{r:03d}" / "md.h5"))
            for r in range(R)] for k in range(K)]
    per = S // every
    plain_r = [phi_psi(read_positions(work / "plain" / f"replica_{r:03d}" / "md.h5")) for r in range(R)]
    plain = [[a[k * per + (k > 0):(k + 1) * per + 1] for a in plain_r] for k in range(K)]
    same = all(np.allclose(ada[0][r], plain[0][r]) for r in range(R))

    lines = [f"# alanine dipeptide, ANI-1x, {config.temperature_K:g} K Langevin (tau {config.tau_fs:g} fs), "
             f"dt {config.dt_fs:g} fs, {R} replicas x {S} steps per iteration, frames every {every} steps",
             f"# coverage: visited {CELL_DEG}x{CELL_DEG} degree cells of the Ramachandran plane (of "
             f"{(360 // CELL_DEG) ** 2}), cumulative; adaptive seed {acfg.seed}, md seeds replica_seed(seed, k, r)",
             f"# iteration 0 identical in both (same starts and seeds): {same}",
             "# left-handed: fraction of frames with 0 < phi < 120 degrees (C7ax, alpha_L; the extended C5 region "
             "wraps across phi = +-180 and is not counted)",
             "# iteration  total_steps  total_ps  adaptive_cells  plain_cells  adaptive_left_frac  plain_left_frac"]
    cov = {"adaptive": [], "plain": []}
    for k in range(K):
        row = []
        for name, data in (("adaptive", ada), ("plain", plain)):
            a = np.concatenate([x for kk in range(k + 1) for x in data[kk]])
            cov[name].append(coverage(a))
            row.append(np.mean((a[:, 0] > 0) & (a[:, 0] < 120)))
        steps = (k + 1) * R * S
        lines.append(f"{k:9d} {steps:12d} {steps * config.dt_fs / 1000:9.2f} {cov['adaptive'][k]:15d} "
                     f"{cov['plain'][k]:12d} {row[0]:19.3f} {row[1]:16.3f}")
    (HERE / f"results_{tag}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(ada, plain, cov, K, R, S, config.dt_fs, tag)


def plot(ada, plain, cov, K, R, S, dt_fs, tag):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, K, figsize=(2.2 * K, 4.8), sharex=True, sharey=True)
    cmap = plt.get_cmap("viridis", K)
    for row, (name, data) in enumerate((("adaptive", ada), ("plain replicas", plain))):
        for k in range(K):
            ax = axes[row, k]
            for kk in range(k + 1):
                a = np.concatenate(data[kk])
                ax.scatter(a[:, 0], a[:, 1], s=1, color=cmap(kk), rasterized=True)
            ax.set_xlim(-180, 180)
            ax.set_ylim(-180, 180)
            ax.set_xticks([-180, 0, 180])
            ax.set_yticks([-180, 0, 180])
            key = "adaptive" if row == 0 else "plain"
            ax.set_title(f"{name}, it. {k}: {cov[key][k]} cells", fontsize=7)
            if row == 1:
                ax.set_xlabel("phi (deg)", fontsize=7)
            if k == 0:
                ax.set_ylabel("psi (deg)", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(HERE / f"ramachandran_{tag}.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4, 3))
    ps = np.arange(1, K + 1) * R * S * dt_fs / 1000
    ax.plot(ps, cov["adaptive"], "o-", label="adaptive")
    ax.plot(ps, cov["plain"], "s-", label="plain replicas")
    ax.set_xlabel("total simulated time (ps)")
    ax.set_ylabel(f"visited {CELL_DEG}° cells")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / f"coverage_{tag}.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main(*sys.argv[1:])
