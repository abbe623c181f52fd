"""Observables of a (ring-polymer) MD state, atomic units.

For a ring polymer of P beads q_j (j = 1..P, q_{P+1} = q_1) of N atoms in d = 3 dimensions at
inverse temperature beta (beta_P = beta / P, omega_P = P / (beta hbar)), with F_j = -grad V(q_j) and
the centroid qbar = (1/P) sum_j q_j:

- potential energy       <V> = (1/P) sum_j V(q_j)
- primitive kinetic      K_prim = d N P / (2 beta) - (1/P) sum_j sum_i 1/2 m_i omega_P^2 |q_ij - q_i,j+1|^2
- centroid virial        K_cv = d N / (2 beta) - 1/(2P) sum_j sum_i (q_ij - qbar_i) . F_ij
  (M. F. Herman, E. J. Bruskin, B. J. Berne, J. Chem. Phys. 76, 5150 (1982); J. Cao, B. J. Berne,
  J. Chem. Phys. 91, 6359 (1989))
- temperature            T = 2 K_beads / (d N P^2 k_B), K_beads = sum_j |p_j|^2 / 2m (beads move at P T)
- conserved quantity     H_P + thermostat energy (see :mod:`rung.md.integrators`)
- pressure               p = (2 K + (1/P) sum_j tr W_j) / (3 V), W_j the virial of bead j
  (``W_ab = -dE/d eps_ab``); K is the instantaneous kinetic energy for P = 1 and K_cv for P > 1
  (the centroid-virial pressure estimator).

For P = 1 K_prim = K_cv = d N kT / 2 (the classical equipartition value); use the temperature or
:func:`kinetic_energy` for the classical instantaneous kinetic energy. A QTB run (P = 1) estimates the
quantum kinetic energy from its thermostat (:func:`thermostat_kinetic`). Bead arrays are (P, n, 3).
"""

from __future__ import annotations

import numpy as np

from rung.core import units as U


def _beads(x):
    x = np.asarray(x)
    return x[None] if x.ndim == 2 else x


def kinetic_energy(momenta, masses) -> float:
    """Total kinetic energy of all beads, Hartree. momenta: (P, n, 3) or (n, 3); masses: (n,) m_e."""
    p = _beads(momenta)
    return 0.5 * float(np.sum(p * p / np.asarray(masses)[:, None]))


def temperature_K(momenta, masses) -> float:
    """Kinetic temperature in Kelvin (beads' kinetic energy at P T rescaled to the physical T)."""
    p = _beads(momenta)
    P = p.shape[0]
    return 2.0 * kinetic_energy(p, masses) / (p[0].size * P * P * U.BOLTZMANN_HARTREE_PER_K)


def thermostat_kinetic(state) -> float | None:
    """The quantum kinetic energy estimate of a thermostat that provides one (the QTB), Hartree; else None."""
    ts = getattr(state, "thermostat_state", None)
    if ts is None or not hasattr(ts, "corr_kin"):
        return None
    from rung.md.qtb import quantum_kinetic

    return quantum_kinetic(ts)


def potential_energy(energy) -> float:
    """Bead-averaged potential energy, Hartree. energy: (P,) or scalar, Hartree."""
    return float(np.mean(energy))


def spring_energy(positions, masses, kT: float) -> float:
    """Ring-polymer spring energy sum_j 1/2 m omega_P^2 |q_j - q_{j+1}|^2, Hartree (omega_P = P kT / hbar)."""
    q = _beads(positions)
    P = q.shape[0]
    if P == 1:
        return 0.0
    d = q - np.roll(q, -1, axis=0)
    return 0.5 * (P * kT) ** 2 * float(np.sum(np.asarray(masses)[:, None] * d * d))


def kinetic_primitive(positions, masses, kT: float) -> float:
    """Primitive (thermodynamic) quantum kinetic energy estimator, Hartree; kT in Hartree."""
    q = _beads(positions)
    P = q.shape[0]
    return 0.5 * q[0].size * P * kT - spring_energy(q, masses, kT) / P


def kinetic_centroid_virial(positions, forces, kT: float) -> float:
    """Centroid-virial quantum kinetic energy estimator, Hartree. forces: (P, n, 3) Hartree/Bohr."""
    q, f = _beads(positions), _beads(forces)
    P = q.shape[0]
    dev = q - q.mean(axis=0)
    return 0.5 * q[0].size * kT - 0.5 * float(np.sum(dev * f)) / P


def conserved(state, kT: float) -> float:
    """H_P (kinetic + spring + potential of all beads) plus the thermostat energy, Hartree."""
    return (kinetic_energy(state.momenta, state.masses) + spring_energy(state.positions, state.masses, kT)
            + float(np.sum(state.energy)) + state.thermostat_energy)


def pressure(state, kT: float, cell) -> float:
    """Pressure from the virial, Hartree / Bohr^3; needs ``state.virial`` and a periodic ``cell`` (3, 3) Bohr."""
    if cell is None or state.virial is None:
        raise ValueError("the pressure needs a periodic cell and the virial from the potential")
    w = np.asarray(state.virial)
    w = w[None] if w.ndim == 2 else w
    q = _beads(state.positions)
    if q.shape[0] == 1:
        k = kinetic_energy(state.momenta, state.masses)
    else:
        k = kinetic_centroid_virial(state.positions, state.forces, kT)
    volume = abs(np.linalg.det(np.asarray(cell)))
    return (2.0 * k + float(np.trace(w, axis1=-2, axis2=-1).mean())) / (3.0 * volume)


def harmonic_path_integral_energy(omega: float, kT: float, P: int) -> float:
    """Exact P-bead average of <V> (= <K_prim> = <K_cv>) per dimension of a harmonic oscillator, Hartree.

    In normal modes the sampled ring polymer (at beta_P = beta / P) is a set of independent
    oscillators of frequency Omega_k^2 = omega^2 + omega_k^2 (omega_k = 2 P kT sin(k pi / P) / hbar),
    so <q~_k^2> = P kT / (m Omega_k^2) and every estimator averages to
    E_P = (kT / 2) sum_k omega^2 / Omega_k^2; E_1 = kT / 2, E_P -> (hbar omega / 4) coth(hbar omega / 2 kT).
    omega : a.u. of 1/time; kT : Hartree.
    """
    wk = 2.0 * P * kT * np.sin(np.arange(P) * np.pi / P)
    return 0.5 * kT * float(np.sum(omega * omega / (omega * omega + wk * wk)))
