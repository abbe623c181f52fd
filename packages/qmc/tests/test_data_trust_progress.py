"""DMC progress after a resume: the ETA uses this process's blocks per second (not the blocks since the
run's start over this process's seconds), and equilibration blocks are marked in the lines and the trace."""

import numpy as np
from pyscf import gto

from rung.qmc.cli import _progress
from rung.qmc.dmc import DMCConfig, dmc
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.traces import Trace
from rung.qmc.vmc import VMCConfig, vmc


def test_resumed_dmc_reports_blocks_done_here_and_marks_equilibration(tmp_path):
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="sto-3g", verbose=0)
    wf, ham = slater_jastrow(mol, mean_field(mol)), Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(0)
    v = vmc(wf, ham, initial_configs(mol, 8, rng), VMCConfig(nwalkers=8, nblocks=2, nsteps=2, nequil=2), rng=rng)
    calls = []
    chk, trace = tmp_path / "c.chk", tmp_path / "t.h5"
    first = DMCConfig(tau=0.05, nblocks=2, nsteps=2, nequil_blocks=1, seed=1)
    dmc(wf, ham, v.configs, first, e_ref=v.energy, checkpoint=chk, trace=trace, progress=lambda *a: calls.append(a))
    assert [(c[0], c[1], c[4], c[5]) for c in calls] == [(1, 2, 1, True), (2, 2, 2, False)]
    calls.clear()  # the same run, resumed from its checkpoint and taken to 4 blocks
    more = DMCConfig(tau=0.05, nblocks=4, nsteps=2, nequil_blocks=1, seed=1)
    dmc(wf, ham, np.zeros_like(v.configs), more, checkpoint=chk, trace=trace, progress=lambda *a: calls.append(a))
    assert [(c[0], c[1], c[4], c[5]) for c in calls] == [(3, 4, 1, False), (4, 4, 2, False)]
    np.testing.assert_array_equal(Trace.read(trace)["equilibration"], [1, 0, 0, 0])


def test_eta_is_this_process_rate_times_blocks_left(capsys):
    # resumed at block 15 of 20: one block done here in 10 s, 4 left -> 40 s (the old formula said 10/16*4)
    _progress("dmc", 16, 20, -1.17, 10.0, 1, False)
    line = capsys.readouterr().err
    assert "dmc block 16/20" in line and "ETA 40 s" in line and "equilibration" not in line
    _progress("dmc", 1, 20, -1.1, 2.0, 1, True)
    assert "ETA 38 s  (equilibration, not averaged)" in capsys.readouterr().err
    _progress("vmc", 5, 10, -1.1, 5.0)  # VMC and the optimiser: every block is this process's
    assert "ETA 5 s" in capsys.readouterr().err
