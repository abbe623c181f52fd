"""The cached-AO XC quadrature (rung.dft_gpu.xc) and the cheaper gradient pieces
(rung.dft_gpu.gradients) against PySCF's own code: ``NumInt.nr_rks``, ``grad.rks.get_vxc``,
``Gradients.hcore_generator`` and the full density-fitted RKS gradient (oracle: PySCF, same inputs)."""

import numpy as np
import pytest
from pyscf import dft, gto
from pyscf.grad import rks as rks_grad

from rung.dft_gpu.gradients import hcore_generator, speed_up
from rung.dft_gpu.xc import CachedNumInt, rks_gradient_vxc

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"
XCS = ["lda,vwn", "pbe", "wb97m-d3bj"]  # LDA, GGA, range-separated meta-GGA


def _mol(atom=WATER, spin=0, charge=0):
    return gto.M(atom=atom, basis="ccecp-cc-pvdz", ecp="ccecp", spin=spin, charge=charge, verbose=0)


def _converged(mol, xc="wb97m-d3bj", level=1):
    mf = dft.RKS(mol, xc=xc).density_fit()
    mf.grids.level, mf.conv_tol = level, 1e-10
    mf.kernel()
    assert mf.converged
    return mf


@pytest.fixture(scope="module")
def scf():
    return _converged(_mol())


@pytest.mark.parametrize("xc", XCS)
@pytest.mark.parametrize("tagged", [True, False], ids=["orbitals", "plain-dm"])
def test_nr_rks_equals_pyscf(scf, xc, tagged):
    mol, grids = scf.mol, scf.grids
    dm = scf.make_rdm1()  # tagged with mo_coeff/mo_occ, as in an SCF cycle
    if not tagged:
        dm = np.asarray(dm) + 0.01 * np.eye(mol.nao)  # a symmetric density without orbitals
    ref = dft.numint.NumInt().nr_rks(mol, grids, xc, dm)
    ni = CachedNumInt()
    first = ni.nr_rks(mol, grids, xc, dm)
    second = ni.nr_rks(mol, grids, xc, dm)
    assert ni.cache_hits == 1  # the second call reused the AO values
    for got in (first, second):
        assert got[0] == pytest.approx(ref[0], abs=1e-10)
        assert got[1] == pytest.approx(ref[1], abs=1e-10)
        np.testing.assert_allclose(got[2], ref[2], atol=1e-10, rtol=0)


def test_cache_follows_grid_and_geometry_and_cap(scf):
    mol, dm = scf.mol, scf.make_rdm1()
    ni = CachedNumInt()
    ni.nr_rks(mol, scf.grids, "pbe", dm)
    other = dft.gen_grid.Grids(mol)
    other.level = 2
    other.build()
    ref = dft.numint.NumInt().nr_rks(mol, other, "pbe", dm)
    got = ni.nr_rks(mol, other, "pbe", dm)  # new grid: values recomputed, not reused
    assert ni.cache_hits == 0 and got[1] == pytest.approx(ref[1], abs=1e-10)
    moved = mol.set_geom_(mol.atom_coords() + 0.05, unit="Bohr", inplace=False)
    grids = dft.gen_grid.Grids(moved)
    grids.build()
    ni.nr_rks(mol, grids, "pbe", dm)
    got = ni.nr_rks(moved, grids, "pbe", dm)  # same grid object, other geometry: recomputed
    ref = dft.numint.NumInt().nr_rks(moved, grids, "pbe", dm)
    assert ni.cache_hits == 0 and got[1] == pytest.approx(ref[1], abs=1e-10)
    tiny = CachedNumInt(max_cache_mb=1e-3)  # cannot cache: PySCF's blocked quadrature, same numbers
    got = tiny.nr_rks(moved, grids, "pbe", dm)
    assert tiny._cache is None and got[1] == pytest.approx(ref[1], abs=1e-10)


def test_scf_energy_with_cached_numint():
    mol = _mol()
    ref = _converged(mol, xc="pbe")
    mf = dft.RKS(mol, xc="pbe").density_fit()
    mf.grids.level, mf.conv_tol = 1, 1e-10
    mf._numint = CachedNumInt()
    mf.kernel()
    assert mf.converged and mf._numint.cache_hits >= 3
    assert mf.e_tot == pytest.approx(ref.e_tot, abs=1e-9)


@pytest.mark.parametrize("xc", XCS)
def test_gradient_vxc_equals_pyscf(scf, xc):
    dm = scf.make_rdm1()
    ref = rks_grad.get_vxc(scf._numint, scf.mol, scf.grids, xc, dm)[1]
    np.testing.assert_allclose(rks_gradient_vxc(scf._numint, scf.mol, scf.grids, xc, dm), ref, atol=1e-10, rtol=0)


def test_hcore_generator_equals_pyscf(scf):
    g = scf.nuc_grad_method()
    ref, ours = g.hcore_generator(scf.mol), hcore_generator(g, scf.mol)
    for atom in range(scf.mol.natm):
        np.testing.assert_allclose(ours(atom), ref(atom), atol=1e-12, rtol=0)


def test_sped_up_gradient_equals_pyscf(scf):
    ref = scf.nuc_grad_method()
    ref.verbose = 0
    g = speed_up(scf.nuc_grad_method())
    g.verbose = 0
    assert "get_veff" in vars(g) and "hcore_generator" in vars(g)
    np.testing.assert_allclose(g.kernel(), ref.kernel(), atol=1e-10, rtol=0)


def test_speed_up_leaves_other_cases_to_pyscf():
    uks = dft.UKS(_mol(WATER, spin=1, charge=1), xc="pbe").density_fit()
    assert "get_veff" not in vars(speed_up(uks.nuc_grad_method()))  # unrestricted: PySCF's XC gradient
    g = dft.RKS(_mol(), xc="pbe").density_fit().nuc_grad_method()
    g.grid_response = True
    assert "get_veff" not in vars(speed_up(g))  # grid response: PySCF's
    conventional = dft.RKS(_mol(), xc="pbe").nuc_grad_method()
    assert "get_veff" not in vars(speed_up(conventional))  # not density-fitted: PySCF's
