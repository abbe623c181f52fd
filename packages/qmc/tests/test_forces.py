"""QMC forces: the ZVZB estimator against independent oracles.

- Per sample set, exactly: the estimator is minus the derivative of the correlated-sampling
  (reweighted) energy of the same samples, computed here from wave functions built independently at
  displaced nuclei (with and without space warp, Jastrow on, ECP on).
- Envelope theorem: the SCF determinant's VMC force is PySCF's analytic SCF gradient, within 3 sigma
  (ccECP water: ECP terms included; all-electron H2).
- Translation invariance: with space warp every sample's derivatives sum to zero over the atoms.
- DMC: a killed and resumed run has the same forces; an energy-only checkpoint cannot resume a force run.
"""

import numpy as np
import pytest
from pyscf import gto, scf

from rung.qmc.dmc import DMCConfig, dmc
from rung.qmc.forces import ForceAccumulator, ForceConfig, NuclearDerivatives, displaced_builder, warp_weights, zvzb
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.traces import CheckpointError, Trace
from rung.qmc.vmc import VMCConfig, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


def _sample(mol, orb, nw, nsteps=3, seed=0, **opts):
    wf = slater_jastrow(mol, orb, **opts)
    rng = np.random.default_rng(seed)
    v = vmc(wf, Hamiltonian.from_mol(mol), initial_configs(mol, nw, rng),
            VMCConfig(nwalkers=nw, nblocks=2, nsteps=nsteps, nequil=10), rng=rng)
    return wf, v.configs


def _reweighted_energy(mol, orb, configs, logval0, coords, warp_from, atom, axis, delta, rng_state, params, **opts):
    """sum w E_L / sum w over fixed samples for nuclei at ``coords``, w = |psi'(r')|^2 J / |psi(r)|^2
    (logval0 = ln|psi(r)|); with ``warp_from`` (the undisplaced nuclei) the electrons move by omega_atom(r) delta along
    ``axis`` and J is the Jacobian of that map (from finite differences of omega here)."""
    m = mol.copy()
    m.set_geom_(coords, unit="Bohr")
    wf = slater_jastrow(m, orb, parameters=params, **opts)
    c, logj = configs, 0.0
    if warp_from is not None:
        def omega(x):  # omega_atom at points x (..., 3), written out independently of forces.warp_weights
            r4 = np.sum((x[..., None, :] - warp_from) ** 2, -1) ** -2
            return r4[..., atom] / r4.sum(-1)

        c = configs.copy()
        c[:, :, axis] += delta * omega(configs)
        e = np.zeros(3)
        e[axis] = 1e-6
        dom = (omega(configs + e) - omega(configs - e)) / 2e-6
        logj = np.log1p(delta * dom).sum(-1)
    rng = np.random.default_rng()
    rng.bit_generator.state = rng_state
    _, logval = wf.recompute(c)
    el = Hamiltonian.from_mol(m).local_energy(wf, c, rng)["total"]
    lw = 2 * (logval - logval0) + logj
    w = np.exp(lw - lw.max())
    return np.dot(w, el) / w.sum()


@pytest.fixture(scope="module")
def water():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    return mol, mean_field(mol)


@pytest.mark.parametrize("warp", [False, True])
def test_zvzb_is_minus_derivative_of_reweighted_energy(water, warp):
    """On a fixed sample set the ZVZB value is exactly -dE/dR of the reweighted energy of those samples
    (Jastrow with non-zero parameters, nonlocal ECP with one fixed quadrature rotation)."""
    mol, orb = water
    wf, configs = _sample(mol, orb, 30)
    params = {k: v + 0.05 * np.random.default_rng(1).normal(size=v.shape) for k, v in wf.parameters.items()}
    nd = NuclearDerivatives(displaced_builder(mol, orb, parameters=params), mol.atom_coords(),
                            ForceConfig(warp=warp, seed=5))
    state = nd.state()
    ref_wf = slater_jastrow(mol, orb, parameters=params)
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    _, logval0 = ref_wf.recompute(configs)
    el = Hamiltonian.from_mol(mol).local_energy(ref_wf, configs, rng)["total"]
    dl, de = nd(configs)
    f, _ = zvzb(np.array([el.mean()]), de.mean(0)[None], dl.mean(0)[None], (el[:, None, None] * dl).mean(0)[None])
    h = 2e-4
    for atom, axis in ((0, 2), (1, 1), (2, 0)):
        e = []
        for s in (1, -1):
            c = mol.atom_coords().copy()
            c[atom, axis] += s * h
            e.append(_reweighted_energy(mol, orb, configs, logval0, c, mol.atom_coords() if warp else None, atom, axis, s * h,
                                        state, params))
        fd = -(e[0] - e[1]) / (2 * h)
        assert abs(f[atom, axis] - fd) < 1e-5 * max(1.0, abs(fd)), (atom, axis, f[atom, axis], fd)


