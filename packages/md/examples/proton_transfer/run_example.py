"""Proton transfer in malonaldehyde with ANI-1x: RPMD against classical MD, events counted by
``nnp-md analyze protons``.

    python barrier.py                 # once: malonaldehyde.xyz and the ANI-1x barrier (barrier.txt)
    python run_example.py             # in this folder; rerun to resume (finished runs are skipped)

For each method (classical.toml, rpmd.toml) and each seed in SEEDS: ``nnp-md run`` (Python API) in
runs/<method>_seed<s>/, then

    nnp-md analyze protons runs/<method>_seed<s>/md.h5 --group O=O --group C=C --output runs/<method>_seed<s>/pt

(carbons are a group so that the C-H protons belong to their carbons; a C -> O event would be a
keto-enol step). RPMD is analysed on the centroid. Writes results.txt (events per run, events per ps
with a Poisson error) and events.png (cumulative O -> O events against time).
"""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from rung.md.config import load_config
from rung.md.simulation import run

HERE = Path(__file__).resolve().parent
METHODS = ("classical", "rpmd")
SEEDS = (1, 2)


def simulate(method, seed):
    config = replace(load_config(HERE / f"{method}.toml"), seed=seed)
    rdir = HERE / "runs" / f"{method}_seed{seed}"
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
    return config, time_ps, counts[:, o, o], other


def main():
    lines, curves = [], {}
    for method in METHODS:
        total_events, total_ps = 0, 0.0
        for seed in SEEDS:
            config, t, oo, other = simulate(method, seed)
            curves[method, seed] = (t, oo)
            span = t[-1] - t[0]
            total_events += int(oo[-1])
            total_ps += span
            lines.append(f"{method:9s} {config.beads:5d} {seed:4d} {span:7.2f} {int(oo[-1]):8d} {other:12d} "
                         f"{oo[-1] / span:10.2f}")
        rate, err = total_events / total_ps, np.sqrt(max(total_events, 1)) / total_ps
        lines.append(f"{method:9s} {'':5s} {'all':>4s} {total_ps:7.2f} {total_events:8d} {'':12s} "
                     f"{rate:10.2f} +- {err:.2f} (Poisson)")
    head = [f"# malonaldehyde, ANI-1x, {config.temperature_K:g} K, Langevin / PILE-L tau {config.tau_fs:g} fs, "
            f"dt {config.dt_fs:g} fs, frames every {config.output.trajectory_every} steps; "
            "nnp-md analyze protons --group O=O --group C=C (hysteresis 0.3 A, persistence 1 frame)",
            "# method    beads seed time_ps O->O_events other_events events_per_ps"]
    (HERE / "results.txt").write_text("\n".join(head + lines) + "\n")
    print("\n".join(head + lines))
    plot(curves)


def plot(curves):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    colors = {"classical": "tab:blue", "rpmd": "tab:red"}
    for (method, seed), (t, oo) in curves.items():
        ax.step(t, oo, where="post", color=colors[method], label=f"{method} seed {seed}",
                linestyle="-" if seed == SEEDS[0] else "--")
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("cumulative O -> O transfers")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(HERE / "events.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
