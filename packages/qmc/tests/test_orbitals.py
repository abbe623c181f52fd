"""LCAO orbitals against PySCF's eval_gto (values, gradients, Laplacians) to 1e-12."""

import numpy as np
import pytest
from pyscf import gto

from rung.qmc.orbitals import AtomicBasis, MolecularOrbitals, evaluate_aos

WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"


def _mols():
    yield gto.M(atom=WATER, basis="ccecp-cc-pvdz", ecp="ccecp")
    yield gto.M(atom=WATER, basis="cc-pvtz")  # f shells, general contraction
    yield gto.M(atom=WATER, basis="6-31g*", cart=True)  # cartesian d
    yield gto.M(atom="C 0 0 0; O 0 0 2.1; H 1 1 -0.5", basis="def2-svp", cart=True, spin=1)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("imol", range(4))
def test_aos_match_pyscf(backend, imol):
    mol = list(_mols())[imol]
    rng = np.random.default_rng(imol)
    pos = rng.normal(scale=1.5, size=(2, 7, 3)) + mol.atom_coords().mean(0)
    pos[0, 0] = mol.atom_coords()[0]  # exactly on a nucleus
    basis = AtomicBasis.from_mol(mol)
    ours = evaluate_aos(basis, pos, deriv=2, backend=backend)
    kind = "GTOval_cart_deriv2" if mol.cart else "GTOval_sph_deriv2"
    ref = mol.eval_gto(kind, pos.reshape(-1, 3))  # (10, npos, nao): val, x, y, z, xx, xy, xz, yy, yz, zz
    lap = ref[4] + ref[7] + ref[9]
    assert ours.shape == (5, 2, 7, mol.nao)
    np.testing.assert_allclose(ours[:4].reshape(4, -1, mol.nao), ref[:4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours[4].reshape(-1, mol.nao), lap, rtol=0, atol=1e-11 * max(1, np.abs(lap).max()))


def test_species_grouping_and_mo_gemm():
    mol = gto.M(atom=WATER, basis="ccecp-cc-pvdz", ecp="ccecp")
    basis = AtomicBasis.from_mol(mol)
    assert [sp["atoms"] for sp in basis.species] == [[0], [1, 2]]
    c = np.random.default_rng(1).normal(size=(mol.nao, 4))
    mo = MolecularOrbitals(basis, c)
    pos = np.random.default_rng(2).normal(size=(3, 5, 3))
    np.testing.assert_allclose(mo(pos, 1)[0], mol.eval_gto("GTOval_sph", pos.reshape(-1, 3)).reshape(3, 5, -1) @ c,
                               atol=1e-12)


def test_basis_orbital_mismatch():
    mol = gto.M(atom=WATER, basis="ccecp-cc-pvdz", ecp="ccecp")
    with pytest.raises(ValueError, match="mismatch"):
        MolecularOrbitals(AtomicBasis.from_mol(mol), np.zeros((mol.nao + 1, 4)))


@pytest.mark.skipif(__import__("os").environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="needs the CUDA simulator "
                    "(NUMBA_ENABLE_CUDASIM=1, set by `make test`); a real GPU run is a `gpu` test")
def test_cuda_kernel_under_simulator():
    mol = gto.M(atom=WATER, basis="cc-pvtz", verbose=0)  # up to f shells
    basis = AtomicBasis.from_mol(mol)
    pos = np.random.default_rng(4).normal(size=(3, 3))
    ref = evaluate_aos(basis, pos, deriv=2, backend="numpy")
    np.testing.assert_allclose(evaluate_aos(basis, pos, deriv=2, backend="cupy"), ref, rtol=0, atol=1e-12)


@pytest.mark.skipif(__import__("os").environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="needs the CUDA simulator")
def test_vmc_with_device_aos_equals_cpu(monkeypatch):
    _vmc_device_vs_cpu(monkeypatch)


@pytest.mark.gpu
def test_vmc_with_device_aos_on_gpu(monkeypatch):
    from rung.core.backend import gpu_available

    if not gpu_available():
        pytest.skip("no GPU")
    _vmc_device_vs_cpu(monkeypatch)


def _vmc_device_vs_cpu(monkeypatch):
    """backend="cupy" end to end (AOs on the device, the rest on the CPU kernels): the same VMC, step for
    step, as the numba backend, and the device kernel is what evaluated the AOs."""
    from rung.qmc._kernels import gpu
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.system import mean_field, slater_jastrow
    from rung.qmc.vmc import VMCConfig, vmc

    calls, device_eval = [], gpu.eval_cart
    monkeypatch.setattr(gpu, "eval_cart", lambda *a, **k: calls.append(1) or device_eval(*a, **k))
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvdz", verbose=0)  # cusp-corrected AOs too
    orb = mean_field(mol)
    out = {}
    for backend in ("numba", "cupy"):
        wf = slater_jastrow(mol, orb, backend=backend)
        configs = np.random.default_rng(1).normal(size=(4, 2, 3))
        out[backend] = vmc(wf, Hamiltonian.from_mol(mol), configs, VMCConfig(nwalkers=4, nblocks=2, nsteps=3, nequil=2,
                                                                             seed=3))
    assert len(calls) > 20
    np.testing.assert_allclose(out["cupy"].energy, out["numba"].energy, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["cupy"].trace, out["numba"].trace, rtol=0, atol=1e-12)


@pytest.mark.gpu
def test_cuda_kernel_on_gpu():
    cupy = pytest.importorskip("cupy")
    from rung.core.backend import gpu_available

    if not gpu_available():
        pytest.skip("no GPU")
    from rung.qmc._kernels.gpu import eval_cart

    mol = gto.M(atom=WATER, basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    b = AtomicBasis.from_mol(mol)
    pos = np.random.default_rng(5).normal(size=(1000, 3))
    minexp = np.minimum.reduceat(b.exps, b.sh_pstart[:-1])
    dev = eval_cart(cupy.asarray(pos), *(cupy.asarray(a) for a in (b.sh_center, b.sh_l, b.sh_pstart, b.sh_col, minexp,
                                                                   b.exps, b.coefs)), b.ncart, 2, 50.0)
    ref = evaluate_aos(b, pos, deriv=2, backend="numba")
    np.testing.assert_allclose(cupy.asnumpy(cupy.asarray(dev)) @ b.c2s, ref, atol=1e-12)


def test_cusp_corrected_orbitals_fd_and_continuity():
    """Inside r_c: gradient and Laplacian against finite differences of the values; slope -Z at the
    nucleus for the whole orbital; continuous value across r_c."""
    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", basis="cc-pvdz", verbose=0)
    from rung.qmc.system import mean_field

    c = mean_field(mol).mo_coeff[0][:, :2]
    basis = AtomicBasis.from_mol(mol)
    mo = MolecularOrbitals(basis, c, cusp_atoms=[(0, 3.0), (1, 1.0)])
    rng = np.random.default_rng(0)
    pos = np.concatenate([rng.normal(scale=0.07, size=(4, 3)), [0, 0, 3.0] + rng.normal(scale=0.2, size=(4, 3))])
    v = mo(pos, 2)
    h = 1e-5
    fd_l = -6 * mo(pos, 0)[0]
    for x in range(3):
        d = np.zeros(3)
        d[x] = h
        vp, vm = mo(pos + d, 0)[0], mo(pos - d, 0)[0]
        np.testing.assert_allclose(v[1 + x], (vp - vm) / (2 * h), rtol=1e-6, atol=1e-7)
        fd_l = fd_l + vp + vm
    np.testing.assert_allclose(v[4], fd_l / h**2, rtol=1e-4, atol=2e-3)
    # Kato cusp of the 1s-like orbital at the Li nucleus: psi'(0+)/psi(0) = -Z
    a, b = mo(np.array([[1e-6, 0, 0], [2e-6, 0, 0]]), 0)[0][:, 0]
    assert abs((b - a) / 1e-6 / a - (-3.0)) < 1e-3
    rc = 0.5 / 3.0
    inner, outer = mo(np.array([[0, 0, rc - 1e-9], [0, 0, rc + 1e-9]]), 0)[0]
    np.testing.assert_allclose(inner, outer, atol=1e-7)
