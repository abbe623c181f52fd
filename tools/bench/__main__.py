"""Run the benchmark suite: ``python -m tools.bench [--only PACKAGE ...] [--quick] [--out DIR]``."""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

SUITES = Path(__file__).with_name("suites")


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        from rung.core.backend import gpu_available

        if gpu_available():
            import cupy

            info["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    except Exception:
        pass
    return info


def time_call(fn, repeats, warmup, sync=None) -> tuple[float, float]:
    """Median wall time and median process CPU time of ``fn()``, seconds.

    On a shared machine the CPU time (all threads of this process) is the steadier number; for a
    one-thread case it is what the wall time would be on an idle core.
    """
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if sync:
            sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def run_case(case) -> dict:
    row = {"name": case.name, "size": case.size, "device": case.device, "peer_name": case.peer_name, "note": case.note}
    row["ours_s"], row["ours_cpu_s"] = time_call(case.ours, case.repeats, case.warmup, case.sync)
    row["peer_s"], row["peer_cpu_s"] = time_call(case.peer, case.repeats, case.warmup) if case.peer else (None, None)
    row["ratio"] = row["peer_s"] / row["ours_s"] if row["peer_s"] else None
    row["ratio_cpu"] = row["peer_cpu_s"] / row["ours_cpu_s"] if row["peer_cpu_s"] and row["ours_cpu_s"] else None
    row["gflops"] = case.flop / row["ours_s"] / 1e9 if case.flop else None
    row["throughput"] = f"{case.work / row['ours_s']:.4g} {case.work_unit}/s" if case.work else ""
    return row


def markdown(rows, info, date) -> str:
    out = [f"Machine: {info.get('cpu')} ({info.get('cores')} cores){', ' + info['gpu'] if 'gpu' in info else ''}; "
           f"Python {info.get('python')}; {date}", "",
           "| name | size | device | ours (s) | peer | peer (s) | peer/ours | ours CPU (s) | peer CPU (s) | peer/ours CPU "
           "| GFLOP/s | throughput | note |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        f = lambda v, fmt: "" if v is None else format(v, fmt)  # noqa: E731
        out.append(f"| {r['name']} | {r['size']} | {r['device']} | {f(r['ours_s'], '.4g')} | {r['peer_name']} | "
                   f"{f(r['peer_s'], '.4g')} | {f(r['ratio'], '.3g')} | {f(r.get('ours_cpu_s'), '.4g')} | "
                   f"{f(r.get('peer_cpu_s'), '.4g')} | {f(r.get('ratio_cpu'), '.3g')} | {f(r['gflops'], '.3g')} | "
                   f"{r['throughput']} | {r['note']} |")
    out.append("\nWall times are medians; CPU times are the process's (all its threads), medians too.")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="rung kernel benchmark suite")
    ap.add_argument("--only", nargs="*", help="package suites to run (default: all registered)")
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke test of the suite)")
    ap.add_argument("--match", default="", help="run only the cases whose name contains this text")
    ap.add_argument("--gpu-only", action="store_true", help="only the cases that run on the GPU (make gpu-check)")
    ap.add_argument("--out", type=Path, default=Path("bench-out"))
    args = ap.parse_args(argv)
    names = args.only or sorted(p.stem for p in SUITES.glob("*.py") if not p.stem.startswith("_"))
    info, date = machine(), datetime.datetime.now().isoformat(timespec="seconds")
    rows = []
    for name in names:
        try:
            suite = importlib.import_module(f"tools.bench.suites.{name}")
        except ModuleNotFoundError as err:
            print(f"[{name}] skipped: {err}")
            continue
        # --gpu-only builds only the suites' GPU cases (gpu_cases), not every CPU case's setup
        make = getattr(suite, "gpu_cases", None) if args.gpu_only else suite.cases
        for case in make(args.quick) if make else ():
            if args.match not in case.name or (args.gpu_only and case.device != "gpu"):
                continue
            row = run_case(case)
            rows.append(row)
            ratio = f"  peer/ours {row['ratio']:.3g}" if row["ratio"] else ""
            print(f"[{name}] {row['name']} {row['size']} ({row['device']}): {row['ours_s']:.4g} s{ratio} {row['throughput']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({"machine": info, "date": date, "results": rows}, indent=1))
    (args.out / "bench.md").write_text(markdown(rows, info, date))
    print(f"wrote {args.out / 'bench.json'} and {args.out / 'bench.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
