"""Analytic per-sample nuclear derivatives (rung.qmc.force_derivs) against central finite differences.

The oracle is :class:`rung.qmc.forces.NuclearDerivatives`: trial functions re-built at displaced nuclei
(the same MO coefficients and Jastrow parameters), ln|psi| and E_L recomputed there, the ECP quadrature
rotation shared (both draw it from the same seeded stream). Its O(h^2) error (h = 3e-5 Bohr) is ~1e-8
relative for ccECP water; near the bare nuclei of all-electron LiH it is removed by Richardson
extrapolation of the steps h and 2h (what is left is O(h^4) and round-off). The analytic values must
agree to 1e-6 relative.
"""

import numpy as np
import pytest
from pyscf import gto

from rung.qmc.force_derivs import AnalyticDerivatives, radial_poly, unsupported_reason
from rung.qmc.forces import ForceConfig, NuclearDerivatives, displaced_builder
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.vmc import VMCConfig, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


def _setup(mol, nw, **opts):
    """(orbitals, Jastrow parameters perturbed away from zero, equilibrated walkers (nw, ne, 3))."""
    orb = mean_field(mol)
    wf = slater_jastrow(mol, orb, **opts)
    rng = np.random.default_rng(0)
    configs = vmc(wf, Hamiltonian.from_mol(mol), initial_configs(mol, nw, rng),
                  VMCConfig(nwalkers=nw, nblocks=1, nsteps=2, nequil=10), rng=rng).configs
    params = {k: v + 0.1 * np.random.default_rng(1).normal(size=v.shape) for k, v in wf.parameters.items()}
    return orb, params, configs


def _compare(mol, orb, params, configs, warp, h=3e-5, richardson=False, **opts):
    """((d ln psi, d E_L) by central differences (Richardson-extrapolated from h and 2h if asked), the
    same analytically)."""
    fds = []
    for step in (h, 2 * h) if richardson else (h,):
        cfg = ForceConfig(warp=warp, seed=5, step_bohr=step, method="fd")
        fds.append(NuclearDerivatives(displaced_builder(mol, orb, parameters=params, **opts), mol.atom_coords(),
                                      cfg)(configs))
    fd = tuple((4.0 * a - b) / 3.0 for a, b in zip(*fds)) if richardson else fds[0]
    an = AnalyticDerivatives(mol, slater_jastrow(mol, orb, parameters=params, **opts), Hamiltonian.from_mol(mol), cfg)
    return fd, an(configs)


@pytest.fixture(scope="module")
def water():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    return (mol,) + _setup(mol, 6)


@pytest.mark.parametrize("jastrow,warp", [(False, False), (True, False), (True, True)])
def test_water_ccecp_matches_finite_differences(water, jastrow, warp):
    """d ln|psi| and d E_L (kinetic, Jastrow, -Z/r, nuclear repulsion, ccECP local and nonlocal) of
    every atom against the displaced-trial-function central differences; with the space warp the
    electrons move too (d ln psi gains sum_i omega_I grad_i ln psi + 1/2 sum_i d omega_I, d E_L gains
    sum_i omega_I grad_i E_L)."""
    mol, orb, params, configs = water
    params = params if jastrow else None
    (dl0, de0), (dl1, de1) = _compare(mol, orb, params, configs, warp, jastrow=jastrow)
    np.testing.assert_allclose(dl1, dl0, atol=1e-6 * np.abs(dl0).max(), rtol=0)
    np.testing.assert_allclose(de1, de0, atol=1e-6 * np.abs(de0).max(), rtol=0)
    assert np.abs(de0).max() > 0.5 and np.abs(dl0).max() > 0.5  # not a comparison of zeros


def test_electron_gradient_of_local_energy(water):
    """grad_i E_L of every electron (what the warp needs) against central differences of E_L in the
    electron coordinates, the ECP quadrature rotation held fixed (same seed for every evaluation)."""
    mol, orb, params, configs = water
    configs = configs[:3]
    ham = Hamiltonian.from_mol(mol)
    an = AnalyticDerivatives(mol, slater_jastrow(mol, orb, parameters=params), ham)
    an.rng = np.random.default_rng(11)
    _, _, _, ge = an.derivatives(configs, an._draw_rotations(*configs.shape[:2]))
    wf = slater_jastrow(mol, orb, parameters=params)

    def el(c):
        wf.recompute(c)
        return ham.local_energy(wf, c, np.random.default_rng(11))["total"]

    h, fd = 1e-5, np.zeros_like(ge)
    for j in range(configs.shape[1]):
        for x in range(3):
            cp, cm = configs.copy(), configs.copy()
            cp[:, j, x] += h
            cm[:, j, x] -= h
            fd[:, j, x] = (el(cp) - el(cm)) / (2 * h)
    np.testing.assert_allclose(ge, fd, atol=1e-7 * np.abs(fd).max(), rtol=0)


