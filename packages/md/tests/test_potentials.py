"""Potentials: Lennard-Jones against ASE's and finite differences; neighbour-list skin; ASE adapter; factory."""

import numpy as np
import pytest

from rung.core import units as U
from rung.core.errors import InputError
from rung.core.potential import in_atomic_units
from rung.core.testing import check_backend_agreement, check_forces_fd
from rung.md.potentials import BeadNeighbors, LennardJones, build_potential

EPS_EV, SIGMA_A, RC_A = 0.0103, 3.4, 7.0


def _lj(**kw):
    return LennardJones(EPS_EV * U.EV_TO_HARTREE, SIGMA_A * U.ANGSTROM_TO_BOHR, RC_A * U.ANGSTROM_TO_BOHR, **kw)


def _triclinic_argon():
    from ase.build import bulk

    a = bulk("Ar", "fcc", a=5.26).repeat((4, 4, 4))  # primitive fcc cell: triclinic
    a.rattle(0.1, seed=2)
    return a


@pytest.mark.parametrize("periodic", [True, False])
def test_lennard_jones_matches_ase(periodic):
    from ase.calculators.lj import LennardJones as AseLJ

    a = _triclinic_argon()
    if not periodic:
        a = a[:40]
        a.pbc = False
        a.cell = None
    a.calc = AseLJ(sigma=SIGMA_A, epsilon=EPS_EV, rc=RC_A, smooth=False)
    cell = np.asarray(a.cell) * U.ANGSTROM_TO_BOHR if periodic else None
    r = _lj(skin=0.5).compute(a.positions * U.ANGSTROM_TO_BOHR, a.numbers, cell, virial=True)
    np.testing.assert_allclose(r.energy * U.HARTREE_TO_EV, a.get_potential_energy(), rtol=1e-10)
    np.testing.assert_allclose(r.forces * U.HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, a.get_forces(), atol=1e-10)
    if periodic:
        stress = -r.virial * U.HARTREE_TO_EV / (a.get_volume())
        np.testing.assert_allclose(stress, a.get_stress(voigt=False), atol=1e-10)


def test_lennard_jones_forces_and_virial_by_finite_differences():
    a = _triclinic_argon()[:32]
    a.set_cell(a.cell * 0.5, scale_atoms=True)  # thin cell: several images of each atom within the cutoff
    x, cell = a.positions * U.ANGSTROM_TO_BOHR, np.asarray(a.cell) * U.ANGSTROM_TO_BOHR
    check_forces_fd(_lj(), x, a.numbers, cell, h=1e-5, atol=1e-9, virial=True, n_checks=30)


def test_numba_kernel_matches_the_numpy_reference():
    a = _triclinic_argon()
    x = a.positions * U.ANGSTROM_TO_BOHR
    beads = x[None] + np.random.default_rng(0).normal(scale=0.05, size=(3,) + x.shape)
    cell = np.asarray(a.cell) * U.ANGSTROM_TO_BOHR

    def f(backend):
        r = _lj(backend=backend).compute(beads, a.numbers, cell, virial=True)
        return r.energy, r.forces, r.virial

    check_backend_agreement(lambda backend: f(backend), backends=("numpy", "numba"), rtol=1e-11, atol=1e-14)


def test_skin_rebuilds_only_when_an_atom_moved_more_than_half_the_skin():
    a = _triclinic_argon()
    x = a.positions * U.ANGSTROM_TO_BOHR
    cell = np.asarray(a.cell) * U.ANGSTROM_TO_BOHR
    skin = 1.0
    nl = BeadNeighbors(RC_A * U.ANGSTROM_TO_BOHR, skin)
    assert nl.update(x[None], cell)
    y = x.copy()
    y[5, 0] += 0.49 * skin
    assert not nl.update(y[None], cell)
    y[7, 1] -= 0.51 * skin
    assert nl.update(y[None], cell)
    assert nl.builds == 2
    # with the kept (skin) list the results equal a fresh list every step, bit for bit
    with_skin, fresh = _lj(skin=1.0), _lj(skin=0.0)
    rng = np.random.default_rng(3)
    z = x[None] + rng.normal(scale=0.02, size=(2,) + x.shape)
    for _ in range(15):
        z = z + rng.normal(scale=0.03, size=z.shape)
        r1 = with_skin.compute(z, a.numbers, cell)
        fresh.neighbors.pairs = None
        r2 = fresh.compute(z, a.numbers, cell)
        np.testing.assert_array_equal(r1.energy, r2.energy)
        np.testing.assert_array_equal(r1.forces, r2.forces)
    assert with_skin.neighbors.builds < 15


def test_a_bead_does_not_depend_on_its_batch_neighbours():
    a = _triclinic_argon()
    x = a.positions * U.ANGSTROM_TO_BOHR
    cell = np.asarray(a.cell) * U.ANGSTROM_TO_BOHR
    beads = x[None] + np.random.default_rng(1).normal(scale=0.1, size=(4,) + x.shape)
    all4 = _lj(skin=1.0).compute(beads, a.numbers, cell)
    last2 = _lj(skin=1.0).compute(beads[2:], a.numbers, cell)
    np.testing.assert_array_equal(all4.forces[2:], last2.forces)
    np.testing.assert_array_equal(all4.energy[2:], last2.energy)


