"""A tiny rung.core task under `mpiexec -n 2`: ranks share conformations, journal their own results,
rank 0 merges; the file must equal a serial run's."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from rung.core import dataset as ds

TASK = """
import sys
import numpy as np
from mpi4py import MPI
from rung.core import dataset as ds

comm = MPI.COMM_WORLD
w = ds.ResultWriter(sys.argv[1], "toy", {"energy": "hartree"}, rank=comm.rank)
todo = w.pending() if comm.rank == 0 else None
todo = comm.bcast(todo, root=0)
for k, (name, i) in enumerate(todo):
    if k % comm.size == comm.rank:
        x = ds.read_hdf5(sys.argv[1], [name])[0].conformations[i]
        w.record(name, i, {"energy": float(np.sum(x * x))})
w.close()
comm.Barrier()
if comm.rank == 0:
    print("merged", w.merge(), "size", comm.size)
"""


def _dataset(path):
    rng = np.random.default_rng(0)
    mols = [ds.Molecule(f"m{k}", np.array([1, 1]), rng.normal(size=(3, 2, 3))) for k in range(3)]
    return ds.create_dataset(path, mols)


@pytest.mark.mpi
def test_two_ranks_equal_serial(tmp_path, mpiexec):
    par, ser = _dataset(tmp_path / "par.h5"), _dataset(tmp_path / "ser.h5")
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, "-c", TASK, str(par)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "merged 9 size 2" in out.stdout
    subprocess.run([sys.executable, "-c", TASK, str(ser)], check=True, capture_output=True, timeout=120)
    with h5py.File(par) as a, h5py.File(ser) as b:
        for name in a:
            np.testing.assert_array_equal(a[name]["toy_energy"][()], b[name]["toy_energy"][()])
            assert np.all(a[name]["toy_status"][()] == ds.DONE)
