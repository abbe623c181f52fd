"""Beads over MPI ranks: 1 and 2 ranks give the same trajectory (run under mpiexec -n 2)."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from rung.md.config import load_config
from rung.md.output import read_checkpoint
from rung.md.parallel import bead_blocks
from rung.md.simulation import run


def test_bead_blocks_cover_all_beads():
    for P in (1, 2, 3, 5, 32):
        for size in (1, 2, 3, 4):
            blocks = bead_blocks(P, size)
            assert blocks[0][0] == 0 and blocks[-1][1] == P
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))


@pytest.mark.mpi
@pytest.mark.parametrize("P,thermostat", [(3, "langevin"), (4, "bussi")])
def test_two_ranks_reproduce_the_serial_trajectory(tmp_path, mpiexec, P, thermostat):
    from ase.build import bulk

    a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    a.rattle(0.05, seed=1)
    a.write(tmp_path / "ar.xyz", format="extxyz")
    text = (f'structure = "ar.xyz"\nsteps = 30\ndt_fs = 4.0\ntemperature_K = 50\nbeads = {P}\n'
            f'thermostat = "{thermostat}"\ntau_fs = 100\nseed = 4\n'
            'potential = {type = "lj", epsilon_eV = 0.0103, sigma_angstrom = 3.4, cutoff_angstrom = 6.0}\n'
            "[output]\ntrajectory_every = 5\nlog_every = 5\ncheckpoint_every = 10\n")
    for d in ("serial", "mpi"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "in.toml").write_text(text.replace('"ar.xyz"', f'"{tmp_path / "ar.xyz"}"'))
    run(load_config(tmp_path / "serial" / "in.toml"), workdir=tmp_path / "serial", progress=False)
    r = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "rung.md.cli", "run", "in.toml", "--mpi", "--quiet"],
                       cwd=tmp_path / "mpi", capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    s, m = read_checkpoint(tmp_path / "serial" / "md.chk.h5")[0], read_checkpoint(tmp_path / "mpi" / "md.chk.h5")[0]
    assert s.step == m.step == 30
    np.testing.assert_allclose(m.positions, s.positions, rtol=0, atol=1e-12)
    np.testing.assert_allclose(m.momenta, s.momenta, rtol=0, atol=1e-12 * np.abs(s.momenta).max())
    with h5py.File(tmp_path / "serial" / "md.h5") as fs, h5py.File(tmp_path / "mpi" / "md.h5") as fm:
        np.testing.assert_allclose(fm["observables/conserved_energy/value"][:],
                                   fs["observables/conserved_energy/value"][:], rtol=1e-12)
