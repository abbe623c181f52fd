"""MPI helpers the farms share; ``comm=None`` (or a communicator of one rank) is a serial run.

Contract. Every function takes an mpi4py communicator or None and gives the serial answer without
importing mpi4py when there is nothing to communicate. :func:`wait_all` and :func:`bcast` wait by
polling a non-blocking barrier with short sleeps, so a rank that waits for the others (rank 0 while
the workers finish their last conformation) does not spin a core they need. :class:`SharedCounter`
hands out 0, 1, 2, ... across all ranks with one-sided atomics (``MPI_Fetch_and_op`` on an int64
held by rank 0), so every rank takes the next pending item when it is free (dynamic load balance
without a master rank).
"""

from __future__ import annotations

import time

import numpy as np


def comm_info(comm) -> tuple[int, int]:
    """``(rank, size)`` of ``comm``; ``(0, 1)`` for None."""
    return (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())


def wait_all(comm, poll_s: float = 0.02) -> None:
    """A barrier that sleeps ``poll_s`` seconds between tests instead of spinning; no-op when serial."""
    if comm is None or comm.Get_size() == 1:
        return
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(poll_s)


def bcast(comm, value):
    """Rank 0's ``value`` on every rank, after all ranks arrived (:func:`wait_all`); ``value`` when serial."""
    if comm is None or comm.Get_size() == 1:
        return value
    wait_all(comm)
    return comm.bcast(value, root=0)


class SharedCounter:
    """A work counter shared by the ranks of ``comm``: :meth:`next` returns 0, 1, 2, ... across all of
    them, each number once (a plain counter when ``comm`` is None or has one rank).

    Collective: every rank of ``comm`` constructs it and calls :meth:`free` when done.
    """

    def __init__(self, comm):
        self.comm = comm
        if comm is None or comm.Get_size() == 1:
            self.win, self._value = None, 0
            return
        from mpi4py import MPI

        self._MPI = MPI
        size = MPI.INT64_T.Get_size()
        self.win = MPI.Win.Allocate(size if comm.Get_rank() == 0 else 0, size, comm=comm)
        if comm.Get_rank() == 0:
            self.win.Lock(0, MPI.LOCK_EXCLUSIVE)
            np.frombuffer(self.win.tomemory(), dtype=np.int64)[:] = 0
            self.win.Unlock(0)
        comm.Barrier()

    def next(self) -> int:
        """The next number (atomic fetch-and-add of 1 on rank 0's counter)."""
        if self.win is None:
            self._value += 1
            return self._value - 1
        MPI = self._MPI
        one, out = np.ones(1, np.int64), np.zeros(1, np.int64)
        self.win.Lock(0, MPI.LOCK_SHARED)
        self.win.Fetch_and_op([one, MPI.INT64_T], [out, MPI.INT64_T], 0, 0, MPI.SUM)
        self.win.Unlock(0)
        return int(out[0])

    def free(self) -> None:
        """Release the MPI window (collective)."""
        if self.win is not None:
            self.win.Free()


__all__ = ["comm_info", "wait_all", "bcast", "SharedCounter"]
