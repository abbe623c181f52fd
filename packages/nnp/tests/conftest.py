"""Fixtures: the ANI-1x weights (fetched once into the user cache), TorchANI's reference numbers."""

from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).with_name("data") / "ani1x_paracetamol.npz"  # TorchANI's numbers, in the repository


def pytest_configure(config):
    """A stale numba cache of ``_kernels/`` (``cpu.py``'s kernels compile in ``aev_body.py``'s functions) is
    dropped."""
    import rung.nnp._kernels
    from rung.core.testing import drop_stale_numba_cache

    drop_stale_numba_cache(Path(rung.nnp._kernels.__file__).parent)


@pytest.fixture(scope="session")
def ani1x_file():
    """Path of the converted ANI-1x model; fetched with pip from the package index when missing."""
    from rung.nnp.fetch import WeightsMissing, fetch, resolve

    try:
        return resolve("ani-1x")
    except WeightsMissing:
        pass
    try:
        return fetch("ani-1x", log=lambda *a: None)
    except RuntimeError as err:
        pytest.skip(f"ANI-1x weights not cached and the download of torchani==2.2.4 is impossible here: {err}")


@pytest.fixture(scope="session")
def single64(ani1x_file):
    from rung.nnp import load_model

    return load_model(ani1x_file, member=0, dtype="float64")


@pytest.fixture(scope="session")
def paracetamol():
    d = np.load(REFERENCE)
    return {g: {k.split("/")[1]: d[k] for k in d.files if k.startswith(g + "/")}
            for g in ("paracetamol_eq", "paracetamol_pert1")}
