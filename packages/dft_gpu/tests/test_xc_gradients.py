"""The cached-AO XC quadrature (rung.dft_gpu.xc) and the cheaper gradient pieces
(rung.dft_gpu.gradients) against PySCF's own code: ``NumInt.nr_rks``, ``grad.rks.get_vxc``,
``Gradients.hcore_generator``, the DF gradient's ``get_jk`` and the full density-fitted RKS gradient
(oracle: PySCF, same inputs; finite differences of the energy: test_potential.py)."""

import numpy as np
import pytest
from pyscf import dft, gto
from pyscf.grad import rks as rks_grad

from rung.dft_gpu.gradients import df_get_jk, hcore_generator, speed_up
from rung.dft_gpu.jk import accelerate
from rung.dft_gpu.xc import CachedNumInt, Grids, grid_order, rks_gradient_xc

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
@pytest.mark.parametrize("tagged", [True, False], ids=["orbitals", "plain-dm"])
def test_gradient_xc_equals_pyscf(scf, xc, tagged):
    """Per-atom XC forces against PySCF's XC matrix contracted as its grad_elec does."""
    dm = scf.make_rdm1()
    if not tagged:
        dm = np.asarray(dm) + 0.01 * np.eye(scf.mol.nao)
    vxc = rks_grad.get_vxc(scf._numint, scf.mol, scf.grids, xc, dm)[1]  # (3, nao, nao), minus the bra derivative
    ref = np.array([2 * np.einsum("xij,ij->x", vxc[:, p0:p1], np.asarray(dm)[p0:p1])
                    for _, _, p0, p1 in scf.mol.aoslice_by_atom()])
    np.testing.assert_allclose(rks_gradient_xc(scf._numint, scf.mol, scf.grids, xc, dm), ref, atol=1e-10, rtol=0)
    ni = CachedNumInt()  # the functional's values from the SCF's last call with this density and grid
    ni.nr_rks(scf.mol, scf.grids, xc, dm)
    assert ni.weighted_vxc(scf.mol, scf.grids, xc, dm) is not None
    assert ni.weighted_vxc(scf.mol, scf.grids, xc, np.asarray(dm) * 1.001) is None
    assert ni.weighted_vxc(scf.mol, scf.grids, "lda,vwn" if xc != "lda,vwn" else "pbe", dm) is None
    np.testing.assert_allclose(rks_gradient_xc(ni, scf.mol, scf.grids, xc, dm), ref, atol=1e-10, rtol=0)


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
    assert "get_veff" in vars(g) and "extra_force" in vars(g) and "hcore_generator" in vars(g)
    np.testing.assert_allclose(g.kernel(), ref.kernel(), atol=1e-10, rtol=0)


def test_speed_up_leaves_other_cases_to_pyscf():
    uks = dft.UKS(_mol(WATER, spin=1, charge=1), xc="pbe").density_fit()
    assert "get_veff" not in vars(speed_up(uks.nuc_grad_method()))  # unrestricted: PySCF's XC gradient
    g = dft.RKS(_mol(), xc="pbe").density_fit().nuc_grad_method()
    g.grid_response = True
    assert not {"get_veff", "extra_force"} & set(vars(speed_up(g)))  # grid response: PySCF's
    conventional = dft.RKS(_mol(), xc="pbe").nuc_grad_method()
    assert "get_veff" not in vars(speed_up(conventional))  # not density-fitted: PySCF's


@pytest.fixture(scope="module")
def engine_scf():
    """ωB97M-D3BJ water converged on the J/K engine (full-range and omega = 0.3 tensors cached)."""
    mf = accelerate(dft.RKS(_mol(), xc="wb97m-d3bj"))
    mf.grids.level, mf.conv_tol, mf.verbose = 1, 1e-11, 0
    mf.kernel()
    assert mf.converged and len(mf.jk_engines) == 2
    return mf


# omega = 0.3 (long range): the fitting metric of erf(0.3 r)/r is numerically singular (condition number
# ~1e16), so PySCF's solve and ours, mathematically the same, differ by amplified round-off (measured
# 1.4e-9 in vj, 5.7e-9 in vk here; the full-range and short-range operators agree to 1e-14).
@pytest.mark.parametrize("omega, atol", [(None, 1e-12), (-0.3, 1e-12), (0.3, 5e-8)])
def test_engine_df_get_jk_equals_pyscf(engine_scf, omega, atol):
    g = engine_scf.nuc_grad_method()
    dm = engine_scf.make_rdm1()
    ref_j, ref_k = g.get_jk(engine_scf.mol, dm, omega=omega)  # PySCF's df.grad.rhf.get_jk
    ours_j, ours_k = df_get_jk(g, engine_scf.mol, dm, omega=omega)
    for ours, ref in ((ours_j, ref_j), (ours_k, ref_k)):
        np.testing.assert_allclose(ours, ref, atol=atol, rtol=0)
        np.testing.assert_allclose(ours.aux.sum((0, 1)), ref.aux.sum((0, 1)), atol=atol, rtol=0)
    assert df_get_jk(g, engine_scf.mol, dm, with_j=False, omega=omega)[0] is None
    g.auxbasis_response = False
    ref_j, ref_k = g.get_jk(engine_scf.mol, dm, omega=omega)
    ours_j, ours_k = df_get_jk(g, engine_scf.mol, dm, omega=omega)
    assert not hasattr(ours_j, "aux")
    np.testing.assert_allclose(ours_j, ref_j, atol=atol, rtol=0)
    np.testing.assert_allclose(ours_k, ref_k, atol=atol, rtol=0)


