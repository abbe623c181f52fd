"""Quantum thermal bath (QTB) and adaptive QTB (adQTB): nuclear quantum effects in one classical trajectory.

The QTB (H. Dammak, Y. Chalopin, M. Laroche, M. Hayoun, J.-J. Greffet, Phys. Rev. Lett. 103, 190601
(2009)) is Langevin dynamics whose random force has the quantum power spectrum

    m dv/dt = F(x) - m gamma v + R(t),    int <R(0) R(t)> e^{i w t} dt = 2 m gamma theta(w, T),
    theta(w, T) = (hbar w / 2) coth(hbar w / 2 kT)                     (-> kT as hbar -> 0),

so that every harmonic mode of frequency w gets the quantum energy theta(w, T) instead of kT. The
adaptive QTB (E. Mangaud, S. Huppert, T. Ple, P. Depondt, S. Bonella, F. Finocchi, J. Chem. Theory
Comput. 15, 2863 (2019)) measures, per species s and frequency w, the quantum fluctuation-dissipation
residual (gamma_r dimensionless, C the spectra of the velocity v and the random force R)

    Delta_FDT(w) = m gamma_r(w) C_vv(w) - Re C_vR(w) / gamma,

which vanishes for harmonic systems and is the signature of zero-point-energy leakage otherwise, and
drives it to zero by scaling the noise spectrum to 2 m gamma gamma_r(w) theta(w, T). Deconvolution
corrections for the broadening by the friction (T. Ple, N. Mauger, O. Adjoua, T. Jaffrelot Inizan,
L. Lagardere, S. Huppert, J.-P. Piquemal, J. Phys. Chem. Lett. 12, 8285 (2021) [Mauger et al.];
FeNNol ``md/thermostats.py``) make harmonic potential energies exact at any gamma (corr_pot, applied
to the noise) and correct the kinetic-energy estimator (corr_kin).

Discretisation (all of it is checked against the exact stationary statistics of the discrete scheme
in the tests). The step is rung's B A O A B (:func:`rung.md.integrators.langevin`) with the O step

    p' = a1 p + dp_n,     a1 = exp(-gamma dt),     dp_n = dt R_n = sqrt(m kT (1 - a1^2)) eta_n,

where eta_n is unit-variance noise with the (per-sample) power spectrum

    g(w) = [theta(W(w), T) / kT] corr_pot(w) f(w) gamma_r(w),    W(w) = (2 / dt) sin(w dt / 2),
    f(w) = 1 / (1 + exp((w - w_cut) / w_smear)),  w_smear = w_cut / 50   (a smooth Fermi cut-off).

The spectral correction for the discrete splitting: a harmonic mode of frequency W oscillates at w
under B A O A B (sin(w dt/2) = W dt/2, as velocity Verlet), so the noise at w carries theta(W);
with the O step's exact white-noise variance this makes a harmonic oscillator's <x^2> tend to the
quantum value as gamma -> 0 at any stable dt (no O(dt^2) frequency error), and g = 1 (hbar -> 0, no
cut-off) is exactly rung's BAOAB Langevin. The velocity of the spectra is the mid-O velocity
v_n = (p + p') / 2m; with it and gamma_eff = (1 - a1) / dt the discrete identity
Re C_vR = m gamma_eff C_vv holds exactly for harmonic B A O A B at every frequency, so
Delta_FDT (with gamma_eff for gamma) vanishes there and gamma_r stays 1.

Noise segments: the run is cut into segments of n_seg steps (T_seg = n_seg dt). The noise of
segment j is the middle third of the circular filtering (FFT, multiply by sqrt(g), inverse FFT over
3 n_seg samples) of the white noise of segments j-1, j, j+1, so consecutive segments join without
discontinuity as long as the filter is shorter than T_seg (checked). The white noise of segment j is
drawn from SeedSequence([seed, j + 1, QTB_STREAM]): the noise is a pure function of (seed, segment,
gamma_r), so a checkpoint needs no generator state beyond the segment index and gamma_r (the noise
of the current segment is regenerated on restart, bit for bit).

Spectra per segment (k on the 3 n_seg grid, w_k = 2 pi k / (3 n_seg dt); averaged over the atoms of
a species and the three directions; zero padding):

    m C_vv(w_k) = m (dt / n_seg) |sum_n v_n e^{i w_k n dt}|^2,
    C_vR(w_k) / gamma_eff = (1 / gamma_eff) (dt / n_seg) Re[V(w_k) conj(R(w_k))]     (Hartree x a.u. time).

adQTB updates, once per segment after ``skip_segments`` (floored at gammar_min; <.> a running or
exponential average over segments, eps = 1e-3 x the species' largest m C_vv so that empty
frequencies stay put):

- "simple": gamma_r <- gamma_r - agamma Delta_FDT / max(<m C_vv>, eps). Since
  Delta_FDT / m C_vv = gamma_r - Re C_vR / (gamma_eff m C_vv), this moves gamma_r by the fraction
  agamma (dimensionless, per segment) towards the value that satisfies the FDT in the last segment.
- "ratio": gamma_r = (<Re C_vR / gamma_eff> + eps) / (<m C_vv> + eps), exponential averages over
  tau_ad (after FeNNol's "ratio" update, with one averaging time for both spectra; same fixed point).

Deconvolution (after Mauger et al., who use the continuous Lorentzian responses; here the exact
responses of the discrete scheme, :func:`discrete_kernels`, so that harmonic systems come out exact
at any gamma and dt): with k_x[i, j] the share of the potential energy of the harmonic mode j that
comes from noise at w_i, corr_pot = s / s0 where s >= 0 solves k_x^T s = s0 = theta f / kT below the
cut-off (Richardson-Lucy iterations); the spectra's mid-O kinetic energy k_mid deconvolves the
measured m C_vv into mode weights d_j, and corr_kin = sum_j d_j E'_j / sum_j d_j theta_j / kT with
E'_j = sum_i k_post[i, j] g0_i the post-O kinetic energy of mode j under the noise (g0 = g without
gamma_r). The quantum kinetic-energy estimator is the post-O kinetic energy divided by corr_kin.

Atomic units throughout: dt, tseg in a.u. of time; gamma in 1 / a.u. of time; kT, omega, omegacut in
Hartree (hbar = 1, so an angular frequency in a.u. is an energy in Hartree).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable

import numpy as np

from rung.md.integrators import MDState, _baoab, _make_init

QTB_STREAM = 0x517B  # third word of the white-noise seeds, so QTB streams never meet the per-step streams
SMEAR = 1.0 / 50.0  # width of the Fermi cut-off edge, in units of the cut-off frequency
LEAK_TOLERANCE = 1e-4  # largest fraction of the noise filter's energy allowed beyond one segment
MIN_CUT_PERIODS = 10  # a segment spans at least this many periods of the cut-off frequency
POT_ITERATIONS, KIN_ITERATIONS = 20, 50  # Richardson-Lucy iterations (few: they regularise)
ADAPTATIONS = ("simple", "ratio")
REGULARISATION = 1e-3  # adQTB: spectra below this fraction of their maximum barely move gamma_r
_COLUMNS = 1024  # noise and spectra are filtered in chunks of this many (atom, direction) columns


# --- spectra and kernels ------------------------------------------------------------------------------

def theta(omega, kT: float, hbar: float = 1.0) -> np.ndarray:
    """Mean energy of a quantum harmonic oscillator, (hbar w / 2) coth(hbar w / 2 kT), Hartree; kT at w = 0.

    omega : (...,) float64, Hartree (angular frequency, hbar = 1); hbar scales Planck's constant (-> 0: kT).
    """
    w = np.abs(np.asarray(omega, dtype=np.float64))
    u = 0.5 * hbar * w / kT
    out = np.full(w.shape, float(kT))
    big = u > 1e-8  # below, u coth u = 1 + u^2/3 is 1 to double precision
    out[big] = kT * u[big] / np.tanh(u[big])
    return out


def fermi_cutoff(omega, omegacut: float) -> np.ndarray:
    """Smooth cut-off 1 / (1 + exp((w - w_cut) / (w_cut / 50))); 1 everywhere when w_cut is infinite."""
    w = np.asarray(omega, dtype=np.float64)
    if not np.isfinite(omegacut):
        return np.ones_like(w)
    z = np.clip((w - omegacut) / (SMEAR * omegacut), -700.0, 700.0)
    return 1.0 / (1.0 + np.exp(z))


def discrete_frequency(omega, dt: float) -> np.ndarray:
    """W(w) = (2/dt) sin(w dt / 2): the frequency of the harmonic mode that B A O A B runs at w."""
    return (2.0 / dt) * np.sin(0.5 * np.asarray(omega, dtype=np.float64) * dt)


def discrete_kernels(omega, nom: int, dt: float, gamma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact responses of harmonic B A O A B to unit white noise: (k_x, k_mid, k_post), each (nfreq, nom).

    Column j < nom is the mode that the discrete scheme runs at w_j (physical frequency W(w_j)); row i
    is the spectral weight at w_i (bins 0 < w_i < pi/dt stand for +-w_i) of, per unit kT: its
    potential energy m W^2 x^2 (k_x, columns sum to 1: BAOAB samples x exactly), the kinetic energy
    m v^2 of the mid-O velocity of the spectra (k_mid, columns sum to (1 + a1) / 2) and the post-O
    one p'^2 / m (k_post, sum 1). From the transfer function of z_{n+1} = M z_n + b eta_n,
    M = B A(dt/2) O A(dt/2) B, b = B A (0, 1); the column sums are set to their exact values (this
    removes the quadrature error of the grid).

    omega : (nfreq,) the rfft grid 2 pi k / (N dt) up to pi/dt, Hartree; dt : a.u. of time; gamma : 1 / a.u. of time.
    """
    om = np.asarray(omega, dtype=np.float64)
    a1 = np.exp(-gamma * dt)
    w0 = discrete_frequency(om[:nom], dt)  # (nom,) physical frequency of each column's mode
    h = 0.5 * dt  # unit mass: the kernels are per unit kT and do not depend on m
    c = -w0 * w0 * h  # B = [[1, 0], [c, 1]], A = [[1, h], [0, 1]], O = diag(1, a1)
    # A B = [[1 + h c, h], [c, 1]], B A = [[1, h], [c, 1 + c h]], M = (B A) O (A B)
    m00, m01 = 1.0 + h * c * (1.0 + a1), h * (1.0 + a1)
    m10, m11 = c * (1.0 + h * c) * (1.0 + a1), c * h + (1.0 + c * h) * a1
    b0, b1 = h, 1.0 + c * h
    z = np.exp(1j * om * dt)[:, None]
    free = w0 == 0.0  # the free particle (column 0): x diffuses, p is an Ornstein-Uhlenbeck process
    with np.errstate(divide="ignore", invalid="ignore"):
        det = (z - m00) * (z - m11) - m01 * m10
        x = np.where(free, 0.0, ((z - m11) * b0 + m01 * b1) / det)
        p = np.where(free, b1 / (z - m11), (m10 * b0 + (z - m00) * b1) / det)
    pre = c * x + p  # the momentum before the O step: (A B z)_p
    post = a1 * pre + 1.0
    edge = (om == 0.0) | np.isclose(om * dt, np.pi, rtol=0.0, atol=1e-12)
    weight = np.where(edge, 1.0, 2.0)[:, None]
    kx = weight * np.abs(x) ** 2 * (w0 * w0)
    kx[:, 0] = 0.0
    kx[0, 0] = 1.0  # the free particle has no potential energy: a delta, never used
    kmid = weight * np.abs(0.5 * (pre + post)) ** 2
    kpost = weight * np.abs(post) ** 2
    return kx / kx.sum(axis=0), kmid * (0.5 * (1.0 + a1) / kmid.sum(axis=0)), kpost / kpost.sum(axis=0)


