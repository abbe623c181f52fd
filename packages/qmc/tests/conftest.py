from pathlib import Path


def pytest_configure(config):
    """A stale numba cache of ``_kernels/cpu/`` (its kernels call helpers across modules) is dropped."""
    import rung.qmc._kernels
    from rung.core.testing import drop_stale_numba_cache

    drop_stale_numba_cache(Path(rung.qmc._kernels.__file__).with_name("cpu"))
