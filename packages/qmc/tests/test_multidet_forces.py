"""Analytic nuclear derivatives of table-method multideterminant trial functions (rung.qmc.multidet_forces
through rung.qmc.force_derivs.AnalyticDerivatives).

Oracles: central finite differences of the same sample's ln|psi| and E_L with the nuclei displaced
(:class:`rung.qmc.forces.NuclearDerivatives`, method "fd": the trial function re-built at each displaced
geometry with the same MO and CI coefficients and Jastrow parameters, the ECP quadrature rotation shared);
the single-determinant analytic path for N_det = 1; the NumPy references of the new numba kernels; the
mixed adjugate against finite differences of det(X) X^-1.
"""

import numpy as np
import pytest
from pyscf import fci, gto, mcscf, scf

from rung.qmc._kernels import table_derivs
from rung.qmc.dmc import DMCConfig, dmc
from rung.qmc.force_derivs import AnalyticDerivatives
from rung.qmc.forces import ForceConfig, NuclearDerivatives, displaced_builder
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.multideterminant import Expansion, build_multislater
from rung.qmc.multidet_forces import effective_matrices
from rung.qmc.orbitals import AtomicBasis
from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
from rung.qmc.vmc import VMCConfig, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


@pytest.fixture(scope="module")
def water():
    """(mol, RHF orbitals, CASCI(6e, 6o) vector and strings, perturbed Jastrow parameters, walkers)."""
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASCI(mf, 6, 6).run()
    strings = [fci.cistring.make_strings(range(6), n) for n in mc.nelecas]
    orb = _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "test")
    wf = slater_jastrow(mol, orb)
    params = {k: v + 0.1 * np.random.default_rng(1).normal(size=v.shape) for k, v in wf.parameters.items()}
    configs = np.random.default_rng(2).normal(scale=1.1, size=(3, sum(mol.nelec), 3))
    return mol, orb, (mc.ncore, np.asarray(mc.ci), strings), params, configs


def _casci(cas, n) -> Expansion:
    """The n largest determinants of the CASCI vector (alpha and beta strings as occupied orbitals)."""
    ncore, ci, (sa, sb) = cas

    def occ(s):
        return tuple(list(range(ncore)) + [ncore + i for i in range(6) if int(s) >> i & 1])

    flat = np.argsort(-np.abs(ci).ravel(), kind="stable")[:n]
    ia, ib = np.unravel_index(flat, ci.shape)
    return Expansion(ci.ravel()[flat], tuple(occ(sa[i]) for i in ia), tuple(occ(sb[i]) for i in ib), ncore + 6)


