"""Integrators as pure step functions over an immutable state (JAX-MD style).

Every integrator factory returns ``init_fn, step_fn``::

    init_fn, step_fn = langevin(force_fn, dt, kT, gamma, seed=1)
    state = init_fn(positions, masses)            # momenta drawn from Maxwell-Boltzmann (seed, step -1)
    for _ in range(n): state = step_fn(state)      # a new MDState each step; nothing is mutated

``force_fn(positions) -> rung.core.potential.PotentialResult`` in Hartree and Bohr. Classical
integrators work on (n_atoms, 3) arrays and a scalar energy; ring-polymer integrators on (P, n_atoms, 3)
bead arrays and (P,) energies, with forces for all beads from ONE call of ``force_fn``.

Splittings (B: kick p += dt/2 F, A: drift / free ring-polymer flow, O: thermostat):

- :func:`velocity_verlet` (NVE): B A(dt) B.
- :func:`langevin` (NVT, BAOAB; B. Leimkuhler, C. Matthews, Appl. Math. Res. Express 2013, 34):
  B A(dt/2) O(dt) A(dt/2) B with O: p <- c1 p + sqrt(m kT (1 - c1^2)) xi, c1 = exp(-gamma dt).
  For a harmonic potential its positions sample exp(-beta V) exactly at any stable step.
- :func:`bussi` (NVT, stochastic velocity rescaling; G. Bussi, D. Donadio, M. Parrinello, J. Chem.
  Phys. 126, 014101 (2007)): B A(dt/2) O_SVR(dt) A(dt/2) B, where O_SVR rescales all momenta by
  alpha with  alpha^2 = c + (1-c)(R1^2 + S) K0/(Nf K) + 2 R1 sqrt(c (1-c) K0 / (Nf K)),
  c = exp(-dt/tau), K0 = Nf kT / 2, R1 ~ N(0,1), S ~ chi^2(Nf - 1), sign(alpha) = sign(R1 + sqrt(c Nf K / ((1-c) K0))).
- :func:`ring_polymer` (RPMD / PIMD): the same splittings with A the exact (or Cayley) free
  ring-polymer flow in normal modes (:mod:`rung.md.normal_modes`) and O the PILE thermostats
  (M. Ceriotti, M. Parrinello, T. E. Markland, D. E. Manolopoulos, J. Chem. Phys. 133, 124104 (2010)):
  PILE-L: every normal mode k gets a Langevin O step with gamma_0 = 1/tau and gamma_k = 2 lambda omega_k;
  PILE-G: the centroid mode gets the Bussi rescaling instead. All beads are thermostatted at
  beta_P = beta / P. P = 1 reduces exactly (bit for bit) to velocity Verlet, BAOAB and Bussi.

Conserved quantity: every O step adds its kinetic-energy change (the thermostat's work) to
``MDState.thermostat_energy`` with a minus sign, so ``H + thermostat_energy`` stays constant up to
the integration error (for ring polymers H is the ring-polymer Hamiltonian H_P).

Random numbers: the noise of step s comes from a generator seeded by SeedSequence([seed, s]), drawn
for the whole system at once, so it does not depend on how beads are spread over MPI ranks nor on
restarts. Units: atomic units throughout (Bohr, Hartree, electron masses, a.u. of time, kT in Hartree).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from rung.md.normal_modes import (free_propagator, from_normal_modes, normal_mode_frequencies,
                                  normal_mode_matrix, to_normal_modes)


@dataclass(frozen=True)
class MDState:
    """The dynamical state; integrators return a new one each step.

    Attributes
    ----------
    positions : (n_atoms, 3) or (P, n_atoms, 3) float64, Bohr (never wrapped into the cell)
    momenta : same shape, float64, electron mass * Bohr / a.u. time
    forces : same shape, float64, Hartree / Bohr
    energy : float or (P,) float64, Hartree (potential energy of each bead)
    masses : (n_atoms,) float64, electron masses
    step : int, number of steps taken
    thermostat_energy : float, Hartree, minus the work the thermostat did on the system
    virial : None or (3, 3) / (P, 3, 3) float64, Hartree (when the force function provides it)
    thermostat_state : None, or the state of a thermostat with memory (:class:`rung.md.qtb.QTBState`)
    """

    positions: np.ndarray
    momenta: np.ndarray
    forces: np.ndarray
    energy: np.ndarray
    masses: np.ndarray
    step: int = 0
    thermostat_energy: float = 0.0
    virial: np.ndarray | None = None
    thermostat_state: object | None = None


def step_rng(seed: int, step: int) -> np.random.Generator:
    """The random generator of step ``step``: SFC64 seeded by SeedSequence([seed, step]), independent of history."""
    if not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed}")
    return np.random.Generator(np.random.SFC64(np.random.SeedSequence([int(seed), int(step) & (2**64 - 1)])))


def maxwell_boltzmann(masses, kT: float, shape, seed: int) -> np.ndarray:
    """Momenta drawn at temperature kT (Hartree) for the given shape (..., n_atoms, 3); stream step -1."""
    xi = step_rng(seed, -1).standard_normal(shape)
    return xi * np.sqrt(np.asarray(masses) * kT)[:, None]


def _kinetic(p, inv_m) -> float:
    return 0.5 * float(np.sum(p * p * inv_m))


def _check_step(dt, kT=None):
    if not dt > 0:
        raise ValueError(f"time step must be positive, got dt = {dt}")
    if kT is not None and not kT > 0:
        raise ValueError(f"temperature must be positive, got kT = {kT}")


def _make_init(force_fn, kT, seed, beads: int | None):
    def init_fn(positions, masses, momenta=None) -> MDState:
        x = np.array(positions, dtype=np.float64)
        m = np.asarray(masses, dtype=np.float64)
        if beads is not None and x.ndim == 2:
            x = np.broadcast_to(x, (beads,) + x.shape).copy()
        if x.shape[-2] != m.size or x.shape[-1] != 3:
            raise ValueError(f"positions {x.shape} do not match {m.size} masses")
        if np.any(m <= 0):
            raise ValueError("masses must be positive")
        if momenta is None:
            if kT is None:
                p = np.zeros_like(x)
            else:
                p = maxwell_boltzmann(m, kT, x.shape, seed)
        else:
            p = np.array(momenta, dtype=np.float64).reshape(x.shape)
        r = force_fn(x)
        return MDState(x, p, np.asarray(r.forces, dtype=np.float64), np.asarray(r.energy, dtype=np.float64), m,
                       virial=None if r.virial is None else np.asarray(r.virial))
    return init_fn


def _with_forces(state, x, p, r, dq) -> MDState:
    return replace(state, positions=x, momenta=p, forces=np.asarray(r.forces, dtype=np.float64),
                   energy=np.asarray(r.energy, dtype=np.float64), step=state.step + 1,
                   thermostat_energy=state.thermostat_energy - dq,
                   virial=None if r.virial is None else np.asarray(r.virial))


# --- classical ---------------------------------------------------------------------------------------

def velocity_verlet(force_fn: Callable, dt: float, kT: float | None = None, seed: int = 0):
    """NVE velocity Verlet. ``kT`` (Hartree) only sets the initial Maxwell-Boltzmann momenta."""
    _check_step(dt)

    def step_fn(state: MDState) -> MDState:
        inv_m = 1.0 / state.masses[:, None]
        p = state.momenta + (0.5 * dt) * state.forces
        x = state.positions + dt * (p * inv_m)
        r = force_fn(x)
        p = p + (0.5 * dt) * r.forces
        return _with_forces(state, x, p, r, 0.0)

    return _make_init(force_fn, kT, seed, None), step_fn


def langevin(force_fn: Callable, dt: float, kT: float, gamma: float, seed: int = 0):
    """BAOAB Langevin dynamics at temperature kT (Hartree) with friction gamma (1 / a.u. time)."""
    _check_step(dt, kT)
    if not gamma >= 0:
        raise ValueError(f"friction must be >= 0, got {gamma}")
    c1 = np.exp(-gamma * dt)
    c2 = np.sqrt(1.0 - c1 * c1)

    def ornstein_uhlenbeck(p, inv_m, state):
        sigma = c2 * np.sqrt(state.masses * kT)[:, None]
        return p * c1 + sigma * step_rng(seed, state.step).standard_normal(p.shape)

    return _make_init(force_fn, kT, seed, None), _baoab(force_fn, dt, ornstein_uhlenbeck)


def _baoab(force_fn: Callable, dt: float, o_part: Callable, advance: Callable | None = None):
    """The B A O A B step with the thermostat's O part ``o_part(p, inv_m, state) -> p``; the kinetic
    energy the O part removes is accumulated as thermostat work for the conserved quantity. A
    thermostat with memory passes ``advance(thermostat_state, k_post) -> thermostat_state``, called
    once per step with the kinetic energy after the O part (Hartree)."""

    def step_fn(state: MDState) -> MDState:
        inv_m = 1.0 / state.masses[:, None]
        p = state.momenta + (0.5 * dt) * state.forces
        x = state.positions + (0.5 * dt) * (p * inv_m)
        k0 = _kinetic(p, inv_m)
        p = o_part(p, inv_m, state)
        k1 = _kinetic(p, inv_m)
        x = x + (0.5 * dt) * (p * inv_m)
        r = force_fn(x)
        p = p + (0.5 * dt) * r.forces
        new = _with_forces(state, x, p, r, k1 - k0)
        if advance is None:
            return new
        return replace(new, thermostat_state=advance(state.thermostat_state, k1))

    return step_fn


def svr_factor(kinetic: float, target: float, nf: int, c: float, rng: np.random.Generator) -> float:
    """Bussi's rescaling factor alpha for kinetic energy ``kinetic`` -> equilibrium ``target`` = Nf kT / 2."""
    r1 = rng.standard_normal()
    s = 2.0 * rng.standard_gamma(0.5 * (nf - 1)) if nf > 1 else 0.0
    if kinetic <= 0:
        return 0.0
    ratio = target / (nf * kinetic)
    a2 = c + (1.0 - c) * (r1 * r1 + s) * ratio + 2.0 * r1 * np.sqrt(c * (1.0 - c) * ratio)
    sign = 1.0 if r1 + np.sqrt(c / ((1.0 - c) * ratio)) >= 0 else -1.0
    return sign * np.sqrt(max(a2, 0.0))