@pytest.mark.parametrize("warp", [False, True])
def test_all_electron_jastrow_cusp_matches_finite_differences(warp):
    """All-electron LiH with the electron-nucleus cusp in the Jastrow (orbitals not cusp-corrected):
    the one-body term's cusp part and the bare -Z/r derivative."""
    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", unit="Bohr", basis="6-31g", verbose=0)
    opts = {"en_cusp": True, "cusp_correction": False}
    orb, params, configs = _setup(mol, 5, **opts)
    (dl0, de0), (dl1, de1) = _compare(mol, orb, params, configs, warp, richardson=True, **opts)
    np.testing.assert_allclose(dl1, dl0, atol=1e-6 * np.abs(dl0).max(), rtol=0)
    np.testing.assert_allclose(de1, de0, atol=1e-6 * np.abs(de0).max(), rtol=0)


def test_radial_poly_derivatives():
    """The three r-derivatives of a cutoff polynomial against central differences of the lower one."""
    poly = np.array([0.3, -1.2, 0.7, 2.0, -0.4])
    r, h = np.linspace(0.1, 2.9, 7), 1e-5
    f = radial_poly(poly, 3.0, r)
    fp, fm = radial_poly(poly, 3.0, r + h), radial_poly(poly, 3.0, r - h)
    for k in range(3):
        np.testing.assert_allclose(f[k + 1], (fp[k] - fm[k]) / (2 * h), rtol=1e-7, atol=1e-9)
    assert np.all(radial_poly(poly, 3.0, np.array([3.0, 4.0]))[0] == 0.0)


def test_unsupported_trial_functions(water):
    mol, orb, _, _ = water
    assert unsupported_reason(slater_jastrow(mol, orb)) is None
    assert "three-body" in unsupported_reason(slater_jastrow(mol, orb, three_body=True))
    li = gto.M(atom="Li 0 0 0; H 0 0 3.0", unit="Bohr", basis="6-31g", verbose=0)
    assert "cusp" in unsupported_reason(slater_jastrow(li, mean_field(li)))
    with pytest.raises(ValueError, match="three-body"):
        AnalyticDerivatives(mol, slater_jastrow(mol, orb, three_body=True), Hamiltonian.from_mol(mol))


def test_method_switch(water):
    """NuclearDerivatives takes the analytic path by default where it applies, finite differences with
    method="fd" or where it does not (three-body Jastrow); method="analytic" there is an error."""
    mol, orb, params, configs = water
    build = displaced_builder(mol, orb, parameters=params)
    auto = NuclearDerivatives(build, mol.atom_coords())
    fd = NuclearDerivatives(build, mol.atom_coords(), ForceConfig(method="fd"))
    assert auto.method == "analytic" and fd.method == "finite differences"
    (dl0, de0), (dl1, de1) = fd(configs), auto(configs)
    np.testing.assert_allclose(dl1, dl0, atol=1e-6 * np.abs(dl0).max(), rtol=0)
    np.testing.assert_allclose(de1, de0, atol=1e-5 * np.abs(de0).max(), rtol=0)  # h = 1e-4: O(h^2) ~ 1e-7
    np.testing.assert_array_equal(auto.state()["state"]["state"], fd.state()["state"]["state"])  # same draws
    three = displaced_builder(mol, orb, three_body=True)
    assert NuclearDerivatives(three, mol.atom_coords()).method == "finite differences"
    with pytest.raises(ValueError, match="three-body"):
        NuclearDerivatives(three, mol.atom_coords(), ForceConfig(method="analytic"))
    with pytest.raises(ValueError, match="method"):
        ForceConfig(method="exact")


def test_det_kernel_matches_numpy_reference():
    """The numba (electron, AO) contraction with its own cartesian third derivatives against the NumPy
    reference on PySCF's cartesian AOs (s to f shells), random matrices, to 1e-10."""
    from rung.qmc._kernels.cpu.forces import det_terms
    from rung.qmc.force_derivs import _ao_by_atom, det_terms_numpy
    from rung.qmc.orbitals import SCREEN, AtomicBasis

    mol = gto.M(atom="C 0 0 0; O 0 0 2.1; H 1.2 1.0 -0.8", unit="Bohr", basis="ccecp-cc-pvtz", ecp="ccecp", spin=1,
                cart=True, verbose=0)
    b = AtomicBasis.from_mol(mol)
    rng = np.random.default_rng(4)
    nw, n = 3, 4
    pos = rng.normal(scale=1.5, size=(nw, n, 3))
    b0, cx = rng.normal(size=(2, nw, b.ncart, n))
    jg = rng.normal(size=(nw, n, 3))
    sh_atom = np.argmin(np.linalg.norm(b.sh_center[:, None] - mol.atom_coords()[None], axis=-1), axis=1)
    got = det_terms(pos, b.sh_center, b.sh_l, b.sh_pstart, b.sh_col, b.sh_minexp, sh_atom, b.exps, b.coefs, b0, cx, jg,
                    mol.natm, SCREEN)
    ao = mol.eval_gto("GTOval_cart_deriv3", pos.reshape(-1, 3)).reshape(20, nw, n, -1)
    ref = det_terms_numpy(ao, b0, cx, jg, _ao_by_atom(mol))
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-10 * np.abs(r).max(), rtol=0)


