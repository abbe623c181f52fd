"""Multideterminant trial functions: a CASCI expansion's VMC energy equals PySCF's CASCI energy."""

import h5py
import numpy as np
import pytest
from pyscf import gto, mcscf, scf

from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.jastrow import Jastrow
from rung.qmc.multideterminant import build_multislater, read_multidet
from rung.qmc.orbitals import AtomicBasis
from rung.qmc.system import initial_configs
from rung.qmc.vmc import VMCConfig, vmc
from rung.qmc.wavefunction import ProductWF


@pytest.fixture(scope="module")
def h2_casci(tmp_path_factory):
    """CASCI(2,2) of stretched H2 (strong two-determinant character), written as a /MultiDet file."""
    mol = gto.M(atom="H 0 0 0; H 0 0 2.8", unit="Bohr", basis="cc-pvdz", verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASCI(mf, 2, 2).run()
    ci = np.asarray(mc.ci)  # (2, 2): alpha string x beta string; string i = orbital i
    path = tmp_path_factory.mktemp("md") / "h2.multidet.h5"
    a, b, c = [], [], []
    for ia in range(2):
        for ib in range(2):
            a.append([1 << ia])
            b.append([1 << ib])
            c.append(ci[ia, ib])
    with h5py.File(path, "w") as f:
        g = f.create_group("MultiDet")
        g["NbDet"], g["nstate"], g["Nbits"] = 4, 2, 1
        g["Coeff"], g["CI_Alpha"], g["CI_Beta"] = np.array(c), np.array(a, np.int64), np.array(b, np.int64)
    return mol, mc, path


def _wf(mol, mc, path, jastrow=False):
    exp = read_multidet(path, min_coef=1e-10)
    comps = [build_multislater(AtomicBasis.from_mol(mol), mc.mo_coeff, exp, mol.nelec)]
    if jastrow:
        jas = Jastrow(mol.atom_coords(), [0, 0], [0.0, 0.0], mol.nelec)
        jas.parameters["ee"][...] = [[0.1, -0.2, 0.1, 0.05], [0.3, 0.1, -0.2, 0.1]]
        jas.parameters["en"][...] = [[0.2, -0.1, 0.05, 0.1]]
        comps.append(jas)
    return ProductWF(comps), exp


def test_vmc_energy_equals_casci(h2_casci):
    mol, mc, path = h2_casci
    wf, exp = _wf(mol, mc, path)
    assert len(exp.coef) == 2  # the two open-shell determinants vanish by symmetry for a singlet sigma_g^2
    rng = np.random.default_rng(0)
    res = vmc(wf, Hamiltonian.from_mol(mol), initial_configs(mol, 100, rng),
              VMCConfig(nwalkers=100, nblocks=20, nsteps=10, nequil=30), rng=rng)
    assert abs(res.energy - mc.e_tot) < 3 * res.error, (res.energy, res.error, mc.e_tot)
    assert mc.e_tot < mc._scf.e_tot - 0.02  # the expansion matters: the test can tell one det from two


def test_gradient_laplacian_ratio(h2_casci):
    mol, mc, path = h2_casci
    wf, _ = _wf(mol, mc, path, jastrow=True)
    rng = np.random.default_rng(3)
    configs = rng.normal(scale=1.5, size=(4, 2, 3)) + [0, 0, 1.4]
    h = 1e-4
    for e in range(2):
        s0, l0 = wf.recompute(configs)
        g, lap = wf.gradient_laplacian(e, configs[:, e])
        ga, la = wf.gradient_laplacian_all()
        np.testing.assert_allclose(ga[:, e], g.T, atol=1e-10)
        np.testing.assert_allclose(la[:, e], lap, atol=1e-9)
        fd_g, fd_l = np.zeros_like(g), np.zeros_like(lap)
        for x in range(3):
            rs = []
            for sgn in (1, -1):
                c = configs.copy()
                c[:, e, x] += sgn * h
                s, l = wf.recompute(c)
                rs.append(s * s0 * np.exp(l - l0))
            fd_g[x] = (rs[0] - rs[1]) / (2 * h)
            fd_l += (rs[0] - 2 + rs[1]) / h**2
        np.testing.assert_allclose(g, fd_g, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(lap, fd_l, rtol=1e-4, atol=1e-3)
        # ratio and accept against recomputation
        wf.recompute(configs)
        new = configs[:, e] + rng.normal(scale=0.4, size=(4, 3))
        grad, ratio, saved = wf.gradient_value(e, new)
        np.testing.assert_allclose(wf.testvalue(e, new), ratio, rtol=1e-10)
        c = configs.copy()
        c[:, e] = new
        wf.accept(e, new, np.ones(4, bool), saved)
        s1, l1 = wf.value()
        s2, l2 = ProductWF(wf.components).recompute(c)
        np.testing.assert_allclose(l1, l2, atol=1e-9)
        np.testing.assert_allclose(ratio, s2 * s0 * np.exp(l2 - l0), rtol=1e-9)


def test_cli_multidet_with_orbitals_group(h2_casci, tmp_path):
    """`qmc vmc --multidet` on a sci-style file holding /MultiDet and /orbitals (DFT-orbitals layout)."""
    import shutil

    from click.testing import CliRunner

    from rung.qmc.cli import main

    mol, mc, path = h2_casci
    f2 = tmp_path / "wf.h5"
    shutil.copy(path, f2)
    with h5py.File(f2, "a") as f:
        g = f.create_group("orbitals")
        g["mo_coeff"], g["mo_occ"] = mc.mo_coeff, mc._scf.mo_occ
        g.attrs.update(mol=mol.dumps(), xc="hf", e_tot=mc._scf.e_tot)
    xyz = tmp_path / "h2.xyz"
    xyz.write_text("2\n\nH 0 0 0\nH 0 0 1.4817\n")
    r = CliRunner().invoke(main, ["vmc", str(xyz), "--basis", "cc-pvdz", "--ecp", "none", "--multidet", str(f2),
                                  "--walkers", "20", "--vmc-blocks", "3", "--vmc-steps", "5", "--no-jastrow"])
    assert r.exit_code == 0, r.output
    assert "E(VMC)" in r.output
    with h5py.File(f2, "a") as f:
        del f["orbitals"]
    r = CliRunner().invoke(main, ["vmc", str(xyz), "--basis", "cc-pvdz", "--ecp", "none", "--multidet", str(f2)])
    assert r.exit_code == 2 and "orbitals are unknown" in r.output  # bad input (rung.core.cli)