def deconvolute(kernel: np.ndarray, target: np.ndarray, iterations: int, start=None) -> np.ndarray:
    """Non-negative solution of ``kernel @ s = target`` by Richardson-Lucy iterations.

    s <- s * K^T(target / (K s)) / K^T 1, from ``start`` (default: target). Positivity is kept, and
    for a kernel whose columns sum to 1 so is the total (sum K s = sum target at every iteration);
    a limited number of iterations regularises the ill-posed inversion. kernel : (m, n); target : (m,) >= 0.
    """
    k = np.asarray(kernel, dtype=np.float64)
    y = np.asarray(target, dtype=np.float64)
    s = np.array(y if start is None else start, dtype=np.float64)
    norm = k.sum(axis=0)
    norm = np.where(norm > 0.0, norm, 1.0)
    for _ in range(iterations):
        ks = k @ s
        s = s * (k.T @ np.where(ks > 0.0, y / np.where(ks > 0.0, ks, 1.0), 0.0)) / norm
    return s


def potential_correction(kx: np.ndarray, target: np.ndarray, tail, iterations: int = POT_ITERATIONS) -> np.ndarray:
    """corr_pot (nom,): the noise factor s / target below the cut-off, where s >= 0 solves
    k_x[:nom]^T s + k_x[nom:]^T tail = target, so that the potential energy of every harmonic mode
    is its quantum value at the run's friction and step.

    kx : (nfreq, nom) from :func:`discrete_kernels`; target : (nom,) theta(W) f / kT; tail : (nfreq - nom,)
    the (uncorrected) noise factor above the cut-off.
    """
    nom = kx.shape[1]
    t = np.asarray(target, dtype=np.float64)
    rest = np.maximum(t - kx[nom:].T @ np.asarray(tail, dtype=np.float64), 0.0)
    s = deconvolute(kx[:nom].T, rest, iterations, start=t)
    return np.where(t > 0.0, s / np.where(t > 0.0, t, 1.0), 1.0)


