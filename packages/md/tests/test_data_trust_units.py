"""rung's H5MD reader converts positions and cells from their H5MD ``unit`` attribute (nm as rung writes
them, Angstrom as other codes do, Bohr), so a trajectory written elsewhere is read in the right unit."""

import h5py
import numpy as np
import pytest

from rung.core.errors import InputError
from rung.core.units import ANGSTROM_TO_BOHR, BOHR_TO_NM
from rung.md.output import read_centroid

X = np.array([[[0.0, 0.0, 0.0], [1.81, 0.0, 0.0], [-0.45, 1.75, 0.0]]])  # (1, 3, 3) Bohr
CELL = np.eye(3)[None] * 20.0  # Bohr


def _h5md(path, unit, factor):
    with h5py.File(path, "w") as f:
        g = f.create_group("particles/centroid")
        g["species"] = np.array([8, 1, 1])
        p = g.create_group("position")
        p["time"] = np.array([0.0])
        p.create_dataset("value", data=X * factor)
        e = g.create_group("box/edges")
        e.create_dataset("value", data=CELL * factor)
        if unit is not None:
            p["value"].attrs["unit"] = unit
            e["value"].attrs["unit"] = unit


@pytest.mark.parametrize("unit, factor", [("nm", BOHR_TO_NM), (None, BOHR_TO_NM), ("Angstrom", 1 / ANGSTROM_TO_BOHR),
                                          ("angstrom", 1 / ANGSTROM_TO_BOHR), ("Å", 1 / ANGSTROM_TO_BOHR),
                                          ("bohr", 1.0)])
def test_positions_and_cell_in_the_units_the_field_writes(tmp_path, unit, factor):
    _h5md(tmp_path / "t.h5", unit, factor)
    c = read_centroid(tmp_path / "t.h5")
    np.testing.assert_allclose(c["positions"], X, rtol=1e-14)
    np.testing.assert_allclose(c["cell"], CELL, rtol=1e-14)


def test_a_unit_that_is_no_length_is_refused(tmp_path):
    _h5md(tmp_path / "t.h5", "ps", 1.0)
    with pytest.raises(InputError, match="t.h5: /particles/centroid/position/value: unknown unit 'ps'"):
        read_centroid(tmp_path / "t.h5")
