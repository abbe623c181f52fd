"""Where (conformation x rung) tasks run: one small task API over existing engines.

A task is a picklable top-level function and its arguments; an executor runs many of them and yields
``(key, result, error)`` as each finishes, in completion order, largest tasks first. The caller records
every result durably (a :class:`rung.core.dataset.ResultWriter` journal) as it arrives, so a task that
was running when a worker or the whole job died is simply still pending on the next run: nothing is lost
and nothing is computed twice.

- ``local`` (default): :class:`concurrent.futures.ProcessPoolExecutor`, one numba/BLAS thread per worker.
- ``mpi``: :class:`mpi4py.futures.MPICommExecutor` inside one ``mpiexec -n N`` allocation (rank 0
  dispatches and records, ranks 1..N-1 compute); run as ``mpiexec -n N python -m tools.pipeline ...``.
- ``parsl``: Parsl's DataFlowKernel (many batch jobs, retries, Slurm/PBS/local providers), an optional
  dependency: ``parsl_config`` names a Python file defining ``config`` (a ``parsl.config.Config``, e.g.
  a HighThroughputExecutor on a SlurmProvider); without it a local HighThroughputExecutor with
  ``workers`` single-threaded workers. Failed tasks are retried ``retries`` times by Parsl first.
- ``serial``: in this process (debugging, and the oracle of the others in the tests).
"""

from __future__ import annotations

import os
import queue
from concurrent.futures import ProcessPoolExecutor

from rung.core.errors import InputError

EXECUTORS = ("local", "mpi", "parsl", "serial")


def _init_worker():
    """One thread per worker: the workers are the parallelism."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass
    try:  # the environment is read once, when OpenMP starts: a worker forked from a process whose OpenMP
        # team exists (an in-process SCF before the pool started) would wait forever on that team's
        # threads, which a fork does not copy; one thread set here never uses them
        from pyscf import lib

        lib.num_threads(1)
    except ImportError:
        pass


def _task(fn, args, worker: bool = True):
    """One task: in a worker (``worker``) on one thread, the workers being the parallelism; an
    exception becomes the task's error text (the task fails alone)."""
    if worker:
        _init_worker()
    try:
        return fn(*args), None
    except Exception as err:  # a failed task is recorded as failed with its reason, never raised
        return None, f"{type(err).__name__}: {err}"


def _call(func, *args):
    return func(*args)


class _ParslPool:
    """``submit(func, *args) -> Future``, as a ProcessPoolExecutor is called, over a Parsl
    DataFlowKernel (its AppFutures are concurrent.futures Futures)."""

    def __init__(self, config_file, workers: int, retries: int):
        try:
            import parsl
        except ImportError as err:
            raise InputError("executor 'parsl' needs the optional parsl package (pip install parsl)") from err
        if config_file is not None:
            import runpy

            config = runpy.run_path(str(config_file)).get("config")
            if config is None:
                raise InputError(f"{config_file}: defines no 'config' (a parsl.config.Config)")
        else:
            from parsl.config import Config
            from parsl.executors import HighThroughputExecutor
            from parsl.providers import LocalProvider

            config = Config(executors=[HighThroughputExecutor(label="rung", max_workers_per_node=workers,
                                                              cores_per_worker=1, provider=LocalProvider())],
                            retries=retries, run_dir=os.environ.get("RUNG_PARSL_RUN_DIR", "runinfo"))
        import sys

        bindir = os.path.dirname(sys.executable)  # Parsl starts its interchange and workers as scripts from PATH
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if root not in os.environ.get("PYTHONPATH", "").split(os.pathsep):  # workers import tools.pipeline
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self.dfk = parsl.load(config)
        self.app = parsl.python_app(_call, data_flow_kernel=self.dfk)

    def submit(self, func, *args):
        return self.app(func, *args)

    def shutdown(self, cancel_futures: bool = True):
        self.dfk.cleanup()
        import parsl

        parsl.clear()


class Executor:
    """``with Executor(kind, workers) as ex:`` then ``ex.run(tasks)``; on MPI worker ranks ``__enter__``
    serves tasks until rank 0 is done and returns None, so the caller does nothing there::

        with Executor("mpi") as ex:
            if ex is not None:
                pipeline(ex)
    """

    def __init__(self, kind: str = "local", workers: int | None = None, parsl_config=None, retries: int = 0):
        if kind not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, got {kind!r}")
        self.kind, self.workers, self._pool, self._ctx = kind, workers, None, None
        self.parsl_config, self.retries = parsl_config, retries

    def __enter__(self):
        if self.kind == "mpi":
            from mpi4py import MPI
            from mpi4py.futures import MPICommExecutor

            self._ctx = MPICommExecutor(MPI.COMM_WORLD, root=0)
            self.workers = max(1, MPI.COMM_WORLD.Get_size() - 1)
            self._pool = self._ctx.__enter__()
            return self if self._pool is not None else None
        if self.kind == "local":  # forked workers (a fork server was tried: its workers outlive a SIGKILL);
            # _init_worker sets OpenMP to one thread, so a pool forked after an in-process SCF does not hang
            self._pool = ProcessPoolExecutor(max_workers=self.workers or os.cpu_count() or 1)
        if self.kind == "parsl":
            self._pool = _ParslPool(self.parsl_config, self.workers or os.cpu_count() or 1, self.retries)
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            return self._ctx.__exit__(*exc)
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
        return False

    def run(self, tasks, window: int | None = None):
        """Run ``tasks`` [(key, cost, fn, args)]; yield (key, result, error) as each finishes.

        ``cost`` orders the submission (largest first, so one long task does not finish last alone); a
        task that raises yields its error text instead of a result (it fails alone). At most ``window``
        tasks are submitted and not yet yielded at a time (default: 16 per worker, at least 1024; all of
        them for Parsl with a configuration file, whose workers are not known here), so a million
        tasks do not become a million futures at once.
        """
        tasks = sorted(tasks, key=lambda t: -t[1])
        if self._pool is None:  # serial
            for key, _, fn, args in tasks:
                yield (key, *_task(fn, args, worker=False))
            return
        if window is None:
            window = len(tasks) if self.kind == "parsl" and self.parsl_config is not None else \
                max(1024, 16 * (self.workers or os.cpu_count() or 1))
        todo = iter(tasks)
        running = {}  # future -> key (Parsl: AppFutures, also concurrent.futures Futures)
        finished = queue.SimpleQueue()  # futures in completion order (their done callbacks put them)

        def fill():
            for key, _, fn, args in todo:
                f = self._pool.submit(_task, fn, args)
                running[f] = key
                f.add_done_callback(finished.put)
                if len(running) >= window:
                    return

        try:
            fill()
            while running:
                f = finished.get()
                yield (running.pop(f), *f.result())
                fill()
        finally:
            for f in running:  # the caller stopped early (an error, a kill): drop what has not started
                if not f.done():
                    try:
                        f.cancel()
                    except NotImplementedError:  # Parsl's futures cannot be cancelled
                        pass
