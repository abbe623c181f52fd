"""Linear-method Jastrow optimisation: analytic d E_L / d p against finite differences; energy goes down."""

import numpy as np
from pyscf import gto

from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.optimize import OptimizeConfig, _flat, _set, energy_and_derivatives, optimize
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.vmc import VMCConfig, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


def test_local_energy_parameter_derivatives_fd():
    """One-, two- and three-body parameters; includes the nonlocal ECP term (same quadrature rotation
    for every evaluation)."""
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    wf = slater_jastrow(mol, mean_field(mol), three_body=True)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(0)
    jas = wf
    p0 = rng.normal(scale=0.2, size=_flat(jas).size)
    assert p0.size == 16 + 2 * 18
    _set(jas, p0)
    configs = initial_configs(mol, 3, rng)
    wf.recompute(configs)
    E, O, dE = energy_and_derivatives(wf, ham, configs, np.random.default_rng(7))
    h = 1e-5
    for k in list(range(16)) + list(range(16, p0.size, 5)):  # all 1-/2-body, a spread of 3-body terms
        vals = []
        for s in (1, -1):
            p = p0.copy()
            p[k] += s * h
            _set(jas, p)
            wf.recompute(configs)
            vals.append(energy_and_derivatives(wf, ham, configs, np.random.default_rng(7))[0])
        np.testing.assert_allclose(dE[:, k], (vals[0] - vals[1]) / (2 * h), rtol=1e-5, atol=1e-6)
    _set(jas, p0)


def test_linear_method_lowers_h2_energy():
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvdz", verbose=0)
    orb = mean_field(mol)
    wf = slater_jastrow(mol, orb)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(1)
    hist, configs = optimize(wf, ham, initial_configs(mol, 60, rng), OptimizeConfig(niter=4, nsteps=15, seed=2))
    assert len(hist) == 4
    res = vmc(wf, ham, configs, VMCConfig(nwalkers=60, nblocks=20, nsteps=10, nequil=10, seed=3))
    # Hartree-Fock misses 40 mHa of correlation; an optimised Slater-Jastrow recovers most of it
    assert res.energy < orb.e_tot - 0.015 and orb.e_tot - res.energy > 3 * res.error, (res.energy, res.error)


def test_selection_rules_on_a_known_history():
    """Energies fall for three iterations, then scatter within their error bars; one converged iteration
    fluctuated low. "average" keeps the mean of the converged tail's parameters (iterations 3..7),
    "lowest" the lucky iteration's; an iteration still above the plateau is never averaged."""
    from rung.qmc.optimize import converged_tail, select_parameters

    E = [-16.8, -17.10, -17.17, -17.190, -17.185, -17.215, -17.188, -17.192]
    err = [0.01] * len(E)
    params = [np.full(3, float(i)) for i in range(len(E))]
    history = list(zip(E, err, params))
    assert converged_tail(E, err, tail=3) == 3
    np.testing.assert_allclose(select_parameters(history, "average", 3), np.full(3, np.mean(range(3, 8))))
    np.testing.assert_allclose(select_parameters(history, "lowest"), np.full(3, 5.0))
    # still decreasing at the end: only the last iterations within error bars of the final ones count
    assert converged_tail([-1.0, -1.2, -1.4, -1.6], [0.01] * 4, tail=1) == 3
    assert converged_tail([-1.0], [0.01]) == 0


def test_optimize_config_refuses_unknown_rule():
    import pytest

    from rung.core.errors import InputError

    with pytest.raises(InputError, match="select"):
        OptimizeConfig(select="best")
