import numpy as np
import pytest
from ase import Atoms
from ase.calculators.fd import calculate_numerical_stress

from rung.core import units as U
from rung.core.potential import Harmonic, Potential, PotentialCalculator, PotentialResult, in_atomic_units
from rung.core.testing import check_backend_agreement, check_forces_fd


class PairLJ:
    """Lennard-Jones in eV / Angstrom with minimum image (a test potential in non-atomic units)."""

    energy_unit, length_unit = "eV", "angstrom"

    def __init__(self, eps=0.01, sigma=2.5):
        self.eps, self.sigma = eps, sigma

    def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
        x = np.asarray(positions)
        d = x[None] - x[:, None]  # (n, n, 3): x_j - x_i
        if cell is not None:
            frac = d @ np.linalg.inv(cell)
            d = (frac - np.round(frac)) @ cell
        r2 = np.einsum("ijk,ijk->ij", d, d) + np.eye(len(x))
        s6 = (self.sigma**2 / r2) ** 3
        e_pair = 4 * self.eps * (s6 * s6 - s6) * (1 - np.eye(len(x)))
        dedr_over_r = 4 * self.eps * (-12 * s6 * s6 + 6 * s6) / r2 * (1 - np.eye(len(x)))
        f = np.einsum("ij,ijk->ik", dedr_over_r, d)  # -dE/dx_i
        w = 0.5 * np.einsum("ij,ijk,ijl->kl", -dedr_over_r, d, d) if virial else None
        return PotentialResult(0.5 * e_pair.sum(), f, w)


def test_protocol_and_fd():
    pot = Harmonic(0.3, x0=np.ones((2, 3)))
    assert isinstance(pot, Potential)
    x = np.random.default_rng(0).normal(size=(2, 3))
    check_forces_fd(pot, x, [1, 1], virial=True)
    with pytest.raises(AssertionError, match="finite difference"):
        check_forces_fd(BrokenHarmonic(0.3), x, [1, 1])


class BrokenHarmonic(Harmonic):
    def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
        r = super().compute(positions, numbers, cell)
        return PotentialResult(r.energy, 1.01 * r.forces)


def test_atomic_units_wrapper():
    lj = PairLJ()
    x_ang = np.array([[0, 0, 0], [2.9, 0.1, 0], [0.2, 3.1, 0.4]])
    au = in_atomic_units(lj)
    r = au.compute(x_ang * U.ANGSTROM_TO_BOHR, [18] * 3)
    r0 = lj.compute(x_ang, [18] * 3)
    assert np.isclose(r.energy, r0.energy * U.EV_TO_HARTREE)
    np.testing.assert_allclose(r.forces, r0.forces * U.EV_PER_ANGSTROM_TO_HARTREE_PER_BOHR)
    check_forces_fd(au, x_ang * U.ANGSTROM_TO_BOHR, [18] * 3, atol=1e-9)


def test_ase_calculator_periodic_stress():
    cell = np.diag([7.0, 7.5, 8.0])
    x = np.random.default_rng(3).random((6, 3)) @ cell
    atoms = Atoms("Ar6", positions=x, cell=cell, pbc=True)
    atoms.calc = PotentialCalculator(PairLJ())
    check_forces_fd(PairLJ(), x, [18] * 6, cell, virial=True, atol=1e-8)
    np.testing.assert_allclose(atoms.get_stress(), calculate_numerical_stress(atoms), atol=1e-7)
    np.testing.assert_allclose(atoms.get_forces(), PairLJ().compute(x, None, cell).forces)


def test_backend_agreement_kit():
    def f(a, backend):
        return {"sum": np.sum(a) + (1e-3 if backend == "bad" else 0.0)}

    check_backend_agreement(f, np.ones(3), backends=("numpy", "numba"))
    with pytest.raises(AssertionError, match="backend bad"):
        check_backend_agreement(f, np.ones(3), backends=("numpy", "bad"))
