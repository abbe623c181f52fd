from pathlib import Path

import pytest

from rung.sci.testing import REFERENCE_FCIDUMP


def pytest_configure(config):
    """Drop the numba cache of ``_kernels/cpu/`` when one of its sources is newer than the oldest cache index.

    numba checks only the file of the kernel it loads, so a kernel calling a helper of another module of
    the package would keep the helper's old machine code after an edit and the tests would run it."""
    import rung.sci._kernels

    src = Path(rung.sci._kernels.__file__).with_name("cpu")
    index = list((src / "__pycache__").glob("*.nbi"))
    if index and max(f.stat().st_mtime for f in src.glob("*.py")) > min(f.stat().st_mtime for f in index):
        for f in (src / "__pycache__").glob("*.nb[ic]"):
            f.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def h2o():
    from rung.sci.fcidump import read_fcidump

    return read_fcidump(REFERENCE_FCIDUMP)


@pytest.fixture(scope="session")
def h2o_small(h2o):
    """H2O/6-31G truncated to its 8 lowest orbitals (5+5 electrons, FCI space 3136)."""
    from rung.sci.fcidump import Hamiltonian

    n = 8
    return Hamiltonian(h2o.h1[:n, :n], h2o.eri[:n, :n, :n, :n], h2o.ecore, h2o.nelec, h2o.orbsym[:n])
