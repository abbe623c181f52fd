"""Pipeline bookkeeping at scale (tools/pipeline), with dummy tasks instead of quantum chemistry:

- ``pipeline.task_overhead``: N no-op tasks (``abs``) through an executor, per-task cost (goal: < 5 ms
  for the local and MPI executors); the peer is the same tasks through a bare
  ``ProcessPoolExecutor.map`` (the floor of any process-pool executor).
- ``pipeline.journal``: recording N results (one journal line each, flushed, fsync'd in groups: the
  writer's group commit) into a dataset of N conformations, against an fsync per record (the peer), and
  the merge of the N records into the HDF5 file; per-record times.
- ``pipeline.merge_scale`` (full runs only): the merge of journals into a SPICE-sized file of 10^5 and
  10^6 conformations (100 conformations of 12 atoms per molecule, a DFT-like record: energy, gradient,
  strategy string): the periodic merge of 10^4 new records once the layout exists (in place), and the
  merge of every conformation's record (the end of a whole run). The fixture (file, layout, journal
  lines written directly in the journal's format) is built by the untimed warm-up call.
  ``python -m tools.bench.suites.pipeline N RECORDS [--consecutive]`` runs one merge in a fresh process
  and prints its wall time and peak memory (ru_maxrss), the numbers in packages/core/BENCHMARKS.md.
- ``pipeline.efficiency`` (full runs only): N sleeping tasks on 2 workers through the local executor with
  the pipeline's bookkeeping around them (:func:`efficiency`); wall time against N x seconds / workers.
  ``python -m tools.bench.suites.pipeline --efficiency local|parsl [N SECONDS WORKERS]``, and
  ``mpiexec -n 3 python -m tools.bench.suites.pipeline --efficiency mpi [N SECONDS]`` (rank 0 does the
  bookkeeping, ranks 1-2 are the 2 workers), run the issue's 1000 x 1-s case (tools/pipeline/README.md).
- ``python -m tools.bench.suites.pipeline --scale N [WORKERS]``: the pipeline's whole bookkeeping with
  no-op tasks over N conformations (100 per molecule, 12 atoms): dataset creation, the DFT step
  (status scan, tasks keyed on the conformation, local executor, journal, merges every 60 s, the
  farm's preparation and finish), a random selection over the dataset, the QMC step on the N/10
  selected, and the resume scan (the three steps rerun, nothing left to compute); each phase in a
  fresh process: wall time and peak memory (ru_maxrss) per phase.
"""

import time

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


def _journal(tmp, n, merge, sync_every: int = 100):
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
        w = ResultWriter(path, "toy", {"energy": "hartree"}, sync_every=sync_every)
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


def sleep_task(seconds: float) -> dict:
    """A dummy task: sleeps (so the machine's load does not matter) and returns one energy."""
    time.sleep(seconds)
    return {"energy": -1.0}


