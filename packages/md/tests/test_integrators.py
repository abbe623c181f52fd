"""Integrators against analytic oracles (see oracles.py for the derivations)."""

import numpy as np
import pytest
from oracles import (baoab_mode_variance, block_mean, estimators_from_mode_variance,
                     exact_path_integral_energy)

from rung.core import units as U
from rung.core.potential import Harmonic
from rung.md import estimators as est
from rung.md.integrators import bussi, langevin, ring_polymer, velocity_verlet

W = 3700 * U.INV_CM_TO_HARTREE  # 3700 cm^-1
M = U.AMU_TO_ELECTRON_MASS  # 1 amu
KT = 300 * U.BOLTZMANN_HARTREE_PER_K
BETA = 1 / KT


def _ho_force():
    pot = Harmonic(M * W * W)
    return lambda x: pot.compute(x, None)


def _run(step, state, n, every=1):
    xs, fs, ps, es = [], [], [], []
    for i in range(n):
        state = step(state)
        if i % every == 0:
            xs.append(state.positions)
            fs.append(state.forces)
            ps.append(state.momenta)
            es.append(state.energy)
    return state, np.array(xs), np.array(fs), np.array(ps), np.array(es)


def test_closed_form_matches_the_dt_to_zero_scheme_and_the_quantum_limit():
    # two independent derivations of the same numbers: closed form vs Lyapunov at a tiny step
    for P in (1, 4, 16, 32):
        exact = exact_path_integral_energy(W, BETA, P)
        var = baoab_mode_variance(W, M, BETA, P, 1e-4 * U.FS_TO_AU_TIME, 0.01)
        for e in estimators_from_mode_variance(var, W, M, BETA, P):
            assert abs(e / exact - 1) < 1e-8
    # P -> infinity: (w/4) coth(beta w / 2) per dimension
    assert abs(exact_path_integral_energy(W, BETA, 4096) / (W / 4 / np.tanh(BETA * W / 2)) - 1) < 1e-5
    assert exact_path_integral_energy(W, BETA, 1) == pytest.approx(0.5 * KT, rel=1e-14)


def _harmonic_path_integral(P, n_steps, dt_fs, seed, propagator="exact"):
    dt = dt_fs * U.FS_TO_AU_TIME
    tau = 3 * U.FS_TO_AU_TIME
    init, step = ring_polymer(_ho_force(), dt, KT, P, thermostat="pile-l", tau=tau, seed=seed, propagator=propagator)
    s = init(np.zeros((1, 3)), np.array([M]))
    s, *_ = _run(step, s, 2000)
    _, x, f, _, e = _run(step, s, n_steps, every=2)
    V = e.mean(axis=1)
    kp = np.array([est.kinetic_primitive(xx, [M], KT) for xx in x])
    kc = np.array([est.kinetic_centroid_virial(xx, ff, KT) for xx, ff in zip(x, f)])
    expected = 3 * np.array(estimators_from_mode_variance(
        baoab_mode_variance(W, M, BETA, P, dt, 1 / tau, cayley=propagator == "cayley"), W, M, BETA, P))
    return (V, kp, kc), expected


def _check_2sigma(series, expected, names, exact):
    for x, e, name in zip(series, expected, names):
        mean, err = block_mean(x)
        assert abs(e / exact - 1) < 0.01, f"{name}: finite-step bias unexpectedly large"
        assert abs(mean - e) < 2 * err, f"{name}: {mean:.6g} +- {err:.2g}, expected {e:.6g}"
        assert err < 0.03 * e  # the error bar is small enough for the test to mean something


@pytest.mark.parametrize("P,n_steps,seed,propagator", [(1, 40000, 11, "exact"), (4, 40000, 12, "exact"),
                                                       (16, 40000, 13, "exact"), (4, 30000, 14, "cayley")])
def test_harmonic_path_integral_estimators(P, n_steps, seed, propagator):
    """3D HO, w = 3700 cm^-1, m = 1 amu, 300 K: <V>, K_prim, K_cv vs the exact P-bead values (PILE-L, 0.25 fs).

    The expected values are those of the discrete scheme (Lyapunov oracle), which differ from the
    continuous P-bead values by the small BAOAB step bias (checked < 1%).
    """
    series, expected = _harmonic_path_integral(P, n_steps, 0.25, seed, propagator)
    exact = 3 * exact_path_integral_energy(W, BETA, P)
    if P == 1:  # both kinetic estimators are the constant 3/2 kT
        assert series[1] == pytest.approx(1.5 * KT, rel=1e-14) and series[2] == pytest.approx(1.5 * KT, rel=1e-14)
        series, expected = series[:1], expected[:1]
    _check_2sigma(series, expected, ["V", "K_prim", "K_cv"], exact)