def test_numba_and_numpy_backends_agree(water):
    """The whole analytic path, numba (cartesian AOs, fused kernels) against numpy (PySCF AOs, einsums)."""
    mol, orb, params, configs = water
    wf, ham = slater_jastrow(mol, orb, parameters=params), Hamiltonian.from_mol(mol)
    out = []
    for backend in ("numpy", "numba"):
        an = AnalyticDerivatives(mol, wf, ham, backend=backend)
        rot = an._draw_rotations(*configs.shape[:2])
        out.append(an.derivatives(configs, rot))
    for ref, got in zip(*out):
        np.testing.assert_allclose(got, ref, atol=1e-10 * np.abs(ref).max(), rtol=0)
    dl, de, _, ge = an.derivatives(configs, rot, electron_gradient=False)  # (what no warp needs)
    assert ge is None
    np.testing.assert_allclose(dl, out[0][0], atol=1e-10 * np.abs(out[0][0]).max(), rtol=0)
    np.testing.assert_allclose(de, out[0][1], atol=1e-10 * np.abs(out[0][1]).max(), rtol=0)


def test_sampler_state_matches_recomputation(water):
    """Taking the sampler's trial function as it is after VMC moves (Sherman-Morrison inverses, cached
    orbital data, the local energy's grad ln psi) gives the derivatives of a fresh recomputation at the
    same walkers (same rotations) to round-off; a trial function with other parameters, or not in the
    state of the walkers given, is refused."""
    mol, orb, params, configs = water
    wf, ham = slater_jastrow(mol, orb, parameters=params), Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(2)
    walkers = vmc(wf, ham, configs.copy(), VMCConfig(nwalkers=configs.shape[0], nblocks=1, nsteps=3, nequil=0),
                  rng=rng).configs  # wf is left in the state of these walkers after its moves
    _, grad = ham.local_energy(wf, walkers, rng, return_grad=True)
    runs = [AnalyticDerivatives(mol, wf, ham, ForceConfig(seed=3)) for _ in range(3)]
    ref = runs[0](walkers.copy())
    for got in (runs[1](walkers, wf, grad), runs[2](walkers, wf)):
        for r, g in zip(ref, got):
            np.testing.assert_allclose(g, r, atol=1e-10 * np.abs(r).max(), rtol=0)
    other = slater_jastrow(mol, orb)
    other.recompute(walkers)
    with pytest.raises(ValueError, match="not the one"):
        runs[0](walkers, other)
    with pytest.raises(ValueError, match="not in the state"):
        runs[0](walkers + 0.1, wf)


def test_nonlocal_two_ecp_atoms_numba_and_numpy_agree():
    """The nonlocal kernel (spline AOs centre by centre, s to f shells, shells on the ECP atom and on the
    other one) against the NumPy path (PySCF AOs), two ECP atoms, Jastrow on, with and without warp."""
    mol = gto.M(atom="C 0 0 0; O 0 0 2.1", unit="Bohr", basis="ccecp-cc-pvtz", ecp="ccecp", verbose=0)
    orb = mean_field(mol)
    wf = slater_jastrow(mol, orb)
    wf.set_parameters({k: 0.1 * np.random.default_rng(5).normal(size=v.shape) for k, v in wf.parameters.items()})
    ham = Hamiltonian.from_mol(mol)
    configs = initial_configs(mol, 3, np.random.default_rng(6))
    configs[:, :4] = 0.6 * np.random.default_rng(7).normal(size=(3, 4, 3)) + [0.0, 0.0, 1.05]  # near both ions
    out = []
    for backend in ("numpy", "numba"):
        an = AnalyticDerivatives(mol, wf, ham, backend=backend)
        out.append(an.derivatives(configs, an._draw_rotations(*configs.shape[:2])))
    for ref, got in zip(*out):
        np.testing.assert_allclose(got, ref, atol=1e-10 * np.abs(ref).max(), rtol=0)


def test_electron_terms_kernel_matches_numpy_reference(water):
    """The numba kernel of the Jastrow / Coulomb / local-ECP terms against its NumPy oracle, random grad ln psi."""
    from rung.qmc._kernels.cpu.forces import electron_terms

    mol, orb, params, configs = water
    an = AnalyticDerivatives(mol, slater_jastrow(mol, orb, parameters=params), Hamiltonian.from_mol(mol))
    gt = np.random.default_rng(8).normal(size=configs.shape)
    nw, ne, _ = configs.shape
    out = [(np.zeros((nw, mol.natm, 3)), np.zeros((nw, mol.natm, 3)), np.zeros((nw, ne, 3))) for _ in range(2)]
    an._electron_terms_numpy(configs, gt, *out[0])
    t = an.tables
    electron_terms(configs, gt, t.coords, t.charges, t.spin, True, *t.jastrow, *t.local, *out[1])
    for ref, got in zip(*out):
        assert np.abs(ref).max() > 0.1
        np.testing.assert_allclose(got, ref, atol=1e-12 * np.abs(ref).max(), rtol=0)