def efficiency(kind: str, n_tasks: int, seconds: float, workers: int | None, tmp, per_mol: int = 100) -> dict | None:
    """``n_tasks`` tasks of ``sleep_task(seconds)`` through executor ``kind`` with the pipeline's
    bookkeeping (:func:`tools.pipeline.steps.farm`: a dataset of ``n_tasks`` conformations, each result
    journalled durably as it arrives, merged every 60 s and at the end). Returns {workers, wall_s (executor
    start to the last merge's end), loop_s (first submission to the last merge's end), ideal_s (n_tasks x
    seconds / workers), efficiency (ideal_s / wall_s)}; None on MPI worker ranks."""
    from pathlib import Path

    from rung.core.dataset import DONE, Molecule, ResultWriter, create_dataset
    from tools.pipeline.executors import Executor
    from tools.pipeline.steps import farm

    t0 = time.perf_counter()
    with Executor(kind, workers) as ex:
        if ex is None:
            return None
        if kind == "mpi":
            from mpi4py import MPI

            workers = MPI.COMM_WORLD.Get_size() - 1
        path = Path(tmp) / f"efficiency-{kind}.h5"
        x = np.zeros((per_mol, 2, 3))
        x[:, 1, 2] = 1.4
        create_dataset(path, [Molecule(f"m{k:05d}", np.array([1, 1]), x) for k in range(-(-n_tasks // per_mol))],
                       overwrite=True)
        writer = ResultWriter(path, "dummy", {"energy": "hartree"})
        keys = [k for k, v in writer.status().items() if v == 0][:n_tasks]
        t1 = time.perf_counter()
        done, failed = farm(ex, writer, [(k, 1, sleep_task, (seconds,)) for k in keys], label="dummy")
        loop = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    st = ResultWriter(path, "dummy", {}).status()
    n_done = sum(v == DONE for v in st.values())
    if not done == n_done == n_tasks:
        raise RuntimeError(f"{kind}: {done} tasks returned, {failed} failed, {n_done} done in the dataset of {n_tasks}")
    ideal = n_tasks * seconds / workers
    return {"workers": workers, "wall_s": wall, "loop_s": loop, "ideal_s": ideal, "efficiency": ideal / wall}


SCALE_ATOMS = 12


def noop_dft_task(dataset, molecule, index, config) -> dict:
    """A DFT task without the DFT: the values and shapes the farm records, in no time."""
    return {"total_energy": -100.0 - 1e-7 * index, "total_gradient": np.zeros((SCALE_ATOMS, 3)),
            "dipole": np.zeros(3), "gradient_scf_energy": -100.0, "scf_cycles": 10, "gradient_scf_cycles": 3,
            "converged": 1, "scf_strategy": "diis", "jk_backend": "engine", "wall_time": 0.0}


def noop_qmc_task(dataset, molecule, index, settings, basis, ecp, levels) -> dict:
    """A QMC task without the QMC: its level check and the values (with settings) it records."""
    import json

    from rung.qmc.run import check_level

    recorded = {"method": "vmc", "basis": basis, "ecp": ecp, "jastrow": True, "three_body": False,
                "determinants": 1, "seed": settings.seed}
    check_level(dataset, levels, molecule, index, recorded)
    return {"total_energy": -100.0, "total_energy_error": 1e-3, "total_gradient": np.zeros((SCALE_ATOMS, 3)),
            "total_gradient_error": np.full((SCALE_ATOMS, 3), 1e-2), "settings": json.dumps(recorded, sort_keys=True)}


def _scale_config(n: int):
    from tools.pipeline.config import parse

    return parse({"input": {"perturb": {}}, "dft": {"xc": "hf", "basis": "sto-3g", "ecp": ""},
                  "select": {"method": "random", "n_train": n // 10, "n_holdout": n // 100, "seed": 1}})


def scale_phase(phase: str, path, n: int, workers: int) -> str:
    """One phase of ``--scale`` on the dataset ``path`` of ``n`` conformations; returns its summary."""
    from pathlib import Path

    from rung.core.dataset import Molecule, create_dataset
    from tools.pipeline import steps
    from tools.pipeline.executors import Executor

    path, cfg = Path(path), _scale_config(n)
    if phase == "create":
        z = np.array([6, 6, 8, 7, 1, 1, 1, 1, 1, 1, 1, 1][:SCALE_ATOMS])
        x0 = 2.5 * np.arange(SCALE_ATOMS)[:, None] * np.array([1.0, 0.3, 0.1])
        x = x0 + np.random.default_rng(0).normal(scale=0.05, size=(100, SCALE_ATOMS, 3))
        create_dataset(path, [Molecule(f"m{k:06d}", z, x) for k in range(n // 100)])
        return f"{n} conformations"
    if phase == "check_record":  # the per-task check the QMC step used to run in every task
        import time

        from rung.qmc.run import check_record

        rec = {"method": "vmc", "basis": "sto-3g", "ecp": "", "jastrow": True, "three_body": False, "determinants": 1}
        t = time.perf_counter()
        check_record(path, "m000000", 0, rec)
        return f"{time.perf_counter() - t:.3f} s per call"
    with Executor("local", workers) as ex:
        line = []
        if phase in ("dft", "resume"):
            line.append(steps.dft(cfg, path, ex, task=noop_dft_task))
        if phase in ("select", "qmc", "resume"):
            roles = steps.select(cfg, path)
            line.append(steps.describe_selection(roles, cfg))
        if phase in ("qmc", "resume"):
            line.append(steps.qmc(cfg, path, ex, roles, task=noop_qmc_task))
    return "; ".join(line)


def _efficiency_case(tmp, n, seconds):
    def run():
        efficiency("local", n, seconds, 2, tmp)

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
        yield Case("pipeline.journal", f"record {n} results (group commit: fsync every 100 records or 1 s)",
                   _journal(tmp, n, False), peer=_journal(tmp, n, False, sync_every=1),
                   peer_name="an fsync per record", work=n, work_unit="records", repeats=1, warmup=0)
        yield Case("pipeline.journal", f"record + merge {n} results into the HDF5 file", _journal(tmp, n, True),
                   work=n, work_unit="records", repeats=1, warmup=0)
    if not quick:
        for n_conf in (100_000, 1_000_000):
            for n_rec in (10_000, n_conf):
                what = "merge 10^4 new records" if n_rec < n_conf else "merge a record of every conformation"
                yield Case("pipeline.merge_scale", f"{what} into {n_conf} conformations (layout in place)",
                           _merge_scale(tmp, n_conf, n_rec), work=n_rec, work_unit="records", repeats=1, warmup=1)
        yield Case("pipeline.efficiency", "200 x 0.1-s sleeping tasks, local executor, 2 workers (ideal 10 s)",
                   _efficiency_case(tmp, 200, 0.1), work=200, work_unit="tasks", repeats=1, warmup=0)


if __name__ == "__main__":  # python -m tools.bench.suites.pipeline N_CONF N_RECORDS: one merge, time and memory
    import resource
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    if sys.argv[1] == "--efficiency":  # KIND [N SECONDS WORKERS]
        from tools.bench.suites.pipeline import efficiency  # the tasks by module name, not __main__'s (Parsl)

        kind = sys.argv[2]
        n, sec = (int(sys.argv[3]), float(sys.argv[4])) if len(sys.argv) > 4 else (1000, 1.0)
        res = efficiency(kind, n, sec, int(sys.argv[5]) if len(sys.argv) > 5 else 2,
                         tempfile.mkdtemp(prefix="rung-bench-efficiency-"))
        if res is not None:
            print(f"executor {kind}: {n} x {sec:g}-s tasks on {res['workers']} workers: wall {res['wall_s']:.1f} s "
                  f"(loop {res['loop_s']:.1f} s), ideal {res['ideal_s']:.1f} s, efficiency {res['efficiency']:.4f}",
                  flush=True)
        sys.exit(0)
    if sys.argv[1] == "--scale-phase":  # the child: PHASE PATH N WORKERS
        from tools.bench.suites.pipeline import scale_phase

        line = scale_phase(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB (this process) | {line}")
        sys.exit(0)
    if sys.argv[1] == "--scale":  # N [WORKERS]: every phase in a fresh process, time and peak memory
        n = int(sys.argv[2])
        workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
        path = Path(tempfile.mkdtemp(prefix="rung-bench-scale-")) / "dataset.h5"
        for phase in ("create", "dft", "select", "qmc", "check_record", "resume"):
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "tools.bench.suites.pipeline", "--scale-phase", phase, str(path),
                                  str(n), str(workers)], capture_output=True, text=True)
            wall = time.perf_counter() - t
            if out.returncode:
                sys.exit(f"{phase}: {out.stderr[-3000:]}")
            print(f"{phase:12s} {wall:8.1f} s  {1e6 * wall / n:8.1f} us per conformation  {out.stdout.strip()[-400:]}",
                  flush=True)
        sys.exit(0)
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