@pytest.mark.slow
@pytest.mark.parametrize("P,propagator", [(32, "exact"), (32, "cayley"), (16, "cayley")])
def test_harmonic_path_integral_estimators_many_beads(P, propagator):
    series, expected = _harmonic_path_integral(P, 120000, 0.25, 100 + P, propagator)
    _check_2sigma(series, expected, ["V", "K_prim", "K_cv"], 3 * exact_path_integral_energy(W, BETA, P))


def test_baoab_samples_harmonic_positions_exactly_at_a_large_step():
    dt = 1.0 / W  # w dt = 1: a large step (period / 6.3)
    init, step = langevin(_ho_force(), dt, KT, gamma=W, seed=5)
    s = init(np.zeros((1, 3)), np.array([M]))
    _, x, _, p, _ = _run(step, s, 60000)
    q2 = np.sum(x**2, axis=(1, 2))
    mean, err = block_mean(q2)
    exact = 3 * KT / (M * W * W)
    assert abs(mean - exact) < 2 * err, (mean, err, exact)
    assert err < 0.02 * exact
    # the momenta are not exact at this step: <p^2> = m kT (1 - (w dt / 2)^2) for BAOAB (Lyapunov oracle)
    p2, perr = block_mean(np.sum(p**2, axis=(1, 2)))
    assert abs(p2 / (3 * M * KT) - 1) > 10 * perr / p2


@pytest.mark.parametrize("kind", ["nve", "langevin", "bussi"])
def test_one_bead_reduces_exactly_to_the_classical_integrator(kind, argon, argon_lj):
    numbers, x, m, cell = argon
    f = lambda xx: argon_lj.compute(xx, numbers, cell, virial=True)  # noqa: E731
    dt, kT, tau = 40.0, 100 * U.BOLTZMANN_HARTREE_PER_K, 2000.0
    if kind == "nve":
        ic, sc = velocity_verlet(f, dt, kT, seed=3)
        ir, sr = ring_polymer(f, dt, kT, 1, thermostat=None, seed=3)
    elif kind == "langevin":
        ic, sc = langevin(f, dt, kT, 1 / tau, seed=3)
        ir, sr = ring_polymer(f, dt, kT, 1, thermostat="pile-l", tau=tau, seed=3)
    else:
        ic, sc = bussi(f, dt, kT, tau, seed=3)
        ir, sr = ring_polymer(f, dt, kT, 1, thermostat="pile-g", tau=tau, seed=3)
    a, b = ic(x, m), ir(x, m)
    np.testing.assert_array_equal(a.momenta, b.momenta[0])
    for _ in range(30):
        a, b = sc(a), sr(b)
    np.testing.assert_array_equal(a.positions, b.positions[0])
    np.testing.assert_array_equal(a.momenta, b.momenta[0])
    assert a.thermostat_energy == pytest.approx(b.thermostat_energy, rel=1e-12, abs=1e-16)
    if kind != "nve":
        assert a.thermostat_energy != 0.0


def test_nve_energy_drift_and_time_reversibility(argon, argon_lj):
    numbers, x, m, cell = argon
    f = lambda xx: argon_lj.compute(xx, numbers, cell)  # noqa: E731
    dt = 0.5 * U.FS_TO_AU_TIME
    init, step = velocity_verlet(f, dt, kT=120 * U.BOLTZMANN_HARTREE_PER_K, seed=7)
    s0 = init(x, m)
    s = s0
    energies = []
    for _ in range(2000):  # 1 ps
        s = step(s)
        energies.append(est.kinetic_energy(s.momenta, m) + float(s.energy))
    e = np.array(energies)
    t_ps = np.arange(1, len(e) + 1) * 0.5e-3
    slope = np.polyfit(t_ps, e, 1)[0] / len(m)  # Hartree / atom / ps
    # stated bound: drift below 1e-7 Hartree per atom per ps, fluctuations below 1e-6 of the total
    assert abs(slope) < 1e-7, slope
    assert np.ptp(e) < 1e-6 * abs(e.mean()) + 1e-7 * len(m)
    # time reversibility: flip momenta, integrate back, recover the start
    from dataclasses import replace

    back = replace(s, momenta=-s.momenta)
    for _ in range(2000):
        back = step(back)
    np.testing.assert_allclose(back.positions, s0.positions, atol=1e-8)
    np.testing.assert_allclose(-back.momenta, s0.momenta, atol=1e-8 * np.abs(s0.momenta).max())


