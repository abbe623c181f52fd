"""The ASE calculator: eV and eV/Angstrom from CODATA 2018 factors, stress against ASE's numerical stress."""

import numpy as np

from rung.core import units as U
from rung.nnp import NNPCalculator
from rung.nnp.testing import water_box


def test_molecule_energy_forces_in_ev(single64):
    from ase.build import molecule

    a = molecule("CH3CH2OH")
    a.calc = NNPCalculator(single64)
    r = single64.evaluate(a.positions, a.numbers)
    assert abs(a.get_potential_energy() - r.energy[0] * U.HARTREE_TO_EV) < 1e-9
    np.testing.assert_allclose(a.get_forces(), r.forces * U.HARTREE_TO_EV, atol=1e-9)


def test_stress_matches_numerical(single64):
    from ase import Atoms

    x, z, cell = water_box(2, seed=9)
    a = Atoms(numbers=z, positions=x, cell=cell, pbc=True)
    a.calc = NNPCalculator(single64)
    s = a.get_stress(voigt=True)
    from ase.calculators.fd import calculate_numerical_stress

    num = calculate_numerical_stress(a, eps=1e-5, voigt=True, force_consistent=False)
    np.testing.assert_allclose(s, num, atol=1e-7)
    assert np.abs(s).max() > 1e-4  # a random lattice of waters is far from zero stress


def test_calculator_by_name(ani1x_file):
    from ase.build import molecule

    a = molecule("H2O")
    a.calc = NNPCalculator("ani-1x", member=2)
    assert -76.6 * U.HARTREE_TO_EV < a.get_potential_energy() < -76.2 * U.HARTREE_TO_EV