def kinetic_correction(mcvv, kT: float, omega, noise, kmid: np.ndarray, post_energy, theta_over_kT,
                       iterations: int = KIN_ITERATIONS) -> float:
    """corr_kin: expected kinetic energy of the post-O momenta over the quantum one of the same modes.

    The measured spectrum (divided by the noise) is deconvolved with the mid-O kernel into mode
    weights d_j; corr_kin = sum_j d_j E_post,j / sum_j d_j theta_j / kT, with E_post,j the post-O
    kinetic energy (per kT/2) of mode j under the noise. Returns 1.0 when the reconvolution misses the
    measured spectrum by more than 5% (the correction is then not trusted).

    mcvv : (nom,) measured m C_vv per degree of freedom, Hartree x a.u. time; kT : Hartree;
    omega : (nom,) grid, Hartree; noise : (nom,) the noise factor g0 (without gamma_r);
    kmid : (nom, nom), the rows below the cut-off of :func:`discrete_kernels`'s k_mid; post_energy :
    (nom,) k_post^T g0; theta_over_kT : (nom,).
    """
    om = np.asarray(omega, dtype=np.float64)
    weight = np.where(om == 0.0, 1.0, 2.0)
    s = weight * np.asarray(mcvv, dtype=np.float64) * (om[1] - om[0]) / (2 * np.pi) / (kT * np.asarray(noise))
    if not np.all(np.isfinite(s)) or s.sum() <= 0.0:
        return 1.0
    d = deconvolute(kmid, s, iterations)
    if abs((kmid @ d).sum() / s.sum() - 1.0) > 0.05:
        return 1.0
    return float(np.sum(d * post_energy) / np.sum(d * theta_over_kT))


# --- parameters and state -----------------------------------------------------------------------------

@dataclass(frozen=True)
class QTBParams:
    """Everything fixed for a QTB run (atomic units; see the module docstring for the symbols).

    omega : (nfreq,) the rfft grid of 3 n_seg samples, Hartree; nom bins (w < w_cut) are adapted
    spectrum : (nfreq,) g(w) without gamma_r; theta_over_kT, corr_pot : (nom,)
    sigma : (n_atoms, 1) sqrt(m kT (1 - a1^2)), the white-noise momentum kick; masses : (n_atoms,)
    species : (n_atoms,) index into species_labels; counts : (nspecies,) atoms per species
    """

    dt: float
    kT: float
    gamma: float
    nseg: int
    omegacut: float
    hbar: float
    seed: int
    a1: float
    omega: np.ndarray
    nom: int
    spectrum: np.ndarray
    theta_over_kT: np.ndarray
    corr_pot: np.ndarray
    masses: np.ndarray
    sigma: np.ndarray
    species: np.ndarray
    species_labels: tuple
    counts: np.ndarray
    adaptive: str | None
    agamma: float
    tau_ad: float
    skip_segments: int
    gammar_min: float
    deconvolution: bool
    kin_kernel: np.ndarray | None = None  # (nom, nom) k_mid below the cut-off, built when deconvolution is on
    post_energy: np.ndarray | None = None  # (nom,) post-O kinetic energy per kT/2 of each mode under g0

    @property
    def gamma_eff(self) -> float:
        """(1 - a1) / dt: the friction of the discrete O step in the exact FDT identity."""
        return (1.0 - self.a1) / self.dt

    @property
    def nspecies(self) -> int:
        return len(self.species_labels)


