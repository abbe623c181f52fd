"""Periodic invariances, cells smaller than the cutoff, and batches equal to one-at-a-time."""

import numpy as np
import pytest

from rung.nnp.testing import water_box


def test_translation_invariance(single64):
    x, z, cell = water_box(2, seed=1)
    r0 = single64.evaluate(x, z, cell=cell, virial=True)
    shift = np.array([1.7, -13.2, 40.05])  # far outside the cell: wrapping must not matter
    r1 = single64.evaluate(x + shift, z, cell=cell, virial=True)
    assert abs(r1.energy[0] - r0.energy[0]) < 1e-9
    np.testing.assert_allclose(r1.forces, r0.forces, atol=1e-9)
    np.testing.assert_allclose(r1.virial, r0.virial, atol=1e-9)


@pytest.mark.parametrize("reps", [(2, 1, 1), (1, 2, 2)])
def test_cell_replication(single64, reps):
    """E(supercell) = n_copies E(cell); the 6.2 A cell is smaller than 2 Rcr (images of an atom itself)."""
    x, z, cell = water_box(2, seed=4)
    r = single64.evaluate(x, z, cell=cell, virial=True)
    shifts = np.array([[a, b, c] for a in range(reps[0]) for b in range(reps[1]) for c in range(reps[2])]) @ cell
    xs = np.concatenate([x + s for s in shifts])
    zs = np.tile(z, len(shifts))
    big = cell * np.array(reps)[:, None]
    rs = single64.evaluate(xs, zs, cell=big, virial=True)
    n = len(shifts)
    assert abs(rs.energy[0] - n * r.energy[0]) < 1e-9 * n
    np.testing.assert_allclose(rs.forces, np.tile(r.forces, (n, 1)), atol=1e-9)
    np.testing.assert_allclose(rs.virial[0], n * r.virial[0], atol=1e-8)


def test_tiny_cell_uses_images(single64):
    """One water in a 2.5 A box (every neighbour is an image) equals the same crystal as a 2x2x2 cell."""
    x, z, cell = water_box(1, seed=0)
    cell = np.eye(3) * 2.5
    r = single64.evaluate(x, z, cell=cell)
    xs = np.concatenate([x + np.array([a, b, c]) * 2.5 for a in range(2) for b in range(2) for c in range(2)])
    rs = single64.evaluate(xs, np.tile(z, 8), cell=cell * 2)
    assert abs(rs.energy[0] - 8 * r.energy[0]) < 1e-8


def test_batch_equals_one_at_a_time(single64, paracetamol):
    from ase.build import molecule

    mols = [molecule(n) for n in ("H2O", "CH4", "CH3CONH2", "HCN")]
    d = paracetamol["paracetamol_eq"]
    pos = [m.positions for m in mols] + [d["coordinates"]]
    num = [m.numbers for m in mols] + [d["species"]]
    batch = np.concatenate([np.full(len(z), b) for b, z in enumerate(num)])
    rb = single64.evaluate(np.concatenate(pos), np.concatenate(num), batch=batch)
    off = 0
    for b, (x, z) in enumerate(zip(pos, num)):
        r = single64.evaluate(x, z)
        assert abs(rb.energy[b] - r.energy[0]) < 1e-10
        np.testing.assert_allclose(rb.forces[off:off + len(z)], r.forces, atol=1e-10)
        off += len(z)


def test_periodic_batch_and_bead_shape(ani1x_file):
    """The MD driver's call: positions (beads, n_atoms, 3), one cell, energies (beads,), virials."""
    from rung.nnp import load_model

    pot = load_model(ani1x_file, dtype="float64")
    x, z, cell = water_box(2, seed=7)
    rng = np.random.default_rng(0)
    beads = x[None] + 0.02 * rng.normal(size=(3, *x.shape))
    rb = pot.compute(beads, z, cell, virial=True)
    assert rb.energy.shape == (3,) and rb.forces.shape == (3, len(z), 3) and rb.virial.shape == (3, 3, 3)
    for k in range(3):
        r = pot.compute(beads[k], z, cell, virial=True)
        assert abs(rb.energy[k] - r.energy) < 1e-10
        np.testing.assert_allclose(rb.forces[k], r.forces, atol=1e-10)
        np.testing.assert_allclose(rb.virial[k], r.virial, atol=1e-10)


def test_atomic_units_view(single64):
    """in_atomic_units gives Hartree/Bohr: forces scale by the Bohr/Angstrom factor from rung.core.units."""
    from rung.core.potential import Potential, in_atomic_units
    from rung.core.units import ANGSTROM_TO_BOHR

    assert isinstance(single64, Potential)
    assert (single64.energy_unit, single64.length_unit) == ("hartree", "angstrom")

    x, z, _ = water_box(1)
    au = in_atomic_units(single64)
    r = single64.compute(x, z)
    ra = au.compute(x * ANGSTROM_TO_BOHR, z)
    assert abs(ra.energy - r.energy) < 1e-12
    np.testing.assert_allclose(ra.forces, r.forces / ANGSTROM_TO_BOHR, rtol=1e-12)


def test_batch_of_periodic_cells_with_different_cells(single64):
    x1, z1, c1 = water_box(2, seed=11)
    x2, z2, c2 = water_box(1, seed=12)
    c2 = c2 * 1.1
    x = np.concatenate([x1, x2])
    z = np.concatenate([z1, z2])
    batch = np.concatenate([np.zeros(len(z1), int), np.ones(len(z2), int)])
    rb = single64.evaluate(x, z, batch=batch, cell=np.stack([c1, c2]), virial=True)
    for b, (xx, zz, cc) in enumerate([(x1, z1, c1), (x2, z2, c2)]):
        r = single64.evaluate(xx, zz, cell=cc, virial=True)
        assert abs(rb.energy[b] - r.energy[0]) < 1e-10
        np.testing.assert_allclose(rb.forces[batch == b], r.forces, atol=1e-10)
        np.testing.assert_allclose(rb.virial[b], r.virial[0], atol=1e-10)


def test_float32_close_to_float64(ani1x_file):
    from rung.nnp import load_model

    x, z, cell = water_box(2, seed=13)
    r64 = load_model(ani1x_file, dtype="float64").evaluate(x, z, cell=cell, virial=True)
    r32 = load_model(ani1x_file).evaluate(x, z, cell=cell, virial=True)  # float32 is the default
    assert abs(r32.energy[0] - r64.energy[0]) < 1e-5
    np.testing.assert_allclose(r32.forces, r64.forces, atol=1e-5)
    np.testing.assert_allclose(r32.virial, r64.virial, atol=1e-4)
