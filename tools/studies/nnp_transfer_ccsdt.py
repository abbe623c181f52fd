"""Transfer of ANI-1x to CCSD(T): held-out errors against the number of training conformations.

The issue's "real transfer to a higher rung" (issue 16): PySCF CCSD(T)/cc-pVDZ (frozen 1s cores of
C, N, O; RHF reference) energies and analytic gradients of perturbed small neutral closed-shell
H/C/N/O molecules (energies only for the two largest, ``ENERGY_ONLY``, to keep the labels within
about 7 CPU-minutes on a shared machine), written as a rung.core dataset (rung prefix ``ccsd(t)``: ``ccsd(t)_total_energy``
Hartree, ``ccsd(t)_total_gradient`` Hartree/Bohr, ``ccsd(t)_status``), then ``nnp train`` runs
(TOML through ``rung.nnp.train.load_config`` / ``train``, the same path as the CLI) from ANI-1x:

- ``base``: ANI-1x (8 members) as it is (trained on wB97x/6-31G(d));
- ``shifts``: per-element energy shifts only (``frozen = ["*.weight"]``, exact solver);
- ``readout``: the exact read-out refit of all 8 members (last-layer weights and shifts; weights
  1/sigma^2 with sigma = the default ``energy_sigma`` 1.6 mHa and ``gradient_sigma`` 0.8 mHa/Bohr,
  since CCSD(T) labels carry no statistical error bar; default L2-SP ``l2sp`` = 1e3 / Hartree^2);
- ``finetune`` (``--finetune``): the readout model, then gradient fine-tuning of every layer
  (Adam, cosine one-cycle, lr 1e-3, 100 epochs, batches of 32, float32, l2sp 1e3 inherited from the
  read-out stage, no early stopping, so the held-out set never steers training).

Conformations: the G2 geometries of ``ase.build.molecule`` for each molecule, every Cartesian
coordinate displaced by a normal deviate of standard deviation sigma, sigma drawn per conformation
uniformly in [0.03, 0.06] Angstrom (root-mean-square atom displacement 0.05-0.10 Angstrom), seeded.
Splits, per seed: a held-out set (``N_HELDOUT`` conformations drawn from all molecules) and nested
training sets of the sizes asked for, drawn from the rest. Errors on the held-out set: energies (MAE,
RMSE), energies relative within each molecule (each molecule's mean error removed:
``rung.nnp.evaluate.compare``), force components; kcal/mol and kcal/mol/Angstrom; the ensemble mean.

Run (labels are cached and resumed; the folder defaults to <tempdir>/rung_nnp_transfer_ccsdt)::

    .venv/bin/python tools/studies/nnp_transfer_ccsdt.py label          # ~7 CPU-minutes, 2 workers
    .venv/bin/python tools/studies/nnp_transfer_ccsdt.py study --seeds 5 --finetune \
        --plot packages/nnp/docs/transfer_ccsdt.png
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MOLECULES = ("H2O", "NH3", "CH4", "HCN", "H2CO", "C2H2", "C2H4", "CH3OH")
N_CONF = {"C2H4": 20, "CH3OH": 20}  # per molecule (default 40)
ENERGY_ONLY = ("C2H4", "CH3OH")  # their CCSD(T) gradients cost 6-10 CPU-s each (energies 0.6 s)
SIGMA_ANGSTROM = (0.03, 0.06)  # per-coordinate displacement standard deviation, drawn per conformation
BASIS = "cc-pvdz"
RUNG = "ccsd(t)"
UNITS = {"total_energy": "hartree", "total_gradient": "hartree/bohr"}
SHAPES = {"total_energy": ("f", ()), "total_gradient": ("f", ("n_atoms", 3))}
N_HELDOUT = 80
SIZES = (25, 50, 100, 200)
MODELS = ("base", "shifts", "readout", "finetune")
KCAL = "kcal/mol"


def workdir(path=None) -> Path:
    p = Path(path) if path else Path(tempfile.gettempdir()) / "rung_nnp_transfer_ccsdt"
    p.mkdir(parents=True, exist_ok=True)
    return p


# -- labels ------------------------------------------------------------------------------------------

def conformations(seed: int = 2026):
    """The perturbed conformations as rung.core Molecules (Bohr)."""
    from ase.build import molecule

    from rung.core import units as U
    from rung.core.dataset import Molecule

    rng = np.random.default_rng(seed)
    out = []
    for name in MOLECULES:
        a = molecule(name)
        x0 = a.positions  # (n_atoms, 3) Angstrom
        n = N_CONF.get(name, 40)
        sigma = rng.uniform(*SIGMA_ANGSTROM, size=n)
        x = x0[None] + rng.normal(size=(n,) + x0.shape) * sigma[:, None, None]
        out.append(Molecule(name, a.numbers.astype(np.int64), x * U.ANGSTROM_TO_BOHR))
    return out


def ccsd_t(numbers, x_bohr, gradient: bool = True):
    """CCSD(T)/cc-pVDZ energy (Hartree) and gradient ((n_atoms, 3) Hartree/Bohr, or None), 1s cores of Z > 2 frozen.

    The gradient needs the (T) Lambda equations (``ccsd_t_lambda``): with the CCSD Lambda amplitudes
    ``pyscf.grad.ccsd_t`` gives a gradient that differs from finite differences of the CCSD(T)
    energy by ~1e-3 Hartree/Bohr on water; with them, by 1e-7 (central differences, h = 1e-3 Bohr).
    """
    from pyscf import cc, gto, scf
    from pyscf.cc import ccsd_t_lambda
    from pyscf.grad import ccsd_t as grad_ccsd_t

    mol = gto.M(atom=[(int(z), tuple(r)) for z, r in zip(numbers, x_bohr)], unit="Bohr", basis=BASIS, verbose=0)
    mf = scf.RHF(mol)
    mf.conv_tol = 1e-10
    mf.kernel()
    if not mf.converged:
        raise RuntimeError("RHF not converged")
    mycc = cc.CCSD(mf)
    mycc.frozen = int(np.sum(np.asarray(numbers) > 2))
    mycc.conv_tol, mycc.conv_tol_normt = 1e-9, 1e-7
    mycc.kernel()
    if not mycc.converged:
        raise RuntimeError("CCSD not converged")
    eris = mycc.ao2mo()
    e = mycc.e_tot + mycc.ccsd_t(eris=eris)
    if not gradient:
        return float(e), None
    conv, l1, l2 = ccsd_t_lambda.kernel(mycc, eris, mycc.t1, mycc.t2, verbose=0)
    if not conv:
        raise RuntimeError("CCSD(T) Lambda equations not converged")
    g = grad_ccsd_t.Gradients(mycc).kernel(mycc.t1, mycc.t2, l1, l2, eris=eris)
    return float(e), np.asarray(g)


def _job(task):
    name, index, numbers, x = task
    t0 = time.process_time()
    try:
        e, g = ccsd_t(numbers, x, gradient=name not in ENERGY_ONLY)
        values = {"total_energy": e} if g is None else {"total_energy": e, "total_gradient": g}
        return name, index, values, None, time.process_time() - t0
    except Exception as err:  # a failed conformation is recorded as failed, the others go on
        return name, index, None, f"{type(err).__name__}: {err}", time.process_time() - t0


def _one_thread():
    from pyscf import lib

    lib.num_threads(1)


def label(path: Path, workers: int = 2, log=print) -> Path:
    """Create the dataset (if absent) and compute every pending conformation; resumable."""
    from importlib.metadata import version
    from multiprocessing import get_context

    from rung.core.dataset import ResultWriter, create_dataset, read_hdf5

    if not path.exists():
        create_dataset(path, conformations())
    meta = {"method": "CCSD(T)", "basis": BASIS, "reference": "RHF", "frozen_core": "1s of Z > 2",
            "level_of_theory": f"CCSD(T)/{BASIS} (frozen core)", "gradient": f"analytic, (T) Lambda equations; not computed for {', '.join(ENERGY_ONLY)}",
            "pyscf_version": version("pyscf"), "conv_tol_scf": 1e-10, "conv_tol_ccsd": 1e-9,
            "conv_tol_normt": 1e-7, "geometries": f"ase G2 + N(0, sigma^2) Cartesian, sigma ~ U{SIGMA_ANGSTROM} Angstrom, seed 2026"}
    w = ResultWriter(path, RUNG, UNITS, meta, shapes=SHAPES)
    mols = {m.name: m for m in read_hdf5(path)}
    todo = sorted(w.pending(), key=lambda k: (k[1], MOLECULES.index(k[0])))  # round robin: a cut run keeps every molecule
    log(f"{path}: {len(todo)} of {sum(m.n_conf for m in mols.values())} conformation(s) to compute")
    tasks = [(n, i, mols[n].atomic_numbers, mols[n].conformations[i]) for n, i in todo]
    t0, cpu = time.time(), 0.0
    with get_context("fork").Pool(workers, initializer=_one_thread) as pool:
        for k, (name, i, values, err, sec) in enumerate(pool.imap_unordered(_job, tasks), 1):
            cpu += sec
            if err is None:
                w.record(name, i, values)
            else:
                w.record(name, i, error=err)
                log(f"failed: {name}[{i}]: {err}")
            if k % 20 == 0 or k == len(tasks):
                log(f"  {k}/{len(tasks)} done, {time.time() - t0:.0f} s wall, {cpu:.0f} CPU-s in workers")
    w.close()
    w.merge()
    return path



# -- study -------------------------------------------------------------------------------------------

def read_labels(path: Path) -> dict:
    """{molecule: (atomic_numbers, conformations Bohr, energy Hartree, gradient Hartree/Bohr, done mask)}."""
    import h5py

    from rung.core.dataset import DONE, read_hdf5

    out = {}
    with h5py.File(path, "r") as f:
        for m in read_hdf5(path):
            g = f[m.name]
            out[m.name] = (m.atomic_numbers, m.conformations, g[f"{RUNG}_total_energy"][()],
                           g[f"{RUNG}_total_gradient"][()], g[f"{RUNG}_status"][()] == DONE)
    return out


def write_subset(labels: dict, pick, path: Path) -> Path:
    """A rung dataset of the conformations ``pick`` ((molecule, index) pairs) with their labels."""
    from rung.core.dataset import Molecule, ResultWriter, create_dataset

    by_mol = {}
    for name, i in pick:
        by_mol.setdefault(name, []).append(i)
    mols = [Molecule(n, labels[n][0], labels[n][1][sorted(ix)]) for n, ix in sorted(by_mol.items())]
    create_dataset(path, mols, overwrite=True)
    w = ResultWriter(path, RUNG, UNITS, {"source": "subset of the study's CCSD(T) dataset"}, shapes=SHAPES)
    for n, ix in sorted(by_mol.items()):
        for k, i in enumerate(sorted(ix)):
            values = {"total_energy": float(labels[n][2][i]), "total_gradient": labels[n][3][i]}
            if not np.all(np.isfinite(values["total_gradient"])):  # an energy-only molecule
                del values["total_gradient"]
            w.record(n, k, values)
    w.close()
    w.merge()
    return path


def config_text(kind: str, train: Path, heldout: Path, output: Path) -> str:
    """The ``nnp train`` TOML of one model kind ("shifts", "readout", "finetune")."""
    head = f"""model = "ani-1x"
