"""Forces for all beads from one batched potential call per rank; beads spread over MPI ranks.

``comm=None`` is serial: one call with all P beads. With an mpi4py communicator of size R, rank r
evaluates the contiguous block of beads ``np.array_split(range(P), R)[r]`` in one batched call and the
energies, forces and virials are all-gathered, so every rank holds the full (P, n, 3) forces and
integrates the (cheap) ring-polymer step itself. The random numbers are drawn for all beads on every
rank from the same (seed, step) stream, so trajectories do not depend on the number of ranks; a
bead's forces do not depend on which beads share its batch (for the built-in kernels exactly; for
other potentials up to round-off).
"""

from __future__ import annotations

import numpy as np

from rung.core.mpi import comm_info
from rung.core.potential import PotentialResult


def bead_blocks(P: int, size: int) -> list[tuple[int, int]]:
    """(start, stop) of the beads of each rank."""
    edges = np.cumsum([0] + [len(b) for b in np.array_split(np.arange(P), size)])
    return [(int(edges[r]), int(edges[r + 1])) for r in range(size)]


class BeadForces:
    """Callable force function (P, n, 3) Bohr -> PotentialResult for all beads (atomic units).

    Parameters
    ----------
    potential : a rung.core Potential in Hartree and Bohr (see ``in_atomic_units``)
    numbers : (n_atoms,) int
    cell : (3, 3) float64 Bohr or None
    virial : ask the potential for the virial (periodic runs)
    comm : mpi4py communicator or None
    """

    def __init__(self, potential, numbers, cell=None, *, virial=False, comm=None):
        self.potential, self.numbers, self.cell = potential, np.asarray(numbers), cell
        self.virial, self.comm = virial, comm
        self.calls = 0

    def __call__(self, x) -> PotentialResult:
        self.calls += 1
        P = x.shape[0]
        rank, size = comm_info(self.comm)
        if size == 1:
            r = self.potential.compute(x, self.numbers, self.cell, forces=True, virial=self.virial)
            e = np.asarray(r.energy, dtype=np.float64).reshape(P)
            f = np.asarray(r.forces, dtype=np.float64).reshape(x.shape)
            w = None if r.virial is None else np.asarray(r.virial, dtype=np.float64).reshape(P, 3, 3)
            return PotentialResult(e, f, w)
        from mpi4py import MPI

        blocks = bead_blocks(P, size)
        lo, hi = blocks[rank]
        n = x.shape[1]
        e_loc = np.zeros(hi - lo)
        f_loc = np.zeros((hi - lo, n, 3))
        w_loc = np.zeros((hi - lo, 3, 3))
        if hi > lo:
            r = self.potential.compute(x[lo:hi], self.numbers, self.cell, forces=True, virial=self.virial)
            e_loc[:] = np.asarray(r.energy).reshape(hi - lo)
            f_loc[:] = np.asarray(r.forces).reshape(hi - lo, n, 3)
            if self.virial and r.virial is not None:
                w_loc[:] = np.asarray(r.virial).reshape(hi - lo, 3, 3)
        counts = np.array([b - a for a, b in blocks])
        e = np.empty(P)
        f = np.empty((P, n, 3))
        w = np.empty((P, 3, 3))
        for loc, out, per in ((e_loc, e, 1), (f_loc, f, 3 * n), (w_loc, w, 9)):
            c = counts * per
            displ = np.concatenate([[0], np.cumsum(c)[:-1]])
            self.comm.Allgatherv(loc.ravel(), [out.reshape(-1), c, displ, MPI.DOUBLE])
        return PotentialResult(e, f, w if self.virial else None)
