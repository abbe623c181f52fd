"""numba.cuda kernels of the analytic force derivatives (rung.qmc._kernels.forces_gpu) under the CUDA
simulator, against the numba CPU kernels (rung.qmc._kernels.cpu.forces, themselves checked against the
NumPy reference and finite differences in test_force_derivs.py) to 1e-10; one real-device test."""

import os

import numpy as np
import pytest
from pyscf import gto

from rung.core.backend import gpu_available
from rung.qmc.force_derivs import AnalyticDerivatives
from rung.qmc.forces import ForceConfig
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.orbitals import SCREEN, AtomicBasis
from rung.qmc.system import initial_configs, mean_field, slater_jastrow

sim = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and not gpu_available(),
                         reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA device")
WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


def _close(got, ref):
    assert np.abs(ref).max() > 1e-3  # not a comparison of zeros
    np.testing.assert_allclose(got, ref, atol=1e-10 * np.abs(ref).max(), rtol=0)


def _det_inputs(with_j):
    """CO + H, cartesian ccECP cc-pVTZ (s to f shells), 2 walkers x 3 electrons, one electron far out (its
    shells partly screened), random B0, C X and (with_j) grad J."""
    mol = gto.M(atom="C 0 0 0; O 0 0 2.1; H 1.2 1.0 -0.8", unit="Bohr", basis="ccecp-cc-pvtz", ecp="ccecp", spin=1,
                cart=True, verbose=0)
    b = AtomicBasis.from_mol(mol)
    assert b.sh_l.max() == 3
    rng = np.random.default_rng(4)
    nw, n = 2, 3
    pos = rng.normal(scale=1.5, size=(nw, n, 3))
    pos[1, 2] = [7.0, -5.0, 3.0]
    b0, cx = rng.normal(size=(2, nw, b.ncart, n))
    jg = rng.normal(size=(nw, n, 3)) if with_j else np.zeros((nw, n, 3))
    sh_atom = np.argmin(np.linalg.norm(b.sh_center[:, None] - mol.atom_coords()[None], axis=-1), axis=1)
    return (pos, b.sh_center, b.sh_l, b.sh_pstart, b.sh_col, b.sh_minexp, sh_atom, b.exps, b.coefs, b0, cx, jg,
            mol.natm, SCREEN)


@sim
@pytest.mark.parametrize("with_j", [False, True])
def test_det_terms_kernel_matches_cpu(with_j):
    """de, ge, dl of the (electron, AO) contraction: every shell up to f, screening, grad J on and off."""
    from rung.qmc._kernels import forces_gpu
    from rung.qmc._kernels.cpu import forces as forces_cpu

    args = _det_inputs(with_j)
    for got, ref in zip(forces_gpu.det_terms(*args), forces_cpu.det_terms(*args)):
        _close(got, ref)


def _builder(mol, jastrow, **opts):
    orb = mean_field(mol)
    wf = slater_jastrow(mol, orb, jastrow=jastrow, **opts)
    if jastrow:
        wf.set_parameters({k: 0.1 * np.random.default_rng(5).normal(size=v.shape) for k, v in wf.parameters.items()})
    return wf


@pytest.fixture(scope="module")
def water():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    return mol, _builder(mol, True), Hamiltonian.from_mol(mol), initial_configs(mol, 2, np.random.default_rng(6))


@pytest.fixture(scope="module")
def lih():
    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", unit="Bohr", basis="6-31g", verbose=0)
    wf = _builder(mol, True, en_cusp=True, cusp_correction=False)
    return mol, wf, Hamiltonian.from_mol(mol), initial_configs(mol, 2, np.random.default_rng(6))


@sim
@pytest.mark.parametrize("system", ["water", "lih"])
@pytest.mark.parametrize("use_j", [False, True])
@pytest.mark.parametrize("with_ge", [False, True])
def test_electron_terms_kernel_matches_cpu(water, lih, system, use_j, with_ge):
    """dl, de, ge of the Jastrow / -Z/r / 1/r_jk / local-ECP terms, added to nonzero arrays in place:
    ccECP water (local channels) and all-electron LiH with the Jastrow's nuclear cusp (no ECP)."""
    from rung.qmc._kernels import forces_gpu
    from rung.qmc._kernels.cpu import forces as forces_cpu

    mol, wf, ham, configs = water if system == "water" else lih
    an = AnalyticDerivatives(mol, wf, ham)
    t = an.tables
    jastrow = t.jastrow if use_j else (False,) + t.jastrow[1:]
    assert (t.local[0].size > 0) == (system == "water")
    gt = np.random.default_rng(8).normal(size=configs.shape)
    nw, ne, _ = configs.shape
    start = np.random.default_rng(9).normal(size=(nw, 2 * mol.natm + ne, 3))
    out = [np.split(start.copy(), [mol.natm, 2 * mol.natm], axis=1) for _ in range(2)]  # dl, de, ge
    out = [[np.ascontiguousarray(a) for a in o] for o in out]
    for kernels, (dl, de, ge) in zip((forces_cpu, forces_gpu), out):
        kernels.electron_terms(configs, gt, t.coords, t.charges, t.spin, with_ge, *jastrow, *t.local, dl, de, ge)
    for k, (ref, got, s) in enumerate(zip(*out, np.split(start, [mol.natm, 2 * mol.natm], axis=1))):
        if k == 0 and not use_j:  # d ln psi / dR has only Jastrow terms here
            np.testing.assert_array_equal(got, s)
            np.testing.assert_array_equal(ref, s)
        else:
            _close(got - s, ref - s)  # the added terms (the arrays are added to in place)


