"""Wave-function components against finite differences and full recomputation (random configurations)."""

import numpy as np
import pytest
from pyscf import gto

from rung.qmc.ecp import ECP, icosahedron, random_rotations
from rung.qmc.system import InputError, build_mol, mean_field, slater_jastrow

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


@pytest.fixture(scope="module")
def water():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    return mol, mean_field(mol)


@pytest.fixture(scope="module")
def radical():  # open shell, all-electron (cusp Jastrow), unequal spins
    mol2 = gto.M(atom="Li 0 0 0; H 0 0 3.0", basis="6-31g", spin=2, charge=0, verbose=0)
    return mol2, mean_field(mol2)


def _wf(mol, orb, seed=0, backend="numba"):
    wf = slater_jastrow(mol, orb, backend=backend, en_cusp=True, three_body=True)
    rng = np.random.default_rng(seed)
    for v in wf.parameters.values():
        v[...] = rng.normal(scale=0.2, size=v.shape)
    nw = 3
    configs = mol.atom_coords().mean(0) + rng.normal(scale=1.2, size=(nw, sum(mol.nelec), 3))
    return wf, configs


def _logpsi(wf, configs):
    return wf.recompute(configs)[1]


def _psi(wf, configs):
    s, l = wf.recompute(configs)
    return s, l


