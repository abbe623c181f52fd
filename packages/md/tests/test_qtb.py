"""QTB and adQTB (rung.md.qtb) against exact results.

Oracles: the exact stationary statistics of the discrete harmonic scheme with coloured noise
(oracles.qtb_harmonic_moments, an independent matrix transfer function), the exact quantum values
(hbar w / 4) coth(beta hbar w / 2) per degree of freedom, a sinc-DVR diagonalisation of a Morse O-H
oscillator, the exact primitive P-bead path integral of the same oscillator on a grid (what RPMD
samples), an exact diagonalisation of two coupled oscillators, and the classical Boltzmann
distribution (quadrature) for hbar -> 0. Statistical checks use many independent copies of the small
system in one run and blocked error bars; tolerances are 3 sigma plus, where stated, the method's
own (documented) error.
"""

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from kills import kill_after_steps
from oracles import (baoab_harmonic_responses, block_mean, path_integral_grid, qtb_harmonic_moments,
                     thermal_dvr)

from rung.core import units as U
from rung.core.potential import Harmonic, PotentialResult
from rung.core.testing import check_bad_input
from rung.md import qtb as Q
from rung.md.cli import main
from rung.md.config import load_config
from rung.md.integrators import ring_polymer
from rung.md.output import read_checkpoint
from rung.md.simulation import run

W = 3700 * U.INV_CM_TO_HARTREE  # 3700 cm^-1
M = U.AMU_TO_ELECTRON_MASS  # 1 amu
KT = 300 * U.BOLTZMANN_HARTREE_PER_K
FS = U.FS_TO_AU_TIME
CUT = 15000 * U.INV_CM_TO_HARTREE
EXACT = W / 4 / np.tanh(W / (2 * KT))  # quantum <V> = <K> per degree of freedom

# Morse O-H (bond energy 0.18748 Ha, a = 1.1605 / Bohr, r_e = 1.8324 Bohr; harmonic 3751 cm^-1) along x
# for one particle of the O-H reduced mass; y and z are free.
D_OH, A_OH, RE_OH = 0.18748, 1.1605, 1.8324
MU_OH = 15.999 * 1.008 / (15.999 + 1.008) * M


def _harmonic():
    pot = Harmonic(M * W * W)
    return lambda x: pot.compute(x, None)


def _morse(x):
    x = np.asarray(x)
    e = np.exp(-A_OH * (x[..., 0] - RE_OH))
    f = np.zeros_like(x)
    f[..., 0] = -2 * D_OH * A_OH * e * (1 - e)
    return PotentialResult(np.sum(D_OH * (1 - e) ** 2, axis=-1), f)


def _morse_grid(n=500):
    x = np.linspace(RE_OH - 0.7, RE_OH + 1.8, n)
    return x, D_OH * (1 - np.exp(-A_OH * (x - RE_OH))) ** 2


# --- the noise -------------------------------------------------------------------------------------------

def test_theta_limits():
    w = np.array([0.0, 1e-9, 0.3 * W, W, 5 * W])
    th = Q.theta(w, KT)
    assert th[0] == KT and th[1] == pytest.approx(KT, rel=1e-12)
    np.testing.assert_allclose(th[2:], w[2:] / 2 / np.tanh(w[2:] / (2 * KT)), rtol=1e-14)
    np.testing.assert_allclose(Q.theta(w, KT, hbar=0.0), KT)  # classical limit
    np.testing.assert_allclose(Q.theta(w[2:], 1e-9 * KT), w[2:] / 2, rtol=1e-12)  # zero point


def test_classical_limit_without_cutoff_is_exactly_white_noise():
    """hbar -> 0 and no cut-off: g = 1 and the noise is the white noise of the segment, i.e. the run is
    rung's BAOAB Langevin (with the QTB's noise streams)."""
    p = Q.qtb_parameters(0.5 * FS, KT, 0.01 / FS, masses=np.full(5, M), species=np.zeros(5, int), tseg=40 * FS,
                         hbar=0.0, seed=7)
    np.testing.assert_array_equal(p.spectrum, 1.0)
    for seg in (0, 3):
        kicks = Q.segment_kicks(p, seg, np.ones((1, p.nom)))
        white = Q.white_block(7, seg, (p.nseg, 5, 3)) * p.sigma
        np.testing.assert_allclose(kicks, white, rtol=0, atol=1e-12 * np.abs(white).max())