def test_engine_gradient_equals_pyscf_df_gradient(engine_scf):
    """speed_up on an engine SCF (J/K derivative terms from the cached tensors) against PySCF's
    df.grad.rks gradient of the same SCF (measured 4.5e-9 Hartree/Bohr, the omega = 0.3 term)."""
    ref = engine_scf.nuc_grad_method()
    ours = speed_up(engine_scf.nuc_grad_method())
    assert "get_jk" in vars(ours) and "get_k" in vars(ours)
    ref.verbose = ours.verbose = 0
    np.testing.assert_allclose(ours.kernel(), ref.kernel(), atol=1e-8, rtol=0)


def test_engine_get_jk_falls_back_to_pyscf(engine_scf):
    """A density that is not the SCF's closed-shell one, or a fitted rhok larger than half the memory
    cap, goes through PySCF's get_jk; PySCF's own DF objects and open shells keep PySCF's methods."""
    g = speed_up(engine_scf.nuc_grad_method())
    dm = np.asarray(engine_scf.make_rdm1()) * 0.9
    ref = engine_scf.nuc_grad_method().get_jk(engine_scf.mol, dm)
    np.testing.assert_array_equal(g.get_jk(engine_scf.mol, dm)[1], ref[1])
    plain = engine_scf.nuc_grad_method()
    g.max_memory = plain.max_memory = 0.1  # the fitted rhok would not fit: PySCF's get_jk (bit for bit)
    dm = engine_scf.make_rdm1()
    np.testing.assert_array_equal(g.get_jk(engine_scf.mol, dm)[1], plain.get_jk(engine_scf.mol, dm)[1])
    assert "get_jk" not in vars(speed_up(dft.RKS(_mol(), xc="pbe").density_fit().nuc_grad_method()))
    uks = accelerate(dft.UKS(_mol(WATER, spin=1, charge=1), xc="pbe"))
    assert "get_jk" not in vars(speed_up(uks.nuc_grad_method()))


@pytest.mark.parametrize("layout", ["packed", "streamed"])
def test_engine_gradient_from_packed_or_streamed_tensor(monkeypatch, layout):
    """The J/K derivative terms read the engine's tensor in any layout: packed triangles (the
    micro-kernel path of large molecules, forced here) or streamed from PySCF's DF object (a memory cap
    below the tensor's size)."""
    from rung.dft_gpu._kernels import cpu

    monkeypatch.setattr(cpu, "USE_MICROKERNEL", layout == "packed")
    mf = accelerate(dft.RKS(_mol(), xc="b3lyp"), backend="numba", max_memory_mb=0.6 if layout == "streamed" else None)
    mf.grids.level, mf.conv_tol, mf.verbose = 0, 1e-11, 0
    mf.kernel()
    eng = mf.jk_engine()
    assert eng.packed == (layout == "packed") and eng.cached == (layout == "packed")
    g = mf.nuc_grad_method()
    ref_j, ref_k = g.get_jk(mf.mol, mf.make_rdm1())
    ours_j, ours_k = df_get_jk(g, mf.mol, mf.make_rdm1())
    for ours, ref in ((ours_j, ref_j), (ours_k, ref_k)):
        np.testing.assert_allclose(ours, ref, atol=1e-12, rtol=0)
        np.testing.assert_allclose(ours.aux.sum((0, 1)), ref.aux.sum((0, 1)), atol=1e-12, rtol=0)


@pytest.mark.parametrize("level", [0, 3])
def test_grids_equal_pyscf_bit_for_bit(level):
    """rung's Grids (grid_order instead of PySCF's arg_group_grids) against PySCF's own build: the same
    points, weights, atoms and screening mask, bit for bit (a cluster of four molecules spreads the
    points over many boxes)."""
    mol = _mol("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692; N 3.1 0.4 -1.2; H 3.5 1.3 -1.0;"
               "H 3.4 -0.2 -0.4; H 2.1 0.5 -1.1; C -2.5 1.7 1.9; O -3.4 2.5 1.8; H -2.7 0.6 2.0; H -1.4 2.0 2.0")
    ref = dft.gen_grid.Grids(mol)
    ref.level = level
    ref.build(with_non0tab=True)
    ours = Grids(mol)
    ours.level = level
    ours.build(with_non0tab=True)
    coords = np.random.default_rng(1).uniform(-12, 12, size=(20000, 3))  # inside, outside, on the edges
    np.testing.assert_array_equal(grid_order(mol, coords), dft.gen_grid.arg_group_grids(mol, coords))
    for name in ("coords", "weights", "atm_idx", "quadrature_weights", "non0tab"):
        np.testing.assert_array_equal(getattr(ours, name), getattr(ref, name))
    assert ours.size % ours.alignment == 0 and ours.size == ref.size


@pytest.mark.parametrize("tau", [True, False], ids=["mgga", "gga"])
def test_weighted_aos_kernel_equals_numpy(tau):
    from rung.dft_gpu._kernels.xc_cpu import weighted_aos

    rng = np.random.default_rng(3)
    ao = rng.normal(size=(4, 37, 11))
    coef = rng.normal(size=(4, 50))[:, 5:42]  # a strided column slice, as the quadrature passes it
    t = rng.normal(size=37) if tau else np.empty(0)
    out = np.full((4 if tau else 1, 37, 11), np.nan)
    weighted_aos(ao, coef, t, out)
    np.testing.assert_allclose(out[0], np.einsum("xg,xgi->gi", coef, ao), atol=1e-14, rtol=0)
    if tau:
        np.testing.assert_allclose(out[1:], t[None, :, None] * ao[1:], atol=1e-14, rtol=0)
