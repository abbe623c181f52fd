"""rung.core benchmarks: cell-list neighbour search against scipy's cKDTree (periodic cubic box).

Both produce the same half list of pairs (checked in packages/core/tests); cKDTree is single-threaded,
so the one-thread row is the like-for-like comparison.
"""

import numba
import numpy as np
from scipy.spatial import cKDTree

from rung.core.neighbors import PARALLEL_MIN_ATOMS, neighbor_list
from tools.bench import Case

DENSITY = 0.1  # atoms per cubic Angstrom (liquid water is ~0.1)
CUTOFF = 5.0  # Angstrom


def _threads(n, fn):
    def call():
        old = numba.get_num_threads()
        numba.set_num_threads(n)
        try:
            return fn()
        finally:
            numba.set_num_threads(old)

    return call


def cases(quick: bool):
    for n in ([1000] if quick else [1000, 8000, 64000]):
        box = (n / DENSITY) ** (1 / 3)
        x = np.random.default_rng(0).random((n, 3)) * box
        cell = np.eye(3) * box
        tree = lambda: cKDTree(x, boxsize=box).query_pairs(CUTOFF, output_type="ndarray")  # noqa: E731
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS if n >= PARALLEL_MIN_ATOMS else 1}):
            yield Case("core.neighbor_list", f"{n} atoms, rc 5 A, periodic, {threads} thread(s)",
                       _threads(threads, lambda: neighbor_list(x, CUTOFF, cell)), peer=tree,
                       peer_name="cKDTree.query_pairs", work=n, work_unit="atoms", repeats=3 if n > 10000 else 7)