def test_coloured_noise_has_its_spectrum_across_segment_joins():
    """Autocorrelation of the unit noise eta at lags 1..4 over pairs that straddle a segment boundary
    equals the target irfft(g) (and so equals the one within segments): segments join seamlessly."""
    n_atoms, nseg_count = 40, 30
    p = Q.qtb_parameters(0.5 * FS, KT, 0.01 / FS, masses=np.full(n_atoms, M), species=np.zeros(n_atoms, int),
                         tseg=40 * FS, omegacut=CUT, seed=3)
    eta = np.concatenate([Q.segment_kicks(p, j, np.ones((1, p.nom))) / p.sigma for j in range(nseg_count)])
    eta = eta.reshape(len(eta), -1)  # (time, columns)
    target = np.fft.irfft(p.spectrum, 3 * p.nseg)  # autocorrelation of the stationary process, lag k
    joins = np.arange(1, nseg_count) * p.nseg
    for k in range(1, 5):
        pairs = np.concatenate([eta[j - k + i] * eta[j + i] for j in joins for i in range(k)])
        err = pairs.std() / np.sqrt(pairs.size)
        assert abs(pairs.mean() - target[k]) < 4 * err, (k, pairs.mean(), target[k], err)
        inside = np.mean(eta[:-k] * eta[k:])
        assert abs(inside - target[k]) < 4 * np.std(eta[:-k] * eta[k:]) / np.sqrt(eta[k:].size)
    assert abs(target[1]) > 0.05  # the noise is coloured: the test has something to see


def test_segment_spectra_against_a_direct_dft_per_species(monkeypatch):
    """m C_vv and Re C_vR / gamma_eff of a segment (module docstring's formulas) from an explicit DFT
    matrix on the zero-padded 3 n_seg grid, averaged per species by hand; the column chunks of the FFTs
    (_COLUMNS) change neither the spectra nor the kicks."""
    species = np.array([0, 1, 0, 2, 1, 0, 2])
    m = M * np.array([1.0, 16.0, 1.0, 12.0, 16.0, 1.0, 12.0])
    p = Q.qtb_parameters(0.5 * FS, KT, 0.01 / FS, masses=m, species=species, tseg=40 * FS, omegacut=CUT, seed=5)
    rng = np.random.default_rng(0)
    v = rng.normal(size=(p.nseg, m.size, 3))
    dp = rng.normal(size=(p.nseg, m.size, 3))
    dft = np.exp(-2j * np.pi * np.outer(np.arange(p.nom), np.arange(p.nseg)) / (3 * p.nseg))  # (nom, nseg)
    fv = dft @ v.reshape(p.nseg, -1)  # (nom, 3 n)
    fr = dft @ dp.reshape(p.nseg, -1)
    col = np.repeat(species, 3)
    mcol = np.repeat(m, 3)
    ref_vv = np.array([(mcol * np.abs(fv) ** 2)[:, col == s].mean(axis=1) for s in range(3)]) * p.dt / p.nseg
    ref_vr = np.array([(fv * fr.conj()).real[:, col == s].mean(axis=1) for s in range(3)]) / (p.nseg * p.gamma_eff)
    mcvv, cvr = Q.segment_spectra(p, v, dp)
    np.testing.assert_allclose(mcvv, ref_vv, rtol=1e-10)
    np.testing.assert_allclose(cvr, ref_vr, rtol=1e-10, atol=1e-10 * np.abs(ref_vr).max())
    gammar = 1.0 + 0.1 * rng.random((3, p.nom))
    kicks = Q.segment_kicks(p, 2, gammar)
    monkeypatch.setattr(Q, "_COLUMNS", 4)  # chunks that split atoms and species
    np.testing.assert_allclose(Q.segment_spectra(p, v, dp), (mcvv, cvr), rtol=1e-13, atol=1e-13 * np.abs(cvr).max())
    np.testing.assert_allclose(Q.segment_kicks(p, 2, gammar), kicks, rtol=0, atol=1e-13 * np.abs(kicks).max())


