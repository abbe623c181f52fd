"""Beads over MPI ranks: 1 and 2 ranks give the same trajectory (run under mpiexec -n 2); adaptive
sampling's replicas over ranks and beads over sub-communicators (2 x 2 under mpiexec -n 4) give the
trajectories of serial runs with the same replica seeds."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from rung.core.errors import InputError
from rung.md.adaptive import IterationResult, parse_input, replica_groups, run_adaptive
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


# ------------------------------------------------------------------------ adaptive: replicas x beads
def _argon_adaptive(folder, P=4):
    """2 iterations x 2 replicas of 20 RPMD steps (P beads) of 32 LJ argon atoms; returns the input path."""
    from ase.build import bulk

    folder.mkdir(parents=True, exist_ok=True)
    a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
    a.rattle(0.05, seed=1)
    a.write(folder / "ar.xyz", format="extxyz")
    path = folder / "in.toml"
    path.write_text(f'structure = "ar.xyz"\nsteps = 20\ndt_fs = 4.0\ntemperature_K = 50\nbeads = {P}\n'
                    'thermostat = "langevin"\ntau_fs = 100\nseed = 4\n'
                    'potential = {type = "lj", epsilon_eV = 0.0103, sigma_angstrom = 3.4, cutoff_angstrom = 6.0}\n'
                    "[output]\ntrajectory_every = 5\nlog_every = 5\ncheckpoint_every = 10\nxyz = false\n"
                    "[adaptive]\niterations = 2\nreplicas = 2\nbins = 5\nplot = false\n"
                    "features = [[0, 5], [3, 17], [8, 30], [1, 2, 3, 4]]\n")
    return path


def _same_replicas(a, b, iterations=2, replicas=2):
    """Every replica's final state, trajectory and every iteration's analysis agree (1e-12)."""
    for it in range(iterations):
        ra, rb = IterationResult.from_hdf5(a / f"iter_{it:03d}/analysis.h5"), IterationResult.from_hdf5(
            b / f"iter_{it:03d}/analysis.h5")
        np.testing.assert_allclose(rb.starts, ra.starts, rtol=0, atol=1e-12)
        assert np.array_equal(rb.selected, ra.selected) and np.array_equal(rb.frame_id, ra.frame_id)
        for r in range(replicas):
            d = f"iter_{it:03d}/replica_{r:03d}"
            s, m = read_checkpoint(a / d / "md.chk.h5")[0], read_checkpoint(b / d / "md.chk.h5")[0]
            assert s.step == m.step == 20
            np.testing.assert_allclose(m.positions, s.positions, rtol=0, atol=1e-12)
            np.testing.assert_allclose(m.momenta, s.momenta, rtol=0, atol=1e-12 * np.abs(s.momenta).max())
            with h5py.File(a / d / "md.h5") as fa, h5py.File(b / d / "md.h5") as fb:
                x = fa["particles/centroid/position/value"][:]
                assert x.shape[0] == 5
                np.testing.assert_allclose(fb["particles/centroid/position/value"][:], x, rtol=0, atol=1e-12)


def test_replica_groups_layout():
    """World ranks split into groups of bead ranks; replica r on group r % groups (every replica once)."""
    assert replica_groups(4, 2) == 2 and replica_groups(2, 1) == 2 and replica_groups(6, 3) == 2
    groups = replica_groups(4, 2)
    owners = {r: [w for w in range(4) if w // 2 == r % groups] for r in range(5)}
    assert owners[0] == [0, 1] and owners[1] == [2, 3] and owners[4] == [0, 1]
    for size, k in ((4, 3), (2, 0), (3, 2)):
        with pytest.raises(InputError, match="divisor"):
            replica_groups(size, k)


def test_adaptive_on_a_one_rank_communicator_equals_serial(tmp_path):
    """The MPI code path (bcast, gather, one replica group) in this process on MPI.COMM_SELF."""
    from mpi4py import MPI

    config, acfg = parse_input(_argon_adaptive(tmp_path / "in", P=2))
    a = run_adaptive(config, acfg, tmp_path / "serial")
    b = run_adaptive(config, acfg, tmp_path / "self", comm=MPI.COMM_SELF)
    assert [r.coverage for r in a] == [r.coverage for r in b]
    assert b[-1].extra["ranks"] == 1 and b[-1].extra["selection_s"] > 0
    _same_replicas(tmp_path / "serial", tmp_path / "self")


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.parametrize("ranks,bead_ranks", [(2, 1), (4, 2)])
def test_adaptive_replicas_over_ranks_reproduce_serial_runs(tmp_path, mpiexec, ranks, bead_ranks):
    """mpiexec -n 2: one replica per rank; -n 4 --bead-ranks 2: 2 replicas x 2 bead ranks (RPMD, P = 4).
    Both give the serial run's trajectories; then a kill (iteration 1's analysis and one replica gone)
    is resumed under the other layout, still equal."""
    import shutil

    inp = _argon_adaptive(tmp_path / "in")
    config, acfg = parse_input(inp)
    run_adaptive(config, acfg, tmp_path / "serial")

    def mpirun(n, k):
        r = subprocess.run([mpiexec, "-n", str(n), sys.executable, "-m", "rung.md.cli", "adaptive", str(inp),
                            "--workdir", str(tmp_path / "mpi"), "--quiet", "--mpi", "--bead-ranks", str(k)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    out = mpirun(ranks, bead_ranks)
    assert out.count("iteration") == 2  # rank 0 only reports
    _same_replicas(tmp_path / "serial", tmp_path / "mpi")
    with h5py.File(tmp_path / "mpi/iter_001/analysis.h5") as f:
        assert f.attrs["ranks"] == ranks and f.attrs["bead_ranks"] == bead_ranks
    (tmp_path / "mpi/iter_001/analysis.h5").unlink()
    shutil.rmtree(tmp_path / "mpi/iter_001/replica_001")
    mpirun(2, 2 // bead_ranks)  # the other layout: 2 replica groups of 1, or 1 group of 2 bead ranks
    _same_replicas(tmp_path / "serial", tmp_path / "mpi")
