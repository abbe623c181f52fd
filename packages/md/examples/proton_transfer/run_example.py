"""Proton transfer in malonaldehyde with ANI-1x: RPMD against classical MD, events counted by
``nnp-md analyze protons``.

    python barrier.py                 # once: malonaldehyde.xyz and the ANI-1x barrier (barrier.txt)
    python run_example.py [temperature_K [seeds]]   # in this folder (default 1200 K, 4 seeds);
                                                    # rerun to resume (finished runs are skipped)

For each method (classical.toml, rpmd.toml, their temperature replaced by temperature_K) and each seed
1..seeds: ``nnp-md run`` (Python API) in runs/<T>K/<method>_seed<s>/, then

    nnp-md analyze protons runs/<T>K/<method>_seed<s>/md.h5 --group O=O --group C=C --output runs/<T>K/<method>_seed<s>/pt

(carbons are a group so that the C-H protons belong to their carbons; a C -> O event would be a
keto-enol step). RPMD is analysed on the centroid. Writes results_<T>K.txt (events per run, events
per ps with a Poisson error, and the fraction of frames whose shared proton has |delta| < 0.3 A, a
crossing-region population with better statistics than the events) and events_<T>K.png (cumulative
O -> O events against time, each seed and their sum).
"""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from rung.core import units as U
from rung.md.config import load_config
from rung.md.output import read_centroid
from rung.md.simulation import run

HERE = Path(__file__).resolve().parent
METHODS = ("classical", "rpmd")
O1, O2, H_SHARED = 0, 4, 5  # malonaldehyde.xyz


def simulate(method, seed, temperature_K):
    config = replace(load_config(HERE / f"{method}.toml"), seed=seed, temperature_K=temperature_K)
    rdir = HERE / "runs" / f"{temperature_K:g}K" / f"{method}_seed{seed}"
    rdir.mkdir(parents=True, exist_ok=True)
    if not (rdir / "done").exists():
        chk = rdir / "md.chk.h5"
        run(config, workdir=rdir, restart=chk.exists(), overwrite=not chk.exists(), progress=False)
        (rdir / "done").touch()
    subprocess.run([sys.executable, "-m", "rung.md.cli", "analyze", "protons", str(rdir / "md.h5"),
                    "--group", "O=O", "--group", "C=C", "--output", str(rdir / "pt")], check=True,
                   stdout=subprocess.DEVNULL)
    with h5py.File(rdir / "pt.h5", "r") as f:
        groups = [g.decode() if isinstance(g, bytes) else str(g) for g in f.attrs["groups"]]
        o = groups.index("O")
        counts = np.array(f["counts"])  # (frames, G, G) cumulative
        time_ps = np.array(f["time"]) / 1000.0
        other = int(counts[-1].sum() - counts[-1, o, o])
    x = read_centroid(rdir / "md.h5")["positions"]  # (frames, 9, 3) Bohr
    delta = np.linalg.norm(x[:, O1] - x[:, H_SHARED], axis=1) - np.linalg.norm(x[:, O2] - x[:, H_SHARED], axis=1)
    shared = float(np.mean(np.abs(delta) * U.BOHR_TO_ANGSTROM < 0.3))
    return config, time_ps, counts[:, o, o], other, shared


def main(temperature_K=1200.0, seeds=4):
    lines, curves = [], {}
    for method in METHODS:
        total_events, total_ps = 0, 0.0
        for seed in range(1, seeds + 1):
            config, t, oo, other, shared = simulate(method, seed, temperature_K)
            curves[method, seed] = (t, oo)
            span = t[-1] - t[0]
            total_events += int(oo[-1])
            total_ps += span
            lines.append(f"{method:9s} {config.beads:5d} {seed:4d} {span:7.2f} {int(oo[-1]):8d} {other:12d} "
                         f"{oo[-1] / span:10.2f} {shared:12.4f}")
        rate, err = total_events / total_ps, np.sqrt(max(total_events, 1)) / total_ps
        lines.append(f"{method:9s} {'':5s} {'all':>4s} {total_ps:7.2f} {total_events:8d} {'':12s} "
                     f"{rate:10.2f} +- {err:.2f} (Poisson)")
    head = [f"# malonaldehyde, ANI-1x, {config.temperature_K:g} K, Langevin / PILE-L tau {config.tau_fs:g} fs, "
            f"dt {config.dt_fs:g} fs, frames every {config.output.trajectory_every} steps; "
            "nnp-md analyze protons --group O=O --group C=C (hysteresis 0.3 A, persistence 1 frame)",
            "# method    beads seed time_ps O->O_events other_events events_per_ps |delta|<0.3A"]
    tag = f"{temperature_K:g}K"
    (HERE / f"results_{tag}.txt").write_text("\n".join(head + lines) + "\n")
    print("\n".join(head + lines))
    plot(curves, tag)


def plot(curves, tag):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    colors = {"classical": "tab:blue", "rpmd": "tab:red"}
    for method in METHODS:
        runs = [v for (m, _), v in curves.items() if m == method]
        for t, oo in runs:  # each seed, thin
            ax.step(t, oo, where="post", color=colors[method], lw=0.6, alpha=0.35)
        t = runs[0][0]
        total = np.sum([oo for _, oo in runs], axis=0)  # all seeds, summed at equal times
        ax.step(t, total, where="post", color=colors[method], lw=2, label=f"{method}: sum of {len(runs)} seeds")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("cumulative O -> O transfers")
    ax.legend(fontsize=7)
    ax.set_title(f"malonaldehyde, ANI-1x, {tag}", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / f"events_{tag}.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(float(args[0]) if args else 1200.0, int(args[1]) if len(args) > 1 else 4)