# --- the discrete scheme, deterministic ---------------------------------------------------------------------

def test_discrete_kernels_match_the_transfer_function_oracle():
    dt, gamma = 0.5 * FS, 0.02 / FS
    omega = 2 * np.pi * np.fft.rfftfreq(1200, d=dt)
    nom = 400
    kx, kmid, kpost = Q.discrete_kernels(omega, nom, dt, gamma)
    weight = np.where((omega == 0) | np.isclose(omega * dt, np.pi), 1.0, 2.0)
    for j in (7, 150, 399):
        w0 = Q.discrete_frequency(omega[j], dt)
        x, pre, post = baoab_harmonic_responses(w0, 1.0, dt, gamma, omega * dt)
        for got, ref, total in ((kx, np.abs(x) ** 2, 1.0), (kpost, np.abs(post) ** 2, 1.0),
                                (kmid, np.abs(0.5 * (pre + post)) ** 2, 0.5 * (1 + np.exp(-gamma * dt)))):
            ref = weight * ref
            np.testing.assert_allclose(got[:, j], ref * total / ref.sum(), rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("gamma_fs", [0.005, 0.05, 0.2])
def test_deconvolution_makes_the_harmonic_oscillator_exact(gamma_fs):
    """The exact statistics of the discrete scheme (not sampled): with corr_pot <V> is the quantum value
    and with corr_kin the post-O kinetic energy is, at any friction; without them both are biased."""
    dt, gamma = 0.5 * FS, gamma_fs / FS
    res = {}
    for dec in (False, True):
        p = Q.qtb_parameters(dt, KT, gamma, masses=[M], species=[0], tseg=250 * FS, omegacut=CUT, deconvolution=dec)
        x2, pp = qtb_harmonic_moments(W, M, KT, dt, gamma, lambda w: np.interp(w, p.omega, p.spectrum))
        res[dec] = 0.5 * M * W * W * x2 / EXACT, pp / (2 * M) / EXACT, p
    v, k, p = res[True]
    assert abs(v - 1) < 1e-3
    # the kinetic correction from the exact spectrum of the spectra's (mid-O) velocity
    phi = p.omega[: p.nom] * dt
    _, pre, post = baoab_harmonic_responses(W, M, dt, gamma, phi)
    mcvv = np.abs(0.5 * (pre + post)) ** 2 * p.spectrum[: p.nom] * KT * (1 - p.a1 ** 2) * dt / M
    ck = Q.kinetic_correction(mcvv, KT, p.omega[: p.nom], p.spectrum[: p.nom], p.kin_kernel, p.post_energy,
                              p.theta_over_kT)
    assert abs(k / ck - 1) < 2e-3, (k, ck)
    v0, k0, _ = res[False]
    if gamma_fs >= 0.05:
        assert v0 < 0.99 and k0 > 1.02  # what the corrections remove


# --- sampled: harmonic oscillators, classical limit, Morse ---------------------------------------------------

def _qtb_run(force, x0, mass, steps, *, gamma_fs=0.05, tseg_fs=125.0, every=2, **kw):
    n = len(x0)
    init, step, p = Q.qtb(force, 0.25 * FS, KT, gamma_fs / FS, masses=np.full(n, mass), species=np.zeros(n, int),
                          tseg=tseg_fs * FS, omegacut=CUT, seed=11, **kw)
    s = init(x0, np.full(n, mass))
    rows = []
    for i in range(steps):
        s = step(s)
        if i >= steps // 4 and i % every == 0:
            rows.append((s.positions.copy(), s.energy / n, s.thermostat_state.kinetic / (3 * n),
                         Q.quantum_kinetic(s.thermostat_state) / (3 * n)))
    x, e, k, kq = (np.array(c) for c in zip(*rows))
    return s, p, x, e, k, kq


@pytest.mark.parametrize("adaptive", [None, "simple", "ratio"])
def test_harmonic_oscillator_quantum_averages(adaptive):
    """128 independent 3D oscillators, 3700 cm^-1, 1 amu, 300 K, gamma = 50 ps^-1, 0.25 fs:
    <V> and the corrected <K> are the exact quantum value (hbar w/4) coth(beta hbar w/2) per degree of
    freedom; the raw kinetic energy is the discrete scheme's (oracle), 5% above it; adQTB keeps
    gamma_r = 1 (the FDT holds for harmonic systems) and its residual vanishes."""
    s, p, x, e, k, kq = _qtb_run(_harmonic(), np.zeros((128, 3)), M, 12000, adaptive=adaptive, agamma=0.2)
    v, dv = block_mean(e / 3)
    kc, dkc = block_mean(kq)
    assert dv < 0.01 * EXACT and dkc < 0.01 * EXACT
    assert abs(v - EXACT) < 3 * dv + 1e-3 * EXACT, v / EXACT
    assert abs(kc - EXACT) < 3 * dkc + 2e-3 * EXACT, kc / EXACT
    _, pp = qtb_harmonic_moments(W, M, KT, p.dt, p.gamma, lambda w: np.interp(w, p.omega, p.spectrum))
    raw, draw = block_mean(k)
    assert abs(raw - pp / (2 * M)) < 3 * draw and raw > 1.04 * EXACT
    if adaptive:
        ts = s.thermostat_state
        j = int(np.argmin(np.abs(Q.discrete_frequency(p.omega[: p.nom], p.dt) - W)))
        peak = slice(j - 3, j + 4)
        assert abs(ts.gammar[0, peak].mean() - 1) < 0.05, ts.gammar[0, peak]
        assert abs(ts.dfdt[0, peak].sum()) < 0.05 * ts.mcvv[0, peak].sum()


def test_classical_limit_samples_the_boltzmann_distribution():
    """hbar = 0: harmonic <V> = kT/2 per degree of freedom, and the Morse O-H oscillator's <x>, its
    variance and <V> are the classical Boltzmann averages (quadrature)."""
    _, _, _, e, _, kq = _qtb_run(_harmonic(), np.zeros((64, 3)), M, 6000, hbar=0.0)
    v, dv = block_mean(e / 3)
    assert abs(v - 0.5 * KT) < 3 * dv and dv < 0.02 * KT
    k, dk = block_mean(kq)
    assert abs(k - 0.5 * KT) < 3 * dk
    x0 = np.zeros((256, 3))
    x0[:, 0] = RE_OH
    _, _, x, e, _, _ = _qtb_run(_morse, x0, MU_OH, 8000, hbar=0.0)
    grid = np.linspace(RE_OH - 0.5, RE_OH + 1.0, 20001)
    vg = D_OH * (1 - np.exp(-A_OH * (grid - RE_OH))) ** 2
    rho = np.exp(-vg / KT)
    rho /= rho.sum()
    mean = rho @ grid
    r = x[..., 0]
    m, dm = block_mean(r.mean(axis=1))
    var, dvar = block_mean(((r - mean) ** 2).mean(axis=1))
    pot, dpot = block_mean(e)
    assert abs(m - mean) < 3 * dm + 0.01 * (mean - RE_OH)  # the anharmonic shift of <r>, 3.3e-3 Bohr
    assert abs(var / (rho @ (grid - mean) ** 2) - 1) < 3 * dvar / var + 0.01
    assert abs(pot / (rho @ vg) - 1) < 3 * dpot / pot + 0.01


@pytest.mark.parametrize("adaptive,tol_v,tol_var", [(None, 0.09, 0.16), ("simple", 0.06, 0.13)])
def test_morse_oh_against_the_exact_quantum_averages(adaptive, tol_v, tol_var):
    """Morse O-H at 300 K (128 copies): <r> within 0.3% of the DVR, <V> and the variance of r within the
    method's own error: (ad)QTB puts the zero-point energy into a classical trajectory, whose
    energy fluctuates, so anharmonic averages come out as a classical Boltzmann average at kT ~ theta(w0)
    (for this oscillator var +11%, <V> +5%: test_classical_morse_at_the_effective_temperature);
    adQTB reduces both. Classical MD gives about a tenth of either."""
    grid, vg = _morse_grid()
    mean_q, var_q, v_q = thermal_dvr(grid, MU_OH, vg, KT)
    x0 = np.zeros((128, 3))
    x0[:, 0] = RE_OH
    _, _, x, e, _, _ = _qtb_run(_morse, x0, MU_OH, 16000, gamma_fs=0.02, tseg_fs=250.0, adaptive=adaptive,
                                agamma=0.2)
    r = x[..., 0]
    m, dm = block_mean(r.mean(axis=1))
    var, dvar = block_mean(((r - mean_q) ** 2).mean(axis=1))
    pot, dpot = block_mean(e)
    assert abs(m / mean_q - 1) < 3e-3
    assert abs(var / var_q - 1) < tol_var + 3 * dvar / var_q, var / var_q
    assert abs(pot / v_q - 1) < tol_v + 3 * dpot / v_q, pot / v_q
    assert var / var_q > 0.9 and pot / v_q > 0.95  # the errors have the sign explained above


def test_classical_morse_at_the_effective_temperature():
    """The explanation of the Morse tolerances, checked: the classical Boltzmann averages of the Morse
    oscillator at kT* = theta(w0) exceed the exact quantum ones by ~11% (variance) and ~5% (<V>)."""
    x, v = _morse_grid(20001)
    w0 = A_OH * np.sqrt(2 * D_OH / MU_OH)
    rho = np.exp(-v / Q.theta(w0, KT))
    rho /= rho.sum()
    mean = rho @ x
    grid, vg = _morse_grid()
    _, var_q, v_q = thermal_dvr(grid, MU_OH, vg, KT)
    assert 1.08 < (rho @ (x - mean) ** 2) / var_q < 1.14
    assert 1.03 < (rho @ v) / v_q < 1.07


# --- the driver: input, outputs, restarts ------------------------------------------------------------------

LJ = 'potential = {type = "lj", epsilon_eV = 0.0103, sigma_angstrom = 3.4, cutoff_angstrom = 6.0}'


def _argon_input(tmp_path, thermostat="adqtb", qtb="gamma_fs = 0.005\ntseg_fs = 200", steps=150, extra=""):
    from ase.build import bulk

    if not (tmp_path / "ar.xyz").exists():
        a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 2, 2))
        a.rattle(0.05, seed=1)
        a.write(tmp_path / "ar.xyz", format="extxyz")
    text = (f'structure = "ar.xyz"\nsteps = {steps}\ndt_fs = 4.0\ntemperature_K = 80\nthermostat = "{thermostat}"\n'
            f"seed = 9\n{extra}\n{LJ}\n" + (f"[qtb]\n{qtb}\n" if qtb is not None else "")
            + "[output]\ntrajectory_every = 5\nlog_every = 5\ncheckpoint_every = 25\n")
    path = tmp_path / "in.toml"
    path.write_text(text)
    return path


