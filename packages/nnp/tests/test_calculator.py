"""The ASE calculator: eV and eV/Angstrom in ASE's own units (ase.units), stress against ASE's numerical
stress, the ensemble's members and spread in ``results``."""

import numpy as np
from ase import units

from rung.core import units as U
from rung.nnp import NNPCalculator
from rung.nnp.testing import water_box


def test_molecule_energy_forces_in_ev(single64):
    from ase.build import molecule

    a = molecule("CH3CH2OH")
    a.calc = NNPCalculator(single64)
    r = single64.evaluate(a.positions, a.numbers)
    assert abs(a.get_potential_energy() - r.energy[0] * units.Hartree) < 1e-9
    np.testing.assert_allclose(a.get_forces(), r.forces * units.Hartree, atol=1e-9)


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


def test_energy_back_to_hartree_with_ase_units(single64):
    """A 648-atom box: eV / ase.units.Hartree is the model's Hartree (rung.core's CODATA 2018 factor
    would leave about 1e-4 Hartree between them)."""
    from ase import Atoms

    x, z, cell = water_box(6, seed=4)
    assert len(z) == 648
    a = Atoms(numbers=z, positions=x, cell=cell, pbc=True)
    a.calc = NNPCalculator(single64)
    e_ha = single64.evaluate(x, z, cell=cell, forces=False).energy[0]
    assert abs(e_ha * (U.HARTREE_TO_EV / units.Hartree - 1)) > 5e-5  # the two tables do differ here
    assert abs(a.get_potential_energy() / units.Hartree - e_ha) < 1e-12 * abs(e_ha)
    np.testing.assert_allclose(a.get_forces() / units.Hartree, single64.evaluate(x, z, cell=cell).forces,
                               rtol=1e-12, atol=1e-12)


def test_ensemble_spread_and_members(ani1x_file):
    """Members against one-network calculators, spread against numpy's std of them."""
    from ase.build import molecule

    from rung.nnp import load_model

    a = molecule("CH3CH2OH")
    a.rattle(0.05, seed=2)
    a.calc = NNPCalculator(ani1x_file)
    e = a.get_potential_energy()
    members = a.calc.results["energy_members"]
    n = load_model(ani1x_file).n_members
    assert members.shape == (n,) and n > 1
    single = []
    for k in range(n):
        b = a.copy()
        b.calc = NNPCalculator(ani1x_file, member=k)
        single.append(b.get_potential_energy())
    np.testing.assert_allclose(members, single, rtol=0, atol=1e-8)
    assert abs(e - np.mean(single)) < 1e-8
    assert abs(a.calc.results["energy_spread"] - np.std(single, ddof=1)) < 1e-8
    assert a.calc.results["energy_spread"] > 0
    b = a.copy()
    b.calc = NNPCalculator(ani1x_file, member=1)
    b.get_potential_energy()
    assert b.calc.results["energy_spread"] == 0.0 and b.calc.results["energy_members"].shape == (1,)
