"""Fused numba kernels against the generic (component-protocol) paths they replace.

Oracles: the nonlocal ECP term through ``wf.testvalue`` (each ratio from the determinant's orbital
GEMM and the Jastrow kernel), scipy's Legendre polynomials, full recomputation of the wave function.
"""

import numpy as np
import pytest
from pyscf import gto
from scipy.special import eval_legendre

from rung.qmc import ecp as ecp_mod
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.system import Orbitals, slater_jastrow

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr
# two atoms with nonlocal channels (C: s, p; O: s), an f shell in the basis (cc-pvtz), spin-polarised
CO = "C 0 0 0; O 0 0 2.13"


def _random_wf(mol, seed, jastrow=True):
    rng = np.random.default_rng(seed)
    nmo = max(mol.nelec)
    c = rng.normal(size=(2, mol.nao, nmo))
    occ = np.zeros((2, nmo))
    occ[0, :mol.nelec[0]] = 1
    occ[1, :mol.nelec[1]] = 1
    wf = slater_jastrow(mol, Orbitals(c, occ, 0.0, "random"), jastrow=jastrow)
    for v in wf.parameters.values():
        v[...] = rng.normal(scale=0.2, size=v.shape)
    nw = 40
    configs = mol.atom_coords().mean(0) + rng.normal(scale=1.3, size=(nw, sum(mol.nelec), 3))
    # some electrons right on / next to ECP atoms
    configs[0, 0] = mol.atom_coords()[0] + 1e-3
    configs[1, -1] = mol.atom_coords()[-1] + [0.2, -0.1, 0.3]
    return wf, configs


@pytest.mark.parametrize("case", ["water", "co_tz", "water_slater_only"])
def test_fused_nonlocal_matches_generic(case):
    if case == "co_tz":
        mol = gto.M(atom=CO, unit="Bohr", basis="ccecp-cc-pvtz", ecp="ccecp", spin=2, verbose=0)
    else:
        mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    wf, configs = _random_wf(mol, seed=1, jastrow=case != "water_slater_only")
    wf.recompute(configs)
    ecp = Hamiltonian.from_mol(mol).ecp
    ninrange = 0
    for e in range(configs.shape[1]):
        assert ecp_mod._fused_inputs(wf, e) is not None
        t_f, p_f = ecp.nonlocal_electron(wf, e, configs, np.random.default_rng(e))
        # an explicit grid takes the generic path: wf.testvalue on the same rotated points
        t_g, p_g = ecp.nonlocal_electron(wf, e, configs, np.random.default_rng(e), grid=ecp_mod._ICOSAHEDRON)
        np.testing.assert_allclose(p_f, p_g, rtol=0, atol=1e-13)
        scale = np.abs(t_g).max()
        np.testing.assert_allclose(t_f, t_g, rtol=1e-10, atol=1e-12 * scale)
        ninrange += np.count_nonzero(t_g)
    assert ninrange > 0.2 * configs.shape[0] * 12  # the comparison covered many in-range points


def test_fused_path_not_taken_for_other_wavefunctions():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    orb = Orbitals(np.random.default_rng(0).normal(size=(2, mol.nao, 4)), np.ones((2, 4)), 0.0, "random")
    wf3 = slater_jastrow(mol, orb, three_body=True)
    wfnp = slater_jastrow(mol, orb, backend="numpy")
    configs = np.random.default_rng(1).normal(size=(3, 8, 3))
    for wf in (wf3, wfnp):
        wf.recompute(configs)
        assert ecp_mod._fused_inputs(wf, 0) is None


def test_legendre_kernel():
    from rung.qmc._kernels.cpu.ecp import _legendre

    for l in range(6):
        for x in np.linspace(-1, 1, 7):
            assert abs(_legendre(l, x) - eval_legendre(l, x)) < 1e-14