def test_adqtb_run_restarts_bit_for_bit_with_its_spectra(tmp_path):
    """A periodic LJ argon box with adQTB through the driver: killed mid-segment and restarted, the run is
    bit-for-bit the uninterrupted one, including gamma_r, the spectra file and the outputs."""
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    ref.mkdir()
    cut.mkdir()
    cfg = load_config(_argon_input(tmp_path))
    full = run(cfg, workdir=ref, progress=False)
    with kill_after_steps(87):  # the checkpoint is at step 75, mid-segment
        run(cfg, workdir=cut, progress=False)
    chk = read_checkpoint(cut / "md.chk.h5")[0]
    assert chk.step == 75 and chk.thermostat_state.istep == 25 and chk.thermostat_state.segment == 1
    again = run(cfg, workdir=cut, restart=True, progress=False)
    np.testing.assert_array_equal(again.state.positions, full.state.positions)
    np.testing.assert_array_equal(again.state.momenta, full.state.momenta)
    a, b = again.state.thermostat_state, full.state.thermostat_state
    assert (a.segment, a.istep, a.nsample) == (b.segment, b.istep, b.nsample) == (3, 0, 2)
    for name in ("gammar", "mcvv", "cvr", "dfdt", "velocity", "kicks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.all(a.gammar == 1.0)  # the adaptation did something
    for name in ("md.log", "md.xyz"):
        assert (ref / name).read_bytes() == (cut / name).read_bytes()
    sa, sb = Q.read_spectra(ref / "md.qtb.h5"), Q.read_spectra(cut / "md.qtb.h5")
    for name in ("gammar", "mcvv", "cvr", "dfdt", "omega_cm1", "corr_pot"):
        np.testing.assert_array_equal(sa[name], sb[name])
    np.testing.assert_array_equal(sa["gammar"], b.gammar)
    with h5py.File(ref / "md.qtb.h5") as f:
        assert f.attrs["schema"] == "rung-md-qtb-spectra" and f["gammar"].attrs["unit"] == "dimensionless"
    # the logged kinetic energies are the QTB estimate, and the log has the usual columns
    log = np.loadtxt(ref / "md.log")
    assert log.shape == (31, 8)
    np.testing.assert_allclose(log[-1, 4], Q.quantum_kinetic(b), rtol=1e-10)
    np.testing.assert_array_equal(log[:, 4], log[:, 5])


def test_gammar_from_an_earlier_run(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    run(load_config(_argon_input(first)), workdir=first, progress=False)
    g = Q.read_spectra(first / "md.qtb.h5")["gammar"]
    inp = _argon_input(tmp_path, qtb=f'gamma_fs = 0.005\ntseg_fs = 200\ngammar_from = "{first / "md.qtb.h5"}"',
                       steps=5)
    res = run(load_config(inp), workdir=tmp_path, progress=False)
    np.testing.assert_array_equal(res.state.thermostat_state.gammar, g)


def test_qtb_with_an_ase_calculator(tmp_path):
    """Any rung potential: ASE's Lennard-Jones calculator through the adapter, plain QTB, periodic."""
    inp = _argon_input(tmp_path, thermostat="qtb", steps=60)
    text = inp.read_text().replace(LJ, 'potential = {type = "ase", calculator = "ase.calculators.lj:LennardJones", '
                                        'kwargs = {sigma = 3.4, epsilon = 0.0103, rc = 6.0}}')
    inp.write_text(text)
    res = run(load_config(inp), workdir=tmp_path, progress=False)
    assert res.state.step == 60 and np.isfinite(res.observables["pressure"]).all()
    assert np.all(res.state.thermostat_state.gammar == 1.0)


@pytest.mark.parametrize("edit,words", [
    (lambda t: t.replace("gamma_fs = 0.005", "gamma_fs = -0.005"), ["gamma_fs", "positive"]),
    (lambda t: t.replace("tseg_fs = 200", "tseg_fs = 200\nomegacut_cm1 = 5000"), ["omegacut_cm1", "Nyquist"]),
    (lambda t: t.replace("tseg_fs = 200", "tseg_fs = 40"), ["tseg_fs", "too short"]),
    (lambda t: t.replace("tseg_fs = 200", "tseg_fs = 200\ngamma = 1"), ["unknown [qtb] key"]),
    (lambda t: t.replace("tseg_fs = 200", "tseg_fs = 200\nagamma = 0"), ["agamma", "positive"]),
    (lambda t: t.replace('thermostat = "adqtb"', 'thermostat = "adqtb"\nbeads = 4'), ["beads = 1"]),
    (lambda t: t.replace('thermostat = "adqtb"', 'thermostat = "langevin"'), ["[qtb]", "thermostat"]),
])
def test_bad_input_is_one_clear_line(tmp_path, edit, words):
    inp = _argon_input(tmp_path)
    inp.write_text(edit(inp.read_text()))
    r = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(tmp_path / "out"), "--quiet"])
    check_bad_input(r, *words)
    assert not (tmp_path / "out").exists()


