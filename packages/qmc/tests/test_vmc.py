"""VMC oracles: a Slater determinant's VMC energy equals its SCF energy (kinetic, Coulomb and ECP at once)."""

import numpy as np
import pytest
from pyscf import gto

from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.stats import format_value, reblock
from rung.qmc.system import initial_configs, mean_field, slater_jastrow
from rung.qmc.vmc import VMCConfig, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


def _run(mol, nw=100, nblocks=20, nsteps=10, seed=1, jastrow=False, orb=None):
    orb = orb or mean_field(mol)
    wf = slater_jastrow(mol, orb, jastrow=jastrow, cusp_correction=False)  # the SCF determinant itself
    rng = np.random.default_rng(seed)
    res = vmc(wf, Hamiltonian.from_mol(mol), initial_configs(mol, nw, rng),
              VMCConfig(nwalkers=nw, nblocks=nblocks, nsteps=nsteps, nequil=30), rng=rng)
    return orb, res


def test_vmc_slater_determinant_equals_scf_water_ccecp():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    orb, res = _run(mol)
    assert abs(res.energy - orb.e_tot) < 3 * res.error, (res.energy, res.error, orb.e_tot)
    assert res.error < 0.03
    # the ECP part alone against PySCF's ECP integrals over the SCF density matrix
    from pyscf import scf

    mf = scf.RHF(mol).run(verbose=0)
    e_ecp = np.einsum("ij,ji", mf.make_rdm1(), mol.intor("ECPscalar"))
    loc, nl = res.components["ecp_local"], res.components["ecp_nonlocal"]
    assert abs(loc[0] + nl[0] - e_ecp) < 3 * np.hypot(loc[1], nl[1]) + 1e-3
    e_kin = np.einsum("ij,ji", mf.make_rdm1(), mol.intor("int1e_kin"))
    assert abs(res.components["kinetic"][0] - e_kin) < 3 * res.components["kinetic"][1]


def test_vmc_slater_determinant_equals_scf_h2_all_electron():
    """All-electron: no e-n cusp in the Gaussian orbitals, but the local energy's -Z/r divergence has
    finite variance, so the mean is still exact; the tolerance is 3 reblocked sigma."""
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvdz", verbose=0)
    orb, res = _run(mol, nw=100, nblocks=20)
    assert abs(res.energy - orb.e_tot) < 3 * res.error, (res.energy, res.error, orb.e_tot)
    assert res.error < 0.01


@pytest.mark.parametrize("jastrow", [False, True])
def test_ee_cusp_cancels_coulomb_singularity(jastrow):
    """Kato: with the Jastrow e-e cusp the local energy stays finite as two electrons meet; without it
    it follows +1/r12 (checks kinetic energy, Jastrow cusp and e-e potential together)."""
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvdz", verbose=0)
    wf = slater_jastrow(mol, mean_field(mol), jastrow=jastrow, cusp_correction=False)
    ham = Hamiltonian.from_mol(mol)
    e = []
    for r12 in (1e-3, 2e-3):
        c = np.array([[[0.3, 0.2, 0.5], [0.3, 0.2, 0.5 + r12]]])
        wf.recompute(c)
        e.append(ham.local_energy(wf, c, np.random.default_rng(0))["total"][0])
    expected = 0.0 if jastrow else 1 / 1e-3 - 1 / 2e-3
    assert abs((e[0] - e[1]) - expected) < 0.05 * (1 / 2e-3)


@pytest.mark.parametrize("corrected", [False, True])
def test_en_cusp_correction_cancels_nuclear_singularity(corrected):
    """Kato at a nucleus: with the orbital cusp correction E_L stays finite as an electron approaches
    an all-electron nucleus; without it E_L follows -Z/r."""
    mol = gto.M(atom="He 0 0 0", basis="cc-pvtz", verbose=0)
    wf = slater_jastrow(mol, mean_field(mol), jastrow=True, cusp_correction=corrected)
    ham = Hamiltonian.from_mol(mol)
    e = []
    for r in (1e-3, 2e-3):
        c = np.array([[[r, 0.0, 0.0], [0.4, -0.3, 0.5]]])
        wf.recompute(c)
        e.append(ham.local_energy(wf, c, np.random.default_rng(0))["total"][0])
    expected = 0.0 if corrected else -2.0 * (1 / 1e-3 - 1 / 2e-3)
    assert abs((e[0] - e[1]) - expected) < 0.05 * (2.0 / 2e-3)


