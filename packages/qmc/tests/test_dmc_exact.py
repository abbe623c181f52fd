"""DMC against exact energies of nodeless systems (slow: minutes).

Exact non-relativistic energies: He -2.903724 Ha (C. L. Pekeris, Phys. Rev. 115, 1216 (1959);
G. W. F. Drake, Springer Handbook of Atomic, Molecular and Optical Physics (2006)); H2 at R = 1.4 Bohr
-1.174476 Ha (W. Kolos, L. Wolniewicz, J. Chem. Phys. 49, 404 (1968)). Both ground states are nodeless,
so fixed-node DMC is exact up to time-step and population-control errors. The trial function is an
optimised Slater-Jastrow on cusp-corrected Gaussian orbitals (rung.qmc.cusp); tau = 0.01 as in
production.

Statistics: the error bar must be small enough for a 1 mHa bias to fail the test, and the criterion
loose enough that an unbiased run passes. With the cusp-corrected orbitals the DMC energy series of H2
is correlated over 10-25 steps, so a 3000-step run has its reblocking plateau at 128-256-step blocks
(11-23 blocks) and its error bar is uncertain by 20-30%: the first version of this test (32 x 100
steps, |dE| < 2 sigma) failed an unbiased H2 run whose reblocked error was 0.32 mHa against 0.53 mHa
from its autocorrelation (packages/qmc/BENCHMARKS.md, "H2 DMC exact-energy test"). Now 20000 steps
(200 blocks of 100 after equilibration; 500 walkers for H2, 1500 for He, whose local-energy variance
is 4x larger) give sigma ~ 0.2 mHa with ~80 blocks at the plateau, and the
criterion is |dE| < 3 sigma with sigma < 0.25 mHa: a 1 mHa bias is at least 4 sigma (caught in >= 84%
of seeds, 98% at sigma = 0.2 mHa), an unbiased run fails in ~0.3% of seeds.
"""

import numpy as np
import pytest
from pyscf import gto

from rung.qmc.dmc import DMCConfig, dmc
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.optimize import OptimizeConfig, optimize
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.vmc import VMCConfig, vmc


def _dmc(mol, nw=500, nblocks=202, nsteps=100):
    orb = mean_field(mol)
    wf = slater_jastrow(mol, orb)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(11)
    _, configs = optimize(wf, ham, initial_configs(mol, 100, rng), OptimizeConfig(niter=5, nsteps=20, seed=5))
    configs = initial_configs(mol, nw, rng)
    v = vmc(wf, ham, configs, VMCConfig(nwalkers=nw, nblocks=4, nsteps=10, nequil=20, seed=6), rng=rng)
    return dmc(wf, ham, v.configs, DMCConfig(tau=0.01, nblocks=nblocks, nsteps=nsteps, nequil_blocks=2, seed=7),
               e_ref=v.energy)


@pytest.mark.slow
def test_dmc_helium_exact():
    d = _dmc(gto.M(atom="He 0 0 0", basis="cc-pvtz", verbose=0), nw=1500)  # 4x H2's variance
    assert d.error < 0.00025
    assert abs(d.energy - (-2.903724)) < 3 * d.error, (d.energy, d.error)


@pytest.mark.slow
def test_dmc_h2_exact():
    d = _dmc(gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvtz", verbose=0))
    assert d.error < 0.00025
    assert abs(d.energy - (-1.174476)) < 3 * d.error, (d.energy, d.error)