def bussi(force_fn: Callable, dt: float, kT: float, tau: float, seed: int = 0):
    """Stochastic velocity rescaling (Bussi-Donadio-Parrinello) at kT (Hartree), time constant tau (a.u.)."""
    _check_step(dt, kT)
    if not tau > 0:
        raise ValueError(f"thermostat time constant must be positive, got {tau}")
    c = np.exp(-dt / tau)

    def rescale(p, inv_m, state):
        nf = state.positions.size
        return p * svr_factor(_kinetic(p, inv_m), 0.5 * nf * kT, nf, c, step_rng(seed, state.step))

    return _make_init(force_fn, kT, seed, None), _baoab(force_fn, dt, rescale)


# --- ring polymer --------------------------------------------------------------------------------------

def ring_polymer(force_fn: Callable, dt: float, kT: float, P: int, *, thermostat: str | None = "pile-l",
                 tau: float | None = None, pile_lambda: float | None = None, propagator: str = "exact",
                 seed: int = 0):
    """Ring-polymer MD with P beads at physical temperature kT (Hartree).

    Parameters
    ----------
    force_fn : (P, n_atoms, 3) Bohr -> PotentialResult with energy (P,) and forces (P, n_atoms, 3)
    dt : float, a.u. of time
    kT : float, Hartree (beads are sampled at P kT)
    P : int, number of beads
    thermostat : None (NVE RPMD), "pile-l" or "pile-g"
    tau : centroid thermostat time constant, a.u. of time (gamma_0 = 1/tau for PILE-L)
    pile_lambda : gamma_k = 2 lambda omega_k for the non-centroid modes (default 1 for PILE-L, 0.5 for PILE-G)
    propagator : "exact" or "cayley" free ring-polymer step
    """
    _check_step(dt, kT)
    if thermostat not in (None, "pile-l", "pile-g"):
        raise ValueError(f"unknown ring-polymer thermostat {thermostat!r}; use None, 'pile-l' or 'pile-g'")
    if thermostat is not None and not (tau is not None and tau > 0):
        raise ValueError(f"thermostat {thermostat} needs a positive centroid time constant tau, got {tau}")
    C = normal_mode_matrix(P)
    kT_P = P * kT
    omega_k = normal_mode_frequencies(P, kT_P)  # omega_P = P kT / hbar, hbar = 1
    lam = pile_lambda if pile_lambda is not None else (0.5 if thermostat == "pile-g" else 1.0)
    if thermostat is None:
        full = free_propagator(omega_k, dt, propagator)
    else:
        half = free_propagator(omega_k, 0.5 * dt, propagator)
        gamma = 2.0 * lam * omega_k
        gamma[0] = 1.0 / tau
        c1 = np.exp(-gamma * dt)
        c2 = np.sqrt(1.0 - c1 * c1)
        svr_c = np.exp(-dt / tau)

    from rung.md._kernels.cpu import flow_o_flow, nm_flow, standard_normal

    if thermostat == "pile-g":  # the centroid's flows apart from the other modes' (contiguous coefficients)
        half_0, half_rest = half[:, :1].copy(), half[:, 1:].copy()
    work = {}  # scratch arrays reused over steps (fresh pages every step cost more than the FFTs)
    gen = np.random.Generator(np.random.SFC64(0))  # one object: NumPy builds its ctypes interface once

    def noise_rng(step):
        """The generator of ``step`` (:func:`step_rng`'s stream) in the reused Generator object."""
        gen.bit_generator.state = step_rng(seed, step).bit_generator.state
        return gen

    def scratch(shape, m):
        if work.get("shape") != shape or work.get("m") is not m:
            m3 = np.repeat(m, 3).reshape(-1, 3)  # (n, 3): per component, for the kernel's flat loop
            work.update(shape=shape, m=m, q=np.empty(shape), p=np.empty(shape), xi=np.empty(shape),
                        dk=np.empty(shape), m3=m3, inv_m3=1.0 / m3,
                        F=np.empty((P // 2 + 1,) + shape[1:], dtype=np.complex128))
            if thermostat is not None:  # (P, n, 3)
                work["sigma"] = np.repeat(c2[:, None] * np.sqrt(m * kT_P)[None, :], 3, axis=1).reshape(shape)
        return work

    def step_fn(state: MDState) -> MDState:
        m = state.masses
        inv_m = 1.0 / m
        w = scratch(state.positions.shape, m)
        p = state.momenta + (0.5 * dt) * state.forces
        if P == 1:  # C = [[1.0]]: the transforms are the identity; the step works in place on new arrays
            q = state.positions.copy()
        else:
            q = to_normal_modes(state.positions, C, out=w["q"], work=w["F"])
            p = to_normal_modes(p, C, out=w["p"], work=w["F"])
        dq = 0.0
        if thermostat is None:
            nm_flow(q, p, m, inv_m, full)
        elif thermostat == "pile-l":  # flow, O, flow in one pass
            standard_normal(noise_rng(state.step), w["xi"])
            flow_o_flow(q, p, w["m3"], w["inv_m3"], half, c1, w["sigma"], w["xi"], w["dk"])
            dq = float(np.sum(w["dk"]))
        else:  # PILE-G: Bussi's rescaling of the centroid between its flows; PILE-L for the other modes
            rng = noise_rng(state.step)
            q0, p0 = q[:1], p[:1]
            nm_flow(q0, p0, m, inv_m, half_0)
            nf = p0.size
            k0 = _kinetic(p[0], inv_m[:, None])
            p[0] *= svr_factor(k0, 0.5 * nf * kT_P, nf, svr_c, rng)
            dq = _kinetic(p[0], inv_m[:, None]) - k0
            if P > 1:  # their noise after the rescaling's numbers, from the same stream
                standard_normal(rng, w["xi"][1:])
                flow_o_flow(q[1:], p[1:], w["m3"], w["inv_m3"], half_rest, c1[1:], w["sigma"][1:], w["xi"][1:],
                            w["dk"][1:])
                dq += float(np.sum(w["dk"][1:]))
            nm_flow(q0, p0, m, inv_m, half_0)
        if P == 1:
            x = q
        else:
            x, p = from_normal_modes(q, C, work=w["F"]), from_normal_modes(p, C, work=w["F"])
        r = force_fn(x)
        p += (0.5 * dt) * r.forces
        return _with_forces(state, x, p, r, dq)

    return _make_init(force_fn, kT_P, seed, P), step_fn
