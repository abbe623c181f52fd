"""Packaging: `import rung.core` stays light, and every package installs alone with pip (slow)."""

import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["dft_gpu", "sci", "qmc", "nnp", "md"]


def test_no_absolute_path_to_this_machine():
    """Test data and code live in the repository: no tracked file names the folder the checkout sits in
    (e.g. a reference file read from a path outside the clone)."""
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    needles = [str(ROOT) + "/", str(ROOT.parent / "shared")]  # this checkout, and the shared folder beside it
    hits = []
    for name in files:
        path = ROOT / name
        if path.resolve() == Path(__file__).resolve():
            continue
        if path.suffix in (".py", ".toml", ".md", ".cfg", ".txt", ".sh", "") and path.is_file():
            text = path.read_text(errors="ignore")
            hits += [f"{name}: {n}" for n in needles if n in text]
    assert not hits, hits


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
