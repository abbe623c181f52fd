"""The ladder as a loop: ``python -m tools.pipeline [CONFIG.toml] --out DIR [--executor local|mpi|serial]``.

Conformations in; DFT for all; a selection climbs to QMC (energies and forces with error bars); the
model is refit on the QMC labels; the refit model runs dynamics; a report compares the models on
held-out conformations. Without CONFIG the embedded example (tools/pipeline/water.toml) runs. Every
step resumes from what ``DIR`` holds, so a killed run is rerun with the same command.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

EXAMPLE = Path(__file__).with_name("water.toml")


def main(argv=None) -> int:
    from rung.core.errors import InputError

    from .config import load
    from .executors import EXECUTORS, Executor

    ap = argparse.ArgumentParser(prog="python -m tools.pipeline", description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", type=Path, default=EXAMPLE, help="pipeline TOML (default: the example)")
    ap.add_argument("--out", type=Path, default=Path("pipeline-out"), help="working folder (a rerun resumes)")
    ap.add_argument("--executor", choices=EXECUTORS, default="local")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (local, parsl; default: CPU count)")
    ap.add_argument("--parsl-config", type=Path, default=None,
                    help="Python file defining a parsl.config.Config named 'config' (executor parsl; default: local)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("tools.pipeline").setLevel(logging.INFO)  # progress with ETA; the packages stay quiet
    try:
        cfg = load(args.config)
        with Executor(args.executor, args.workers, parsl_config=args.parsl_config) as ex:
            if ex is not None:  # None on MPI worker ranks: they served tasks
                run(cfg, args.out, ex)
    except InputError as err:  # the input file, its data, or an executor that cannot start (named)
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def run(cfg, out: Path, ex) -> dict:
    """All steps, round after round; returns {step: summary line}, also printed and written to the report."""
    from . import report, steps

    out.mkdir(parents=True, exist_ok=True)
    lines = {}

    def step(name, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        line = result if isinstance(result, str) else result[0]
        lines[name] = f"{line}  [{time.perf_counter() - t0:.1f} s]"
        print(f"{name:12s} {lines[name]}", flush=True)
        return result

    print(f"rung pipeline: {cfg.source or 'embedded example'} -> {out}", flush=True)
    dataset = steps.conformations(cfg, out)
    hold_set = out / "holdout.h5"
    train_sets, model_paths, rounds = [], None, []
    for k in range(cfg.loop.rounds):
        tag = "" if k == 0 else f" r{k}"
        rdir = out if k == 0 else out / f"round{k}"
        if k > 0:
            rdir.mkdir(exist_ok=True)
            name = steps.read_names(dataset)[0]
            dataset = steps.frames_from_md(prev / "md", rdir, cfg.loop.frames, name)
        step("dft" + tag, steps.dft, cfg, dataset, ex)
        roles = (steps.select(cfg, dataset) if k == 0 else
                 steps.select(cfg, dataset, model=model_paths[steps.final_model(model_paths)].resolve(), n_holdout=0))
        lines["select" + tag] = steps.describe_selection(roles, cfg)
        print(f"{'select' + tag:12s} {lines['select' + tag]}", flush=True)
        step("qmc" + tag, steps.qmc, cfg, dataset, ex, roles)
        if k == 0 and cfg.sci is not None:
            step("sci", steps.sci, cfg, dataset, ex, roles, rdir)
        train, lines["labels" + tag] = steps.ladder_subset(cfg, dataset, roles, steps.TRAIN, rdir / "train.h5")
        print(f"{'labels' + tag:12s} {lines['labels' + tag]}", flush=True)
        train_sets.append(train)
        if k == 0:
            steps.ladder_subset(cfg, dataset, roles, steps.HOLDOUT, hold_set)
        _, model_paths = step("refit" + tag, steps.refit, cfg, train_sets, hold_set, rdir)
        _, metrics = step("evaluate" + tag, steps.evaluate, cfg, hold_set, model_paths)
        rounds.append(metrics)
        if cfg.md is not None:
            step("md" + tag, steps.md, cfg, dataset, rdir, model_paths)
        prev = rdir
    report.write(out / "report.md", cfg, lines, rounds)
    print(f"\nreport: {out / 'report.md'}")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