def check_parameters(dt: float, kT: float, gamma: float, tseg: float, omegacut: float, *, hbar: float = 1.0) -> int:
    """Validate the QTB parameters (atomic units); ValueError naming the problem. Returns n_seg.

    Refused: a non-positive friction, a cut-off at or beyond the Nyquist frequency pi / dt, a friction
    above half the cut-off, a segment shorter than MIN_CUT_PERIODS periods of the cut-off (the
    fastest mode the bath drives) or than the noise filter (more than LEAK_TOLERANCE of its energy
    beyond one segment would wrap around and make segments join discontinuously).
    """
    from rung.core import units as U

    fs = U.FS_TO_AU_TIME
    if not (np.isfinite(gamma) and gamma > 0):
        raise ValueError(f"the QTB friction must be positive, got gamma = {gamma * fs:.6g} fs^-1")
    if not (dt > 0 and kT > 0 and hbar >= 0):
        raise ValueError("the QTB needs dt > 0, kT > 0 and hbar >= 0")
    nyquist = np.pi / dt
    if not omegacut > 0:
        raise ValueError(f"the QTB cut-off frequency must be positive, got {omegacut * U.HARTREE_TO_INV_CM:.6g} cm^-1")
    if np.isfinite(omegacut) and omegacut >= nyquist:
        raise ValueError(f"omegacut_cm1 = {omegacut * U.HARTREE_TO_INV_CM:.6g} is at or beyond the Nyquist frequency "
                         f"pi/dt = {nyquist * U.HARTREE_TO_INV_CM:.6g} cm^-1 of dt = {dt / fs:.6g} fs; "
                         "lower the cut-off or the time step")
    if np.isfinite(omegacut) and gamma >= 0.5 * omegacut:
        raise ValueError(f"the QTB friction {gamma * fs:.6g} fs^-1 must be below half the cut-off frequency")
    nseg = int(round(tseg / dt))
    if np.isfinite(omegacut) and nseg * dt < MIN_CUT_PERIODS * 2 * np.pi / omegacut:
        need = np.ceil(MIN_CUT_PERIODS * 2 * np.pi / omegacut / dt) * dt
        raise ValueError(f"tseg_fs = {tseg / fs:.6g} is too short: a segment must span at least {MIN_CUT_PERIODS} "
                         f"periods of the fastest mode the bath drives (the cut-off, "
                         f"{omegacut * U.HARTREE_TO_INV_CM:.6g} cm^-1), tseg_fs >= {need / fs:.10g}")
    leak = filter_leakage(dt, kT, nseg, omegacut, hbar)
    if leak > LEAK_TOLERANCE:
        longer = max(nseg, 1)
        while filter_leakage(dt, kT, longer, omegacut, hbar) > LEAK_TOLERANCE and longer < 2**22:
            longer *= 2
        raise ValueError(f"tseg_fs = {tseg / fs:.6g} is too short: {100 * leak:.2g}% of the quantum noise filter "
                         f"at {kT / U.BOLTZMANN_HARTREE_PER_K:.4g} K reaches beyond one segment, so segments "
                         f"would join discontinuously; use tseg_fs >= {longer * dt / fs:.10g}")
    return nseg


def filter_leakage(dt: float, kT: float, nseg: int, omegacut: float, hbar: float = 1.0) -> float:
    """Fraction of the energy of the noise filter sqrt(g) (time domain) beyond one segment, |t| > T_seg."""
    if nseg < 1:
        return 1.0
    n = 3 * nseg
    omega = 2 * np.pi * np.fft.rfftfreq(n, d=dt)
    amp = np.sqrt(theta(discrete_frequency(omega, dt), kT, hbar) / kT * fermi_cutoff(omega, omegacut))
    k = np.fft.irfft(amp, n)  # the filter, centred at t = 0 (circular)
    t = np.minimum(np.arange(n), n - np.arange(n))
    e = k * k
    return float(e[t > nseg].sum() / e.sum())


def qtb_parameters(dt: float, kT: float, gamma: float, *, masses, species, tseg: float, omegacut: float = np.inf,
                   adaptive: str | None = None, agamma: float = 0.1, tau_ad: float | None = None,
                   skip_segments: int = 1, gammar_min: float = 0.1, deconvolution: bool = True,
                   hbar: float = 1.0, seed: int = 0) -> QTBParams:
    """Build and validate the fixed QTB parameters (atomic units); ValueError names a bad one.

    masses : (n_atoms,) electron masses; species : (n_atoms,) labels (atoms with equal labels share
    gamma_r and spectra). adaptive : None (QTB), "simple" or "ratio" (adQTB). tau_ad : averaging time
    of the "ratio" spectra (default 10 segments). hbar : Planck's constant scale (0: classical).
    """
    nseg = check_parameters(dt, kT, gamma, tseg, omegacut, hbar=hbar)
    if adaptive is not None and adaptive not in ADAPTATIONS:
        raise ValueError(f"adQTB adaptation must be one of {ADAPTATIONS}, got {adaptive!r}")
    if adaptive is not None and not agamma > 0:
        raise ValueError(f"the adQTB gain agamma must be positive, got {agamma}")
    if not 0 <= gammar_min < 1:
        raise ValueError(f"gammar_min must be in [0, 1), got {gammar_min}")
    if not (isinstance(skip_segments, (int, np.integer)) and skip_segments >= 0):
        raise ValueError(f"skip_segments must be a non-negative integer, got {skip_segments!r}")
    tau_ad = 10 * nseg * dt if tau_ad is None else float(tau_ad)
    if not tau_ad > 0:
        raise ValueError(f"tau_ad must be positive, got {tau_ad}")
    m = np.asarray(masses, dtype=np.float64)
    labels, index = np.unique(np.asarray(species), return_inverse=True)
    if index.shape != m.shape:
        raise ValueError(f"{index.size} species labels for {m.size} masses")
    a1 = float(np.exp(-gamma * dt))
    omega = 2 * np.pi * np.fft.rfftfreq(3 * nseg, d=dt)
    nom = int(np.count_nonzero(omega < omegacut))
    th = theta(discrete_frequency(omega, dt), kT, hbar) / kT
    cut = fermi_cutoff(omega, omegacut)
    corr, kmid, epost = np.ones(nom), None, None
    spectrum = th * cut
    if deconvolution and hbar > 0:
        kx, kmid, kpost = discrete_kernels(omega, nom, dt, gamma)
        corr = potential_correction(kx, spectrum[:nom], spectrum[nom:])
        spectrum[:nom] *= corr
        epost = kpost.T @ spectrum
        kmid = np.ascontiguousarray(kmid[:nom])
    else:
        spectrum[:nom] *= corr
    return QTBParams(dt=float(dt), kT=float(kT), gamma=float(gamma), nseg=nseg, omegacut=float(omegacut),
                     hbar=float(hbar), seed=int(seed), a1=a1, omega=omega, nom=nom, spectrum=spectrum,
                     theta_over_kT=th[:nom], corr_pot=corr, masses=m,
                     sigma=np.sqrt(m * kT * (1.0 - a1 * a1))[:, None], species=index.astype(np.int64),
                     species_labels=tuple(labels.tolist()), counts=np.bincount(index, minlength=labels.size),
                     adaptive=adaptive, agamma=float(agamma), tau_ad=tau_ad, skip_segments=int(skip_segments),
                     gammar_min=float(gammar_min), deconvolution=bool(deconvolution), kin_kernel=kmid,
                     post_energy=epost)


