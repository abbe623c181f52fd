"""Water with ccECP: fixed-node DMC against the variational bounds and a published DMC value (slow).

Published reference: the community reproducibility study of fixed-node DMC (water-methane dimer, eleven
codes; F. Della Pia et al., J. Chem. Phys. 163, 104110 (2025), arXiv:2501.12950) gives for the water
monomer with ccECPs, single-determinant DFT(LDA) nodes in a ccECP-cc-pVTZ basis, T-moves with the
determinant-localisation approximation, extrapolated to zero time step: -17.23473(2) Ha (CASINO),
-17.23482(3) Ha (QMCPACK), -17.23479(1) Ha (TurboRVB) (values as tabulated in the jQMC examples,
examples/example03 of the jqmc 0.1.0a3 sdist). That setup is not exactly ours: the monomer geometry of
the dimer (not this experimental-like one), LDA/TZ orbitals (ours RHF/DZ: other nodes), a richer
Jastrow and tau -> 0 (ours 0.01 with Casula's sequential T-moves). Those differences are worth a few
mHa, so the check is |E_DMC - (-17.2348)| < 3 sigma + 5 mHa, next to the variational bounds.

The bounds: the variational principle of fixed-node DMC with T-moves, E_exact <= E_DMC <= E_VMC.
E_exact is estimated by CCSD(T) in ccecp-cc-pVTZ and -pVQZ (PySCF) with the X^-3 extrapolation of the
correlation energy (Helgaker et al., J. Chem. Phys. 106, 9639 (1997)); measured here at -17.256 Ha,
with CCSD(T)/QZ itself at -17.2408 Ha. One run of this test gave VMC -17.1782(37) Ha (two-body
Slater-Jastrow) and DMC -17.2337(77) Ha, i.e. a fixed-node error of about 20 mHa, typical of a single
determinant for water.
"""

import numpy as np
import pytest
from pyscf import cc, gto, scf

from rung.qmc.dmc import DMCConfig, dmc
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.optimize import OptimizeConfig, optimize
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.vmc import VMCConfig, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr
E_DMC_PUBLISHED = -17.2348  # Ha, Della Pia et al. 2025 (see the module docstring)
NODE_SETUP_ALLOWANCE = 0.005  # Ha: other nodes (RHF/DZ vs LDA/TZ), geometry, Jastrow, finite time step


def _ccsd_t(basis):
    mol = gto.M(atom=WATER, unit="Bohr", basis=basis, ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    c = cc.CCSD(mf).run()
    return mf.e_tot, c.e_corr + c.ccsd_t()


@pytest.mark.slow
def test_dmc_water_between_cbs_estimate_and_vmc():
    (_, c3), (hf4, c4) = _ccsd_t("ccecp-cc-pvtz"), _ccsd_t("ccecp-cc-pvqz")
    e_cbs = hf4 + (4**3 * c4 - 3**3 * c3) / (4**3 - 3**3)
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    wf = slater_jastrow(mol, mean_field(mol))
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(21)
    optimize(wf, ham, initial_configs(mol, 100, rng), OptimizeConfig(niter=6, nsteps=20, seed=22))
    nw = 200
    v = vmc(wf, ham, initial_configs(mol, nw, rng), VMCConfig(nwalkers=nw, nblocks=20, nsteps=10, nequil=30, seed=23),
            rng=rng)
    d = dmc(wf, ham, v.configs, DMCConfig(tau=0.01, nblocks=24, nsteps=40, nequil_blocks=4, seed=24), e_ref=v.energy)
    sigma = np.hypot(v.error, d.error)
    assert d.error < 0.012
    assert d.energy < v.energy + 3 * sigma, (d.energy, d.error, v.energy, v.error)
    assert d.energy > e_cbs - 3 * d.error - 0.005, (d.energy, d.error, e_cbs)
    assert abs(d.energy - E_DMC_PUBLISHED) < 3 * d.error + NODE_SETUP_ALLOWANCE, (d.energy, d.error)