@pytest.mark.parametrize("P,thermostat", [(1, "pile-l"), (1, "pile-g"), (4, "pile-l"), (4, "pile-g")])
def test_thermostat_temperature_and_conserved_quantity(P, thermostat, argon, argon_lj):
    numbers, x, m, cell = argon
    f = lambda xx: argon_lj.compute(xx, numbers, cell)  # noqa: E731
    T = 90.0
    kT = T * U.BOLTZMANN_HARTREE_PER_K
    init, step = ring_polymer(f, 4 * U.FS_TO_AU_TIME, kT, P, thermostat=thermostat, tau=100 * U.FS_TO_AU_TIME,
                              seed=20 + P)
    s = init(x, m)
    for _ in range(300):
        s = step(s)
    temps, cons = [], []
    s1 = s
    for _ in range(2500):
        s = step(s)
        temps.append(est.temperature_K(s.momenta, m))
        cons.append(est.conserved(s, kT))
    mean, err = block_mean(temps)
    assert abs(mean - T) < 2 * err, (mean, err)
    assert err < 0.02 * T
    # the conserved quantity stays put while the thermostat exchanges much more energy
    exchanged = abs(s.thermostat_energy - s1.thermostat_energy)
    assert np.ptp(cons) < 0.1 * exchanged, (np.ptp(cons), exchanged)


@pytest.mark.parametrize("thermostat", ["pile-l", "pile-g"])
def test_conserved_quantity_error_is_second_order_in_the_step(thermostat, argon, argon_lj):
    """H_P + thermostat energy changes only by the integration error: 4 fs -> 2 fs shrinks it ~4x."""
    numbers, x, m, cell = argon
    f = lambda xx: argon_lj.compute(xx, numbers, cell)  # noqa: E731
    kT = 90 * U.BOLTZMANN_HARTREE_PER_K
    spread = {}
    for dt_fs in (4.0, 2.0):
        init, step = ring_polymer(f, dt_fs * U.FS_TO_AU_TIME, kT, 4, thermostat=thermostat,
                                  tau=50 * U.FS_TO_AU_TIME, seed=8)
        s = init(x, m)
        c = []
        for _ in range(int(400 / dt_fs)):
            s = step(s)
            c.append(est.conserved(s, kT))
        spread[dt_fs] = np.ptp(c)
    assert spread[4.0] / spread[2.0] > 2.5, spread


def test_bad_parameters():
    f = _ho_force()
    with pytest.raises(ValueError, match="time step"):
        velocity_verlet(f, 0.0)
    with pytest.raises(ValueError, match="time step"):
        ring_polymer(f, -1.0, KT, 4)
    with pytest.raises(ValueError, match="temperature"):
        langevin(f, 1.0, 0.0, 0.1)
    with pytest.raises(ValueError, match="thermostat"):
        ring_polymer(f, 1.0, KT, 4, thermostat="nose")
    with pytest.raises(ValueError, match="tau"):
        ring_polymer(f, 1.0, KT, 4, thermostat="pile-l")


def test_nve_energy_conservation_ani_water():
    """ANI-1x (one network, float64) water from O-H bonds stretched by 0.05 A, zero momenta (deterministic).

    Velocity Verlet's energy error is second order: halving 0.5 fs -> 0.25 fs shrinks the spread of the
    total energy (stated bound at 0.5 fs: 1e-3 Hartree over 250 fs, measured 4.8e-4; the stretch puts
    ~5e-3 Hartree into the O-H vibrations) by more than 2.5x (measured 5.5x).
    """
    nnp = pytest.importorskip("rung.nnp")
    try:
        pot = nnp.load_model("ani-1x", member=0, dtype="float64")
    except Exception as err:  # weights not fetched on this machine
        pytest.skip(f"ANI-1x not available: {err}")
    import numba
    from ase.collections import g2

    from rung.core.potential import in_atomic_units

    a = g2["H2O"]
    x0 = a.positions.copy()
    x0[1:] += 0.05 * (x0[1:] - x0[0]) / np.linalg.norm(x0[1:] - x0[0], axis=1)[:, None]
    pot = in_atomic_units(pot)
    spread = {}
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # 3 atoms: threads only add contention on a shared machine
    try:
        for dt_fs in (0.5, 0.25):
            init, step = velocity_verlet(lambda x: pot.compute(x, a.numbers), dt_fs * U.FS_TO_AU_TIME)
            s = init(x0 * U.ANGSTROM_TO_BOHR, a.get_masses() * U.AMU_TO_ELECTRON_MASS)
            e = []
            for _ in range(int(250 / dt_fs)):
                s = step(s)
                e.append(est.kinetic_energy(s.momenta, s.masses) + float(s.energy))
            spread[dt_fs] = np.ptp(e)
    finally:
        numba.set_num_threads(threads)
    assert spread[0.5] < 1e-3, spread
    assert spread[0.5] / spread[0.25] > 2.5, spread