output = "{output.name}"
plots = false

[training]
datasets = ["{train.name}"]
validation = ["{heldout.name}"]     # reported only: no early stopping, no plateau schedule
energy = "{RUNG}_total_energy"
gradient = "{RUNG}_total_gradient"
"""
    if kind == "shifts":
        return head + '\n[[stages]]\nname = "shifts"\nfrozen = ["*.weight"]\n'
    stages = '\n[[stages]]\nname = "readout"\nfrozen = []\n'
    if kind == "finetune":
        stages += """
[[stages]]
name = "finetune"
solver = "gradient"
frozen = []
optimizer = "adam"
learning_rate = 1.0e-3
schedule = "cosine_onecycle"
epochs = 100
batch_size = 32
dtype = "float32"
"""
    return head + stages


def held_out_errors(heldout: Path, model) -> dict:
    """Errors of ``model`` (name or file; ensemble mean, float64) on ``heldout`` against CCSD(T)."""
    from rung.nnp.ani import load_model
    from rung.nnp.evaluate import compare, predict

    pot = load_model(str(model), dtype="float64")
    (err,) = [e for e in compare(heldout, predict(heldout, pot, log=lambda *a: None)) if e.rung == RUNG]
    return {k: getattr(err, k) for k in ("n_conf", "energy_mae", "energy_rmse", "rel_energy_mae", "rel_energy_rmse",
                                          "forces_mae", "forces_rmse")}


def study(data: Path, wd: Path, seeds: int, sizes, kinds, log=print) -> list:
    """Every (seed, size, model) held-out error as a row; rows also go to ``wd/results.jsonl``."""
    from rung.nnp.train import load_config, train

    labels = read_labels(data)
    done = [(n, int(i)) for n, v in labels.items() for i in np.flatnonzero(v[4])]
    log(f"{data}: {len(done)} labelled conformation(s)")
    rows = []
    out = wd / "results.jsonl"
    with open(out, "w") as fh:
        def add(row):
            rows.append(row)
            fh.write(json.dumps(row) + "\n")
            fh.flush()

        for seed in range(seeds):
            rng = np.random.default_rng(1000 + seed)
            perm = rng.permutation(len(done))
            held = [done[k] for k in perm[:N_HELDOUT]]
            pool = [done[k] for k in perm[N_HELDOUT:]]
            run = wd / f"seed{seed}"
            run.mkdir(exist_ok=True)
            heldout = write_subset(labels, held, run / "heldout.h5")
            add(dict(seed=seed, n_train=0, model="base", seconds=0.0, **held_out_errors(heldout, "ani-1x")))
            for n in sizes:
                tr = write_subset(labels, pool[:n], run / f"train{n}.h5")
                for kind in kinds:
                    cfg = run / f"{kind}{n}.toml"
                    cfg.write_text(config_text(kind, tr, heldout, run / f"{kind}{n}.h5"))
                    t0 = time.perf_counter()
                    res = train(load_config(cfg), overwrite=True, log=lambda *a: None)
                    sec = time.perf_counter() - t0
                    add(dict(seed=seed, n_train=n, model=kind, seconds=sec, **held_out_errors(heldout, res.output)))
                    r = rows[-1]
                    log(f"seed {seed} n {n:4d} {kind:9s} E RMSE {r['energy_rmse']:7.3f} rel {r['rel_energy_rmse']:6.3f} "
                        f"F RMSE {r['forces_rmse']:6.3f}  ({sec:.1f} s)")
    return rows


def summary(rows) -> dict:
    """{(model, n_train): {metric: (mean, std over seeds, count)}}; the base model at every size."""
    keys = ("energy_mae", "energy_rmse", "rel_energy_mae", "rel_energy_rmse", "forces_mae", "forces_rmse", "seconds")
    groups = {}
    for r in rows:
        groups.setdefault((r["model"], r["n_train"]), []).append(r)
    return {g: {k: (float(np.mean([r[k] for r in v])), float(np.std([r[k] for r in v], ddof=1)) if len(v) > 1 else 0.0,
                    len(v)) for k in keys} for g, v in groups.items()}


def table(rows) -> str:
    s = summary(rows)
    lines = ["| training conformations | model | E MAE | E RMSE | relative E MAE | relative E RMSE | F MAE | F RMSE |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    order = sorted(s, key=lambda g: (g[1], MODELS.index(g[0])))
    for model, n in order:
        v = s[(model, n)]
        cells = " | ".join(f"{v[k][0]:.2f} +- {v[k][1]:.2f}" for k in ("energy_mae", "energy_rmse", "rel_energy_mae",
                                                                        "rel_energy_rmse", "forces_mae", "forces_rmse"))
        lines.append(f"| {n} | {model} | {cells} |")
    return "\n".join(lines)


def plot(rows, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    s = summary(rows)
    sizes = sorted({n for _, n in s if n > 0})
    panels = (("energy_rmse", "energy RMSE (kcal/mol)"), ("rel_energy_rmse", "relative energy RMSE (kcal/mol)"),
              ("forces_rmse", "force RMSE (kcal/mol/Å)"))
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    style = {"base": ("k", "--"), "shifts": ("tab:orange", "-"), "readout": ("tab:blue", "-"), "finetune": ("tab:green", "-")}
    labels = {"base": "ANI-1x", "shifts": "per-element shifts", "readout": "exact read-out refit",
              "finetune": "read-out + fine-tune (all layers)"}
    for ax, (key, title) in zip(axes, panels):
        for model in MODELS:
            if model == "base" and ("base", 0) in s:
                m, sd, _ = s[("base", 0)][key]
                ax.axhline(m, color="k", ls="--", label=labels[model])
                ax.scatter([sizes[0] * 0.8] * sum(r["model"] == "base" for r in rows),
                           [r[key] for r in rows if r["model"] == "base"], color="k", s=8, alpha=0.4)
                continue
            pts = [(n, s[(model, n)][key][0]) for n in sizes if (model, n) in s]
            if pts:
                n, m = map(np.array, zip(*pts))
                c, ls = style[model]
                ax.plot(n, m, color=c, ls=ls, marker="o", ms=4, label=labels[model])
                seeds = [(r["n_train"], r[key]) for r in rows if r["model"] == model]
                shift = {"shifts": 0.94, "readout": 1.0, "finetune": 1.06}[model]  # side by side
                ax.scatter([n * shift for n, _ in seeds], [v for _, v in seeds], color=c, s=8, alpha=0.4)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set_xticks(sizes)
        ax.set_xticklabels([str(n) for n in sizes])
        ax.set_xlabel("training conformations")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"ANI-1x -> CCSD(T)/{BASIS}: {N_HELDOUT} held-out conformations, lines: mean over seeds, dots: each seed", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


# -- command line ------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("label", "study"))
    ap.add_argument("--workdir", default=None, help="labels and runs (default <tempdir>/rung_nnp_transfer_ccsdt)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--sizes", default=",".join(map(str, SIZES)))
    ap.add_argument("--finetune", action="store_true", help="add the gradient fine-tuning model (jax)")
    ap.add_argument("--plot", default=None, help="learning-curve PNG to write")
    ap.add_argument("--replot", action="store_true", help="table and plot from the workdir's results.jsonl only")
    args = ap.parse_args(argv)
    wd = workdir(args.workdir)
    data = wd / "ccsdt.h5"
    if args.what == "label":
        label(data, args.workers)
        return
    if args.replot:
        rows = [json.loads(line) for line in open(wd / "results.jsonl")]
    else:
        if not data.exists():
            sys.exit(f"{data}: no labels yet; run `label` first")
        kinds = ("shifts", "readout") + (("finetune",) if args.finetune else ())
        t0 = time.process_time()
        rows = study(data, wd, args.seeds, [int(n) for n in args.sizes.split(",")], kinds)
        print(f"study: {time.process_time() - t0:.0f} CPU-s in this process")
    print(table(rows))
    if args.plot:
        print(f"plot: {plot(rows, Path(args.plot))}")


if __name__ == "__main__":
    main()