@pytest.mark.parametrize("which", ["water", "radical"])
def test_gradient_laplacian_ratio_fd(which, request):
    mol, orb = request.getfixturevalue(which)
    wf, configs = _wf(mol, orb)
    h = 1e-4
    for e in range(configs.shape[1]):
        wf.recompute(configs)
        g, lap = wf.gradient_laplacian(e, configs[:, e])
        g2, ratio, _ = wf.gradient_value(e, configs[:, e])
        np.testing.assert_allclose(ratio, 1.0, atol=1e-12)
        np.testing.assert_allclose(g2, g, atol=1e-10)
        s0, l0 = _psi(wf, configs)
        fd_g = np.zeros_like(g)
        fd_lap = np.zeros_like(lap)
        for x in range(3):  # differences of psi / psi(R) (smooth through nodes, unlike log psi)
            cp, cm = configs.copy(), configs.copy()
            cp[:, e, x] += h
            cm[:, e, x] -= h
            sp, lp = _psi(wf, cp)
            sm, lm = _psi(wf, cm)
            rp, rm = sp * s0 * np.exp(lp - l0), sm * s0 * np.exp(lm - l0)
            fd_g[x] = (rp - rm) / (2 * h)
            fd_lap += (rp - 2.0 + rm) / h**2
        np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(lap, fd_lap, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("which", ["water", "radical"])
def test_ratio_and_sherman_morrison(which, request):
    mol, orb = request.getfixturevalue(which)
    wf, configs = _wf(mol, orb, seed=3)
    sign0, log0 = wf.recompute(configs)
    rng = np.random.default_rng(5)
    cur = configs.copy()
    for step in range(3):
        for e in range(cur.shape[1]):
            new = cur[:, e] + rng.normal(scale=0.5, size=(cur.shape[0], 3))
            ratio = wf.testvalue(e, new)
            g, r2, saved = wf.gradient_value(e, new)
            np.testing.assert_allclose(r2, ratio, rtol=1e-10)
            # ratio against two full evaluations
            trial = cur.copy()
            trial[:, e] = new
            s_old, l_old = wf.value()
            fresh = slater_jastrow(mol, orb, en_cusp=True, three_body=True)
            fresh.set_parameters(wf.parameters)
            s_new, l_new = fresh.recompute(trial)
            np.testing.assert_allclose(ratio, s_new * s_old * np.exp(l_new - l_old), rtol=1e-9)
            mask = rng.random(cur.shape[0]) < 0.7
            wf.accept(e, new, mask, saved)
            cur[mask, e] = new[mask]
    s, l = wf.value()
    fresh = slater_jastrow(mol, orb, en_cusp=True, three_body=True)
    fresh.set_parameters(wf.parameters)
    s_ref, l_ref = fresh.recompute(cur)
    np.testing.assert_allclose(l, l_ref, atol=1e-9)
    np.testing.assert_array_equal(s, s_ref)
    # many-point testvalue (the ECP quadrature path) agrees with single-point calls
    pts = cur[:, 0][:, None] + rng.normal(size=(cur.shape[0], 4, 3))
    many = wf.testvalue(0, pts)
    for p in range(4):
        np.testing.assert_allclose(many[:, p], wf.testvalue(0, pts[:, p]), rtol=1e-12)


def test_parameter_gradient_fd(water):
    mol, orb = water
    wf, configs = _wf(mol, orb, seed=7)
    wf.recompute(configs)
    pg = wf.pgradient()
    h = 1e-5
    for key, val in wf.parameters.items():
        for idx in np.ndindex(val.shape):
            p0 = val[idx]
            val[idx] = p0 + h
            lp = _logpsi(wf, configs)
            val[idx] = p0 - h
            lm = _logpsi(wf, configs)
            val[idx] = p0
            np.testing.assert_allclose(pg[key][(slice(None),) + idx], (lp - lm) / (2 * h), atol=1e-7)


def test_ee_cusp():
    """Kato: d(log psi)/dr_12 -> 1/2 (antiparallel) and 1/4 (parallel) at coalescence."""
    from rung.qmc.jastrow import Jastrow

    jas = Jastrow(np.zeros((1, 3)), [0], [0.0], (2, 1))
    jas.parameters["ee"][...] = [[0.3, -0.2, 0.1, 0.05], [0.4, 0.1, -0.3, 0.2]]
    for other, cusp in ((1, 0.25), (2, 0.5)):
        vals = []
        for r in (1e-6, 2e-6):
            c = np.array([[[3.0, 0, 0], [0, 2.0, 0], [0, -1.0, 1.0]]])
            c[0, 0] = c[0, other] + [r, 0, 0]
            vals.append(jas.recompute(c)[1][0])
        assert abs((vals[1] - vals[0]) / 1e-6 - cusp) < 1e-5


def test_quadrature_and_rotation():
    dirs, w = icosahedron()
    rot = random_rotations(np.random.default_rng(0), 5)
    np.testing.assert_allclose(np.einsum("wij,wkj->wik", rot, rot), np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-12)
    # exact for spherical harmonics up to degree 5: average of P_l(cos) vanishes for 1 <= l <= 5
    from scipy.special import eval_legendre

    u = np.array([0.3, -0.5, 0.81])
    u /= np.linalg.norm(u)
    for l in range(1, 6):
        assert abs(np.sum(w * eval_legendre(l, (rot[2] @ dirs.T).T @ u))) < 1e-12


def test_missing_ecp_is_an_error():
    with pytest.raises(InputError, match="no 'ccecp' pseudopotential"):
        build_mol([54], [[0, 0, 0]], "def2-svp", ecp="ccecp")  # PySCF has no ccECP for Xe


def test_ecp_tables(water):
    mol, _ = water
    ecp = ECP.from_mol(mol)
    assert [a[0] for a in ecp.atoms] == [0, 1, 2]
    assert set(ecp.atoms[0][3]) == {0} and not ecp.atoms[1][3]


def test_jastrow_numba_matches_numpy(radical):
    mol, orb = radical
    wf, configs = _wf(mol, orb, seed=11)
    jas = wf.components[1]
    jas.recompute(configs)
    pts = configs[:, 1][:, None] + np.random.default_rng(0).normal(size=(configs.shape[0], 5, 3))
    pts[0, 0] = mol.atom_coords()[0]  # on a nucleus
    pts[1, 1] = configs[1, 0]  # on another electron
    for e in range(configs.shape[1]):
        a = jas._electron_terms(e, pts, 2)
        b = jas._electron_terms_numpy(e, pts, 2)
        for x, y in zip(a, b):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)
        # the value-only path (ratios)
        np.testing.assert_allclose(jas._electron_terms(e, pts, 0)[0], b[0], rtol=1e-12, atol=1e-12)
    # the full recomputation (numba kernel) against the NumPy expressions, with an electron on a nucleus
    configs[2, 0] = mol.atom_coords()[1]
    jas.backend = "numpy"
    ref = jas.recompute(configs)[1]
    jas.backend = "numba"
    np.testing.assert_allclose(jas.recompute(configs)[1], ref, rtol=1e-12, atol=1e-12)