_SPECTRA = ("mcvv", "cvr", "dfdt", "ema_mcvv", "ema_cvr")


@dataclass(frozen=True)
class QTBState:
    """The thermostat part of :class:`~rung.md.integrators.MDState` for QTB/adQTB runs.

    Attributes
    ----------
    segment : int, index j of the current noise segment
    istep : int, steps of segment j done
    gammar : (nspecies, nom) float64, dimensionless adQTB noise factor (ones for the QTB)
    nsample : int, segments in the averages below; nema : int, segments in the "ratio" averages
    mcvv, cvr, dfdt : (nspecies, nom) float64, Hartree x a.u. time: running means over the sampled
        segments of m C_vv, Re C_vR / gamma_eff and Delta_FDT
    ema_mcvv, ema_cvr : (nspecies, nom) float64, exponential averages for the "ratio" update (not
        bias-corrected)
    corr_kin : float, the kinetic deconvolution factor (1 until spectra exist)
    kinetic : float, Hartree, kinetic energy of the post-O momenta of the last step
    velocity : (nseg, n_atoms, 3) float64, Bohr / a.u. time, mid-O velocities of this segment; the
        step writes row ``istep`` in place (every row is rewritten before the segment end reads it, so
        stepping an older state again gives the same result)
    kicks : (nseg, n_atoms, 3) float64 or None, momentum kicks dt R_n of this segment (None after a
        restart: regenerated from (seed, segment, gammar))
    """

    segment: int
    istep: int
    gammar: np.ndarray
    nsample: int
    nema: int
    mcvv: np.ndarray
    cvr: np.ndarray
    dfdt: np.ndarray
    ema_mcvv: np.ndarray
    ema_cvr: np.ndarray
    corr_kin: float
    kinetic: float
    velocity: np.ndarray
    kicks: np.ndarray | None = None

    def to_hdf5(self, group) -> None:
        """Store in an h5py group (the kicks are not stored: they are regenerated)."""
        group.attrs["kind"] = "qtb"
        for k in ("segment", "istep", "nsample", "nema", "corr_kin", "kinetic"):
            group.attrs[k] = getattr(self, k)
        for k in ("gammar",) + _SPECTRA:
            group.create_dataset(k, data=getattr(self, k))
        group.create_dataset("velocity", data=self.velocity[: self.istep])
        group.attrs["nseg"] = self.velocity.shape[0]

    @classmethod
    def from_hdf5(cls, group) -> "QTBState":
        v = np.array(group["velocity"])
        velocity = np.zeros((int(group.attrs["nseg"]),) + v.shape[1:])
        velocity[: v.shape[0]] = v
        arrays = {k: np.array(group[k]) for k in ("gammar",) + _SPECTRA}
        return cls(segment=int(group.attrs["segment"]), istep=int(group.attrs["istep"]),
                   nsample=int(group.attrs["nsample"]), nema=int(group.attrs["nema"]),
                   corr_kin=float(group.attrs["corr_kin"]), kinetic=float(group.attrs["kinetic"]),
                   velocity=velocity, kicks=None, **arrays)


def initial_state(params: QTBParams, gammar=None) -> QTBState:
    """A fresh QTB state at segment 0 (gammar: (nspecies, nom) to start from, default ones)."""
    shape = (params.nspecies, params.nom)
    g = np.ones(shape) if gammar is None else np.array(gammar, dtype=np.float64)
    if g.shape != shape:
        raise ValueError(f"gamma_r has shape {g.shape}, this run needs {shape} (species x frequencies)")
    z = np.zeros(shape)
    s = QTBState(segment=0, istep=0, gammar=g, nsample=0, nema=0, mcvv=z, cvr=z, dfdt=z, ema_mcvv=z, ema_cvr=z,
                 corr_kin=1.0, kinetic=0.0, velocity=np.zeros((params.nseg, params.masses.size, 3)))
    return replace(s, kicks=segment_kicks(params, 0, g))


# --- noise and spectra ---------------------------------------------------------------------------------

def white_block(seed: int, block: int, shape) -> np.ndarray:
    """Unit white noise of segment ``block`` (>= -1): SFC64 seeded by SeedSequence([seed, block + 1, QTB_STREAM])."""
    ss = np.random.SeedSequence([int(seed), int(block) + 1, QTB_STREAM])
    return np.random.Generator(np.random.SFC64(ss)).standard_normal(shape)


