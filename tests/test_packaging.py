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
