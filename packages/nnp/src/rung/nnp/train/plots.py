"""PNG plots of a training run: the learning curve and the validation parity plot.

matplotlib is optional (the ``[train]`` extra): importing this module raises ImportError without it,
and :func:`rung.nnp.train.run.train` then writes no plots and says so. Figures are drawn with
matplotlib's object API on an Agg canvas (no pyplot, no global backend switch).

- ``learning_curve``: per gradient stage and member, the training and validation loss per
  conformation for every epoch (log scale), stages one after the other on the epoch axis.
- ``parity``: on the validation set, predicted against reference energies (minus the self energies of
  the conformation's atoms, kcal/mol) and force components (kcal/mol/Angstrom), for the base model and
  the trained model, with their RMSE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rung.core.units import HARTREE_TO_KCAL_PER_MOL as KCAL


def learning_curve(results, path) -> Path:
    """results : StageResult records (stages without members are skipped); returns the PNG path."""
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    offset = 0
    colours = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    for r in results:
        if not r.members:
            continue
        n_ep = 0
        for m, run in enumerate(r.members):
            h = run["history"]
            ep = np.asarray(h["epoch"], float) + 1 + offset
            c = colours[m % len(colours)]
            ax.plot(ep, h["train_loss"], color=c, lw=1, alpha=0.6, label="training" if m == 0 else None)
            ax.plot(ep, h["valid_loss"], color=c, lw=1.6, ls="--", label="validation" if m == 0 else None)
            n_ep = max(n_ep, len(h["epoch"]))
        ax.axvline(offset + 0.5, color="0.7", lw=0.8)
        ax.text(offset + 1, 1.0, f" {r.name}", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="0.4")
        offset += n_ep
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per conformation")
    ax.set_title("learning curve (solid: training, dashed: validation; one colour per member)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def parity(frames, before, after, path, *, title="") -> Path:
    """frames : the validation Frames; before, after : (energies (n_conf,) Hartree, forces (n_atoms, 3)
    Hartree/Angstrom) of the base and the trained model; returns the PNG path."""
    fig = Figure(figsize=(9, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    axE, axF = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    okE = np.isfinite(frames.energy)
    okF = np.all(np.isfinite(frames.forces), axis=1)
    # a per-conformation offset makes energies of different molecules comparable: the labels' mean per molecule
    ref_mol = np.array([np.mean(frames.energy[(frames.mol == m) & okE]) if np.any((frames.mol == m) & okE) else 0.0
                        for m in range(len(frames.names))])
    off = ref_mol[frames.mol]
    panels = [(axE, okE.any(), (frames.energy - off)[okE] * KCAL, [(e - off)[okE] * KCAL for e, _ in (before, after)]),
              (axF, okF.any(), frames.forces[okF].ravel() * KCAL, [f[okF].ravel() * KCAL for _, f in (before, after)])]
    for ax, ok, ref, (pb, pa) in panels:
        if not ok:
            continue
        # the axes span the labels and the trained model; base-model points beyond are counted, not drawn
        lo, hi = min(ref.min(), pa.min()), max(ref.max(), pa.max())
        pad = 0.08 * (hi - lo) + 1e-9
        lo, hi = lo - pad, hi + pad
        for p, name, c, mk, size in ((pb, "base", "0.6", "x", 8), (pa, "trained", "C0", "o", 8)):
            out = int(np.sum((p < lo) | (p > hi)))
            label = f"{name}: RMSE {np.sqrt(np.mean((p - ref) ** 2)):.3g}" + (f" ({out} clipped to the frame)" if out else "")
            ax.scatter(ref, np.clip(p, lo, hi), s=size, c=c, marker=mk, label=label, lw=0.8)
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
    for ax, what in ((axE, "energy - molecule's mean label (kcal/mol)"), (axF, "force component (kcal/mol/Angstrom)")):
        lo, hi = ax.get_xlim()
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.7)
        ax.set_xlabel(f"reference {what}", fontsize=8)
        ax.set_ylabel(f"model {what}", fontsize=8)
        if ax.has_data():
            ax.legend(fontsize=8)
    fig.suptitle(f"{title}: validation set ({int(okE.sum())} energies, {int(okF.sum())} atoms with forces)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)
