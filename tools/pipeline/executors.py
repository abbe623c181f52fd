"""Where (conformation x rung) tasks run: one small task API over existing engines.

A task is a picklable top-level function and its arguments; an executor runs many of them and yields
``(key, result, error)`` as each finishes, in completion order, largest tasks first. The caller records
every result durably (a :class:`rung.core.dataset.ResultWriter` journal) as it arrives, so a task that
was running when a worker or the whole job died is simply still pending on the next run: nothing is lost
and nothing is computed twice.

- ``local`` (default): :class:`concurrent.futures.ProcessPoolExecutor`, one numba/BLAS thread per worker.
- ``mpi``: :class:`mpi4py.futures.MPICommExecutor` inside one ``mpiexec -n N`` allocation (rank 0
  dispatches and records, ranks 1..N-1 compute); run as ``mpiexec -n N python -m tools.pipeline ...``.
- ``serial``: in this process (debugging, and the oracle of the others in the tests).

Parsl (many batch jobs, Slurm/PBS providers) is not wired in yet: it is an optional extra that is not
installed here.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed

EXECUTORS = ("local", "mpi", "serial")


def _init_worker():
    """One thread per worker: the workers are the parallelism."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass


def _guarded(fn, args):
    """Run one task; an exception becomes the task's error text (the task fails alone)."""
    try:
        return fn(*args), None
    except Exception as err:  # a failed task is recorded as failed with its reason, never raised
        return None, f"{type(err).__name__}: {err}"


class Executor:
    """``with Executor(kind, workers) as ex:`` then ``ex.run(tasks)``; on MPI worker ranks ``__enter__``
    serves tasks until rank 0 is done and returns None, so the caller does nothing there::

        with Executor("mpi") as ex:
            if ex is not None:
                pipeline(ex)
    """

    def __init__(self, kind: str = "local", workers: int | None = None):
        if kind not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {kind!r}")
        self.kind, self.workers, self._pool, self._ctx = kind, workers, None, None

    def __enter__(self):
        if self.kind == "mpi":
            from mpi4py import MPI
            from mpi4py.futures import MPICommExecutor

            self._ctx = MPICommExecutor(MPI.COMM_WORLD, root=0)
            self._pool = self._ctx.__enter__()
            return self if self._pool is not None else None
        if self.kind == "local":
            self._pool = ProcessPoolExecutor(max_workers=self.workers or os.cpu_count() or 1,
                                             initializer=_init_worker)
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            return self._ctx.__exit__(*exc)
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        return False

    def run(self, tasks):
        """Run ``tasks`` [(key, cost, fn, args)]; yield (key, result, error) as each finishes.

        ``cost`` orders the submission (largest first, so one long task does not finish last alone); a
        task that raises yields its error text instead of a result (it fails alone).
        """
        tasks = sorted(tasks, key=lambda t: -t[1])
        if self._pool is None:  # serial
            for key, _, fn, args in tasks:
                yield (key, *_guarded(fn, args))
            return
        futures = {self._pool.submit(_guarded, fn, args): key for key, _, fn, args in tasks}
        try:
            for f in as_completed(futures):
                yield (futures[f], *f.result())
        finally:
            for f in futures:  # the caller stopped early (an error, a kill): drop what has not started
                f.cancel()
