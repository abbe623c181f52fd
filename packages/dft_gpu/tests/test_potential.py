"""The ``dft`` potential type (rung.dft_gpu.potential): analytic forces against central differences of
its energy, bead batches, the warm-started SCF, bad entries, and NVE MD through rung.md's API."""

import numpy as np
import pytest

from rung.core.errors import InputError
from rung.core.potential import make_potential
from rung.core.testing import check_forces_fd
from rung.dft_gpu.potential import DFTPotential, dft_potential, extrapolate

TIGHT = {"conv_tol": 1e-12, "conv_tol_grad": 1e-8}  # SCF converged past the FD's own error
WATER = np.array([[0.0, 0.0, 0.2217], [0.0, 1.4309, -0.8867], [0.0, -1.4309, -0.8867]])  # Bohr, near HF/STO-3G
Z = np.array([8, 1, 1])


def test_hartree_fock_forces_are_minus_the_gradient_of_the_energy():
    """HF/STO-3G water (density-fitted through the J/K engine), h = 1e-4 Bohr: max |F - F_FD| measured
    2.2e-9 Hartree/Bohr with a tight SCF, 3.6e-8 with the MD defaults (orbital gradient 1e-6; the
    force error is linear in it)."""
    x = WATER + np.array([[0.0, 0.05, -0.03], [0.02, 0.0, 0.04], [-0.01, 0.03, 0.0]])
    pot = dft_potential({"xc": "hf", "basis": "sto-3g", **TIGHT})
    r = pot.compute(x, Z)
    assert np.isfinite(r.energy) and r.forces.shape == (3, 3)
    check_forces_fd(pot, x, Z, h=1e-4, atol=1e-8, rtol=1e-7)
    np.testing.assert_allclose(r.forces.sum(axis=0), 0.0, atol=1e-8)  # translation invariance
    check_forces_fd(dft_potential({"xc": "hf", "basis": "sto-3g"}), x, Z, h=1e-4, atol=2e-7, rtol=1e-7)


def test_dft_forces_with_grid_response_match_finite_differences_and_without_do_not():
    """PBE on a coarse grid: with the grid-weight response the forces are the energy's gradient (1.6e-9
    Hartree/Bohr measured); without it they miss ~6e-4, which the test must see."""
    x = WATER + np.array([[0.0, 0.05, -0.03], [0.02, 0.0, 0.04], [-0.01, 0.03, 0.0]])
    exact = dft_potential({"xc": "pbe", "basis": "sto-3g", "grid": 1, **TIGHT})
    check_forces_fd(exact, x, Z, h=1e-4, atol=1e-8, rtol=1e-7)
    plain = dft_potential({"xc": "pbe", "basis": "sto-3g", "grid": 1, "grid_response": False, **TIGHT})
    with pytest.raises(AssertionError):  # the same energies, so the same finite differences
        check_forces_fd(plain, x, Z, h=1e-4, atol=1e-5, rtol=0.0)


def test_range_separated_hybrid_forces_match_finite_differences():
    """ωB97M-D3BJ (full-range and long-range exchange, both J/K derivative terms from the engine's
    cached tensors, rung.dft_gpu.gradients.engine_jk_gradient) with the grid response: the forces are
    the energy's gradient."""
    x = WATER + np.array([[0.0, 0.05, -0.03], [0.02, 0.0, 0.04], [-0.01, 0.03, 0.0]])
    pot = dft_potential({"xc": "wb97m-d3bj", "basis": "sto-3g", "grid": 1, **TIGHT})
    check_forces_fd(pot, x, Z, h=1e-4, atol=1e-8, rtol=1e-7)


def test_open_shell_forces_and_virial_through_the_conformance_kit():
    """UHF for OH radical (spin = 1): forces and the open-system virial sum_i F_ia x_ib against rung.core's
    finite-difference kit."""
    pot = dft_potential({"xc": "hf", "basis": "sto-3g", "spin": 1, **TIGHT})
    x = np.array([[0.0, 0.0, 0.0], [0.1, 0.2, 1.85]])
    r = pot.compute(x, np.array([8, 1]), virial=True)
    np.testing.assert_allclose(r.virial, np.einsum("ia,ib->ab", r.forces, x), atol=1e-14)

    class OH:  # the kit passes its own numbers; ours are fixed
        energy_unit, length_unit = "hartree", "bohr"

        def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
            return pot.compute(positions, np.array([8, 1]), cell, forces=forces, virial=virial)

    check_forces_fd(OH(), x, np.array([8, 1]), h=1e-4, atol=2e-8)


def test_beads_are_separate_structures():
    beads = WATER + np.random.default_rng(5).normal(scale=0.03, size=(3, 3, 3))
    r = dft_potential({"xc": "hf", "basis": "sto-3g"}).compute(beads, Z, virial=True)
    assert r.energy.shape == (3,) and r.forces.shape == (3, 3, 3) and r.virial.shape == (3, 3, 3)
    for b in range(3):
        alone = dft_potential({"xc": "hf", "basis": "sto-3g"}).compute(beads[b], Z)
        assert r.energy[b] == pytest.approx(alone.energy, abs=1e-9)
        np.testing.assert_allclose(r.forces[b], alone.forces, atol=1e-6)