@pytest.fixture(scope="module")
def scf_systems():
    from rung.qmc.system import mean_field

    water = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    o2 = gto.M(atom="O 0 0 0; O 0 0 2.28", unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", spin=2, verbose=0)
    return {"water": (water, mean_field(water)), "o2": (o2, mean_field(o2))}


@pytest.mark.parametrize("case", ["water", "water_dmc", "water_slater_only", "o2_triplet"])
def test_fused_sweep_matches_generic(case, scf_systems):
    """Same seed, same moves: the fused sweep against the component-protocol sweep, then the tracked
    state (Sherman-Morrison inverse, log|D|, J) against a full recomputation."""
    from rung.qmc.vmc import sweep

    mol, orb = scf_systems["o2" if case == "o2_triplet" else "water"]
    wfs = []
    for _ in range(2):
        wf = slater_jastrow(mol, orb, jastrow=case != "water_slater_only")
        rng = np.random.default_rng(4)
        for v in wf.parameters.values():
            v[...] = rng.normal(scale=0.1, size=v.shape)
        wfs.append(wf)
    rng = np.random.default_rng(2)
    configs = mol.atom_coords()[rng.integers(0, mol.natm, size=(30, sum(mol.nelec)))] + rng.normal(
        scale=0.7, size=(30, sum(mol.nelec), 3))
    ca, cb = configs.copy(), configs.copy()
    wfs[0].recompute(ca)
    wfs[1].recompute(cb)
    ra, rb = np.random.default_rng(9), np.random.default_rng(9)
    tau, fixed_node = (0.02, True) if case == "water_dmc" else (0.3, False)
    for _ in range(4):
        out_a = sweep(wfs[0], ca, tau, ra, fixed_node)
        out_b = sweep(wfs[1], cb, tau, rb, fixed_node, fused=False)
        np.testing.assert_allclose(out_a, out_b, rtol=1e-12)
    assert 0.2 < out_a[0] < 1.0
    np.testing.assert_allclose(ca, cb, rtol=0, atol=1e-11)
    da, db = wfs[0].components[0], wfs[1].components[0]
    for s in (0, 1):
        np.testing.assert_allclose(da.inverse[s], db.inverse[s], rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(da.mo[s], db.mo[s], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(da.configs, ca, rtol=0, atol=0)
    sign, logval = wfs[0].value()
    np.testing.assert_allclose(logval, wfs[1].value()[1], rtol=0, atol=1e-10)
    fresh = slater_jastrow(mol, orb, jastrow=case != "water_slater_only")
    fresh.set_parameters(wfs[0].parameters)
    s_ref, l_ref = fresh.recompute(ca)
    np.testing.assert_array_equal(sign, s_ref)
    np.testing.assert_allclose(logval, l_ref, rtol=0, atol=1e-9)
    if len(wfs[0].components) == 2:
        np.testing.assert_allclose(wfs[0].components[1].configs, ca, rtol=0, atol=0)


@pytest.mark.parametrize("atoms,basis", [(WATER, "ccecp-cc-pvdz"), (CO, "ccecp-cc-pvdz"), ("H 0 0 0; H 0 0 1.4", "cc-pvdz")])
def test_potential_kernel_matches_numpy(atoms, basis):
    ecp = "ccecp" if basis.startswith("ccecp") else None
    mol = gto.M(atom=atoms, unit="Bohr", basis=basis, ecp=ecp, spin=(2 if atoms == CO else 0), verbose=0)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(0)
    configs = mol.atom_coords()[rng.integers(0, mol.natm, size=(20, sum(mol.nelec)))] + rng.normal(
        scale=0.8, size=(20, sum(mol.nelec), 3))
    configs[0, 0] = mol.atom_coords()[0] + 1e-4
    a, b = ham.potential(configs), ham.potential(configs, backend="numpy")
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12, atol=1e-12)
    if ecp:
        assert np.all(a["ecp_local"] != 0)


def test_radial_splines_match_exact_radial_parts():
    """The quintic-spline tables of every shell (CO, cc-pvtz: contracted s/p, d, f) against the exact
    contraction sum_p c_p exp(-a_p r^2) (NumPy), and the numba evaluation against the NumPy one."""
    from rung.qmc._kernels.cpu.ecp import _spline
    from rung.qmc.orbitals import SCREEN, AtomicBasis, radial_values, spline_reference

    mol = gto.M(atom=CO, unit="Bohr", basis="ccecp-cc-pvtz", ecp="ccecp", spin=2, verbose=0)
    basis = AtomicBasis.from_mol(mol)
    spl = basis.radial_splines
    rng = np.random.default_rng(0)

    def spline_values(tab, start, nint, ih, r):
        return np.array([_spline(tab, start, nint, ih, x) for x in r])

    for ish in range(basis.sh_l.size):
        p0, p1 = basis.sh_pstart[ish], basis.sh_pstart[ish + 1]
        a, c, l = basis.exps[p0:p1], basis.coefs[p0:p1], basis.sh_l[ish]
        rmax = np.sqrt(SCREEN / a.min())
        r = np.concatenate([[0.0, 1e-3], rng.uniform(0, 3.0, 300), rng.uniform(0, rmax, 300)])
        start, nint, ih = spl.sh_start[ish], spl.sh_nint[ish], spl.sh_inv_h[ish]
        got = spline_values(spl.tab, start, nint, ih, r)
        exact = radial_values(a, c, r)
        scale = np.max(np.abs(exact) * r**l)
        assert np.all(np.abs(got - exact) * np.maximum(r, 1.0) ** l <= 2e-13 * scale), ish
        # the kernel's Horner sums against the NumPy evaluation of the same table
        inside = r * ih < nint
        i = (r[inside] * ih).astype(int)
        ref = [spline_reference(spl.tab[start + k][None], np.array([u - k]))[0, 0] for k, u in zip(i, r[inside] * ih)]
        np.testing.assert_allclose(got[inside], ref, rtol=1e-14, atol=1e-14 * scale)
        # beyond the table (a r^2 > SCREEN for every primitive) the radial part is zero
        assert np.all(spline_values(spl.tab, start, nint, ih, np.array([rmax * 1.01, 1e3])) == 0.0)
    # shells of one species share a table (water: the two H)
    wspl = AtomicBasis.from_mol(gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)).radial_splines
    assert wspl.tab.shape[0] < sum(wspl.sh_nint + 1)
