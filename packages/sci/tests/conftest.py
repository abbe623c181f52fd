from pathlib import Path

import pytest

from rung.sci.testing import REFERENCE_FCIDUMP


def pytest_configure(config):
    """A stale numba cache of ``_kernels/cpu/`` (its kernels call helpers across modules) is dropped."""
    import rung.sci._kernels
    from rung.core.testing import drop_stale_numba_cache

    drop_stale_numba_cache(Path(rung.sci._kernels.__file__).with_name("cpu"))


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


@pytest.fixture
def killed_cipsi(monkeypatch):
    """``killed_cipsi(ham, config, checkpoint, n)``: run :func:`rung.sci.cipsi.kernel` with ``checkpoint``
    and kill it (KeyboardInterrupt) at the start of its n-th PT2 pass (1-based), as a killed job would
    stop; the checkpoint holds the iterations before it."""
    from rung.sci import cipsi

    def run(ham, config, checkpoint, n):
        calls = {"n": 0}
        real = cipsi.en_pt2

        def dying(*a, **k):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return real(*a, **k)

        monkeypatch.setattr(cipsi, "en_pt2", dying)
        try:
            with pytest.raises(KeyboardInterrupt):
                cipsi.kernel(ham, config, checkpoint=checkpoint, log=None)
        finally:
            monkeypatch.setattr(cipsi, "en_pt2", real)

    return run
