"""rung.core.mpi: the serial answers without mpi4py, and the shared counter under ``mpiexec -n 2``
(every number handed out exactly once over both ranks, as the DFT farm needs)."""

import subprocess
import sys

import pytest

from rung.core.mpi import SharedCounter, bcast, comm_info, wait_all

TASK = """
import time
from mpi4py import MPI
from rung.core.mpi import SharedCounter, bcast, comm_info, wait_all

comm = MPI.COMM_WORLD
rank, size = comm_info(comm)
counter = SharedCounter(comm)
mine = []
while (k := counter.next()) < 40:
    mine.append(k)
    if rank == 1:
        time.sleep(0.001)  # unequal speeds: the counter balances, no number is lost or repeated
counter.free()
wait_all(comm)
everyone = comm.gather(mine, root=0)
token = bcast(comm, "from rank 0" if rank == 0 else None)
if rank == 0:
    print(size, sorted(k for ks in everyone for k in ks) == list(range(40)), token)
else:
    assert token == "from rank 0"
"""


def test_serial():
    assert comm_info(None) == (0, 1)
    assert bcast(None, {"a": 1}) == {"a": 1}
    wait_all(None)
    c = SharedCounter(None)
    assert [c.next() for _ in range(4)] == [0, 1, 2, 3]
    c.free()


@pytest.mark.mpi
def test_shared_counter_two_ranks(mpiexec):
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", TASK], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["2", "True", "from", "rank", "0"]