def _random_expansion(nelec, norb, ndet, rng) -> Expansion:
    """Strings up to quadruple excitations per spin (the general mixed-adjugate path), one zero coefficient."""

    def string(n):
        holes = rng.choice(n, size=int(rng.integers(0, 5)), replace=False)
        parts = rng.choice(np.arange(n, norb), size=len(holes), replace=False)
        return tuple(sorted(set(range(n)) - set(holes.tolist()) | set(parts.tolist())))

    order, seen = [(tuple(range(nelec[0])), tuple(range(nelec[1])))], set()
    seen.add(order[0])
    while len(order) < ndet:
        d = (string(nelec[0]), string(nelec[1]))
        if d not in seen:
            seen.add(d)
            order.append(d)
    coef = np.concatenate([[1.0], rng.normal(scale=0.2, size=ndet - 1)])
    coef[ndet // 2] = 0.0
    return Expansion(coef, tuple(d[0] for d in order), tuple(d[1] for d in order), norb)


def _expansion(water, kind):
    mol, orb, cas, _, _ = water
    if kind.startswith("random"):
        return _random_expansion(mol.nelec, 16, int(kind.removeprefix("random")), np.random.default_rng(3))
    return _casci(cas, int(kind.removeprefix("cas")))


def _max_degree(wf):
    return max(int(t[0].max()) for t in wf.components[0].tables)


@pytest.mark.parametrize("kind,jastrow,warp", [("cas2", False, False), ("cas20", True, False),
                                               ("cas100", True, False), ("random100", False, True),
                                               ("random1000", True, True)])
def test_matches_finite_differences(water, kind, jastrow, warp):
    """d ln|psi| and d E_L of every atom (kinetic, Jastrow, ccECP local and nonlocal, -Z/r, V_nn) of 2 to
    1000 determinants (random ones up to quadruple excitations per spin) against central differences
    (h = 1e-5 Bohr: O(h^2) ~ 1e-10 relative) of the same samples; the space warp adds grad_i E_L through
    the same matrices. Tolerance 5e-6 of the largest derivative: the differences' round-off (E_L's, over
    2h) reached 1.1e-6 at 1000 determinants on one fresh-clone run (numba's threads vary the summation
    order from run to run); a wrong or missing term is far larger."""
    mol, orb, _, params, configs = water
    exp = _expansion(water, kind)
    params = params if jastrow else None
    opts = dict(parameters=params, expansion=exp, jastrow=jastrow)
    cfg = ForceConfig(warp=warp, seed=5, step_bohr=1e-5, method="fd")
    dl0, de0 = NuclearDerivatives(displaced_builder(mol, orb, **opts), mol.atom_coords(), cfg)(configs)
    wf = slater_jastrow(mol, orb, **opts)
    assert _max_degree(wf) >= (1 if kind in ("cas2", "cas20") else 3)
    dl1, de1 = AnalyticDerivatives(mol, wf, Hamiltonian.from_mol(mol), cfg)(configs)
    np.testing.assert_allclose(dl1, dl0, atol=5e-6 * np.abs(dl0).max(), rtol=0)
    np.testing.assert_allclose(de1, de0, atol=5e-6 * np.abs(de0).max(), rtol=0)
    assert np.abs(de0).max() > 0.5 and np.abs(dl0).max() > 0.5  # not a comparison of zeros


def test_one_determinant_is_the_single_determinant_path(water):
    """N_det = 1 (coefficient 0.7): the same derivatives as the SlaterDeterminant path, warp included."""
    mol, orb, _, params, configs = water
    nup, ndn = mol.nelec
    exp = Expansion(np.array([0.7]), (tuple(range(nup)),), (tuple(range(ndn)),), 10)
    ham = Hamiltonian.from_mol(mol)
    cfg = ForceConfig(warp=True, seed=5)
    multi = AnalyticDerivatives(mol, slater_jastrow(mol, orb, expansion=exp, parameters=params), ham, cfg)(configs)
    single = AnalyticDerivatives(mol, slater_jastrow(mol, orb, parameters=params), ham, cfg)(configs)
    for x, y in zip(multi, single):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-12 * np.abs(y).max())


def test_numba_equals_numpy_backend_and_sampler_state(water):
    """The numba path (string kernels, AO kernels) against the NumPy path (references, PySCF AOs), and a
    call given the sampler's state (trial function after its local energy, grad ln psi) against the
    recomputed one."""
    mol, orb, _, params, configs = water
    exp = _random_expansion(mol.nelec, 12, 40, np.random.default_rng(4))
    ham = Hamiltonian.from_mol(mol)
    cfg = ForceConfig(warp=True, seed=5)
    wf = slater_jastrow(mol, orb, expansion=exp, parameters=params)
    ref = AnalyticDerivatives(mol, wf, ham, cfg, backend="numpy")(configs)
    nb = AnalyticDerivatives(mol, wf, ham, cfg)
    wf.recompute(configs)
    _, grad = ham.local_energy(wf, configs, np.random.default_rng(0), return_grad=True)
    for state in ((), (wf, grad)):
        nb.rng = np.random.default_rng(cfg.seed)  # the same ECP rotations as the reference's
        for x, y in zip(nb(configs, *state), ref):
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-10 * np.abs(y).max())