def segment_kicks(params: QTBParams, segment: int, gammar) -> np.ndarray:
    """Momentum kicks dt R_n (nseg, n_atoms, 3) of ``segment``: middle third of the filtered white
    noise of segments segment-1 .. segment+1, electron mass x Bohr / a.u. time."""
    nseg, n = params.nseg, params.masses.size
    white = np.concatenate([white_block(params.seed, b, (nseg, n, 3)) for b in (segment - 1, segment, segment + 1)])
    white = white.reshape(3 * nseg, 3 * n)  # column = (atom, direction)
    g = np.repeat(params.spectrum[:, None], params.nspecies, axis=1)  # (nfreq, nspecies)
    g[: params.nom] *= np.asarray(gammar).T
    amp = np.sqrt(g)[:, np.repeat(params.species, 3)]  # (nfreq, 3n)
    out = np.empty((nseg, 3 * n))
    for c in range(0, 3 * n, _COLUMNS):
        sl = slice(c, c + _COLUMNS)
        spec = np.fft.rfft(white[:, sl], axis=0) * amp[:, sl]
        out[:, sl] = np.fft.irfft(spec, 3 * nseg, axis=0)[nseg: 2 * nseg]
    return out.reshape(nseg, n, 3) * params.sigma


def segment_spectra(params: QTBParams, velocity, kicks) -> tuple[np.ndarray, np.ndarray]:
    """(m C_vv, Re C_vR / gamma_eff) of one segment, each (nspecies, nom), Hartree x a.u. time.

    velocity : (nseg, n_atoms, 3) mid-O velocities; kicks : (nseg, n_atoms, 3) momentum kicks dt R_n.
    Averaged over the atoms of each species and the three directions.
    """
    nseg, n, nom = params.nseg, params.masses.size, params.nom
    v = np.asarray(velocity).reshape(nseg, 3 * n)
    dp = np.asarray(kicks).reshape(nseg, 3 * n)
    m = np.repeat(params.masses, 3)
    col_species = np.repeat(params.species, 3)
    mcvv = np.zeros((params.nspecies, nom))
    cvr = np.zeros((params.nspecies, nom))
    for c in range(0, 3 * n, _COLUMNS):
        sl = slice(c, c + _COLUMNS)
        fv = np.fft.rfft(v[:, sl], 3 * nseg, axis=0)[:nom]
        fr = np.fft.rfft(dp[:, sl], 3 * nseg, axis=0)[:nom]
        a = (fv.real ** 2 + fv.imag ** 2) * m[sl]  # (nom, cols)
        b = fv.real * fr.real + fv.imag * fr.imag
        for s in range(params.nspecies):
            mask = col_species[sl] == s
            if mask.any():
                mcvv[s] += a[:, mask].sum(axis=1)
                cvr[s] += b[:, mask].sum(axis=1)
    dof = 3.0 * params.counts[:, None]
    mcvv *= params.dt / nseg / dof
    cvr *= 1.0 / (nseg * params.gamma_eff) / dof  # (dt / nseg) Re[V conj(dp / dt)] / gamma_eff
    return mcvv, cvr


def _regularised(mcvv):
    """m C_vv (nspecies, nom) floored at REGULARISATION x its maximum per species (empty bins adapt slowly)."""
    floor = REGULARISATION * mcvv.max(axis=1, keepdims=True)
    return np.maximum(mcvv, np.maximum(floor, np.finfo(float).tiny))


def end_of_segment(params: QTBParams, ts: QTBState) -> QTBState:
    """Spectra of the finished segment, averages, adQTB update, corr_kin, the next segment's noise."""
    mcvv, cvr = segment_spectra(params, ts.velocity, ts.kicks)
    dfdt = ts.gammar * mcvv - cvr
    sampled = ts.segment >= params.skip_segments
    new = {}
    if sampled:
        n = ts.nsample + 1
        new.update(nsample=n, mcvv=ts.mcvv + (mcvv - ts.mcvv) / n, cvr=ts.cvr + (cvr - ts.cvr) / n,
                   dfdt=ts.dfdt + (dfdt - ts.dfdt) / n)
    gammar = ts.gammar
    if sampled and params.adaptive == "simple":
        gammar = np.maximum(params.gammar_min, ts.gammar - params.agamma * dfdt / _regularised(new["mcvv"]))
    elif sampled and params.adaptive == "ratio":
        b = np.exp(-params.nseg * params.dt / params.tau_ad)
        ema_mcvv, ema_cvr = b * ts.ema_mcvv + (1 - b) * mcvv, b * ts.ema_cvr + (1 - b) * cvr
        eps = REGULARISATION * ema_mcvv.max(axis=1, keepdims=True)  # -> 1 where the spectrum is empty
        gammar = np.maximum(params.gammar_min, (ema_cvr + eps) / (ema_mcvv + eps))  # EMA bias factors cancel
        new.update(ema_mcvv=ema_mcvv, ema_cvr=ema_cvr, nema=ts.nema + 1)
    corr_kin = ts.corr_kin
    if sampled and params.deconvolution and params.hbar > 0:
        total = (new["mcvv"] * params.counts[:, None]).sum(axis=0) / params.counts.sum()
        corr_kin = kinetic_correction(total, params.kT, params.omega[: params.nom], params.spectrum[: params.nom],
                                      params.kin_kernel, params.post_energy, params.theta_over_kT)
    seg = ts.segment + 1
    return replace(ts, segment=seg, istep=0, gammar=gammar, corr_kin=corr_kin,
                   kicks=segment_kicks(params, seg, gammar), **new)


def quantum_kinetic(ts: QTBState) -> float:
    """The QTB estimate of the quantum kinetic energy (Hartree) of the last step: K(p') / corr_kin."""
    return ts.kinetic / ts.corr_kin


