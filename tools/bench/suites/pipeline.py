"""Pipeline bookkeeping at scale (tools/pipeline), with dummy tasks instead of quantum chemistry:

- ``pipeline.task_overhead``: N no-op tasks (``abs``) through an executor, per-task cost (goal: < 5 ms
  for the local and MPI executors); the peer is the same tasks through a bare
  ``ProcessPoolExecutor.map`` (the floor of any process-pool executor).
- ``pipeline.journal``: recording N results (one durable journal line each, fsync'd) into a dataset of
  N conformations, and the merge of the N records into the HDF5 file; per-record times.
"""

import numpy as np

from tools.bench import Case


def _overhead(kind, n):
    from tools.pipeline.executors import Executor

    def run():
        with Executor(kind, workers=2) as ex:
            for _ in ex.run([(i, 0, abs, (-i,)) for i in range(n)]):
                pass

    return run


def _bare_pool(n):
    from concurrent.futures import ProcessPoolExecutor

    def run():
        with ProcessPoolExecutor(2) as pool:
            list(pool.map(abs, range(-n, 0), chunksize=1))

    return run


def _journal(tmp, n, merge):
    from rung.core.dataset import Molecule, ResultWriter, create_dataset

    state = {"k": 0}

    def fresh():
        state["k"] += 1
        path = tmp / f"j{n}_{state['k']}.h5"
        x = np.zeros((n, 2, 3))
        x[:, 1, 2] = 1.4
        create_dataset(path, [Molecule("h2", np.array([1, 1]), x)])
        return path

    def record_all(path):
        w = ResultWriter(path, "toy", {"energy": "hartree"})
        for i in range(n):
            w.record("h2", i, {"energy": -1.0 - 1e-6 * i})
        w.close()
        return w

    if not merge:
        return lambda: record_all(fresh())

    prepared = []

    def setup_then_merge():
        w = prepared.pop() if prepared else record_all(fresh())
        w.merge()

    return setup_then_merge


def cases(quick: bool):
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="rung-bench-pipeline-"))
    for n in ([200] if quick else [200, 2000]):
        for kind in ("serial", "local"):
            yield Case("pipeline.task_overhead", f"{n} no-op tasks, executor {kind}, 2 workers", _overhead(kind, n),
                       peer=_bare_pool(n) if kind == "local" else None,
                       peer_name="ProcessPoolExecutor.map" if kind == "local" else "", work=n, work_unit="tasks",
                       repeats=3, warmup=1)
    for n in ([1000] if quick else [1000, 10000]):
        yield Case("pipeline.journal", f"record {n} results (fsync each)", _journal(tmp, n, False), work=n,
                   work_unit="records", repeats=1, warmup=0)
        yield Case("pipeline.journal", f"record + merge {n} results into the HDF5 file", _journal(tmp, n, True),
                   work=n, work_unit="records", repeats=1, warmup=0)