def test_nan_walkers_rejected():
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="sto-3g", verbose=0)
    wf = slater_jastrow(mol, mean_field(mol))
    c = np.zeros((2, 2, 3))
    c[1, 0, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vmc(wf, Hamiltonian.from_mol(mol), c, VMCConfig(nwalkers=2))


def test_reblock_ar1():
    """AR(1): x_t = rho x_{t-1} + eps; error of the mean = sigma_x / sqrt(n) * sqrt((1+rho)/(1-rho))."""
    rng = np.random.default_rng(0)
    rho, n = 0.8, 2**16
    from scipy.signal import lfilter

    x = lfilter([1.0], [1.0, -rho], rng.normal(size=n))[1000:]
    n = x.size
    exact = (1 / np.sqrt(1 - rho**2)) / np.sqrt(n) * np.sqrt((1 + rho) / (1 - rho))
    r = reblock(x)
    assert 0.75 * exact < r.error < 1.3 * exact
    assert format_value(-17.16543, 0.0012) == "-17.1654(12)"


def test_result_hdf5_roundtrip(tmp_path):
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="sto-3g", verbose=0)
    _, res = _run(mol, nw=10, nblocks=3, nsteps=4)
    res.to_hdf5(tmp_path / "r.h5")
    back = type(res).from_hdf5(tmp_path / "r.h5")
    assert back.energy == res.energy and back.components == res.components
    np.testing.assert_array_equal(back.trace, res.trace)
    np.testing.assert_array_equal(back.configs, res.configs)


def test_reblock_detects_missing_plateau():
    """An AR(1) series much longer than its correlation time has a plateau; one only ~13 correlation
    times long mostly has none, says so, and over many such series its error bar covers the true spread of
    the mean better than the criterion's pick alone (which is what short DMC runs reported)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(0)
    long = lfilter([1.0], [1.0, -0.8], rng.normal(size=2**15))
    assert reblock(long).plateau
    rho, n = 0.9, 256  # correlation time ~20 steps
    means, errs, picked, flags = [], [], [], []
    for _ in range(200):
        x = lfilter([1.0], [1.0, -rho], rng.normal(size=n + 2000))[2000:]
        r = reblock(x)
        means.append(r.mean)
        errs.append(r.error)
        picked.append(dict(r.table)[r.block_size])
        flags.append(r.plateau)
    assert np.mean(flags) < 0.5
    true = np.std(means)
    # measured: picked 0.45, reported 0.53, true 0.58 (the picked error alone is 23% too small)
    assert np.median(picked) < 0.9 * np.median(errs) and np.median(errs) <= 1.05 * true, \
        (np.median(picked), np.median(errs), true)


def test_reblock_error_bars_cover_as_gaussian_ones():
    """Over many short AR(1) series (correlation time ~40 steps, 3000 steps: a short DMC run), the mean
    lies more than 3 reported error bars from the truth about as often as for a Gaussian (0.27%): the
    error is never the chosen block size's estimate alone when a shorter block size with >= 16 blocks
    says more (with the pick alone: 1.2% of these series; with this rule 0.6%), and not inflated (median
    reported / exact error of the mean within 10% of 1)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(1)
    rho, n = 0.95, 3000
    exact = np.sqrt(1 / (1 - rho**2)) / np.sqrt(n) * np.sqrt((1 + rho) / (1 - rho))
    z, ratio = [], []
    for _ in range(1500):
        r = reblock(lfilter([1.0], [1.0, -rho], rng.normal(size=n + 500))[500:])
        z.append(abs(r.mean) / r.error)
        ratio.append(r.error / exact)
    assert np.mean(np.array(z) > 3) < 0.01, np.mean(np.array(z) > 3)
    assert 0.9 < np.median(ratio) < 1.1, np.median(ratio)
