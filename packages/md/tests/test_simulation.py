"""The driver: input files, outputs (H5MD, extxyz, log), checkpoints and bit-for-bit restarts, bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from kills import kill_after_steps

from rung.core import units as U
from rung.md.cli import main
from rung.md.config import InputError, load_config
from rung.md.output import read_checkpoint
from rung.md.simulation import run

LJ = 'potential = {type = "lj", epsilon_eV = 0.0103, sigma_angstrom = 3.4, cutoff_angstrom = 6.0}'


def _argon(path: Path, repeat=2):
    from ase.build import bulk

    a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((repeat,) * 3)
    a.rattle(0.05, seed=1)
    a.write(path, format="extxyz")
    return a


def _input(tmp_path, body="", *, steps=40, beads=2, potential=LJ, structure="ar.xyz", output=""):
    if not (tmp_path / "ar.xyz").exists():
        _argon(tmp_path / "ar.xyz")
    text = (f'structure = "{structure}"\nsteps = {steps}\ndt_fs = 4.0\ntemperature_K = 80\nbeads = {beads}\n'
            f'thermostat = "langevin"\ntau_fs = 200\nseed = 9\n{body}\n{potential}\n'
            f"[output]\ntrajectory_every = 5\nlog_every = 5\ncheckpoint_every = 10\n{output}\n")
    path = tmp_path / "in.toml"
    path.write_text(text)
    return path


def test_cli_runs_and_writes_h5md_extxyz_log_checkpoint(tmp_path):
    inp = _input(tmp_path, output="all_beads = true")
    res = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "ns/day" in res.output
    with h5py.File(tmp_path / "md.h5") as f:
        assert list(f["h5md"].attrs["version"]) == [1, 1]
        assert f["h5md/creator"].attrs["name"] == "rung-md"
        assert (f.attrs["backend"], f.attrs["potential_backend"]) == ("numba", "numba")  # what ran: integrator, LJ
        pos = f["particles/centroid/position"]
        assert pos["value"].shape == (9, 32, 3) and pos["value"].attrs["unit"] == "nm"
        assert list(pos["step"][:]) == list(range(0, 41, 5))
        assert pos["time"].attrs["unit"] == "ps"
        np.testing.assert_allclose(pos["time"][:], pos["step"][:] * 4.0e-3)
        assert f["particles/centroid/box"].attrs["boundary"][0] == b"periodic"
        edges = f["particles/centroid/box/edges/value"]
        assert edges.shape == (9, 3, 3) and edges.attrs["unit"] == "nm"
        np.testing.assert_allclose(edges[0], np.diag([10.52] * 3) / 10, atol=1e-12)
        assert f["particles/beads/position/value"].shape == (9, 64, 3)
        beads = f["particles/beads/position/value"][-1].reshape(2, 32, 3)
        np.testing.assert_allclose(beads.mean(axis=0), pos["value"][-1], atol=1e-12)
        assert f["observables/temperature/value"].shape == (9,)
        assert np.isfinite(f["observables/pressure/value"][:]).all()
    from ase.io import read

    frames = read(tmp_path / "md.xyz", index=":")
    assert len(frames) == 9 and frames[-1].info["step"] == 40
    np.testing.assert_allclose(frames[-1].positions, pos_last(tmp_path) * 10, atol=1e-6)
    log = np.loadtxt(tmp_path / "md.log")
    assert log.shape == (9, 8) and log[-1, 0] == 40
    state, cfg, sizes, _ = read_checkpoint(tmp_path / "md.chk.h5")
    assert state.step == 40 and state.positions.shape == (2, 32, 3) and sizes["frames"] == 9


def pos_last(tmp_path):
    with h5py.File(tmp_path / "md.h5") as f:
        return f["particles/centroid/position/value"][-1]


def test_restart_after_a_crash_is_bit_for_bit(tmp_path):
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    ref_dir.mkdir()
    cut_dir.mkdir()
    cfg = load_config(_input(tmp_path, steps=60, beads=3))
    full = run(cfg, workdir=ref_dir, progress=False)
    with kill_after_steps(27):  # killed at step 27: frames after step 20 are lost
        run(cfg, workdir=cut_dir, progress=False)
    assert read_checkpoint(cut_dir / "md.chk.h5")[0].step == 20
    again = run(cfg, workdir=cut_dir, restart=True, progress=False)
    np.testing.assert_array_equal(again.state.positions, full.state.positions)
    np.testing.assert_array_equal(again.state.momenta, full.state.momenta)
    assert again.state.thermostat_energy == full.state.thermostat_energy
    assert (ref_dir / "md.log").read_bytes() == (cut_dir / "md.log").read_bytes()
    assert (ref_dir / "md.xyz").read_bytes() == (cut_dir / "md.xyz").read_bytes()
    with h5py.File(ref_dir / "md.h5") as a, h5py.File(cut_dir / "md.h5") as b:
        for name in ("particles/centroid/position/value", "particles/centroid/velocity/value",
                     "observables/conserved_energy/value", "particles/centroid/position/step"):
            np.testing.assert_array_equal(a[name][:], b[name][:])


def test_restart_extends_a_finished_run(tmp_path):
    cfg = load_config(_input(tmp_path, steps=20))
    run(cfg, workdir=tmp_path, progress=False)
    longer = load_config(_input(tmp_path, steps=30))
    r = run(longer, workdir=tmp_path, restart=True, progress=False)
    assert r.state.step == 30
    with pytest.raises(InputError, match="differs from the checkpoint"):
        run(load_config(_input(tmp_path, steps=40, beads=4)), workdir=tmp_path, restart=True, progress=False)


def test_sigkill_and_restart_from_the_command_line(tmp_path):
    """End to end as subprocesses: kill -9 a run mid-way, `nnp-md run --restart`, compare with an uninterrupted run."""
    exe = [sys.executable, "-m", "rung.md.cli", "run"]
    harmonic = 'potential = {type = "harmonic", frequency_cm = 200.0}'
    for d in ("ref", "cut"):
        (tmp_path / d).mkdir()
        _input(tmp_path / d, steps=8000, beads=2, potential=harmonic,
               structure=str(_argon(tmp_path / "ar.xyz", repeat=1) and tmp_path / "ar.xyz"))
    (tmp_path / "cut" / "in.toml").write_text((tmp_path / "cut" / "in.toml").read_text().replace(
        "checkpoint_every = 10", "checkpoint_every = 500"))
    (tmp_path / "ref" / "in.toml").write_text((tmp_path / "cut" / "in.toml").read_text())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(exe + ["in.toml", "--quiet"], cwd=tmp_path / "cut", env=env)
    chk = tmp_path / "cut" / "md.chk.h5"
    t0 = time.time()
    try:
        while time.time() - t0 < 120:
            if chk.exists() and read_checkpoint(chk)[0].step >= 500:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert read_checkpoint(chk)[0].step < 8000
    r = subprocess.run(exe + ["--restart", "--quiet"], cwd=tmp_path / "cut", env=env,  # input from the checkpoint
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(exe + ["in.toml", "--quiet"], cwd=tmp_path / "ref", env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    a, b = read_checkpoint(tmp_path / "ref" / "md.chk.h5")[0], read_checkpoint(chk)[0]
    assert a.step == b.step == 8000
    np.testing.assert_array_equal(a.positions, b.positions)
    np.testing.assert_array_equal(a.momenta, b.momenta)
    assert (tmp_path / "ref" / "md.log").read_bytes() == (tmp_path / "cut" / "md.log").read_bytes()
    with h5py.File(tmp_path / "ref" / "md.h5") as fa, h5py.File(tmp_path / "cut" / "md.h5") as fb:
        np.testing.assert_array_equal(fa["particles/centroid/position/value"][:],
                                      fb["particles/centroid/position/value"][:])


@pytest.mark.parametrize("edit,match", [
    (lambda t: t.replace(LJ, ""), "needs a potential"),
    (lambda t: t.replace('type = "lj"', 'type = "reaxff"'), "unknown potential type"),
    (lambda t: t.replace("dt_fs = 4.0", "dt_fs = 0.0"), "dt_fs must be positive"),
    (lambda t: t.replace("dt_fs = 4.0", "dt_fs = -1.0"), "dt_fs must be positive"),
    (lambda t: t.replace("cutoff_angstrom = 6.0", "cutoff_angstrom = 6.0, images = false"), "twice the cutoff"),
    (lambda t: t.replace('thermostat = "langevin"', 'thermostat = "berendsen"'), "unknown thermostat"),
    (lambda t: t.replace("ar.xyz", "nothere.xyz"), "does not exist"),
    (lambda t: "colour = 1\n" + t, "unknown input key"),
    (lambda t: t.replace("steps = 40", "steps = 4 0"), "not valid TOML"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(tmp_path, edit, match):
    inp = _input(tmp_path)
    inp.write_text(edit(inp.read_text()))
    before = set(os.listdir(tmp_path))
    res = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(tmp_path), "--quiet"])
    assert res.exit_code != 0
    assert match in res.output, res.output
    assert set(os.listdir(tmp_path)) == before


def test_unknown_element_for_the_model_writes_nothing(tmp_path):
    class OnlyHydrogen:
        energy_unit, length_unit = "hartree", "bohr"

        def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
            raise ValueError("element Ar (atom 0) is not covered by model 'h-only'")

    import rung.md.simulation as sim

    cfg = load_config(_input(tmp_path))
    before = set(os.listdir(tmp_path))
    orig = sim.make_potential
    sim.make_potential = lambda config, system: OnlyHydrogen()
    try:
        with pytest.raises(InputError, match="not covered by model"):
            run(cfg, workdir=tmp_path, progress=False)
    finally:
        sim.make_potential = orig
    assert set(os.listdir(tmp_path)) == before


def test_run_needs_an_input_or_restart(tmp_path):
    res = CliRunner().invoke(main, ["run", "--workdir", str(tmp_path)])
    assert res.exit_code != 0 and "input file" in res.output
    res = CliRunner().invoke(main, ["run", "--restart", "--workdir", str(tmp_path)])
    assert res.exit_code != 0 and "does not exist" in res.output


def test_unreadable_restart(tmp_path):
    cfg = load_config(_input(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        run(cfg, workdir=tmp_path, restart=True, progress=False)
    (tmp_path / "md.chk.h5").write_bytes(b"garbage, not HDF5")
    res = CliRunner().invoke(main, ["run", str(tmp_path / "in.toml"), "--workdir", str(tmp_path), "--restart"])
    assert res.exit_code != 0 and "unreadable" in res.output
    with pytest.raises(InputError, match="exists"):  # a fresh run does not silently replace a run
        run(cfg, workdir=tmp_path, progress=False)


def test_pressure_matches_ase_with_the_ideal_gas_term(tmp_path):
    from ase.calculators.lj import LennardJones as AseLJ

    from rung.md.estimators import pressure
    from rung.md.integrators import MDState
    from rung.md.potentials import LennardJones

    a = _argon(tmp_path / "ar.xyz", repeat=3)
    a.set_momenta(np.random.default_rng(0).normal(scale=0.5, size=(len(a), 3)))
    a.calc = AseLJ(sigma=3.4, epsilon=0.0103, rc=6.0, smooth=False)
    ase_p = -np.trace(a.get_stress(voigt=False, include_ideal_gas=True)) / 3  # eV / A^3
    x, cell = a.positions * U.ANGSTROM_TO_BOHR, np.asarray(a.cell) * U.ANGSTROM_TO_BOHR
    r = LennardJones(0.0103 * U.EV_TO_HARTREE, 3.4 * U.ANGSTROM_TO_BOHR, 6.0 * U.ANGSTROM_TO_BOHR).compute(
        x[None], a.numbers, cell, virial=True)
    mom = a.get_momenta() * np.sqrt(U.AMU_TO_ELECTRON_MASS * U.EV_TO_HARTREE)  # ASE momenta: sqrt(amu eV)
    s = MDState(x[None], mom[None], r.forces, r.energy, a.get_masses() * U.AMU_TO_ELECTRON_MASS, virial=r.virial)
    ours = pressure(s, 1e-3, cell) * U.HARTREE_PER_BOHR3_TO_GPA
    assert ours == pytest.approx(ase_p * U.EV_PER_ANGSTROM3_TO_GPA, rel=1e-6)


def test_mdanalysis_reads_the_h5md_trajectory(tmp_path):
    mda = pytest.importorskip("MDAnalysis")
    inp = _input(tmp_path)
    run(load_config(inp), workdir=tmp_path, progress=False)
    u = mda.Universe(str(tmp_path / "md.xyz"), str(tmp_path / "md.h5"), topology_format="XYZ", format="H5MD")
    assert len(u.trajectory) == 9
    ts = u.trajectory[-1]
    np.testing.assert_allclose(ts.dimensions, [10.52, 10.52, 10.52, 90, 90, 90], atol=1e-5)
    np.testing.assert_allclose(ts.positions, pos_last(tmp_path) * 10, atol=1e-4)
    assert ts.time == pytest.approx(0.16)


def _ani_or_skip():
    nnp = pytest.importorskip("rung.nnp")
    try:
        nnp.load_model("ani-1x", member=0)
    except Exception as err:  # weights not fetched on this machine
        pytest.skip(f"ANI-1x not available: {err}")


def test_nnp_potential_from_the_input_file(tmp_path):
    _ani_or_skip()
    from ase.collections import g2

    g2["H2O"].write(tmp_path / "w.xyz")
    text = ('structure = "w.xyz"\nsteps = 6\ndt_fs = 0.5\nbeads = 2\nthermostat = "langevin"\ntau_fs = 20\n'
            'potential = {type = "nnp", model = "ani-1x", member = 0}\n[output]\nlog_every = 2\ntrajectory_every = 2\n')
    (tmp_path / "in.toml").write_text(text)
    res = run(load_config(tmp_path / "in.toml"), workdir=tmp_path, progress=False)
    assert res.state.positions.shape == (2, 3, 3) and res.force_calls == 7
    assert -77 < res.observables["potential_energy"][0] < -76  # water, Hartree
    with h5py.File(tmp_path / "md.h5") as f:  # the backend the model resolved "auto" to, not a fixed name
        assert f.attrs["potential_backend"] == "numba"

    # an element the model does not know: clear error, nothing written
    (tmp_path / "bad").mkdir()
    from ase import Atoms

    Atoms("ArH", positions=[[0, 0, 0], [0, 0, 1.5]]).write(tmp_path / "bad" / "w.xyz")
    (tmp_path / "bad" / "in.toml").write_text(text)
    res = CliRunner().invoke(main, ["run", str(tmp_path / "bad" / "in.toml"), "--workdir", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "Ar" in res.output and "not covered" in res.output, res.output
    assert sorted(os.listdir(tmp_path / "bad")) == ["in.toml", "w.xyz"]


def test_classical_nve_log_prints_the_actual_kinetic_energy(tmp_path):
    """One bead, no thermostat: both kinetic columns are sum p^2/2m of the logged state (not 3/2 N k T at
    the input temperature); potential + kinetic is conserved while the kinetic energy itself moves."""
    inp = _input(tmp_path, steps=60, beads=1)
    inp.write_text(inp.read_text().replace('thermostat = "langevin"', 'thermostat = "none"').replace("dt_fs = 4.0", "dt_fs = 2.0"))
    res = run(load_config(inp), workdir=tmp_path, progress=False)
    log = np.loadtxt(tmp_path / "md.log")  # step time T V K_prim K_cv H p
    s = res.state
    p, m = s.momenta.reshape(-1, 3), np.asarray(s.masses)
    k_last = 0.5 * np.sum(p * p / m[:, None])
    assert log[-1, 0] == 60
    assert log[-1, 4] == pytest.approx(k_last, rel=1e-10) and log[-1, 5] == pytest.approx(k_last, rel=1e-10)
    n = m.size
    equipartition = 1.5 * n * U.BOLTZMANN_HARTREE_PER_K * 80
    assert np.ptp(log[:, 4]) > 0.05 * equipartition  # it moves (on main: a constant)
    total = log[:, 3] + log[:, 4]
    assert np.ptp(total) < 0.02 * np.ptp(log[:, 4])
    np.testing.assert_allclose(log[:, 4], 1.5 * n * U.BOLTZMANN_HARTREE_PER_K * log[:, 2], rtol=2e-5)  # T printed to 1e-4 K


def test_each_output_at_the_multiples_of_its_own_interval_and_a_restart_between(tmp_path):
    """Log every 3 steps, trajectory every 5, checkpoint every 7 of 20: killed after step 16, the checkpoint
    is step 14's and holds the frames 0, 5, 10 and the log lines 0 ... 12; the restart continues from it
    without a duplicate line or frame and ends with a checkpoint of step 20."""
    inp = _input(tmp_path, steps=20, beads=1)
    inp.write_text(inp.read_text().replace("trajectory_every = 5\nlog_every = 5\ncheckpoint_every = 10",
                                           "trajectory_every = 5\nlog_every = 3\ncheckpoint_every = 7"))
    cfg = load_config(inp)
    with kill_after_steps(16):
        run(cfg, workdir=tmp_path, progress=False)
    state, _, sizes, _ = read_checkpoint(tmp_path / "md.chk.h5")
    assert state.step == 14 and sizes["frames"] == 3
    logged = (tmp_path / "md.log").read_bytes()[:sizes["log"]].decode().splitlines()
    assert [int(line.split()[0]) for line in logged[1:]] == [0, 3, 6, 9, 12]
    res = run(cfg, workdir=tmp_path, restart=True, progress=False)
    assert list(res.observables["step"]) == [15, 18]
    assert list(np.loadtxt(tmp_path / "md.log")[:, 0]) == list(range(0, 19, 3))
    with h5py.File(tmp_path / "md.h5") as f:
        assert list(f["particles/centroid/position/step"][:]) == [0, 5, 10, 15, 20]
        assert list(f["observables/temperature/step"][:]) == [0, 5, 10, 15, 20]
    assert [a.info["step"] for a in _read_xyz(tmp_path / "md.xyz")] == [0, 5, 10, 15, 20]
    assert read_checkpoint(tmp_path / "md.chk.h5")[0].step == 20


def _read_xyz(path):
    from ase.io import read

    return read(path, index=":")
