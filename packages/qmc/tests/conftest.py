from pathlib import Path


def pytest_configure(config):
    """Drop the numba cache of ``_kernels/cpu/`` when one of its sources is newer than the oldest cache index.

    numba checks only the file of the kernel it loads, so a kernel calling a helper of another module of
    the package (``ecp_nonlocal`` and the sweep kernels call the Jastrow's) would keep the helper's old
    machine code after an edit and the tests would run it."""
    import rung.qmc._kernels

    src = Path(rung.qmc._kernels.__file__).with_name("cpu")
    index = list((src / "__pycache__").glob("*.nbi"))
    if index and max(f.stat().st_mtime for f in src.glob("*.py")) > min(f.stat().st_mtime for f in index):
        for f in (src / "__pycache__").glob("*.nb[ic]"):
            f.unlink(missing_ok=True)