@sim
@pytest.mark.parametrize("jastrow", [False, True])
def test_cupy_backend_matches_numba(water, jastrow):
    """AnalyticDerivatives(backend="cupy") against backend="numba", the whole unwarped path (same ECP
    rotations) with and without grad E_L, and the warped __call__."""
    mol, wf, ham, configs = water
    wf = wf if jastrow else _builder(mol, False)
    out = []
    for backend in ("numba", "cupy"):
        an = AnalyticDerivatives(mol, wf, ham, backend=backend)
        rot = an._draw_rotations(*configs.shape[:2])
        res = an.derivatives(configs, rot) + an.derivatives(configs, rot, electron_gradient=False)[:3]
        warped = AnalyticDerivatives(mol, wf, ham, ForceConfig(warp=True, seed=1), backend=backend)
        out.append(res + warped(configs))
    for ref, got in zip(*out):
        _close(got, ref)


@sim
def test_cupy_backend_copies_its_tables_once(water, monkeypatch):
    """AnalyticDerivatives(backend="cupy") copies its tables (shells, atoms, Jastrow, ECP channels, splines)
    to the device on its first call only: a second call hands no table, nor a view of one, to
    cuda.to_device (walker data only) and gives the same numbers bit for bit."""
    from numba import cuda

    mol, wf, ham, configs = water
    an = AnalyticDerivatives(mol, wf, ham, backend="cupy")
    assert an.ham.ecp.has_nonlocal  # all three kernels run
    tables = [a for f in an.tables for a in (f if isinstance(f, tuple) else (f,)) if isinstance(a, np.ndarray)]
    copied = []
    to_device = cuda.to_device
    monkeypatch.setattr(cuda, "to_device", lambda a, *rest, **kw: copied.append(a) or to_device(a, *rest, **kw))

    def copies_of_tables():
        return sum(any(np.shares_memory(a, t) for t in tables) for a in copied if isinstance(a, np.ndarray))

    rot = an._draw_rotations(*configs.shape[:2])
    first = an.derivatives(configs, rot)
    assert copies_of_tables() == len({id(t) for t in tables})  # the spy sees each table copied, once
    device = an.device_tables
    copied.clear()
    second = an.derivatives(configs, rot)
    assert copied and copies_of_tables() == 0  # walker data copied, no table
    assert an.device_tables is device
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_bad_inputs(water):
    """An unknown backend name; mixed host/device arrays and too high a shell l in the kernel wrappers."""
    mol, wf, ham, _ = water
    with pytest.raises(ValueError, match="backend must be"):
        AnalyticDerivatives(mol, wf, ham, backend="cuda")
    from rung.qmc._kernels import forces_gpu

    args = list(_det_inputs(True))
    high = args.copy()
    high[2] = np.full_like(args[2], forces_gpu.LMAX + 1)
    with pytest.raises(ValueError, match="up to l"):
        forces_gpu.det_terms(*high)
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or gpu_available():
        from numba import cuda

        args[0] = cuda.to_device(args[0])
        with pytest.raises(ValueError, match="mix"):
            forces_gpu.det_terms(*args)


@pytest.mark.gpu
def test_det_terms_on_gpu_with_device_arrays():
    """CuPy arrays in, device arrays out (no copy back), on a real device against the CPU kernel."""
    cupy = pytest.importorskip("cupy")
    if not gpu_available():
        pytest.skip("no GPU")
    from rung.qmc._kernels import forces_gpu
    from rung.qmc._kernels.cpu import forces as forces_cpu

    args = _det_inputs(True)
    dev = [cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args]
    for got, ref in zip(forces_gpu.det_terms(*dev), forces_cpu.det_terms(*args)):
        _close(cupy.asnumpy(cupy.asarray(got)), ref)
