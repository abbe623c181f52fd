"""DMC: exact restart, population-failure detection, corrupt checkpoints, and energies against exact values."""

import h5py
import numpy as np
import pytest
from pyscf import gto

from rung.qmc.dmc import DMCConfig, PopulationError, comb, dmc
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.traces import CheckpointError, Trace
from rung.qmc.vmc import VMCConfig, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


def _setup(mol, nw, seed=0, vmc_blocks=2):
    orb = mean_field(mol)
    wf = slater_jastrow(mol, orb)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(seed)
    v = vmc(wf, ham, initial_configs(mol, nw, rng), VMCConfig(nwalkers=nw, nblocks=vmc_blocks, nsteps=10, nequil=20),
            rng=rng)
    return orb, wf, ham, v


@pytest.fixture(scope="module")
def water():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    return _setup(mol, 12)


def test_resume_reproduces_uninterrupted_run(water, tmp_path):
    """A run stopped after block 2 and resumed from its checkpoint gives the same per-step energies as
    an uninterrupted run with the same seed (T-moves and ECP random rotations included)."""
    _, wf, ham, v = water
    cfg = DMCConfig(tau=0.02, nblocks=4, nsteps=3, nequil_blocks=1, seed=3)
    full = dmc(wf, ham, v.configs, cfg, e_ref=v.energy, checkpoint=tmp_path / "a.chk", trace=tmp_path / "a.h5")
    part = DMCConfig(tau=0.02, nblocks=2, nsteps=3, nequil_blocks=1, seed=3)
    dmc(wf, ham, v.configs, part, e_ref=v.energy, checkpoint=tmp_path / "b.chk", trace=tmp_path / "b.h5")
    # a killed run may have appended trace rows after its last checkpoint: simulate one
    Trace(tmp_path / "b.h5", "dmc", {"energy": "hartree"}, "numba").append({"energy": 123.0})
    resumed = dmc(wf, ham, np.zeros_like(v.configs), cfg, checkpoint=tmp_path / "b.chk", trace=tmp_path / "b.h5")
    np.testing.assert_array_equal(resumed.trace, full.trace)
    assert resumed.energy == full.energy and resumed.error == full.error
    np.testing.assert_array_equal(resumed.configs, full.configs)
    a, b = Trace.read(tmp_path / "a.h5"), Trace.read(tmp_path / "b.h5")
    assert a["energy"].shape == (4,)
    np.testing.assert_array_equal(a["energy"], b["energy"])
    with h5py.File(tmp_path / "a.h5") as f:
        assert f.attrs["schema"] == "rung.qmc.trace" and f["energy"].attrs["units"] == "hartree"


