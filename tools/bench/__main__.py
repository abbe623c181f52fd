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


def time_call(fn, repeats, warmup, sync=None) -> float:
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(case) -> dict:
    row = {"name": case.name, "size": case.size, "device": case.device, "peer_name": case.peer_name, "note": case.note}
    row["ours_s"] = time_call(case.ours, case.repeats, case.warmup, case.sync)
    row["peer_s"] = time_call(case.peer, case.repeats, case.warmup) if case.peer else None
    row["ratio"] = row["peer_s"] / row["ours_s"] if row["peer_s"] else None
    row["gflops"] = case.flop / row["ours_s"] / 1e9 if case.flop else None
    row["throughput"] = f"{case.work / row['ours_s']:.4g} {case.work_unit}/s" if case.work else ""
    return row


def markdown(rows, info, date) -> str:
    out = [f"Machine: {info.get('cpu')} ({info.get('cores')} cores){', ' + info['gpu'] if 'gpu' in info else ''}; "
           f"Python {info.get('python')}; {date}", "",
           "| name | size | device | ours (s) | peer | peer (s) | peer/ours | GFLOP/s | throughput | note |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        f = lambda v, fmt: "" if v is None else format(v, fmt)  # noqa: E731
        out.append(f"| {r['name']} | {r['size']} | {r['device']} | {f(r['ours_s'], '.4g')} | {r['peer_name']} | "
                   f"{f(r['peer_s'], '.4g')} | {f(r['ratio'], '.3g')} | {f(r['gflops'], '.3g')} | {r['throughput']} | {r['note']} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="rung kernel benchmark suite")
    ap.add_argument("--only", nargs="*", help="package suites to run (default: all registered)")
    ap.add_argument("--quick", action="store_true", help="small sizes only (a smoke test of the suite)")
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
        for case in suite.cases(args.quick):
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