def test_ratio_matrix_gives_the_kinetic_energy(water):
    """G = d ln psi / d Phi contracted with -1/2 lap phi is the determinants' kinetic energy
    -1/2 sum_i lap_i psi / psi of the trial function's own Laplacian; with a zero operator on one spin
    only the other spin's part is left (E is linear in Op)."""
    mol, orb, _, _, configs = water
    exp = _random_expansion(mol.nelec, 12, 30, np.random.default_rng(6))
    det = build_multislater(AtomicBasis.from_mol(mol), orb.mo_coeff[0], exp, mol.nelec)
    det.recompute(configs)
    lap = det.gradient_laplacian_all()[1]  # (nw, ne)
    ops = [-0.5 * det.mo[s][4] for s in (0, 1)]
    g, _ = effective_matrices(det, ops)
    nup = mol.nelec[0]
    for s, sl in ((0, slice(0, nup)), (1, slice(nup, None))):
        np.testing.assert_allclose(np.einsum("wij,wij->w", g[s], ops[s]), -0.5 * lap[:, sl].sum(1), rtol=1e-10)


def test_string_kernels_match_reference():
    """numba string kernels against the NumPy references, excitation degrees 0-5 (closed forms k <= 3 and
    the general path), to 1e-10."""
    from rung.qmc._kernels.table import string_minors

    rng = np.random.default_rng(7)
    n, m, nw = 6, 14, 4
    deg = np.array([0, 1, 1, 2, 2, 3, 3, 4, 5], dtype=np.int64)
    holes, parts = np.zeros((deg.size, 5), np.int64), np.zeros((deg.size, 5), np.int64)
    for s, k in enumerate(deg):
        holes[s, :k] = rng.choice(n, k, replace=False)
        parts[s, :k] = rng.choice(np.arange(n, m), k, replace=False)
    sign = rng.choice([-1.0, 1.0], deg.size)
    t, to = rng.normal(size=(nw, n, m)), rng.normal(size=(nw, n, m))
    _, adj = string_minors(t, deg, holes, parts, sign)
    wr, wu = rng.normal(size=(nw, deg.size)), rng.normal(size=(nw, deg.size))
    u0 = table_derivs.string_traces_reference(adj, to, deg, holes, parts)
    np.testing.assert_allclose(table_derivs.string_traces(adj, to, deg, holes, parts), u0, rtol=1e-10, atol=1e-12)
    for x, y in zip(table_derivs.string_adjoints(t, to, adj, wr, wu, deg, holes, parts, sign),
                    table_derivs.string_adjoints_reference(t, to, adj, wr, wu, deg, holes, parts, sign)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-10 * np.abs(y).max())
        assert np.abs(y).max() > 0.1


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_mixed_adjugate_reference_is_the_derivative_of_the_adjugate(k):
    """d/de adj(X + e Y) against central differences of adj = det(X) X^-1 (h = 1e-5)."""
    rng = np.random.default_rng(k)
    x, y = rng.normal(size=(5, k, k)), rng.normal(size=(5, k, k))

    def adj(a):
        return np.linalg.det(a)[:, None, None] * np.linalg.inv(a)

    h = 1e-5
    fd = (adj(x + h * y) - adj(x - h * y)) / (2 * h)
    np.testing.assert_allclose(table_derivs.mixed_adjugate_reference(x, y), fd, rtol=0,
                               atol=1e-7 * max(1, np.abs(fd).max()))


def test_auto_dispatch(water):
    """method "auto" takes the analytic path for the table method, finite differences for the
    per-determinant oracle (which has none); "analytic" refuses that one in one line."""
    mol, orb, cas, _, _ = water
    exp = _casci(cas, 5)
    nd = NuclearDerivatives(displaced_builder(mol, orb, expansion=exp), mol.atom_coords())
    assert nd.method == "analytic"

    def per_det(coords):
        wf, ham = displaced_builder(mol, orb, expansion=exp)(coords)
        basis = wf.components[0].orbitals[0].basis
        wf.components[0] = build_multislater(basis, orb.mo_coeff[0], exp, mol.nelec, method="per-determinant")
        return wf, ham

    per_det.molecule = displaced_builder(mol, orb).molecule
    assert NuclearDerivatives(per_det, mol.atom_coords()).method == "finite differences"
    with pytest.raises(ValueError, match="TableMultiSlater"):
        NuclearDerivatives(per_det, mol.atom_coords(), ForceConfig(method="analytic"))