def test_extrapolation_is_exact_for_a_quadratic_history():
    rng = np.random.default_rng(0)
    a, b, c = rng.normal(size=(3, 4, 4))
    d = [a + b * t + c * t * t for t in range(4)]
    assert extrapolate([]) is None
    np.testing.assert_array_equal(extrapolate(d[2:3]), d[2])
    np.testing.assert_allclose(extrapolate(d[1:3]), 2 * d[2] - d[1], atol=1e-14)
    np.testing.assert_allclose(extrapolate(d[:3]), d[3], atol=1e-12)


def test_scf_along_a_trajectory_starts_from_the_extrapolated_density():
    """Two beads on a smooth path (0.01 Bohr steps): after three steps each SCF takes fewer cycles than
    from PySCF's guess, and the energies are those of cold SCFs (the guess changes no number)."""
    rng = np.random.default_rng(1)
    v, acc = rng.normal(scale=0.01, size=(2, 3, 3)), rng.normal(scale=0.001, size=(2, 3, 3))
    pot = dft_potential({"xc": "hf", "basis": "sto-3g"})
    for t in range(5):
        x = WATER + v * t + acc * t * t
        r = pot.compute(x, Z)
    cold_cycles = []
    for b in range(2):
        cold = dft_potential({"xc": "hf", "basis": "sto-3g"})
        assert r.energy[b] == pytest.approx(cold.compute(x[b], Z).energy, abs=1e-9)
        cold_cycles += cold.scf_cycles
    assert all(w < c for w, c in zip(pot.scf_cycles, cold_cycles)), (pot.scf_cycles, cold_cycles)
    pot.compute(x, Z)  # the same positions again: from their own density, one cycle
    assert max(pot.scf_cycles) <= 1


@pytest.mark.parametrize("spec,match", [
    ({"type": "dft", "basis": "sto-3g"}, "needs xc"),
    ({"type": "dft", "xc": "hf", "basis": "sto-3g", "smearing": 0.1}, "unknown option"),
    ({"type": "dft", "xc": "hf", "basis": "sto-3g", "grid": 12}, "grid level"),
    ({"type": "dft", "xc": "hf", "basis": "sto-3g", "spin": "two"}, "integers"),
])
def test_bad_dft_entries_are_input_errors(spec, match):
    import rung.md.potentials  # noqa: F401  (the 'dft' type before the entry points are installed)

    with pytest.raises(InputError, match=match):
        make_potential(spec)


def test_bad_structures_are_input_errors():
    pot = dft_potential({"xc": "hf", "basis": "sto-3g"})
    with pytest.raises(InputError, match="periodic cell"):
        pot.compute(WATER, Z, np.eye(3) * 20.0)
    with pytest.raises(InputError, match="multiplicity|electrons"):
        pot.compute(WATER[:2], np.array([8, 1]))  # OH with spin 0
    assert isinstance(make_potential({"type": "dft", "xc": "hf", "basis": "sto-3g"}), DFTPotential)


def _nve(tmp_path, dt_fs, beads):
    from ase.build import molecule

    from rung.md.config import load_config
    from rung.md.simulation import run

    molecule("H2O").write(tmp_path / "h2o.xyz")
    inp = tmp_path / "in.toml"
    inp.write_text(f'structure = "h2o.xyz"\nsteps = 10\ndt_fs = {dt_fs}\ntemperature_K = 300\nbeads = {beads}\n'
                   'thermostat = "none"\nseed = 3\npotential = {type = "dft", xc = "hf", basis = "sto-3g"}\n'
                   '[output]\nlog_every = 1\n')
    obs = run(load_config(inp), workdir=tmp_path, progress=False, overwrite=True).observables
    return np.ptp(obs["conserved_energy"]), np.ptp(obs["potential_energy"])


@pytest.mark.parametrize("beads", [1, 2])
def test_nve_md_through_the_md_api_conserves_energy(tmp_path, beads):
    """10 velocity-Verlet (beads = 2: RPMD) steps of HF water from ``nnp-md``'s input: the conserved
    energy moves by a few percent of the potential energy's swing, and its spread scales as dt^2 (a
    force inconsistent with the energy would add a drift linear in time instead). Measured (beads = 1):
    7.1e-6 Hartree at 0.25 fs, 2.9e-5 at 0.5 fs (ratio 4.0)."""
    small, swing = _nve(tmp_path, 0.25, beads)
    assert small < 0.05 * swing, (small, swing)
    large, _ = _nve(tmp_path, 0.5, beads)
    assert 3.0 < large / small < 5.0, (small, large)


def test_a_bad_dft_entry_in_an_nnp_md_input_is_one_line_with_exit_code_2(tmp_path):
    from ase.build import molecule
    from click.testing import CliRunner

    from rung.md.cli import main

    molecule("H2O").write(tmp_path / "h2o.xyz")
    inp = tmp_path / "in.toml"
    inp.write_text('structure = "h2o.xyz"\nsteps = 2\ndt_fs = 0.5\n'
                   'potential = {type = "dft", xc = "hf", basis = "sto-3g", spin = 1}\n')
    res = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(tmp_path), "--quiet"])
    assert res.exit_code == 2, res.output
    assert "multiplicity 2 is impossible" in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2o.xyz", "in.toml"]  # nothing written