# --- integrator -----------------------------------------------------------------------------------------

def qtb(force_fn: Callable, dt: float, kT: float, gamma: float, *, masses, species, tseg: float,
        omegacut: float = np.inf, adaptive: str | None = None, agamma: float = 0.1, tau_ad: float | None = None,
        skip_segments: int = 1, gammar_min: float = 0.1, deconvolution: bool = True, hbar: float = 1.0,
        seed: int = 0, beads: bool = False, gammar=None):
    """QTB (``adaptive=None``) or adQTB ("simple" / "ratio") B A O A B dynamics; see the module docstring.

    Returns ``init_fn, step_fn, params``; states carry a :class:`QTBState` in ``thermostat_state``.
    force_fn : (n, 3) (or (1, n, 3) with ``beads=True``, the driver's bead arrays) Bohr -> PotentialResult
    dt, tseg : a.u. of time; kT, omegacut : Hartree; gamma : 1 / a.u. of time
    masses : (n,) electron masses (the init_fn's masses must be these); species : (n,) labels
    gammar : (nspecies, nom) adQTB factors to start from (e.g. a converged earlier run)
    """
    params = qtb_parameters(dt, kT, gamma, masses=masses, species=species, tseg=tseg, omegacut=omegacut,
                            adaptive=adaptive, agamma=agamma, tau_ad=tau_ad, skip_segments=skip_segments,
                            gammar_min=gammar_min, deconvolution=deconvolution, hbar=hbar, seed=seed)
    base_init = _make_init(force_fn, kT, seed, 1 if beads else None)
    a1 = params.a1
    half_inv_m = 0.5 * (1.0 / params.masses[:, None])

    def init_fn(positions, masses, momenta=None) -> MDState:
        s = base_init(positions, masses, momenta)
        if not np.array_equal(s.masses, params.masses):
            raise ValueError("the masses differ from those the QTB parameters were built with")
        return replace(s, thermostat_state=initial_state(params, gammar))

    def coloured_o(p, inv_m, state):
        """p' = a1 p + dp_n with this step's coloured kick; records the mid-O velocity of the spectra."""
        ts = state.thermostat_state
        p0 = p.reshape(-1, 3)
        p1 = a1 * p0 + ts.kicks[ts.istep]
        ts.velocity[ts.istep] = (p0 + p1) * half_inv_m
        return p1.reshape(p.shape)

    def advance(ts: QTBState, k_post: float) -> QTBState:
        ts = replace(ts, istep=ts.istep + 1, kinetic=k_post)
        return end_of_segment(params, ts) if ts.istep == params.nseg else ts

    baoab = _baoab(force_fn, dt, coloured_o, advance)

    def step_fn(state: MDState) -> MDState:
        ts = state.thermostat_state
        if not isinstance(ts, QTBState):
            raise ValueError("this state carries no QTB thermostat state (made by another integrator?)")
        if ts.kicks is None:  # after a restart: the noise of this segment again, from (seed, segment, gamma_r)
            state = replace(state, thermostat_state=replace(ts, kicks=segment_kicks(params, ts.segment, ts.gammar)))
        return baoab(state)

    return init_fn, step_fn, params


# --- input file and outputs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class QTBConfig:
    """The ``[qtb]`` table of the input file (units in the names; see the package README).

    gamma_fs : friction gamma in fs^-1 (default: 1 / tau_fs)
    tseg_fs : noise segment length, fs
    omegacut_cm1 : cut-off frequency, cm^-1 (default 15000, or 3/4 of the Nyquist frequency if lower)
    adaptation : "simple" | "ratio" (adqtb only); agamma : gain of "simple" (dimensionless, per segment)
    tau_ad_fs : averaging time of "ratio" (default 10 segments); skip_segments : segments before
    spectra are averaged and gamma_r adapted; gammar_min : floor of gamma_r
    deconvolution : corr_pot on the noise and corr_kin on the kinetic estimator (Mauger et al.)
    gammar_from : a ``<prefix>.qtb.h5`` of an earlier run of the same system to start gamma_r from
    """

    gamma_fs: float | None = None
    tseg_fs: float = 1000.0
    omegacut_cm1: float | None = None
    adaptation: str = "simple"
    agamma: float = 0.1
    tau_ad_fs: float | None = None
    skip_segments: int = 1
    gammar_min: float = 0.1
    deconvolution: bool = True
    gammar_from: str | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> "QTBConfig":
        if data is not None and not isinstance(data, dict):
            raise ValueError(f"qtb must be a table ([qtb] with keys), got {data!r}")
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown [qtb] key(s) {sorted(unknown)}; known: {sorted(known)}")
        for k in ("gamma_fs", "tseg_fs", "omegacut_cm1", "agamma", "tau_ad_fs", "gammar_min"):
            v = data.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f"[qtb] {k} must be a number, got {v!r}")
        return cls(**data)


NYQUIST_FRACTION = 0.75  # default cut-off when 15000 cm^-1 is beyond the Nyquist frequency
DEFAULT_OMEGACUT_CM1 = 15000.0


def _friction_and_cutoff(config, q: QTBConfig, dt: float) -> tuple[float, float]:
    """gamma (1 / a.u. time) and omegacut (Hartree) of the input, defaults applied (see QTBConfig)."""
    from rung.core import units as U

    gamma = (q.gamma_fs if q.gamma_fs is not None else 1.0 / config.tau_fs) / U.FS_TO_AU_TIME
    if q.omegacut_cm1 is None:
        return gamma, min(DEFAULT_OMEGACUT_CM1 * U.INV_CM_TO_HARTREE, NYQUIST_FRACTION * np.pi / dt)
    return gamma, q.omegacut_cm1 * U.INV_CM_TO_HARTREE


