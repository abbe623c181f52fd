"""The CUDA kernel of the nonlocal ECP force terms (:mod:`rung.qmc._kernels.forces_ecp_gpu`), run in the
numba CUDA simulator, against the numba CPU kernel :func:`rung.qmc._kernels.cpu.forces.nonlocal_terms`
(itself tested against the NumPy path and finite differences in test_force_derivs.py) on the same inputs.

BrCl with ccECPs: nonlocal s, p and d channels on Br, s and p on Cl (two ECP atoms, electrons in range of
one or both); ccecp-cc-pvdz AOs (s, p, d shells) on and off the ECP atom. The orbitals are the first AOs
(no SCF) and B0 = C A is random: the comparison needs inputs, not a physical state.
"""

import os

import numpy as np
import pytest
from pyscf import gto

from rung.core.backend import gpu_available
from rung.qmc.force_derivs import AnalyticDerivatives
from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.system import Orbitals, slater_jastrow

pytestmark = pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaPerformanceWarning")
sim = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1" and not gpu_available(),
                         reason="needs NUMBA_ENABLE_CUDASIM=1 or a CUDA device")


@pytest.fixture(scope="module")
def brcl():
    mol = gto.M(atom="Br 0 0 0; Cl 0 0 4.0", unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    nao, (nup, ndn) = mol.nao, mol.nelec
    occ = np.zeros((2, nao))
    occ[0, :nup] = 1.0
    occ[1, :ndn] = 1.0
    wf = slater_jastrow(mol, Orbitals(np.stack([np.eye(nao)] * 2), occ, 0.0, "test: the first AOs"))
    rng = np.random.default_rng(3)
    wf.set_parameters({k: 0.2 * rng.normal(size=v.shape) for k, v in wf.parameters.items()})
    return mol, AnalyticDerivatives(mol, wf, Hamiltonian.from_mol(mol))


def _inputs(mol, an, nw):
    """Arguments shared by both spins, as AnalyticDerivatives._nonlocal passes them: head (rot, dirs, weights)
    before (start, n), mid (the ECP channels ... screen) between n and B0, configs (nw, ne, 3) Bohr (electrons
    near both atoms), grad J (random); and the generator for the rest."""
    from rung.qmc.orbitals import SCREEN

    rng = np.random.default_rng(11)
    ne = sum(mol.nelec)
    R = an.coords
    configs = R[np.arange(ne) % 2][None] + 0.9 * rng.normal(size=(nw, ne, 3))  # around Br, Cl in turn
    configs[:, 0] = [0.0, 0.3, 2.0]  # in range of both ECP atoms
    ecp = an.ham.ecp
    ch = ecp._packed()
    assert sorted(set(ch.ch_l[ch.ch_atom == 0])) == [0, 1, 2] and sorted(set(ch.ch_l[ch.ch_atom == 1])) == [0, 1]
    atom_mol = np.array([ia for ia, _, _, nl in ecp.atoms if nl], dtype=np.int64)
    from rung.qmc.ecp import _ICOSAHEDRON

    dirs, weights = _ICOSAHEDRON
    rot = an._draw_rotations(nw, ne)
    j0 = 0.3 * rng.normal(size=(nw, ne))
    jg = rng.normal(size=(nw, ne, 3))
    head = (rot, dirs, weights)
    mid = (ch.atom_R, ch.atom_rc, atom_mol, ch.ch_atom, ch.ch_l, ch.ch_tstart, ch.t_pow, ch.t_a, ch.t_c, j0,
           *an.tables.centres, SCREEN)
    return head, mid, configs, jg, rng


@sim
@pytest.mark.parametrize("use_j,with_ge", [(False, True), (True, False), (True, True)])
def test_simulator_kernel_matches_cpu_kernel(brcl, use_j, with_ge):
    """de, ge (untouched without with_ge) and vm_ao of both spins agree to 1e-10 relative to their largest
    element, all three added to in place."""
    from rung.qmc._kernels.cpu.forces import nonlocal_terms as cpu
    from rung.qmc._kernels.forces_ecp_gpu import nonlocal_terms as gpu

    mol, an = brcl
    nw = 2
    head, mid, configs, jg, rng = _inputs(mol, an, nw)
    ne, natom, ncart = configs.shape[1], an.natom, an.basis.ncart
    jt = (use_j,) + an.tables.jastrow[1:]  # without the Jastrow the kernels must ignore its tables
    start = 0
    for n in mol.nelec:
        b0 = rng.normal(size=(nw, ncart, n))
        init = (rng.normal(size=(nw, natom, 3)), rng.normal(size=(nw, ne, 3)), rng.normal(size=(nw, n, ncart)))
        outs = []
        for kernel in (cpu, gpu):
            de, ge, vm = (a.copy() for a in init)
            kernel(*head, start, n, *mid, b0, configs, jg, an.coords, an.spin, with_ge, *jt, de, ge, vm)
            outs.append((de, ge, vm))
        for name, a0, ref, got in zip(("de", "ge", "vm_ao"), init, *outs):
            scale = np.abs(ref - a0).max()
            if name == "ge" and not with_ge:
                assert scale == 0.0 and np.array_equal(got, a0)
                continue
            assert scale > 1e-3  # the terms are there
            np.testing.assert_allclose(got - a0, ref - a0, atol=1e-10 * scale, rtol=0)
        start += n


@sim
def test_cupy_backend_uses_the_kernel(brcl, monkeypatch):
    """AnalyticDerivatives(backend="cupy").derivatives calls this kernel once per spin and equals the numba
    backend (same rotations) to 1e-10 relative: d ln|psi|, d E_L, grad ln psi, grad E_L."""
    from rung.qmc._kernels import forces_ecp_gpu

    mol, an = brcl
    configs = _inputs(mol, an, 2)[2]
    calls = []
    kernel = forces_ecp_gpu.nonlocal_terms
    monkeypatch.setattr(forces_ecp_gpu, "nonlocal_terms", lambda *a: calls.append(1) or kernel(*a))
    out = []
    for backend in ("numba", "cupy"):
        d = AnalyticDerivatives(mol, an.wf, an.ham, backend=backend)
        out.append(d.derivatives(configs, d._draw_rotations(*configs.shape[:2])))
    assert len(calls) == 2
    for ref, got in zip(*out):
        np.testing.assert_allclose(got, ref, atol=1e-10 * np.abs(ref).max(), rtol=0)


def _one_spin(an, head, mid, configs, jg, with_ge, outs, b0):
    """The argument list of one call for the first spin (start 0)."""
    return (*head, 0, b0.shape[2], *mid, b0, configs, jg, an.coords, an.spin, with_ge, *an.tables.jastrow, *outs)


def test_bad_inputs(brcl):
    """A quadrature rule longer than MAXQ; host and device arrays mixed."""
    from rung.qmc._kernels.forces_ecp_gpu import MAXQ, nonlocal_terms

    mol, an = brcl
    head, mid, configs, jg, _ = _inputs(mol, an, 1)
    n, ncart = mol.nelec[0], an.basis.ncart
    outs = (np.zeros((1, an.natom, 3)), np.zeros((1, configs.shape[1], 3)), np.zeros((1, n, ncart)))
    b0 = np.zeros((1, ncart, n))
    long = (head[0], np.zeros((MAXQ + 1, 3)), np.zeros(MAXQ + 1))
    with pytest.raises(ValueError, match="quadrature rules of <= 12"):
        nonlocal_terms(*_one_spin(an, long, mid, configs, jg, True, outs, b0))
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or gpu_available():
        from numba import cuda

        with pytest.raises(ValueError, match="mix"):
            nonlocal_terms(*_one_spin(an, head, mid, cuda.to_device(configs), jg, True, outs, b0))


@pytest.mark.gpu
def test_kernel_on_gpu_with_device_arrays(brcl):
    """On a device, CuPy arrays in, updated in place on the device: equal to the CPU kernel to 1e-10."""
    cupy = pytest.importorskip("cupy")
    if not gpu_available():
        pytest.skip("no GPU")
    from rung.qmc._kernels.cpu.forces import nonlocal_terms as cpu
    from rung.qmc._kernels.forces_ecp_gpu import nonlocal_terms as gpu

    mol, an = brcl
    nw = 64
    head, mid, configs, jg, rng = _inputs(mol, an, nw)
    n = mol.nelec[0]
    b0 = rng.normal(size=(nw, an.basis.ncart, n))
    ref = (np.zeros((nw, an.natom, 3)), np.zeros((nw, configs.shape[1], 3)), np.zeros((nw, n, an.basis.ncart)))
    cpu(*_one_spin(an, head, mid, configs, jg, True, ref, b0))
    args = [cupy.asarray(a) if isinstance(a, np.ndarray) else a
            for a in _one_spin(an, head, mid, configs, jg, True, tuple(np.zeros_like(a) for a in ref), b0)]
    gpu(*args)
    for r, g in zip(ref, args[-3:]):
        np.testing.assert_allclose(cupy.asnumpy(g), r, atol=1e-10 * np.abs(r).max(), rtol=0)