def test_short_segment_message_names_a_length_that_works(tmp_path):
    """The 'too short' error gives a tseg_fs that the check accepts."""
    with pytest.raises(ValueError, match="too short") as err:
        Q.check_parameters(0.5 * FS, KT, 0.01 / FS, 5 * FS, CUT)
    need = float(str(err.value).split(">= ")[-1])
    Q.check_parameters(0.5 * FS, KT, 0.01 / FS, need * FS, CUT)


def test_ani_water_adqtb(tmp_path):
    nnp = pytest.importorskip("rung.nnp")
    try:
        nnp.load_model("ani-1x", member=0)
    except Exception as err:  # weights not fetched on this machine
        pytest.skip(f"ANI-1x not available: {err}")
    from ase.collections import g2

    g2["H2O"].write(tmp_path / "w.xyz")
    (tmp_path / "in.toml").write_text(
        'structure = "w.xyz"\nsteps = 240\ndt_fs = 0.5\nthermostat = "adqtb"\n'
        'potential = {type = "nnp", model = "ani-1x", member = 0}\n[qtb]\ntseg_fs = 40\ngamma_fs = 0.02\n'
        "omegacut_cm1 = 15000\n[output]\nlog_every = 5\n")
    res = run(load_config(tmp_path / "in.toml"), workdir=tmp_path, progress=False)
    assert res.state.thermostat_state.segment == 3 and (tmp_path / "md.qtb.h5").exists()


