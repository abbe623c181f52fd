"""QMC forces of an exact two-electron system against -dE/dR of an FCI curve (slow: a few minutes).

H2 at R = 1.2 Bohr, away from equilibrium (|F| ~ 0.11 Ha/Bohr). The ground state is nodeless, so
fixed-node DMC is exact; the DMC hybrid force 2 F_mixed - F_VMC has a residual bias second order in
psi_T - Phi (rung.qmc.forces), which an optimised Slater-Jastrow keeps below the error bar here. The
oracle is the central difference of PySCF FCI/aug-cc-pVTZ energies at R +- 0.005 Bohr (0.1094 Ha/Bohr;
aug-cc-pVQZ gives 0.1076, so the basis error of the oracle is ~0.002 Ha/Bohr, included in the tolerance).
"""

import numpy as np
import pytest
from pyscf import fci, gto, scf

from rung.qmc.run import QMCConfig, kernel
from rung.qmc.dmc import DMCConfig
from rung.qmc.forces import ForceConfig
from rung.qmc.optimize import OptimizeConfig
from rung.qmc.system import mean_field
from rung.qmc.vmc import VMCConfig

R = 1.2


def _fci_force(h=0.005):
    e = []
    for r in (R + h, R - h):
        mol = gto.M(atom=f"H 0 0 0; H 0 0 {r}", unit="Bohr", basis="aug-cc-pvtz", verbose=0)
        e.append(fci.FCI(scf.RHF(mol).run()).kernel()[0])
    return -(e[0] - e[1]) / (2 * h)  # force on the atom at z = R, along z


@pytest.mark.slow
def test_h2_dmc_force_matches_fci_curve():
    exact = _fci_force()
    mol = gto.M(atom=f"H 0 0 0; H 0 0 {R}", unit="Bohr", basis="cc-pvtz", verbose=0)
    cfg = QMCConfig(VMCConfig(nwalkers=200, nblocks=20, nsteps=10, seed=3),
                    DMCConfig(tau=0.01, nblocks=22, nsteps=50, nequil_blocks=2, seed=4),
                    OptimizeConfig(niter=5, nsteps=20, seed=5), forces=ForceConfig(every=2))
    out = kernel(mol, mean_field(mol), cfg)
    v, d = out.vmc, out.dmc
    for r in (v, d):
        np.testing.assert_allclose(r.forces.sum(0), 0.0, atol=1e-6)
    f, err = d.forces[1, 2], d.forces_error[1, 2]
    assert err < 0.02, err
    assert abs(f - exact) < 3 * err + 0.002, (f, err, exact, v.forces[1, 2], v.forces_error[1, 2])


def _lih_fci_force(R, h=0.01):
    e = []
    for r in (R + h, R - h):
        mol = gto.M(atom=f"Li 0 0 0; H 0 0 {r}", unit="Bohr", basis={"Li": "ccecp-cc-pvtz", "H": "cc-pvtz"},
                    ecp={"Li": "ccecp"}, verbose=0)
        e.append(fci.FCI(scf.RHF(mol).run()).kernel()[0])
    return -(e[0] - e[1]) / (2 * h)


@pytest.mark.slow
def test_lih_ccecp_dmc_force_matches_fci_curve():
    """LiH with a ccECP on Li (two electrons, nodeless; the nonlocal ECP goes through T-moves, whose
    localisation error is small here): the DMC hybrid force on H against -dE/dR of the FCI curve in
    ccecp-cc-pVTZ/cc-pVTZ at R = 3.6 Bohr (stretched from R_e ~ 3.0 so that |F| ~ 0.03 Ha/Bohr)."""
    R = 3.6
    exact = _lih_fci_force(R)
    mol = gto.M(atom=f"Li 0 0 0; H 0 0 {R}", unit="Bohr", basis={"Li": "ccecp-cc-pvtz", "H": "cc-pvtz"},
                ecp={"Li": "ccecp"}, verbose=0)
    cfg = QMCConfig(VMCConfig(nwalkers=200, nblocks=20, nsteps=10, seed=3),
                    DMCConfig(tau=0.01, nblocks=22, nsteps=50, nequil_blocks=2, seed=4),
                    OptimizeConfig(niter=5, nsteps=20, seed=5), forces=ForceConfig(every=2))
    out = kernel(mol, mean_field(mol), cfg)
    d = out.dmc
    f, err = d.forces[1, 2], d.forces_error[1, 2]
    assert err < 0.02, err
    assert abs(f - exact) < 3 * err + 0.002, (f, err, exact, out.vmc.forces[1, 2], out.vmc.forces_error[1, 2])