def from_config(config, force_fn, numbers, masses, kT: float, dt: float):
    """``init_fn, step_fn, params`` of the driver (bead arrays (1, n, 3)) from a validated MDConfig.

    numbers, masses : (n,) atomic numbers and electron masses; species are the (number, mass) pairs.
    """
    from rung.core import units as U

    q = QTBConfig.from_dict(config.qtb)
    gamma, omegacut = _friction_and_cutoff(config, q, dt)
    pairs = np.stack([np.asarray(numbers, dtype=np.float64), np.asarray(masses, dtype=np.float64)], axis=1)
    _, species = np.unique(pairs, axis=0, return_inverse=True)
    gammar = None
    if q.gammar_from is not None:
        gammar = read_spectra(q.gammar_from)["gammar"]
    adaptive = q.adaptation if str(config.thermostat).lower() == "adqtb" else None
    return qtb(force_fn, dt, kT, gamma, masses=masses, species=species.ravel(), tseg=q.tseg_fs * U.FS_TO_AU_TIME,
               omegacut=omegacut, adaptive=adaptive, agamma=q.agamma,
               tau_ad=None if q.tau_ad_fs is None else q.tau_ad_fs * U.FS_TO_AU_TIME,
               skip_segments=q.skip_segments, gammar_min=q.gammar_min, deconvolution=q.deconvolution,
               seed=config.seed, beads=True, gammar=gammar)


def check_config(config) -> None:
    """Validate the QTB part of an MDConfig (needs beads = 1); ValueError naming the problem."""
    from rung.core import units as U

    q = QTBConfig.from_dict(config.qtb)
    if config.beads != 1:
        raise ValueError(f"thermostat {config.thermostat!r} is for classical trajectories (beads = 1), got beads = "
                         f"{config.beads}; use langevin/bussi for ring polymers")
    if q.adaptation not in ADAPTATIONS:
        raise ValueError(f"[qtb] adaptation must be one of {ADAPTATIONS}, got {q.adaptation!r}")
    for k in ("tseg_fs", "agamma"):
        if not getattr(q, k) > 0:
            raise ValueError(f"[qtb] {k} must be positive, got {getattr(q, k)!r}")
    if q.gamma_fs is not None and not q.gamma_fs > 0:
        raise ValueError(f"[qtb] gamma_fs (the friction, fs^-1) must be positive, got {q.gamma_fs!r}")
    if q.tau_ad_fs is not None and not q.tau_ad_fs > 0:
        raise ValueError(f"[qtb] tau_ad_fs must be positive, got {q.tau_ad_fs!r}")
    if not (isinstance(q.skip_segments, int) and q.skip_segments >= 0):
        raise ValueError(f"[qtb] skip_segments must be a non-negative integer, got {q.skip_segments!r}")
    if not 0 <= q.gammar_min < 1:
        raise ValueError(f"[qtb] gammar_min must be in [0, 1), got {q.gammar_min!r}")
    if not isinstance(q.deconvolution, bool):
        raise ValueError(f"[qtb] deconvolution must be true or false, got {q.deconvolution!r}")
    dt = config.dt_fs * U.FS_TO_AU_TIME
    gamma, omegacut = _friction_and_cutoff(config, q, dt)
    check_parameters(dt, config.temperature_K * U.BOLTZMANN_HARTREE_PER_K, gamma, q.tseg_fs * U.FS_TO_AU_TIME,
                     omegacut)


SPECTRA_SCHEMA = "rung-md-qtb-spectra"


def write_spectra(path, params: QTBParams, ts: QTBState, *, attrs: dict | None = None) -> None:
    """Write gamma_r and the averaged spectra per species to an HDF5 file (atomic units, ``unit`` attributes).

    Layout: root attrs schema, schema_version, package_version, backend, thermostat, segment, nsample,
    corr_kin, gamma_au, dt_au, kT_hartree; datasets omega_cm1 (nom,), species_label (nspecies,),
    gammar, mcvv, cvr, dfdt (nspecies, nom), corr_pot (nom,). Written to a temporary file and renamed.
    """
    import os
    from pathlib import Path

    import h5py

    from rung import md
    from rung.core import units as U

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    om = params.omega[: params.nom]
    with h5py.File(tmp, "w") as f:
        f.attrs.update({"schema": SPECTRA_SCHEMA, "schema_version": 1, "package_version": md.__version__,
                        "backend": "numpy", "thermostat": "adqtb" if params.adaptive else "qtb",
                        "adaptation": params.adaptive or "none", "segment": ts.segment, "nsample": ts.nsample,
                        "corr_kin": ts.corr_kin, "gamma_au": params.gamma, "dt_au": params.dt,
                        "kT_hartree": params.kT, "nseg": params.nseg, **(attrs or {})})
        d = f.create_dataset("omega_cm1", data=om * U.HARTREE_TO_INV_CM)
        d.attrs["unit"] = "cm-1"
        d = f.create_dataset("species_label", data=np.asarray(params.species_labels))
        d.attrs["unit"] = "dimensionless"
        for name, value, unit in (("gammar", ts.gammar, "dimensionless"), ("mcvv", ts.mcvv, "hartree*au_time"),
                                  ("cvr", ts.cvr, "hartree*au_time"), ("dfdt", ts.dfdt, "hartree*au_time"),
                                  ("corr_pot", params.corr_pot, "dimensionless")):
            d = f.create_dataset(name, data=value)
            d.attrs["unit"] = unit
    os.replace(tmp, path)


def read_spectra(path) -> dict:
    """The arrays and attributes of a QTB spectra file; ValueError when it is not one."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != SPECTRA_SCHEMA:
                raise ValueError(f"{path} is not a rung-md QTB spectra file")
            out = {k: np.array(f[k]) for k in f}
            out.update({k: f.attrs[k] for k in f.attrs})
            return out
    except OSError as err:
        raise ValueError(f"cannot read QTB spectra file {path}: {err}") from err