def test_tmove_accept_at_moved_walkers_only(water):
    """A T-move's accept (no ``saved``) evaluates the new position at the moved walkers only; oracle: accept
    given gradient_value's saved data, evaluated at every walker (the VMC sweep's path)."""
    import copy

    _, wf0, _, v = water
    wf = copy.deepcopy(wf0)
    configs = v.configs.copy()
    wf.recompute(configs)
    rng = np.random.default_rng(7)
    for e, moved in ((0, [2, 5, 9]), (5, [4]), (6, [0, 1, 3, 11])):  # both spins, odd and even counts
        mask = np.zeros(configs.shape[0], dtype=bool)
        mask[moved] = True
        new = configs[:, e] + 0.3 * rng.normal(size=(configs.shape[0], 3))
        ref = copy.deepcopy(wf)
        ref.accept(e, new, mask, ref.gradient_value(e, new)[2])
        det = wf.components[0]
        s = det._spin(e)[0]
        orbitals, rows = det.orbitals, []
        spy = lambda pos, deriv: rows.append(len(pos)) or orbitals[s](pos, deriv)  # noqa: E731
        det.orbitals = tuple(spy if k == s else o for k, o in enumerate(orbitals))
        try:
            wf.accept(e, new, mask)
        finally:
            det.orbitals = orbitals
        assert rows == [len(moved)]  # the orbitals at the moved walkers only
        configs[mask, e] = new[mask]
        (det, jas), (rdet, rjas) = wf.components, ref.components
        for s in (0, 1):
            np.testing.assert_allclose(det.inverse[s], rdet.inverse[s], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(det.mo[s], rdet.mo[s], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(det.logdet, rdet.logdet, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(det.sign, rdet.sign)
        np.testing.assert_allclose(jas.logval, rjas.logval, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(jas.configs, rjas.configs)
    # and the state is that of a recomputation at the moved positions
    logdet, logj = det.logdet.copy(), jas.logval.copy()
    wf.recompute(configs)
    np.testing.assert_allclose(det.logdet, logdet, rtol=0, atol=1e-10)
    np.testing.assert_allclose(jas.logval, logj, rtol=0, atol=1e-10)


def test_corrupt_or_foreign_checkpoint(water, tmp_path):
    _, wf, ham, v = water
    bad = tmp_path / "bad.chk"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n garbage")
    cfg = DMCConfig(tau=0.02, nblocks=2, nsteps=2, nequil_blocks=1)
    with pytest.raises(CheckpointError, match="corrupt"):
        dmc(wf, ham, v.configs, cfg, checkpoint=bad)
    good = tmp_path / "good.chk"
    dmc(wf, ham, v.configs, cfg, checkpoint=good)
    with pytest.raises(CheckpointError, match="different run setup"):
        dmc(wf, ham, v.configs, DMCConfig(tau=0.01, nblocks=2, nsteps=2, nequil_blocks=1), checkpoint=good)


def test_population_explosion_detected(water):
    _, wf, ham, v = water
    with pytest.raises(PopulationError, match="explosion"):
        dmc(wf, ham, v.configs, DMCConfig(tau=0.02, nblocks=2, nsteps=3, nequil_blocks=1, energy_cutoff=1e3),
            e_ref=v.energy + 200.0)


class _OneWalkerDominates(Hamiltonian):
    """A Hamiltonian whose local energy of walker 0 is far below the rest: its weight takes over."""

    def local_energy(self, wf, configs, rng, return_grad=False, nonlocal_terms=None):
        out, grad = super().local_energy(wf, configs, rng, return_grad=True, nonlocal_terms=nonlocal_terms)
        out["total"] = out["total"].copy()
        out["total"][0] -= 40.0
        return (out, grad) if return_grad else out


def test_population_collapse_detected(water):
    _, wf, ham, v = water
    bad = _OneWalkerDominates(ham.atom_coords, ham.atom_charges, ham.ecp)
    with pytest.raises(PopulationError, match="collapse"):
        dmc(wf, bad, v.configs, DMCConfig(tau=0.2, nblocks=3, nsteps=6, nequil_blocks=1, patience=3, energy_cutoff=1e3,
                                          tmoves=False), e_ref=v.energy)


def test_comb_is_unbiased():
    rng = np.random.default_rng(0)
    w = rng.random(10)
    counts = np.zeros(10)
    for _ in range(4000):
        counts += np.bincount(comb(w, rng), minlength=10)
    np.testing.assert_allclose(counts / counts.sum(), w / w.sum(), atol=0.01)


def test_dmc_h2_recovers_correlation():
    """Nodeless H2: DMC goes well below Hartree-Fock, towards the exact -1.174476 Ha."""
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvdz", verbose=0)
    orb, wf, ham, v = _setup(mol, 200)
    d = dmc(wf, ham, v.configs, DMCConfig(tau=0.05, nblocks=11, nsteps=40, nequil_blocks=1), e_ref=v.energy)
    assert d.energy < orb.e_tot - 3 * d.error and d.error < 0.008
    # 3 sigma plus 5 mHa for the time-step error at tau = 0.05 (the slow tests use tau = 0.01)
    assert abs(d.energy - (-1.174476)) < 3 * d.error + 0.005


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    """A `qmc dmc` process killed with SIGKILL after a checkpoint, rerun with the same command, ends
    with the same per-block trace and energy as an uninterrupted run with the same seed."""
    import os
    import signal
    import subprocess
    import sys
    import time

    xyz = tmp_path / "h2.xyz"
    xyz.write_text("2\n\nH 0 0 0\nH 0 0 0.74\n")

    def cmd(tag):
        return [sys.executable, "-m", "rung.qmc.cli", "dmc", str(xyz), "--basis", "sto-3g", "--ecp", "none",
                "--walkers", "20", "--vmc-blocks", "2", "--vmc-steps", "3", "--tau", "0.05", "--blocks", "60",
                "--steps", "10", "--equil-blocks", "2", "--seed", "4", "--checkpoint", str(tmp_path / f"{tag}.chk"),
                "--trace", str(tmp_path / f"{tag}.h5")]

    ref = subprocess.run(cmd("ref"), capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen(cmd("run"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chk = tmp_path / "run.chk"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if chk.exists():
            try:
                with h5py.File(chk, "r") as f:
                    import json

                    if json.loads(f.attrs["meta"])["block"] >= 3:
                        break
            except (OSError, KeyError):
                pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = Trace.read(tmp_path / "run.h5")["energy"].size
    assert 3 <= killed_at < 60
    resumed = subprocess.run(cmd("run"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    e_ref = [line for line in ref.stdout.splitlines() if "E(DMC)" in line]
    e_res = [line for line in resumed.stdout.splitlines() if "E(DMC)" in line]
    assert e_ref == e_res and e_ref
    np.testing.assert_array_equal(Trace.read(tmp_path / "run.h5")["energy"], Trace.read(tmp_path / "ref.h5")["energy"])


class _Quaternions:
    """A stand-in generator whose ``normal(size=(n, 4))`` returns the next preset (n, 4) block."""

    def __init__(self, *blocks):
        self.blocks = list(blocks)

    def normal(self, size):
        q = self.blocks.pop(0)
        assert q.shape == tuple(size)
        return q.copy()


@pytest.mark.parametrize("path", ["fused", "generic"])
def test_nonlocal_electron_of_a_walker_subset(water, path):
    """nonlocal_electron(walkers=idx) equals the rows idx of the every-walker evaluation given the same
    rotations (quaternions Q[idx]), for the fused kernel and the generic testvalue path, also where the
    Jastrow's cache of J_e was dropped by a move (the state T-moves evaluate subsets in)."""
    import copy

    from rung.qmc.ecp import _fused_inputs
    from rung.qmc.wavefunction import ProductWF

    _, wf0, ham, v = water
    wf = copy.deepcopy(wf0)
    if path == "generic":
        wf.__class__ = type("NotFused", (ProductWF,), {})  # ratio_vector_parts serves only ProductWF itself
    configs = v.configs.copy()
    wf.recompute(configs)
    nw = configs.shape[0]
    assert (_fused_inputs(wf, 0) is not None) == (path == "fused")
    rng = np.random.default_rng(11)
    mask = np.zeros(nw, dtype=bool)
    mask[[1, 4, 7]] = True
    new = configs[:, 2] + 0.2 * rng.normal(size=(nw, 3))
    wf.accept(2, new, mask)  # drops the Jastrow's cached J_e
    configs[mask, 2] = new[mask]
    idx = np.array([0, 4, 5, 10])
    for e in (0, 2, 6):
        Q = rng.normal(size=(nw, 4))
        sub_t, sub_p = ham.ecp.nonlocal_electron(wf, e, configs, _Quaternions(Q[idx]), walkers=idx)
        full_t, full_p = ham.ecp.nonlocal_electron(wf, e, configs, _Quaternions(Q))
        assert np.count_nonzero(full_t[idx]) > 0  # some of these walkers are within a projector's range
        np.testing.assert_allclose(sub_p, full_p[idx], rtol=0, atol=1e-14)
        np.testing.assert_allclose(sub_t, full_t[idx], rtol=1e-12, atol=1e-15)


def test_tmove_reuses_the_local_energy_quadrature(water, monkeypatch):
    """Given the local energy's quadrature, a T-move pass evaluates electron e afresh exactly at the walkers
    that an earlier electron's T-move moved in this pass (none for the first electron), and takes the
    moves of the others from the given terms: with a generator whose uniforms all lie above every
    probability nothing moves and nothing is evaluated; and the first electron's moves follow its given
    terms (the oracle: the move rule applied to them by hand)."""
    import copy

    from rung.qmc import dmc as dmc_mod

    _, wf0, ham, v = water
    wf = copy.deepcopy(wf0)
    configs = v.configs.copy()
    nw, ne, _ = configs.shape
    wf.recompute(configs)
    quad = []
    ham.local_energy(wf, configs, np.random.default_rng(5), nonlocal_terms=quad)
    assert len(quad) == ne and quad[0][0].shape[0] == nw
    tau = 2.0  # large: many walkers move
    calls, accepted = [], []
    real_nl, real_accept = type(ham.ecp).nonlocal_electron, wf.accept

    def spy_nl(self, wf_, e, configs_, rng_, grid=None, walkers=None):
        calls.append((e, None if walkers is None else tuple(walkers)))
        return real_nl(self, wf_, e, configs_, rng_, grid, walkers)

    def spy_accept(e, epos, mask, saved=None):
        accepted.append((e, np.nonzero(mask)[0]))
        return real_accept(e, epos, mask, saved)

    monkeypatch.setattr(type(ham.ecp), "nonlocal_electron", spy_nl)
    monkeypatch.setattr(wf, "accept", spy_accept)
    rng = np.random.default_rng(9)
    u0 = np.random.default_rng(9).random(nw)  # the first electron's uniforms
    t = np.where(quad[0][0] < 0.0, -tau * quad[0][0], 0.0)
    expect0 = np.nonzero(u0 > t.sum(1) / (1.0 + t.sum(1)) * (1 - 1e-12))[0]  # stays where u >= total probability
    before = configs.copy()
    dmc_mod.tmove(wf, ham.ecp, configs, tau, rng, quad)
    moved0 = accepted[0][1] if accepted and accepted[0][0] == 0 else np.array([], int)
    np.testing.assert_array_equal(np.setdiff1d(np.arange(nw), moved0), expect0)
    stale, expected_calls = set(), []
    moved_by = {e: set(w.tolist()) for e, w in accepted}
    for e in range(ne):
        if stale:
            expected_calls.append((e, tuple(sorted(stale))))
        stale |= moved_by.get(e, set())
    assert calls == expected_calls and len(calls) > 0
    assert np.any(configs != before)

    class NoMoves:
        def random(self, n):
            return np.ones(n)

    calls.clear()
    accepted.clear()
    wf.recompute(before)
    dmc_mod.tmove(wf, ham.ecp, before.copy(), tau, NoMoves(), quad)
    assert calls == [] and accepted == []
