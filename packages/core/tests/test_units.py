import math

from rung.core import units as U


def test_internal_consistency():
    # Eh = hbar^2 / (m_e a0^2): an exact relation between independently listed CODATA entries
    assert math.isclose(U.HBAR**2 / (U.ELECTRON_MASS * U.BOHR_RADIUS**2), U.HARTREE_ENERGY, rel_tol=1e-9)
    assert math.isclose(U.BOHR_TO_ANGSTROM * U.ANGSTROM_TO_BOHR, 1.0, rel_tol=1e-15)


def test_published_2018_values():
    # CODATA 2018 (Tiesinga et al., Rev. Mod. Phys. 93, 025010 (2021)), listed derived values
    assert math.isclose(U.HARTREE_TO_EV, 27.211386245988, rel_tol=1e-12)
    assert math.isclose(U.HARTREE_TO_INV_CM, 219474.6313632, rel_tol=1e-11)
    assert math.isclose(U.AU_TIME_TO_S, 2.4188843265857e-17, rel_tol=1e-11)
    assert math.isclose(U.AMU_TO_ELECTRON_MASS, 1822.888486209, rel_tol=1e-11)
    assert math.isclose(U.BOLTZMANN_HARTREE_PER_K, 3.1668115634556e-6, rel_tol=1e-10)
    assert math.isclose(U.HARTREE_TO_KCAL_PER_MOL, 627.5094740631, rel_tol=1e-11)


def test_to_atomic():
    assert math.isclose(U.to_atomic(1.0, "Angstrom"), 1 / 0.529177210903)
    try:
        U.to_atomic(1.0, "furlong")
    except ValueError as err:
        assert "furlong" in str(err)
    else:
        raise AssertionError("unknown unit accepted")
