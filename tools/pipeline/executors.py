"""Where (conformation x rung) tasks run: one small task API over existing engines.

A task is a picklable top-level function and its arguments; an executor runs many of them and yields
``(key, result, error)`` as each finishes, in completion order, largest tasks first. The caller records
every result durably (a :class:`rung.core.dataset.ResultWriter` journal) as it arrives, so a task that
was running when a worker or the whole job died is simply still pending on the next run: nothing is lost
and nothing is computed twice.

A local worker that dies under a task (SIGKILL, the out-of-memory killer, a crash in compiled code)
breaks its whole pool: the pool is started again and the run goes on. The tasks that had started in the
dead pool are rerun one at a time in a pool of their own (a task that merely shared the pool with the
killer then succeeds); a task whose worker dies even there is left pending with a warning (logged, and
in :attr:`Executor.lost`): never yielded, so never recorded as failed with a reason that is not its own.
Parsl retries a lost task ``retries`` times itself; one lost after that is left pending the same way.

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

import logging
import os
import queue
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from rung.core.errors import InputError

EXECUTORS = ("local", "mpi", "parsl", "serial")
log = logging.getLogger(__name__)
_STARTED = None  # in a local worker: the queue its tasks put their tag in as they start (_local_pool)
_LIMITED = False  # in a worker: its BLAS and OpenMP libraries are held at one thread (_init_worker)


def _init_worker():
    """One thread per worker: the workers are the parallelism."""
    global _LIMITED
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = "1"  # the libraries loaded from now on
    if not _LIMITED:  # and those the parent had loaded before the fork, which keep its thread counts: a
        # result would otherwise depend on what the parent had imported (PySCF's BLAS, loaded by the DFT
        # step's resume in the parent, ran on 2 threads in the workers: DFT values ~1e-13 apart)
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        _LIMITED = True
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


def _set_started(started):
    global _STARTED
    _STARTED = started


def _local_pool(workers: int):
    """A pool of ``workers`` forked workers and the queue (a multiprocessing.SimpleQueue) in which each
    task puts its tag as it starts, which tells the tasks a dying worker took with it from those queued."""
    import multiprocessing

    started = multiprocessing.SimpleQueue()
    return ProcessPoolExecutor(max_workers=workers, initializer=_set_started, initargs=(started,)), started


def _close_local(pool, grace_s: float = 10.0):
    """Shut a local pool down; a worker that has not ended ``grace_s`` seconds later is terminated: a worker
    killed while it waited for a task can hold the task queue's lock for ever, and the others then never
    see the end of the work (ProcessPoolExecutor.shutdown would wait for them without end)."""
    import time

    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    end = time.monotonic() + grace_s
    for p in workers:
        p.join(max(0.0, end - time.monotonic()))
        if p.is_alive():
            p.terminate()
            p.join()


def _task(fn, args, worker: bool = True, tag=None):
    """One task: in a worker (``worker``) on one thread, the workers being the parallelism; an
    exception becomes the task's error text (the task fails alone). ``tag`` goes to the worker's started
    queue (local workers) before the task runs."""
    if worker:
        _init_worker()
        if _STARTED is not None and tag is not None:
            _STARTED.put(tag)
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
        self._started = self._alone = None  # local: the pool's started queue; the pool of one for suspects
        self.lost = []  # keys of the tasks left pending because their worker died under them

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
            self._pool, self._started = _local_pool(self.workers or os.cpu_count() or 1)
        if self.kind == "parsl":
            self._pool = _ParslPool(self.parsl_config, self.workers or os.cpu_count() or 1, self.retries)
        return self

    def __exit__(self, *exc):
        if self._ctx is not None:
            return self._ctx.__exit__(*exc)
        if self.kind != "local":
            if self._pool is not None:
                self._pool.shutdown(cancel_futures=True)
            return False
        for pool in (self._pool, self._alone and self._alone[0]):
            if pool is not None:
                _close_local(pool)
        return False

    def _lost(self, key, why: str):
        self.lost.append(key)
        log.warning("task %s: %s; left pending (the next run computes it)", key, why)

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
        todo = deque(enumerate(tasks))  # (tag, task); the tag tells a task's start in a local worker
        suspects = deque()  # local: tasks that had started in a pool whose worker died, rerun one at a time
        running = {}  # future -> (pool, (tag, task)) (Parsl: AppFutures, also concurrent.futures Futures)
        finished = queue.SimpleQueue()  # futures in completion order (their done callbacks put them)
        started = set()  # local: tags of the tasks that started in a worker and are not yielded

        def note_started():
            """Empty the started queues (a full pipe would block the workers' next put)."""
            for q in (self._started, self._alone and self._alone[1]):
                while q is not None and not q.empty():
                    started.add(q.get())

        def submit(pool, item):
            tag, (key, _, fn, args) = item
            main = pool is self._pool
            try:
                f = pool.submit(_task, fn, args, True, tag)
            except BrokenProcessPool:  # a worker died before this loop heard of it
                restart(pool)
                (todo if main else suspects).appendleft(item)
                return
            running[f] = (pool, item)
            f.add_done_callback(finished.put)

        def fill():
            while suspects and all(p is self._pool for p, _ in running.values()):  # one at a time, alone
                if self._alone is None:
                    self._alone = _local_pool(1)
                submit(self._alone[0], suspects.popleft())
            while todo and len(running) < window:
                submit(self._pool, todo.popleft())

        def restart(pool):
            """A worker of the local ``pool`` died: its tasks not finished are lost; the tasks that had
            started become suspects, the others go back to the queue, and the pool starts again."""
            lost = {f: item for f, (p, item) in running.items()
                    if p is pool and not (f.done() and not f.cancelled() and f.exception() is None)}
            for f in lost:
                del running[f]
            note_started()
            ran = started & {item[0] for item in lost.values()}  # the tags of the lost tasks that had started
            started.difference_update(item[0] for item in lost.values())
            _close_local(pool)
            if pool is not self._pool:  # the pool of one: the task alone in it killed its worker
                self._alone = None
                for tag, (key, *_) in lost.values():
                    self._lost(key, "its worker process died under it, also when it ran alone (killed, out of "
                                    "memory, or a crash in compiled code)")
                return
            self._pool, self._started = _local_pool(self.workers or os.cpu_count() or 1)
            lost = sorted(lost.values(), key=lambda item: item[0])  # in submission order
            suspects.extend(item for item in lost if item[0] in ran)
            todo.extendleft(item for item in reversed(lost) if item[0] not in ran)

        try:
            fill()
            while running:
                f = finished.get()
                note_started()
                if f not in running:  # a future of a pool that died, handled with the first of them
                    continue
                pool, (tag, (key, *_)) = running[f]
                try:
                    out = f.result()
                except BrokenProcessPool:  # a local worker died under this task or another one
                    restart(pool)
                    fill()
                    continue
                except Exception as err:  # not the task's own exception (_task makes that its error text)
                    del running[f]
                    if self.kind == "parsl":  # its worker was lost, after Parsl's retries
                        self._lost(key, f"its worker was lost ({type(err).__name__}: {err})")
                        fill()
                        continue
                    out = None, f"{type(err).__name__}: {err}"  # its arguments or result could not be pickled
                else:
                    del running[f]
                started.discard(tag)
                yield (key, *out)
                fill()
        finally:
            for f in running:  # the caller stopped early (an error, a kill): drop what has not started
                if not f.done():
                    try:
                        f.cancel()
                    except NotImplementedError:  # Parsl's futures cannot be cancelled
                        pass
