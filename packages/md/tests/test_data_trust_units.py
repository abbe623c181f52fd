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


# nnp-md reads its structure with ASE, in Angstrom: the length-unit plausibility check of the other rungs
# (rung.core.dataset.check_length_unit) refuses a file whose bonds say it holds other units, before any work
WATER_BOHR_XYZ = "3\n\nO 0 0 0\nH 1.81 0 0\nH -0.45 1.75 0\n"  # Bohr numbers in an xyz (Angstrom)


def _md_input(folder, xyz, extra=""):
    (folder / "w.xyz").write_text(xyz)
    path = folder / "in.toml"
    path.write_text(f'structure = "w.xyz"\nsteps = 2\ndt_fs = 0.5\nthermostat = "none"\n{extra}'
                    'potential = {type = "harmonic", k = 0.1}\n')
    return path


def test_a_structure_in_bohr_is_refused_before_any_work(tmp_path):
    from click.testing import CliRunner

    from rung.core.testing import check_bad_input
    from rung.md.cli import main

    inp = _md_input(tmp_path, WATER_BOHR_XYZ)
    work = tmp_path / "out"
    r = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(work), "--quiet"])
    check_bad_input(r, "w.xyz", "read as angstrom", "look like bohr", "trust_units")
    assert not work.exists() or not any(work.iterdir())
    r = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(work), "--quiet", "--trust-units"])
    assert r.exit_code == 0, r.output
    inp = _md_input(tmp_path, WATER_BOHR_XYZ, "trust_units = true\n")
    r = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(tmp_path / "out2"), "--quiet"])
    assert r.exit_code == 0, r.output


def test_a_periodic_structure_is_checked_with_its_images(tmp_path):
    """A water molecule split across the cell boundary (wrapped positions, as MD writes them): bonded through
    the periodic images, refused in Bohr."""
    from rung.md.config import load_config
    from rung.md.simulation import read_system

    def extxyz(x):  # O at x = 0.05, both H wrapped to the far side of a 10-length cubic cell
        return (f'3\nLattice="{10 * x} 0 0 0 {10 * x} 0 0 0 {10 * x}" Properties=species:S:1:pos:R:3 pbc="T T T"\n'
                f"O {0.05 * x} {5 * x} {5 * x}\nH {9.81 * x} {5.93 * x} {5 * x}\nH {9.81 * x} {4.07 * x} {5 * x}\n")

    system = read_system(load_config(_md_input(tmp_path, extxyz(1.0))))
    np.testing.assert_allclose(system.cell, np.eye(3) * 10 * ANGSTROM_TO_BOHR)
    with pytest.raises(InputError, match="w.xyz: coordinates read as angstrom: .* look like bohr"):
        read_system(load_config(_md_input(tmp_path, extxyz(ANGSTROM_TO_BOHR))))


def test_trust_units_must_be_a_boolean(tmp_path):
    from click.testing import CliRunner

    from rung.core.testing import check_bad_input
    from rung.md.cli import main

    inp = _md_input(tmp_path, WATER_BOHR_XYZ, 'trust_units = "no"\n')  # a string is no answer (and was truthy)
    r = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(tmp_path / "out"), "--quiet"])
    check_bad_input(r, "trust_units", "true or false", "'no'")
    assert not (tmp_path / "out").exists()