# --- slow: RPMD on the Morse oscillator, zero-point-energy leakage -----------------------------------------

@pytest.mark.slow
def test_rpmd_morse_converges_to_the_dvr_with_beads():
    """RPMD (PILE-L, 0.25 fs) samples the exact primitive P-bead path integral of the Morse O-H
    oscillator (grid oracle) for P = 8, 16, 32, and the P-bead values converge to the DVR's."""
    x, v = _morse_grid()
    exact = np.array(thermal_dvr(x, MU_OH, v, KT))
    errors = []
    for P in (8, 16, 32, 64, 256):
        errors.append(np.abs(np.array(path_integral_grid(x, MU_OH, v, KT, P)) / exact - 1))
    errors = np.array(errors)
    assert np.all(np.diff(errors[:, 1:], axis=0) < 0) and np.all(errors[-1] < 2e-3)  # var, <V>: monotone
    for P, seed in ((8, 1), (16, 2), (32, 3)):
        ref = path_integral_grid(x, MU_OH, v, KT, P)
        init, step = ring_polymer(_morse, 0.25 * FS, KT, P, thermostat="pile-l", tau=20 * FS, seed=seed)
        n = 32
        x0 = np.zeros((n, 3))
        x0[:, 0] = RE_OH
        s = init(x0, np.full(n, MU_OH))
        rs, es = [], []
        for i in range(12000):
            s = step(s)
            if i >= 2000 and i % 4 == 0:
                rs.append(s.positions[..., 0].ravel())
                es.append(s.energy.mean() / n)
        rs = np.array(rs)
        m, dm = block_mean(rs.mean(axis=1))
        var, dvar = block_mean(((rs - ref[0]) ** 2).mean(axis=1))
        pot, dpot = block_mean(es)
        assert abs(m - ref[0]) < 3 * dm + 2e-4, (P, m, ref[0])
        assert abs(var - ref[1]) < 3 * dvar + 0.005 * ref[1], (P, var / ref[1])
        assert abs(pot - ref[2]) < 3 * dpot + 0.005 * ref[2], (P, pot / ref[2])


