"""The pipeline's report: ``report.md`` (steps, counts, cost, the models' held-out errors against the
QMC rung) and ``report.png`` (held-out energies: each model against QMC, offsets removed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MHA = 1e3  # Hartree -> mHa


def write(path: Path, cfg, lines: dict, rounds: list) -> Path:
    """``rounds``: the evaluation metrics after each round's refit (the first round's hold-out set)."""
    rows = [("base", f"{cfg.refit.model} as it is"), ("shifts", "per-element shifts refit (baseline)"),
            ("readout", "last layer + shifts refit (exact read-out refit)")]
    metrics = rounds[-1]
    if "finetune" in metrics:
        rows.append(("finetune", "every layer but the first fine-tuned from the read-out model (gradient descent)"))
    if "dft" in rounds[0]:
        rows.append(("dft", "the DFT rung itself (the labels below QMC)"))
    md = ["# rung pipeline report", "", f"Input: `{cfg.source or 'embedded example'}`", "", "| step | result |",
          "| --- | --- |"]
    md += [f"| {k} | {v} |" for k, v in lines.items()]
    md += ["", f"## Models against the QMC rung on {metrics['n_holdout']} held-out conformations", "",
           "Energies in mHa, gradients in mHa/Bohr. 'relative' removes each model's mean offset (the base model "
           "is all-electron, the QMC rung valence-only with ccECPs, so its absolute error is that offset). "
           f"QMC error bars (rms): energy {metrics['label_energy_error'] * MHA:.2f}"
           + (f", gradient {metrics['label_gradient_error'] * MHA:.1f}" if "label_gradient_error" in metrics else "")
           + "; a model equal to the QMC rung would have about these RMSEs against its labels.", "",
           "| round | model | what | energy RMSE | relative energy RMSE | gradient RMSE |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r, m_r in enumerate(rounds):
        for k, what in rows:
            if k in ("base", "dft") and r > 0:
                continue
            m = m_r[k]
            g = f"{m['gradient_rmse'] * MHA:.1f}" if "gradient_rmse" in m else "-"
            md.append(f"| {r} | {k} | {what} | {m['energy_rmse'] * MHA:.2f} | {m['relative_energy_rmse'] * MHA:.2f} | {g} |")
    md += ["", "The refit model (fine-tuned where there is one, else the read-out refit) against the base model, the "
           "other refits and the DFT rung on the held-out conformations: "
           "the paired difference of squared errors per conformation (MSE_base - MSE_refit), its error bar from "
           "the QMC labels' error bars (propagated) and a bootstrap over the held-out conformations, in "
           "quadrature (conservative: the bootstrap sees the label noise too); shown as the RMSE gain "
           "(tools/pipeline/compare.py). Beside it the tail-robust statistic, the mean over conformations of "
           "each model's per-conformation error (|relative energy error|; rms over the gradient components): "
           "linear in the errors, so one strongly distorted conformation cannot carry it alone; error bar from a "
           "bootstrap over the conformations and Monte Carlo over the labels' noise (which only shrinks the "
           "gain). 'beyond 2 sigma': z = gain / error > 2.", ""]
    for r, m_r in enumerate(rounds):
        md += [f"- round {r}: {line}" for line in m_r.get("comparison_lines", [])]
    png = _plot(path.with_suffix(".png"), metrics, rows)
    if png:
        md += ["", f"![held-out errors against QMC, last round]({png.name})"]
    path.write_text("\n".join(md) + "\n")
    path.with_suffix(".json").write_text(json.dumps({"steps": lines, "rounds": rounds}, indent=1))
    return path


def _plot(path: Path, metrics: dict, rows) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # matplotlib is optional: the table carries the numbers
        return None
    q = np.asarray(metrics["qmc_energies"])
    err = np.asarray(metrics["qmc_energy_errors"]) * MHA
    shown = [k for k in ("base", "finetune" if "finetune" in metrics else "readout", "dft") if k in metrics]
    grad = "gradient_rms_per_conformation" in metrics["base"]
    fig, axes = plt.subplots(1, 2 if grad else 1, figsize=(10, 4.5) if grad else (5, 4.5), squeeze=False)
    ax = axes[0, 0]
    x = (q - q.mean()) * MHA
    ax.errorbar(x, np.zeros_like(x), yerr=err, fmt="none", ecolor="0.6", capsize=2, label="QMC error bar")
    for k in shown:
        d = (np.asarray(metrics[k]["energies"]) - q) * MHA
        ax.plot(x, d - d.mean(), "o", ms=4, label=f"{k} ({np.std(d):.1f} mHa rms)")
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set(xlabel="QMC energy - mean (mHa)", ylabel="model - QMC, mean offset removed (mHa)",
           title="held-out: relative energy errors")
    ax.legend(fontsize=8)
    if grad:
        ax = axes[0, 1]
        base = np.asarray(metrics["base"]["gradient_rms_per_conformation"]) * MHA
        for k in shown[1:]:
            ax.plot(base, np.asarray(metrics[k]["gradient_rms_per_conformation"]) * MHA, "o", ms=4, label=k,
                    color=f"C{shown.index(k)}")
        top = base.max() * 1.1 + 1.0
        ax.plot([0, top], [0, top], "k:", lw=1)
        ax.set(xlim=(0, top), ylim=(0, top), aspect="equal", xlabel="base model (mHa/Bohr)",
               ylabel="model (mHa/Bohr)", title="held-out: gradient rms error per conformation\n(below the "
               "diagonal: better than the base)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
