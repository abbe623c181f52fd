"""The length-unit plausibility check (rung.core.dataset.check_length_unit) and the units the field writes.

Oracle: ASE's G2 collection (experimental/MP2 geometries of 148 molecules, Curtiss et al., J. Chem. Phys.
106, 1063 (1997)), which no reader should refuse in the right unit and every reader should refuse in a
wrong one; the covalent radii come from ASE, the geometries are independent of them.
"""

import logging

import h5py
import numpy as np
import pytest
from ase.collections import g2

from rung.core import dataset as ds
from rung.core.units import ANGSTROM_TO_BOHR, BOHR_TO_NM, length_to_bohr

MOLECULES = [a for a in g2 if len(a) >= 2]


def _check(atoms, factor, unit):
    """Check ``atoms`` (Angstrom) whose numbers were scaled by ``factor`` and read as ``unit``."""
    x = atoms.positions * factor * length_to_bohr(unit)
    ds.check_length_unit(atoms.numbers, x[None], unit, f"g2: {atoms.get_chemical_formula()}")


def test_no_molecule_of_g2_is_refused_in_its_own_units(caplog):
    with caplog.at_level(logging.WARNING):
        for atoms in MOLECULES:
            _check(atoms, 1.0, "angstrom")
            _check(atoms, ANGSTROM_TO_BOHR, "bohr")
            _check(atoms, 0.1, "nm")
    assert not caplog.records


@pytest.mark.parametrize("factor, read_as, suspect", [
    (1.0, "bohr", "angstrom"),  # an Angstrom file read as Bohr: bonds 0.53 times too short
    (0.1, "angstrom", "nm"),  # nm read as Angstrom: 10 times too short
    (ANGSTROM_TO_BOHR, "angstrom", "bohr"),  # Bohr read as Angstrom: 1.89 times too long
])
def test_every_g2_molecule_in_a_wrong_unit_is_refused_and_a_diatomic_warned(caplog, factor, read_as, suspect):
    n_diatomic = 0
    for atoms in MOLECULES:
        if len(atoms) >= 3:
            with pytest.raises(ds.DatasetError, match=f"g2: .*read as {read_as}: .* they look like {suspect}"):
                _check(atoms, factor, read_as)
            continue
        n_diatomic += 1
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            _check(atoms, factor, read_as)
        assert f"look like {suspect}" in caplog.text, atoms.get_chemical_formula()
    assert n_diatomic >= 10


def test_stretched_and_compressed_geometries_are_not_refused(caplog):
    """Scan points: one bond stretched to dissociation, or compressed far up the wall, in a molecule
    otherwise bonded; a dissociation curve of H2 (a diatomic is never refused; warned when another unit
    would make it bonded)."""
    from ase.build import molecule

    w = molecule("H2O")
    o, h1, h2 = w.positions
    for scale in (0.5, 1.0, 2.5, 4.0):  # O-H1 from 0.48 to 3.9 Angstrom
        x = w.positions.copy()
        x[1] = o + scale * (h1 - o)
        ds.check_length_unit(w.numbers, x[None] * ANGSTROM_TO_BOHR, "angstrom", "water scan")
    curve = np.array([[[0, 0, 0], [0, 0, r]] for r in np.linspace(0.3, 5.0, 10)])  # H2, Angstrom
    with caplog.at_level(logging.WARNING):
        ds.check_length_unit([1, 1], curve * ANGSTROM_TO_BOHR, "angstrom", "H2 curve")
        ds.check_length_unit([1, 1], curve[-1:] * ANGSTROM_TO_BOHR, "angstrom", "H2 at 5 A")
    assert not caplog.records  # no unit makes these bonds: a dissociation, not a unit mistake
    with caplog.at_level(logging.WARNING):
        ds.check_length_unit([1, 1], curve[:1] * 1.4 / 0.3 * ANGSTROM_TO_BOHR, "angstrom", "H2 at 1.4 A")
    assert "H2 at 1.4 A" in caplog.text and "look like bohr" in caplog.text  # 1.4: H2's bond in Bohr
    # noble-gas contacts are van der Waals, not bonds: an argon trimer at 3.8 Angstrom is fine
    ar3 = np.array([[0, 0, 0], [3.8, 0, 0], [1.9, 3.29, 0]]) * ANGSTROM_TO_BOHR
    ds.check_length_unit([18, 18, 18], ar3[None], "angstrom", "Ar3")


def _spice_like(path, x_bohr, unit_attr, attr="units", factor=1.0):
    with h5py.File(path, "w") as f:
        g = f.create_group("water")
        g["atomic_numbers"] = np.array([8, 1, 1], dtype=np.int16)
        g.create_dataset("conformations", data=x_bohr * factor).attrs[attr] = unit_attr


WATER = np.array([[[0.0, 0.0, 0.0], [1.81, 0.0, 0.0], [-0.45, 1.75, 0.0]]])  # Bohr


def test_readers_refuse_a_wrong_unit_and_the_override(tmp_path):
    path = tmp_path / "in.h5"
    _spice_like(path, WATER, "angstrom")  # Bohr numbers labelled Angstrom
    with pytest.raises(ds.DatasetError, match=r"in.h5: water: coordinates read as angstrom: .* look like bohr"):
        ds.read_structures(path)
    np.testing.assert_allclose(ds.read_structures(path, check_units=False)[0].conformations, WATER * ANGSTROM_TO_BOHR)
    (tmp_path / "w.xyz").write_text("3\n\nO 0 0 0\nH 1.81 0 0\nH -0.45 1.75 0\n")  # Bohr numbers in an xyz
    with pytest.raises(ds.DatasetError, match="w.xyz: H2O: .* look like bohr"):
        ds.read_structures(tmp_path / "w.xyz")
    assert ds.read_structures(tmp_path / "w.xyz", units="bohr")[0].n_conf == 1
    # a rung dataset was checked when it was made (or the user overrode it): not checked again
    made = ds.create_dataset(tmp_path / "d.h5", ds.read_structures(path, check_units=False))
    assert ds.read_structures(made)[0].n_conf == 1


@pytest.mark.parametrize("unit, factor, attr", [
    ("nm", BOHR_TO_NM, "unit"),  # H5MD writes 'unit'
    ("nm", BOHR_TO_NM, "units"),
    ("Angstrom", 1 / ANGSTROM_TO_BOHR, "unit"),
    ("angstrom", 1 / ANGSTROM_TO_BOHR, "units"),
    ("Å", 1 / ANGSTROM_TO_BOHR, "units"),
    ("\u212b", 1 / ANGSTROM_TO_BOHR, "units"),  # the Angstrom sign, a different code point
    ("bohr", 1.0, "units"),
    ("Bohr", 1.0, "unit"),
])
def test_the_length_units_the_field_writes_are_read(tmp_path, unit, factor, attr):
    _spice_like(tmp_path / "x.h5", WATER, unit, attr, factor)
    (m,) = ds.read_structures(tmp_path / "x.h5")
    np.testing.assert_allclose(m.conformations, WATER, rtol=1e-14)


def test_an_energy_unit_is_no_length(tmp_path):
    _spice_like(tmp_path / "x.h5", WATER, "hartree")
    with pytest.raises(ds.DatasetError, match="unknown unit 'hartree' for a length"):
        ds.read_structures(tmp_path / "x.h5")