def test_space_warp_sums_to_zero_per_sample(water):
    """Moving every nucleus and (through the warp) every electron together changes nothing: the
    per-sample derivatives sum to zero over the atoms. Without the warp they do not."""
    mol, orb = water
    wf, configs = _sample(mol, orb, 10)
    for warp, small in ((True, True), (False, False)):
        nd = NuclearDerivatives(displaced_builder(mol, orb, parameters=wf.parameters), mol.atom_coords(),
                                ForceConfig(warp=warp))
        dl, de = nd(configs)
        tot = np.abs(dl.sum(1)).max() + np.abs(de.sum(1)).max()
        assert (tot < 1e-5) == small, (warp, tot)
    om, dom = warp_weights(configs, mol.atom_coords())
    np.testing.assert_allclose(om.sum(-1), 1.0, atol=1e-14)
    np.testing.assert_allclose(dom.sum(-2), 0.0, atol=1e-10)


def test_warp_weight_gradients_by_finite_differences():
    """d omega_I / d r against central differences of omega_I, random points around three nuclei."""
    rng = np.random.default_rng(3)
    coords = rng.normal(size=(3, 3))
    x = rng.normal(scale=1.5, size=(2, 4, 3))
    _, dom = warp_weights(x, coords)
    h = 1e-6
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        fd = (warp_weights(x + e, coords)[0] - warp_weights(x - e, coords)[0]) / (2 * h)
        np.testing.assert_allclose(dom[..., k], fd, rtol=1e-6, atol=1e-8)


def _vmc_forces(mol, orb, nw, nblocks, seed=1, **force_opts):
    wf = slater_jastrow(mol, orb, jastrow=False, cusp_correction=False)  # the SCF determinant itself
    nd = NuclearDerivatives(displaced_builder(mol, orb, jastrow=False, cusp_correction=False), mol.atom_coords(),
                            ForceConfig(**force_opts))
    rng = np.random.default_rng(seed)
    return vmc(wf, Hamiltonian.from_mol(mol), initial_configs(mol, nw, rng),
               VMCConfig(nwalkers=nw, nblocks=nblocks, nsteps=10, nequil=30), rng=rng, forces=nd)


def test_envelope_theorem_water_ccecp(water):
    """RHF orbitals are stationary, so the VMC force of the RHF determinant (MO coefficients frozen, AOs
    moving) is the analytic RHF gradient -- ECP local and nonlocal derivatives included."""
    mol, orb = water
    grad = scf.RHF(mol).run(verbose=0).nuc_grad_method().kernel()
    res = _vmc_forces(mol, orb, 100, 16)
    z = (res.forces + grad) / res.forces_error
    assert np.all(np.abs(z) < 3.5), z  # 9 components: 3.5 sigma keeps the chance of a false alarm ~0.4%
    assert res.forces_error.max() < 0.05
    np.testing.assert_allclose(res.forces.sum(0), 0.0, atol=1e-6)  # space warp: sums to zero exactly


def test_envelope_theorem_h2_all_electron():
    """All-electron H2 away from equilibrium (|F| ~ 0.22 Ha/Bohr): the VMC force of the RHF determinant
    equals PySCF's RHF gradient. Space warp is what makes this affordable: without it d E_L / dR ~ 1/r^2
    for an electron at r from a cusp-less nucleus, an infinite variance (error bars of 0.05-0.17 against
    0.007-0.015 with the warp in the same runs, BENCHMARKS.md)."""
    mol = gto.M(atom="H 0 0 0; H 0 0 1.1", unit="Bohr", basis="cc-pvdz", verbose=0)
    grad = scf.RHF(mol).run(verbose=0).nuc_grad_method().kernel()
    res = _vmc_forces(mol, mean_field(mol), 100, 10)
    z = (res.forces[:, 2] + grad[:, 2]) / res.forces_error[:, 2]
    assert np.all(np.abs(z) < 3.5), (res.forces[:, 2], res.forces_error[:, 2], -grad[:, 2])
    assert res.forces_error[:, 2].max() < 0.03


