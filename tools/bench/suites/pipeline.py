"""Pipeline bookkeeping at scale (tools/pipeline), with dummy tasks instead of quantum chemistry:

- ``pipeline.task_overhead``: N no-op tasks (``abs``) through an executor, per-task cost (goal: < 5 ms
  for the local and MPI executors); the peer is the same tasks through a bare
  ``ProcessPoolExecutor.map`` (the floor of any process-pool executor).
- ``pipeline.journal``: recording N results (one durable journal line each, fsync'd) into a dataset of
  N conformations, and the merge of the N records into the HDF5 file; per-record times.
- ``pipeline.merge_scale`` (full runs only): the merge of journals into a SPICE-sized file of 10^5 and
  10^6 conformations (100 conformations of 12 atoms per molecule, a DFT-like record: energy, gradient,
  strategy string): the periodic merge of 10^4 new records once the layout exists (in place), and the
  merge of every conformation's record (the end of a whole run). The fixture (file, layout, journal
  lines written directly in the journal's format) is built by the untimed warm-up call.
  ``python -m tools.bench.suites.pipeline N RECORDS [--consecutive]`` runs one merge in a fresh process
  and prints its wall time and peak memory (ru_maxrss), the numbers in packages/core/BENCHMARKS.md.
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


MERGE_UNITS = {"energy": "hartree", "gradient": "hartree/bohr", "strategy": "dimensionless"}
MERGE_SHAPES = {"energy": ("f", ()), "gradient": ("f", ("n_atoms", 3)), "strategy": ("s", ())}


def merge_fixture(tmp, n_conf: int, n_records: int, per_mol: int = 100, n_atoms: int = 12, spread: bool = True):
    """A dataset of ``n_conf`` conformations with its dft-like layout in place, and a journal of
    ``n_records`` results: random distinct conformations (``spread``, the worst case: nearly every
    molecule touched), else consecutive ones (a farm's order); returns the path."""
    import json

    from rung.core.dataset import Molecule, ResultWriter, create_dataset

    rng = np.random.default_rng(0)
    path = tmp / f"merge{n_conf}_{n_records}.h5"
    z = np.array([6, 6, 8, 7, 1, 1, 1, 1, 1, 1, 1, 1][:n_atoms])
    x0 = 2.5 * np.arange(n_atoms)[:, None] * np.array([1.0, 0.3, 0.1])
    mols = [Molecule(f"m{k:06d}", z, np.broadcast_to(x0, (per_mol, n_atoms, 3))) for k in range(n_conf // per_mol)]
    create_dataset(path, mols)
    w = ResultWriter(path, "dft", MERGE_UNITS, shapes=MERGE_SHAPES)
    w.record(mols[0].name, 0, {"energy": -1.0, "gradient": np.zeros((n_atoms, 3)), "strategy": "diis"})
    w.merge()  # the layout step: every declared dataset of every molecule, once
    w.journal_dir.mkdir()
    with open(w.journal_dir / "rank00000.jsonl", "w") as fh:
        for c in rng.choice(n_conf, size=n_records, replace=False) if spread else range(n_records):
            g = rng.normal(size=n_atoms * 3).round(10).tolist()
            fh.write(json.dumps({"rung": "dft", "molecule": f"m{c // per_mol:06d}", "index": int(c % per_mol),
                                 "status": "done", "error": "", "values": {
                                     "energy": {"kind": "f", "shape": [], "data": [-100.0 - 1e-7 * c]},
                                     "gradient": {"kind": "f", "shape": [n_atoms, 3], "data": g},
                                     "strategy": {"str": "diis"}}}) + "\n")
    return path


def _merge_scale(tmp, n_conf, n_records):
    from rung.core.dataset import ResultWriter

    state = {}

    def run():
        if "path" not in state:  # the untimed warm-up call builds the fixture
            state["path"] = merge_fixture(tmp, n_conf, n_records)
            return
        assert ResultWriter(state["path"], "dft", MERGE_UNITS).merge() == n_records

    return run


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
    if not quick:
        for n_conf in (100_000, 1_000_000):
            for n_rec in (10_000, n_conf):
                what = "merge 10^4 new records" if n_rec < n_conf else "merge a record of every conformation"
                yield Case("pipeline.merge_scale", f"{what} into {n_conf} conformations (layout in place)",
                           _merge_scale(tmp, n_conf, n_rec), work=n_rec, work_unit="records", repeats=1, warmup=1)


if __name__ == "__main__":  # python -m tools.bench.suites.pipeline N_CONF N_RECORDS: one merge, time and memory
    import resource
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    if sys.argv[1] == "--merge":  # the child: only the merge, so its peak memory is the merge's
        from rung.core.dataset import ResultWriter

        t = time.perf_counter()
        ResultWriter(Path(sys.argv[2]), "dft", MERGE_UNITS).merge()
        print(f"{time.perf_counter() - t:.3f}")
        sys.exit(0)
    n_conf, n_rec = int(sys.argv[1]), int(sys.argv[2])
    spread = "--consecutive" not in sys.argv
    tmp = Path(tempfile.mkdtemp(prefix="rung-bench-merge-"))
    t = time.perf_counter()
    path = merge_fixture(tmp, n_conf, n_rec, spread=spread)
    print(f"fixture {time.perf_counter() - t:.1f} s, file {path.stat().st_size / 2**20:.0f} MiB, journal "
          f"{sum(p.stat().st_size for p in path.with_name(path.name + '.journal').iterdir()) / 2**20:.0f} MiB")
    base = subprocess.run([sys.executable, "-c", "import h5py, numpy, rung.core.dataset"], check=True)
    rss0 = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = subprocess.run([sys.executable, "-m", "tools.bench.suites.pipeline", "--merge", str(path)],
                         check=True, capture_output=True, text=True).stdout
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"merge of {n_rec} {'random' if spread else 'consecutive'} records into {n_conf} conformations: {float(out):.2f} s, peak RSS {rss / 1024:.0f} MiB "
          f"(an interpreter with h5py and numpy: {rss0 / 1024:.0f} MiB)")
