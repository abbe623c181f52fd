"""Root pytest configuration: `gpu` tests skip without a CUDA device, `mpi` tests without mpiexec."""

import shutil
import sys
from pathlib import Path

import pytest


def _mpiexec():
    local = Path(sys.executable).with_name("mpiexec")
    return str(local) if local.exists() else shutil.which("mpiexec")


def pytest_collection_modifyitems(config, items):
    from rung.core.backend import gpu_available

    no_gpu = None if gpu_available() else pytest.mark.skip(reason="no CUDA device / CuPy")
    no_mpi = None if _mpiexec() else pytest.mark.skip(reason="mpiexec not found (install the mpich wheel)")
    for item in items:
        if no_gpu and "gpu" in item.keywords:
            item.add_marker(no_gpu)
        if no_mpi and "mpi" in item.keywords:
            item.add_marker(no_mpi)


@pytest.fixture
def mpiexec():
    """Path of mpiexec (the one next to this Python first, from the mpich wheel)."""
    return _mpiexec()
