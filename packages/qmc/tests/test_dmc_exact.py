"""DMC against exact energies of nodeless systems (slow: minutes).

Exact non-relativistic energies: He -2.903724 Ha (C. L. Pekeris, Phys. Rev. 115, 1216 (1959);
G. W. F. Drake, Springer Handbook of Atomic, Molecular and Optical Physics (2006)); H2 at R = 1.4 Bohr
-1.174476 Ha (W. Kolos, L. Wolniewicz, J. Chem. Phys. 49, 404 (1968)). Both ground states are nodeless,
so fixed-node DMC is exact up to time-step and population-control errors. The trial function is an
optimised Slater-Jastrow on cusp-corrected Gaussian orbitals (rung.qmc.cusp); tau = 0.01 as in
production.
"""

import numpy as np
import pytest
from pyscf import gto

from rung.qmc.dmc import DMCConfig, dmc
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.optimize import OptimizeConfig, optimize
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.vmc import VMCConfig, vmc


def _dmc(mol, nw=500, nblocks=32, nsteps=100):
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
    d = _dmc(gto.M(atom="He 0 0 0", basis="cc-pvtz", verbose=0))
    assert d.error < 0.0015
    assert abs(d.energy - (-2.903724)) < 2 * d.error, (d.energy, d.error)


@pytest.mark.slow
def test_dmc_h2_exact():
    d = _dmc(gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvtz", verbose=0))
    assert d.error < 0.0015
    assert abs(d.energy - (-1.174476)) < 2 * d.error, (d.energy, d.error)
