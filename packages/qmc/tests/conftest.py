from pathlib import Path


def pytest_configure(config):
    """A stale numba cache of ``_kernels/cpu/`` (its kernels call helpers across modules, and
    ``_kernels/aos_body.py``'s functions, compiled into ``cpu/aos.py``'s kernels) is dropped."""
    import rung.qmc._kernels
    from rung.core.testing import drop_stale_numba_cache

    cpu = Path(rung.qmc._kernels.__file__).with_name("cpu")
    drop_stale_numba_cache(cpu, also=[cpu.with_name("aos_body.py")])
