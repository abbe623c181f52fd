"""Packaging: `import rung.core` stays light, and every package installs alone with pip (slow)."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["dft_gpu", "sci", "qmc", "nnp", "md"]


def test_core_import_is_light():
    code = "import sys, rung.core; print(sorted(m for m in ('cupy', 'pyscf', 'mpi4py', 'numba', 'h5py') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow
@pytest.mark.parametrize("package", PACKAGES)
def test_pip_install_alone(tmp_path, package):
    venv.create(tmp_path / "env", with_pip=True)
    py = tmp_path / "env" / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", str(ROOT / "packages" / "core"), str(ROOT / "packages" / package)],
                   check=True, timeout=1200)
    subprocess.run([py, "-c", f"import rung.core, rung.{package}"], check=True)
    cli = {"dft_gpu": "dft-gpu", "md": "nnp-md"}.get(package, package)
    out = subprocess.run([tmp_path / "env" / "bin" / cli, "--help"], capture_output=True, text=True, check=True)
    assert "Usage" in out.stdout


GPU_KERNEL_PACKAGES = ["nnp", "qmc", "sci"]  # the packages with numba.cuda kernels


def _lock():
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    return {p["name"]: p for p in tomllib.loads((ROOT / "uv.lock").read_text())["package"]}


@pytest.mark.parametrize("package", GPU_KERNEL_PACKAGES)
def test_cuda12_extra_resolves_to_a_pip_only_cuda_compiler(package):
    """`pip install "rung-<pkg>[cuda12]"` brings CuPy and numba-cuda with NVVM and the runtime as wheels, so a
    GPU machine without a CUDA toolkit or conda compiles the kernels (checked by resolution in uv.lock;
    `make ptx-check` compiles them with exactly these wheels)."""
    lock = _lock()
    extra = {d["name"]: d.get("extra", []) for d in lock[f"rung-{package.replace('_', '-')}"]["optional-dependencies"]["cuda12"]}
    assert "cupy-cuda12x" in extra and "cu12" in extra.get("numba-cuda", [])
    cu12 = lock["numba-cuda"]["optional-dependencies"]["cu12"]
    toolkit = [d for d in cu12 if d["name"] == "cuda-toolkit"]
    assert toolkit and {"nvcc", "cudart"} <= set(toolkit[0]["extra"])  # nvcc's wheel carries libnvvm
    assert "nvidia-cuda-nvcc-cu12" in lock  # ... and it resolved
