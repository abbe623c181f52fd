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


def _noisy_quadratic_model():
    """A linear-parameter model in the centred basis (S = 1 exactly): the exact energy of a step d is the
    Rayleigh quotient of H = [[E0, b], [b, A]], and its minimum is a small step. The sampled H has
    noise that bends one direction u below E0 (a soft mode the samples invent), so the plain step
    (the smallest shift whose |dp| <= max_step) runs far along u and overshoots."""
    rng = np.random.default_rng(11)
    n, e0 = 6, -1.0
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    u = q[:, 0]  # the soft direction (exact curvature 0.5, sampled 0.02), exact gradient 0 along it
    b = 0.15 * rng.normal(size=n)
    b -= (b @ u) * u
    A = e0 * np.eye(n) + q @ np.diag(np.linspace(0.5, 2.0, n)) @ q.T
    H = np.block([[np.array([[e0]]), b[None]], [b[:, None], A]])
    Hn = H.copy()
    Hn[1:, 1:] += -0.48 * np.outer(u, u) + 0.002 * (lambda m: m + m.T)(rng.normal(size=(n, n)))
    Hn[0, 1:] += 0.03 * u  # and a noisy gradient along it
    Hn[1:, 0] += 0.03 * u

    def energy(d):
        x = np.r_[1.0, d]
        return float(x @ H @ x / (x @ x))

    return Hn, np.eye(n + 1), energy


def test_correlated_choice_avoids_the_overshoot_of_the_plain_step():
    """Deterministic: on the noisy model the plain step raises the exact energy; among the candidate
    steps for shifts a, 10a, 100a the one chosen from (exact) energy differences lowers it, and so
    does the choice from differences with noise of their stated error bars."""
    from rung.qmc.optimize import _bounded_step, choose_step

    Hn, S, energy = _noisy_quadratic_model()
    keep, obar = np.ones(S.shape[0], bool), np.zeros(S.shape[0] - 1)
    plain, a = _bounded_step(Hn, S, keep, obar, None, 1.0, 1e-3, 1.0)
    e_start = energy(np.zeros(S.shape[0] - 1))
    assert energy(plain) > e_start + 0.02, (energy(plain), e_start)  # the plain step overshoots
    steps = [_bounded_step(Hn, S, keep, obar, None, 1.0, a * f, 1.0)[0] for f in (1, 10, 100)]
    np.testing.assert_allclose(steps[0], plain)
    diffs = np.array([energy(d) - e_start for d in steps])
    k = choose_step(diffs, np.full(3, 1e-3), np.ones(3))
    assert k == 2 and diffs[k] < -0.02, diffs
    noisy = diffs + 1e-3 * np.random.default_rng(3).normal(size=3)
    assert diffs[choose_step(noisy, np.full(3, 1e-3), np.ones(3))] < 0
    # every candidate worse beyond its error bar, or weights degenerate: no step
    assert choose_step([0.1, 0.05, 0.02], [1e-3] * 3, [1.0] * 3) == -1
    assert choose_step([-0.1, -0.05, -0.02], [1e-3] * 3, [0.01, 0.02, 0.05]) == -1
    assert choose_step([-0.1, -0.05, -0.02], [1e-3] * 3, [0.01, 0.5, 0.5]) == 1
    # within two error bars of the lowest: the least damped step (the smallest shift) is taken
    assert choose_step([-0.030, -0.031, -0.010], [0.002] * 3, [1.0] * 3) == 0
    assert choose_step([-0.030, -0.031, -0.010], [np.nan] * 3, [1.0] * 3) == 1  # no error bars: the lowest


def test_reweighted_energies_harmonic_oscillator():
    """psi_p = exp(-p x^2 / 2) for H = -1/2 d^2/dx^2 + x^2 / 2: E_L = p/2 + (1 - p^2) x^2 / 2 and
    E(p) = (p + 1/p) / 4 (analytic). Samples of |psi_p0|^2 reweighted to p give E(p) - E(p0) within
    4 error bars; p = p0 gives exactly 0 with weights 1."""
    from rung.qmc.optimize import reweighted_energies

    p0, ps = 1.3, np.array([1.3, 1.1, 0.9, 1.6])
    x = np.random.default_rng(5).normal(scale=np.sqrt(0.5 / p0), size=(400, 25))
    el = lambda p: p / 2 + (1 - p**2) * x**2 / 2  # noqa: E731
    diffs, err, ess = reweighted_energies(-p0 * x**2 / 2, el(p0), np.stack([-p * x**2 / 2 for p in ps]),
                                          np.stack([el(p) for p in ps]))
    exact = (ps + 1 / ps) / 4 - (p0 + 1 / p0) / 4
    assert diffs[0] == 0.0 and ess[0] == 1.0
    assert np.all(np.abs(diffs - exact) < 4 * err + 1e-15), (diffs, exact, err)
    assert np.all(err[1:] > 0) and np.all(err[1:] < 0.02) and np.all(ess[1:] < 1.0)


def test_rescale_linear_parameters_equal_the_uncentred_linear_method():
    """For parameters psi is linear in, the centred-basis eigenvector rescaled by 1 / (1 - <O>.delta)
    is the update of the linear method in the plain basis {psi, d psi / d p_i} (there exact:
    psi + sum dp_i psi_i = psi(p + dp)), built here from the same samples without centring; for the
    other parameters (xi < 1) the change is orthogonal to xi psi/|psi| + (1 - xi) psi_new/|psi_new|."""
    import scipy.linalg

    from rung.qmc.optimize import linear_method_matrices, rescale, solve_linear_method

    rng = np.random.default_rng(2)
    n, npar = 2000, 4
    O = rng.normal(size=(n, npar)) + np.array([0.5, -0.3, 0.2, 0.8])
    E = -1.0 + 0.3 * rng.normal(size=n) + O @ np.array([0.05, -0.02, 0.01, 0.03])
    dE = 0.05 * rng.normal(size=(n, npar))
    H, S, keep = linear_method_matrices(E, O, dE)
    assert keep.all()
    delta = solve_linear_method(H, S, 0.0)
    dp = rescale(delta, S[1:, 1:], O.mean(0), np.ones(npar, bool), 0.5)
    O1 = np.c_[np.ones(n), O]
    dE1 = np.c_[np.zeros(n), dE]
    Hu = O1.T @ (E[:, None] * O1 + dE1) / n
    Su = O1.T @ O1 / n
    w, v = scipy.linalg.eig(Hu, Su)
    k = np.argmin(np.where(np.abs(v[0]) / np.linalg.norm(v, axis=0) > 0.3, w.real, np.inf))
    np.testing.assert_allclose(dp, v[1:, k].real / v[0, k].real, rtol=1e-8)
    for xi in (0.0, 0.5, 1.0):
        s = rescale(delta, S[1:, 1:], O.mean(0), np.zeros(npar, bool), xi) / delta
        assert np.ptp(s) < 1e-12
        s, Q = s[0], delta @ S[1:, 1:] @ delta
        # change = s chi + (s - 1) psi, chi = sum delta_i psi_i (centred, |chi|^2 = Q), |psi| = 1
        np.testing.assert_allclose((s - 1) * xi + (1 - xi) * (s * Q + s - 1) / np.sqrt(1 + Q), 0.0, atol=1e-12)