def test_cell_smaller_than_twice_the_cutoff_without_images():
    a = _triclinic_argon()[:4]
    a.set_cell(a.cell / 4, scale_atoms=True)
    cell = np.asarray(a.cell) * U.ANGSTROM_TO_BOHR
    with pytest.raises(ValueError, match="twice the cutoff"):
        _lj(images=False).compute(a.positions * U.ANGSTROM_TO_BOHR, a.numbers, cell)
    _lj(images=True).compute(a.positions * U.ANGSTROM_TO_BOHR, a.numbers, cell)  # the cell list handles images


def test_ase_calculator_adapter_loops_over_beads():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    a = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
    a.rattle(0.05, seed=4)
    pot = in_atomic_units(build_potential({"type": "ase", "calculator": "ase.calculators.emt:EMT"}))
    beads = (a.positions[None] + np.random.default_rng(2).normal(scale=0.03, size=(3, len(a), 3))) * U.ANGSTROM_TO_BOHR
    cell = np.asarray(a.cell) * U.ANGSTROM_TO_BOHR
    r = pot.compute(beads, a.numbers, cell, virial=True)
    assert r.energy.shape == (3,) and r.forces.shape == (3, len(a), 3) and r.virial.shape == (3, 3, 3)
    for b in range(3):
        c = a.copy()
        c.positions = beads[b] * U.BOHR_TO_ANGSTROM
        c.calc = EMT()
        assert r.energy[b] * U.HARTREE_TO_EV == pytest.approx(c.get_potential_energy(), rel=1e-12)
        np.testing.assert_allclose(r.forces[b] * U.HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, c.get_forces(), atol=1e-10)
        np.testing.assert_allclose(-r.virial[b] * U.HARTREE_TO_EV / c.get_volume(), c.get_stress(voigt=False),
                                   atol=1e-10)


def test_harmonic_entry_by_frequency():
    m = np.array([1.0, 4.0]) * U.AMU_TO_ELECTRON_MASS
    pot = build_potential({"type": "harmonic", "frequency_cm": 1000.0}, masses=m).bind(np.zeros((2, 3)))
    w = 1000.0 * U.INV_CM_TO_HARTREE
    x = np.array([[0.1, 0, 0], [0, 0.2, 0]])
    r = pot.compute(x[None], None)
    assert r.energy[0] == pytest.approx(0.5 * w * w * (m[0] * 0.01 + m[1] * 0.04), rel=1e-14)
    check_forces_fd(pot, x, None, atol=1e-8)


@pytest.mark.parametrize("spec,match", [
    ({"type": "morse"}, "unknown potential type"),
    ({}, "needs a 'type'"),
    ({"type": "lj", "epsilon_eV": 0.01}, "sigma_angstrom"),
    ({"type": "lj", "epsilon_eV": 0.01, "sigma_angstrom": 3.0, "radius": 2}, "unknown option"),
    ({"type": "harmonic"}, "exactly one"),
    ({"type": "ase", "calculator": "ase.calculators.nothere:X"}, "cannot import"),
])
def test_bad_potential_entries(spec, match):
    with pytest.raises(ValueError, match=match):
        build_potential(spec)


def test_nnp_request_without_the_engine_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "rung.nnp", None)  # import fails as when rung-nnp is absent
    with pytest.raises(InputError, match="rung.nnp engine"):
        build_potential({"type": "nnp", "model": "ani-1x"})


def test_muller_brown_forces_and_virial_by_finite_differences():
    """The input entry's Müller-Brown surface (rung.md.model_potentials) on every atom: forces, z spring
    and virial against central differences; bead batches give the per-bead values."""
    s = 1.3  # Bohr per MB length unit
    pot = build_potential({"type": "muller-brown", "energy_scale_Ha": 1e-4, "length_scale_bohr": s})
    x = np.array([[-0.6, 1.4, 0.05], [0.1, 0.3, -0.02], [0.6, 0.1, 0.0], [-0.8, 0.6, 0.01]]) * s  # near A, C, B
    check_forces_fd(pot, x, None, h=1e-5, atol=1e-10, rtol=1e-6, virial=True)
    beads = np.stack([x, x + 0.01])
    r = pot.compute(beads, None, virial=True)
    for b in range(2):
        one = pot.compute(beads[b], None, virial=True)
        assert r.energy[b] == pytest.approx(float(one.energy), rel=1e-14)
        np.testing.assert_allclose(r.forces[b], one.forces, rtol=1e-14)
        np.testing.assert_allclose(r.virial[b], one.virial, rtol=1e-14)


def test_muller_brown_minima_are_the_published_ones():
    """Müller and Brown (1979): minima A, C, B at V = -146.70, -80.77, -108.17 (MB units), where the
    gradient vanishes (to the 4 decimals of the tabulated positions)."""
    from rung.md.model_potentials import MB_MINIMA, muller_brown

    for name, ref in (("A", -146.70), ("C", -80.77), ("B", -108.17)):
        v, gu, gv = muller_brown(*MB_MINIMA[name])
        assert float(v) == pytest.approx(ref, abs=0.005)
        assert np.hypot(gu, gv) < 0.2  # 0.01 away from A it is already ~29