W_SOFT = 1850 * U.INV_CM_TO_HARTREE
KAPPA = 0.5 * M * W_SOFT ** 2  # V_c = KAPPA x y^2 (Hartree / Bohr^3): a 2:1 Fermi resonance
QUARTIC = KAPPA ** 2 / (M * W * W)  # + QUARTIC y^4 keeps V bounded below


def _fermi_pair(x):
    x = np.asarray(x)
    a, b = x[..., 0], x[..., 1]
    e = 0.5 * M * W * W * a * a + 0.5 * M * W_SOFT ** 2 * b * b + KAPPA * a * b * b + QUARTIC * b ** 4
    f = np.zeros_like(x)
    f[..., 0] = -(M * W * W * a + KAPPA * b * b)
    f[..., 1] = -(M * W_SOFT ** 2 * b + 2 * KAPPA * a * b + 4 * QUARTIC * b ** 3)
    return PotentialResult(np.sum(e, axis=-1), f)


def _fermi_pair_exact(nx=14, ny=24):
    """Exact thermal <x^2>, <y^2> of the pair by diagonalisation in harmonic-oscillator bases."""
    def ho(n, w):
        a = np.diag(np.sqrt(np.arange(1, n + 4)), 1)
        q = (a + a.T) / np.sqrt(2 * M * w)
        p2 = -(M * w / 2) * (a.T - a) @ (a.T - a)
        return q[:n, :n], (q @ q)[:n, :n], (p2 / (2 * M))[:n, :n]

    qx, x2, tx = ho(nx, W)
    _, y2, ty = ho(ny, W_SOFT)
    ix, iy = np.eye(nx), np.eye(ny)
    h = (np.kron(tx + 0.5 * M * W * W * x2, iy) + np.kron(ix, ty + 0.5 * M * W_SOFT ** 2 * y2)
         + KAPPA * np.kron(qx, y2) + QUARTIC * np.kron(ix, y2 @ y2))
    e, c = np.linalg.eigh(h)
    w = np.exp(-(e - e[0]) / KT)
    w /= w.sum()
    return [float(np.einsum("in,ij,jn,n->", c, op, c, w)) for op in (np.kron(x2, iy), np.kron(ix, y2))]


