import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rung.core import units as U  # noqa: E402


@pytest.fixture
def argon():
    """108 argon atoms, fcc 3x3x3 (a = 5.26 A), rattled: (numbers, positions Bohr, masses m_e, cell Bohr)."""
    from ase.build import bulk

    a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((3, 3, 3))
    a.rattle(0.05, seed=1)
    return (a.numbers, a.positions * U.ANGSTROM_TO_BOHR, a.get_masses() * U.AMU_TO_ELECTRON_MASS,
            np.asarray(a.cell) * U.ANGSTROM_TO_BOHR)


@pytest.fixture
def argon_lj():
    from rung.md.potentials import LennardJones

    return LennardJones(0.0103 * U.EV_TO_HARTREE, 3.4 * U.ANGSTROM_TO_BOHR, 7.0 * U.ANGSTROM_TO_BOHR,
                        skin=1.0 * U.ANGSTROM_TO_BOHR)
