"""The first thing to run on a machine with a GPU: ``make gpu-check`` (under 8 minutes on one device).

Writes one report, ``gpu-check/report.md``: the device (CuPy, numba.cuda, driver), every ``gpu``-marked
test with its outcome (``pytest -m gpu``, JUnit XML beside the report), and the benchmark cases that
run on the device (``Case.device == "gpu"`` in tools/bench/suites), each beside the CPU path in the same
run. Without a device it says so and exits 1, so nobody mistakes a skipped check for a passed one.

    python tools/gpu_check.py --out gpu-check
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def device_info() -> tuple[bool, list[str]]:
    lines = []
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
        props = cupy.cuda.runtime.getDeviceProperties(0)
        lines.append(f"CuPy {cupy.__version__}: {n} device(s), device 0 {props['name'].decode()}, "
                     f"{props['totalGlobalMem'] / 2**30:.1f} GiB, driver {cupy.cuda.runtime.driverGetVersion()}")
        ok = n > 0
    except Exception as err:  # no CuPy, no driver, no device: all mean "no GPU check possible"
        lines.append(f"CuPy: not usable ({type(err).__name__}: {err})")
        ok = False
    try:
        from numba import cuda

        lines.append(f"numba.cuda: available = {cuda.is_available()}")
        ok = ok and cuda.is_available()
    except Exception as err:
        lines.append(f"numba.cuda: not usable ({type(err).__name__}: {err})")
        ok = False
    return ok, lines


def run_tests(out: Path, timeout: int) -> list[str]:
    xml = out / "gpu-tests.xml"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={xml}"], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    rows = ["| test | outcome | seconds |", "| --- | --- | --- |"]
    if xml.exists():
        for case in ET.parse(xml).getroot().iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = f"{tag}: {(node.get('message') or '').splitlines()[0][:120] if node.get('message') else ''}"
            rows.append(f"| {case.get('classname')}::{case.get('name')} | {outcome} | {float(case.get('time', 0)):.2f} |")
    tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    return [f"`pytest -m gpu`: exit code {proc.returncode}, {time.perf_counter() - t0:.0f} s; " + " ".join(tail), "",
            *rows]


def run_bench(out: Path, timeout: int) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "tools.bench", "--gpu-only", "--out", str(out / "bench")], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    md = out / "bench" / "bench.md"
    if proc.returncode != 0 or not md.exists():
        return [f"benchmarks failed (exit {proc.returncode}):", "```", proc.stderr[-3000:], "```"]
    return md.read_text().splitlines()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("gpu-check"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    ok, info = device_info()
    report = ["# rung GPU check", "", time.strftime("%Y-%m-%d %H:%M:%S"), "", "## Device", "", *[f"- {x}" for x in info]]
    if ok:
        report += ["", "## GPU tests", "", *run_tests(args.out, timeout=300),
                   "", "## GPU benchmarks (ours on the device beside the CPU path)", "", *run_bench(args.out, timeout=240)]
    else:
        report += ["", "No usable CUDA device: nothing was checked (install the `[cuda12]` extras on a GPU machine)."]
    path = args.out / "report.md"
    path.write_text("\n".join(report) + "\n")
    print(path.read_text())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
