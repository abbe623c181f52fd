"""Compile every numba.cuda kernel of rung to PTX on a machine without a GPU (``make ptx-check``).

The CUDA simulator runs the kernels' Python, not numba's CUDA compiler, so a kernel that the simulator
accepts can still fail to type or compile on a device (an unsupported NumPy call, a float/int mix, a
captured global). This check runs the real compiler (NVVM, from the ``nvidia-cuda-nvcc-cu12`` wheel that
``numba-cuda[cu12]`` in the ``[cuda12]`` extras pulls in) without a device, in two phases:

1. ``record`` (the workspace's venv, ``NUMBA_ENABLE_CUDASIM=1``): run the simulator tests of the
   packages' GPU kernels and record each kernel launch's argument types (``--signatures``, JSON);
2. ``compile`` (any Python with ``numba-cuda[cu12]`` and NumPy only): load each kernel module from its
   file and ``numba.cuda.compile_ptx`` every recorded signature for compute capability 8.0, one line per
   kernel. rung's sources are on the path for the plain-Python bodies the kernel modules import (e.g.
   ``rung.qmc._kernels.aos_body``, shared with the CPU kernels); a kernel module imports nothing heavier
   from rung at import time (no PySCF needed).

    python tools/ptx_check.py record --signatures ptx-signatures.json
    <venv with numba-cuda[cu12]>/bin/python tools/ptx_check.py compile --signatures ptx-signatures.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the simulator tests that launch each package's kernels
TESTS = ["packages/nnp/tests/test_gpu.py", "packages/sci/tests/test_gpu.py",
         "packages/qmc/tests/test_orbitals.py::test_cuda_kernel_under_simulator",
         "packages/qmc/tests/test_forces_gpu.py::test_det_terms_kernel_matches_cpu",
         "packages/qmc/tests/test_forces_gpu.py::test_electron_terms_kernel_matches_cpu",
         "packages/qmc/tests/test_forces_ecp_gpu.py::test_simulator_kernel_matches_cpu_kernel"]


def _arg_type(a) -> list:
    """A JSON-able type of one kernel argument: ["array", dtype, ndim, layout] or ["scalar", dtype]."""
    import numpy as np

    arr = getattr(a, "_item", a)  # the simulator wraps device arrays
    arr = getattr(arr, "_ary", arr)
    if hasattr(arr, "dtype") and getattr(arr, "ndim", 0) > 0:
        layout = "C" if arr.flags.c_contiguous else ("F" if arr.flags.f_contiguous else "A")
        return ["array", str(arr.dtype), int(arr.ndim), layout]
    if isinstance(a, bool):
        return ["scalar", "bool"]
    if isinstance(a, int):
        return ["scalar", "int64"]
    if isinstance(a, float):
        return ["scalar", "float64"]
    return ["scalar", str(np.asarray(a).dtype)]


def record(path: Path) -> int:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
        sys.exit("ptx_check record: set NUMBA_ENABLE_CUDASIM=1 (the launches are recorded in the CUDA simulator)")
    import pytest
    from numba.cuda.simulator import kernel as sim

    seen: dict = {}
    call = sim.FakeCUDAKernel.__call__

    def recording(self, *args):
        if not self._device:
            fn = self.fn
            key = (fn.__module__, fn.__name__, json.dumps([_arg_type(a) for a in args]))
            seen[key] = sys.modules[fn.__module__].__file__
        return call(self, *args)

    sim.FakeCUDAKernel.__call__ = recording
    try:
        rc = pytest.main(["-q", "-p", "no:cacheprovider", "-m", "not gpu", *(str(ROOT / t) for t in TESTS)])
    finally:
        sim.FakeCUDAKernel.__call__ = call
    out = [{"module": m, "kernel": k, "file": str(Path(f).resolve().relative_to(ROOT)), "args": json.loads(a)}
           for (m, k, a), f in sorted(seen.items())]
    path.write_text(json.dumps(out, indent=1))
    print(f"{len(out)} kernel signatures from {len({(o['module'], o['kernel']) for o in out})} kernels -> {path}")
    return int(rc) or (0 if out else 1)


def _numba_type(spec):
    from numba import types

    if spec[0] == "array":
        return types.Array(getattr(types, "boolean" if spec[1] == "bool" else spec[1]), spec[2], spec[3])
    return getattr(types, "boolean" if spec[1] == "bool" else spec[1])


def compile_all(path: Path, cc=(8, 0)) -> int:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        sys.exit("ptx_check compile: unset NUMBA_ENABLE_CUDASIM (the simulator has no compiler)")
    from numba import cuda

    sys.path[:0] = [str(src) for src in sorted((ROOT / "packages").glob("*/src"))]
    modules, failed = {}, 0
    for entry in json.loads(path.read_text()):
        name = entry["module"]
        if name not in modules:
            spec = importlib.util.spec_from_file_location(name, ROOT / entry["file"])
            modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(modules[name])
        fn = getattr(modules[name], entry["kernel"]).py_func
        sig = tuple(_numba_type(a) for a in entry["args"])
        label = f"{name}.{entry['kernel']}"
        try:
            ptx, _ = cuda.compile_ptx(fn, sig, cc=cc)
            print(f"ok    {label}: {len(ptx.splitlines())} PTX lines, sm_{cc[0]}{cc[1]}")
        except Exception as e:  # report every kernel, then fail
            failed += 1
            print(f"FAIL  {label}{sig}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    print(f"{failed} of {len(json.loads(path.read_text()))} kernel signatures failed to compile")
    return 1 if failed else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["record", "compile"])
    ap.add_argument("--signatures", type=Path, default=Path("ptx-signatures.json"))
    args = ap.parse_args(argv)
    return record(args.signatures) if args.phase == "record" else compile_all(args.signatures)


if __name__ == "__main__":
    sys.exit(main())