@pytest.mark.parametrize("thermostat", [None, "pile-l", "pile-g"])
def test_ring_polymer_states_do_not_share_the_step_scratch_arrays(thermostat):
    """The step keeps scratch arrays between steps; the states it returns must own their arrays: a state
    is unchanged by later steps, and a state stepped twice gives the same result both times."""
    from rung.core.potential import PotentialResult

    def force(x):
        return PotentialResult(-0.5e-3 * np.sum(x * x, axis=(1, 2)), -1e-3 * x, None)

    init, step = ring_polymer(force, 10.0, 1e-3, 4, thermostat=thermostat, tau=100.0, seed=2)
    s0 = init(np.random.default_rng(0).normal(size=(3, 3)), np.full(3, 1837.0))
    s1 = step(s0)
    snap = [a.copy() for a in (s1.positions, s1.momenta)]
    s2 = step(s1)
    step(s2)
    assert np.array_equal(s1.positions, snap[0]) and np.array_equal(s1.momenta, snap[1])
    again = step(s1)
    assert np.array_equal(again.positions, s2.positions) and np.array_equal(again.momenta, s2.momenta)
    for a in (s2.positions, s2.momenta):
        assert not any(np.shares_memory(a, b) for b in (s1.positions, s1.momenta, s0.positions, s0.momenta))


@pytest.mark.parametrize("shape", [(1, 37, 3), (4, 1000, 3)])
def test_standard_normal_kernel_draws_numpys_numbers(shape):
    """numba's draw from a NumPy Generator: NumPy's own numbers (also past the ziggurat's rare branches:
    12000 draws), and the generator left in NumPy's state."""
    from rung.md._kernels.cpu import standard_normal
    from rung.md.integrators import step_rng

    g1, g2 = step_rng(5, 11), step_rng(5, 11)
    out = np.empty(shape)
    standard_normal(g1, out)
    np.testing.assert_array_equal(out, g2.standard_normal(shape))
    assert g1.standard_normal() == g2.standard_normal()
    view = np.empty((3,) + shape)[1:]  # a contiguous slice, as the PILE-G step passes
    standard_normal(g1, view)
    np.testing.assert_array_equal(view, g2.standard_normal(view.shape))


@pytest.mark.parametrize("P,kind", [(1, "exact"), (4, "exact"), (5, "cayley")])
def test_flow_o_flow_kernel_against_the_numpy_reference(P, kind):
    """The fused numba kernel against the NumPy oracle: the same positions and momenta bit for bit (the
    same operations in the same order) and the same kinetic-energy change up to the order of summation."""
    from rung.md._kernels import cpu, reference
    from rung.md.normal_modes import free_propagator, normal_mode_frequencies

    n = 37
    rng = np.random.default_rng(P)
    q, p, xi = rng.normal(size=(P, n, 3)), rng.normal(size=(P, n, 3)) * 30.0, rng.normal(size=(P, n, 3))
    m = np.repeat(rng.uniform(1800.0, 40000.0, n), 3).reshape(n, 3)
    coef = free_propagator(normal_mode_frequencies(P, P * KT), 20.0, kind)
    c1 = np.exp(-rng.uniform(0.0, 0.5, P))
    sigma = np.repeat(rng.uniform(0.5, 2.0, (P, n)), 3, axis=1).reshape(P, n, 3)
    qq, pp, dk = q.copy(), p.copy(), np.empty_like(q)
    cpu.flow_o_flow(qq, pp, m, 1.0 / m, coef, c1, sigma, xi, dk)
    out = {"numba": (qq, pp, float(np.sum(dk)))}
    qq, pp = q.copy(), p.copy()
    out["numpy"] = qq, pp, reference.flow_o_flow(qq, pp, m, 1.0 / m, coef, c1, sigma, xi)
    (q1, p1, dk1), (q2, p2, dk2) = out["numba"], out["numpy"]
    np.testing.assert_array_equal(q1, q2)
    np.testing.assert_array_equal(p1, p2)
    assert dk1 == pytest.approx(dk2, rel=1e-12)
    assert not np.array_equal(p1, p)  # it did move