def test_regularised_estimates_and_extrapolation():
    """The Pathak-Wagner factor is 1 beyond epsilon and vanishes at the node; the extrapolated force is
    the straight line through the regularised ones evaluated at epsilon = 0."""
    from rung.qmc.forces import regulariser

    d = np.array([0.0, 0.05, 0.1, 0.2])
    np.testing.assert_allclose(regulariser(d, 0.1), [0.0, 7 / 64 - 15 / 16 + 9 / 4, 1.0, 1.0])
    rng = np.random.default_rng(0)
    acc = ForceAccumulator(2, epsilons=(0.1, 0.2, 0.3))
    for _ in range(50):
        acc.add(rng.normal(size=20), rng.normal(size=(20, 4, 3)) * 3, rng.normal(size=(20, 2, 3)),
                rng.normal(size=(20, 2, 3)))
    est = acc.estimate()
    eps = np.array([0.1, 0.2, 0.3])
    fs = np.stack([est.per_epsilon[e][0] for e in eps])  # (3, natom, 3)
    slope, icpt = np.polyfit(eps, fs.reshape(3, -1), 1)
    np.testing.assert_allclose(est.forces.ravel(), icpt, atol=1e-12)
    np.testing.assert_allclose(est.series.mean(0), est.forces, atol=1e-12)


def test_bad_force_settings():
    for kw in ({"step_bohr": 0.0}, {"every": 0}, {"epsilons": (0.1,)}, {"epsilons": (0.1, -0.1)}):
        with pytest.raises(ValueError):
            ForceConfig(**kw)
    acc = ForceAccumulator(1)
    with pytest.raises(FloatingPointError, match="non-finite"):
        acc.add(np.zeros(2), np.ones((2, 2, 3)), np.full((2, 1, 3), np.nan), np.zeros((2, 1, 3)))


@pytest.fixture(scope="module")
def water_dmc(water):
    mol, orb = water
    wf, configs = _sample(mol, orb, 8)
    build = displaced_builder(mol, orb, parameters=wf.parameters)
    return mol, wf, configs, build


def test_dmc_forces_resume_and_energy_unchanged(water_dmc, tmp_path):
    """Forces on: the DMC energies are bit-identical to an energy-only run (the derivatives draw their
    own random numbers); a run stopped after block 2 and resumed gives the same forces; the trace has
    per-block force rows (NaN in equilibration blocks)."""
    mol, wf, configs, build = water_dmc
    ham = Hamiltonian.from_mol(mol)
    cfg = DMCConfig(tau=0.02, nblocks=4, nsteps=3, nequil_blocks=1, seed=3)
    plain = dmc(wf, ham, configs, cfg, e_ref=-17.0)
    vf = (np.ones((3, 3)), np.full((3, 3), 0.1))
    full = dmc(wf, ham, configs, cfg, e_ref=-17.0, forces=NuclearDerivatives(build, mol.atom_coords()), vmc_forces=vf,
               checkpoint=tmp_path / "a.chk", trace=tmp_path / "a.h5")
    np.testing.assert_array_equal(plain.trace, full.trace)
    part = DMCConfig(tau=0.02, nblocks=2, nsteps=3, nequil_blocks=1, seed=3)
    dmc(wf, ham, configs, part, e_ref=-17.0, forces=NuclearDerivatives(build, mol.atom_coords()), vmc_forces=vf,
        checkpoint=tmp_path / "b.chk", trace=tmp_path / "b.h5")
    resumed = dmc(wf, ham, np.zeros_like(configs), cfg, forces=NuclearDerivatives(build, mol.atom_coords()),
                  checkpoint=tmp_path / "b.chk", trace=tmp_path / "b.h5")
    np.testing.assert_array_equal(resumed.forces, full.forces)
    np.testing.assert_array_equal(resumed.forces_error, full.forces_error)
    mixed = full.force_estimates["reynolds"][0]
    np.testing.assert_allclose(full.forces, 2 * mixed - vf[0])
    tr = Trace.read(tmp_path / "a.h5")
    assert tr["force_0_z"].shape == (4,) and np.isnan(tr["force_0_z"][0]) and np.all(np.isfinite(tr["force_0_z"][1:]))
    np.testing.assert_array_equal(tr["equilibration"], [1, 0, 0, 0])
    assert np.all(tr["variance"] > 0) and full.variance > 0
    # an energy-only checkpoint cannot resume a force run
    dmc(wf, ham, configs, part, e_ref=-17.0, checkpoint=tmp_path / "c.chk")
    with pytest.raises(CheckpointError, match="different run setup"):
        dmc(wf, ham, configs, cfg, forces=NuclearDerivatives(build, mol.atom_coords()), checkpoint=tmp_path / "c.chk")


def test_run_backend_reaches_the_analytic_derivatives():
    """QMCConfig.backend picks the force kernels too (run.kernel passes it through NuclearDerivatives)."""
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="sto-3g", verbose=0)
    build = displaced_builder(mol, mean_field(mol), cusp_correction=False)
    for backend in ("numba", "numpy"):
        assert NuclearDerivatives(build, mol.atom_coords(), backend=backend).analytic.backend == backend
