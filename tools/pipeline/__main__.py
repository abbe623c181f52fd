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
    from .config import ConfigError, load
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
    except (ConfigError, ValueError) as err:  # ValueError: an executor that cannot start (named)
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def run(cfg, out: Path, ex) -> dict:
    """All steps in order; returns {step: summary line}, also printed and written to the report."""
    from . import report, steps

    out.mkdir(parents=True, exist_ok=True)
    lines = {}

    def step(name, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        line = result if isinstance(result, str) else result[0]
        lines[name] = f"{line}  [{time.perf_counter() - t0:.1f} s]"
        print(f"{name:8s} {lines[name]}", flush=True)
        return result

    dataset = steps.conformations(cfg, out)
    print(f"rung pipeline: {cfg.source or 'embedded example'} -> {out}", flush=True)
    step("dft", steps.dft, cfg, dataset)
    roles = steps.select(cfg, dataset)
    lines["select"] = steps.describe_selection(roles, cfg)
    print(f"{'select':8s} {lines['select']}", flush=True)
    step("qmc", steps.qmc, cfg, dataset, ex, roles)
    _, model_path = step("refit", steps.refit, cfg, dataset, out, roles)
    _, metrics = step("evaluate", steps.evaluate, cfg, dataset, roles, model_path, out)
    if cfg.md is not None:
        step("md", steps.md, cfg, dataset, out, model_path)
    report.write(out / "report.md", cfg, lines, metrics)
    print(f"\nreport: {out / 'report.md'}")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