def test_vmc_forces_analytic_equal_finite_differences(water):
    """A VMC run with forces (the analytic path reading the sampler's state after each local energy)
    gives the forces of the same run with the finite-difference path (same seeds, same quadrature
    rotations), CASCI top 20 determinants with the Jastrow, space warp on."""
    mol, orb, cas, params, _ = water
    exp = _casci(cas, 20)
    out = []
    for method in ("analytic", "fd"):
        nd = NuclearDerivatives(displaced_builder(mol, orb, parameters=params, expansion=exp), mol.atom_coords(),
                                ForceConfig(method=method, seed=5, step_bohr=1e-5))
        assert nd.method == ("analytic" if method == "analytic" else "finite differences")
        rng = np.random.default_rng(0)
        out.append(vmc(slater_jastrow(mol, orb, parameters=params, expansion=exp), Hamiltonian.from_mol(mol),
                       initial_configs(mol, 6, rng), VMCConfig(nwalkers=6, nblocks=2, nsteps=2, nequil=3), rng=rng,
                       forces=nd))
    an, fd = out
    assert an.energy == fd.energy  # the derivatives' random numbers are their own
    np.testing.assert_allclose(an.forces, fd.forces, rtol=0, atol=1e-6 * np.abs(fd.forces).max())
    assert np.abs(fd.forces).max() > 0.01


def test_optimised_ci_coefficients(water):
    """With the CI coefficients as parameters (changed from the expansion's, as after an optimisation),
    the derivatives given the sampler's state equal central differences of trial functions built with
    those coefficients (the state check compares the coefficients psi uses, not the expansion's)."""
    import dataclasses

    mol, orb, cas, params, configs = water
    exp = dataclasses.replace(_casci(cas, 20), optimize_ci=True)
    ci = slater_jastrow(mol, orb, expansion=exp).parameters["0.ci"]
    params = {**params, "0.ci": ci * (1 + 0.3 * np.random.default_rng(8).normal(size=ci.shape))}
    opts = dict(parameters=params, expansion=exp)
    cfg = ForceConfig(warp=False, seed=5, step_bohr=1e-5, method="fd")
    dl0, de0 = NuclearDerivatives(displaced_builder(mol, orb, **opts), mol.atom_coords(), cfg)(configs)
    wf = slater_jastrow(mol, orb, **opts)
    ham = Hamiltonian.from_mol(mol)
    an = AnalyticDerivatives(mol, wf, ham, cfg)
    wf.recompute(configs)
    _, grad = ham.local_energy(wf, configs, np.random.default_rng(0), return_grad=True)
    dl1, de1 = an(configs, wf, grad)
    np.testing.assert_allclose(dl1, dl0, atol=5e-6 * np.abs(dl0).max(), rtol=0)
    np.testing.assert_allclose(de1, de0, atol=5e-6 * np.abs(de0).max(), rtol=0)
    wf.parameters["0.ci"][0] += 0.1  # other coefficients than the derivatives were built for
    wf.recompute(configs)
    with pytest.raises(ValueError, match="not the one these derivatives were built for"):
        an(configs, wf, grad)


def test_dmc_forces_analytic_equal_finite_differences(water):
    """The same in DMC (branching resamples the table state between force evaluations): analytic = finite
    differences for a short run, CASCI top 20 determinants, no Jastrow."""
    mol, orb, cas, _, _ = water
    exp = _casci(cas, 20)
    out = []
    for method in ("analytic", "fd"):
        nd = NuclearDerivatives(displaced_builder(mol, orb, expansion=exp, jastrow=False), mol.atom_coords(),
                                ForceConfig(method=method, seed=5, step_bohr=1e-5))
        configs = initial_configs(mol, 6, np.random.default_rng(0))
        out.append(dmc(slater_jastrow(mol, orb, expansion=exp, jastrow=False), Hamiltonian.from_mol(mol), configs,
                       DMCConfig(tau=0.01, nblocks=2, nsteps=2, nequil_blocks=0, seed=1), e_ref=-17.0, forces=nd))
    an, fd = out
    assert an.energy == fd.energy
    np.testing.assert_allclose(an.forces, fd.forces, rtol=0, atol=1e-6 * np.abs(fd.forces).max())
    assert np.abs(fd.forces).max() > 0.01