@pytest.mark.slow
def test_zero_point_energy_leakage_and_its_cure():
    """Two coupled oscillators, stiff 3700 cm^-1 and soft 1850 cm^-1 (2:1 Fermi resonance, the channel
    through which a stiff mode's zero-point energy flows classically), 64 copies, gamma = 20 ps^-1:
    plain QTB leaks (the stiff mode loses ~15% of <x^2>, the soft one gains ~30% of <y^2>, and
    Delta_FDT is far from zero at both frequencies); adQTB ("simple") drives Delta_FDT towards zero
    and both modes to the exact quantum values (diagonalisation)."""
    x2_q, y2_q = _fermi_pair_exact()
    assert _fermi_pair_exact(18, 32) == pytest.approx([x2_q, y2_q], rel=1e-10)
    out = {}
    for adaptive, steps in ((None, 24000), ("simple", 120000)):
        init, step, p = Q.qtb(_fermi_pair, 0.25 * FS, KT, 0.02 / FS, masses=np.full(64, M),
                              species=np.zeros(64, int), tseg=500 * FS, omegacut=CUT, adaptive=adaptive,
                              agamma=0.3, seed=3)
        s = init(np.zeros((64, 3)), np.full(64, M))
        xs, ys = [], []
        for i in range(steps):
            s = step(s)
            if i >= steps // 2 and i % 4 == 0:
                xs.append(np.mean(s.positions[:, 0] ** 2))
                ys.append(np.mean(s.positions[:, 1] ** 2))
        om = Q.discrete_frequency(p.omega[: p.nom], p.dt)
        fdt = []
        for w in (W, W_SOFT):
            j = int(np.argmin(np.abs(om - w)))
            ts = s.thermostat_state
            fdt.append(ts.dfdt[0, j - 3: j + 4].sum() / ts.mcvv[0, j - 3: j + 4].sum())
        out[adaptive] = (block_mean(xs, 10), block_mean(ys, 10), fdt)
    (x, dx), (y, dy), fdt0 = out[None]
    assert x / x2_q < 0.9 and y / y2_q > 1.2 and fdt0[0] < -0.15 and fdt0[1] > 0.15
    (x, dx), (y, dy), fdt = out["simple"]
    assert abs(fdt[0]) < 0.4 * abs(fdt0[0]) and abs(fdt[1]) < 0.4 * abs(fdt0[1])  # averaged over the whole run
    assert abs(x / x2_q - 1) < 0.02 + 3 * dx / x2_q, x / x2_q
    assert abs(y / y2_q - 1) < 0.03 + 3 * dy / y2_q, y / y2_q
