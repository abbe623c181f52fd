"""The farm as a process: kill and resume, and MPI.

- SIGKILL a `run` mid-way, run it again: the final files equal an uninterrupted run's (every value bit
  for bit, except the wall times) and nothing recorded before the kill is recomputed.
- `run` under `mpiexec -n 2`: both ranks take conformations from the shared counter, and the file
  equals a 1-rank run's.
"""

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from rung.core.dataset import Molecule, create_dataset
from rung.core.units import ANGSTROM_TO_BOHR

WATER = np.array([[0, 0, 0.119262], [0, 0.763239, -0.477047], [0, -0.763239, -0.477047]]) * ANGSTROM_TO_BOHR
N_CONF = 8
CONFIG = dict(xc="hf", basis="6-31g", ecp=None, jk="pyscf", save_orbitals=True, save_fcidump=True)

RESUME_SCRIPT = """
import sys
from rung.dft_gpu.run import run
from rung.dft_gpu.scf import DFTConfig
s = run(sys.argv[1], sys.argv[2], DFTConfig(**{config!r}), progress=False)
print("computed", s.computed, "done", s.n_done, "pending", s.n_pending)
"""


def _input(path):
    rng = np.random.default_rng(7)
    confs = WATER + 0.05 * rng.standard_normal((N_CONF, 3, 3))
    create_dataset(path, [Molecule("water", np.array([8, 1, 1]), confs, smiles="O")])


def _run(src, out, env):
    cmd = [sys.executable, "-c", RESUME_SCRIPT.format(config=CONFIG), str(src), str(out)]
    return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=300).stdout.strip()


def _complete_lines(path):
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


def _assert_same_file(a, b, skip=("dft_wall_time",)):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        names = []
        fa.visit(names.append)
        other = []
        fb.visit(other.append)
        assert sorted(names) == sorted(other)
        for name in names:
            if name.split("/")[-1] in skip or not isinstance(fa[name], h5py.Dataset):
                continue
            va, vb = fa[name][()], fb[name][()]
            if np.asarray(va).dtype.kind == "f":
                np.testing.assert_array_equal(va, vb, err_msg=name)
            else:
                assert np.array_equal(np.asarray(va), np.asarray(vb)), name


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    src = tmp_path / "in.h5"
    _input(src)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    killed_out, ref_out = tmp_path / "a" / "out.h5", tmp_path / "b" / "out.h5"
    journal = killed_out.with_name("out.h5.journal") / "rank00000.jsonl"

    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.Popen([sys.executable, "-c", RESUME_SCRIPT.format(config=CONFIG), str(src), str(killed_out)], env=env)
    deadline = time.monotonic() + 120
    while _complete_lines(journal) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, "the run finished before it could be killed"
    recorded = _complete_lines(journal)
    assert 2 <= recorded < N_CONF

    # all runs in subprocesses with the same threads, so the arithmetic is the same
    resumed = _run(src, killed_out, env)
    assert resumed == f"computed {N_CONF - recorded} done {N_CONF} pending 0"  # nothing recomputed
    assert _run(src, ref_out, env) == f"computed {N_CONF} done {N_CONF} pending 0"
    _assert_same_file(killed_out, ref_out)
    _assert_same_file(tmp_path / "a" / "out.orbitals.h5", tmp_path / "b" / "out.orbitals.h5")
    for i in range(N_CONF):
        name = f"out.water.{i}.fcidump"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with h5py.File(killed_out, "r") as f:
        assert np.all(f["water/dft_status"][()] == 1) and np.all(np.isfinite(f["water/dft_total_energy"][()]))


MPI_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from rung.dft_gpu.run import run
from rung.dft_gpu.scf import DFTConfig
comm = None
if sys.argv[3] == "mpi":
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
s = run(sys.argv[1], sys.argv[2], DFTConfig(xc="hf", basis="6-31g", ecp=None, jk="pyscf", save_orbitals=True),
        comm=comm)
rank = comm.Get_rank() if comm is not None else 0
# one file per rank: two ranks printing to one pipe can interleave their lines
with open(f"{sys.argv[2]}.summary{rank}", "w") as f:
    print("summary", s.n_done, s.n_failed, s.computed, file=f)
"""

XYZ = """3
water
O 0.0 0.0 {z:.4f}
H 0.0 0.7632 -0.4770
H 0.0 -0.7632 -0.4770
"""


@pytest.mark.mpi
def test_two_ranks_equal_one_rank(tmp_path, mpiexec):
    src = tmp_path / "frames.xyz"  # xyz input: read on rank 0 only
    src.write_text("".join(XYZ.format(z=z) for z in np.linspace(0.10, 0.16, 6)) + "2\nh2\nH 0 0 0\nH 0 0 0.74\n")
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = tmp_path / "job.py"
    script.write_text(MPI_SCRIPT)
    one = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / "one" / "out.h5"), "serial"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = subprocess.run([mpiexec, "-n", "2", sys.executable, str(script), str(src), str(tmp_path / "two" / "out.h5"),
                          "mpi"], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    for rank in (0, 1):  # every rank returns the same summary
        assert (tmp_path / "two" / f"out.h5.summary{rank}").read_text().strip() == "summary 7 0 7"
    log = two.stdout + two.stderr
    assert "[rank 0]" in log and "[rank 1]" in log  # both ranks computed conformations
    _assert_same_file(tmp_path / "one" / "out.h5", tmp_path / "two" / "out.h5")
    _assert_same_file(tmp_path / "one" / "out.orbitals.h5", tmp_path / "two" / "out.orbitals.h5")
