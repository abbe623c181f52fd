"""CI coefficients as variational parameters (rung.qmc.multideterminant, optimize_ci).

Oracles: central finite differences of ln|psi| and of E_L (nonlocal ECP with the same quadrature
rotation in every evaluation: the same rng seed); the per-determinant implementation against the
table method; PySCF's CASCI energy for the linear method's result.
"""

import dataclasses

import numpy as np
import pytest
from pyscf import fci, gto, mcscf, scf

from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.jastrow import Jastrow
from rung.qmc.multideterminant import Expansion, build_multislater, ci_coefficients, fixed_determinant
from rung.qmc.optimize import OptimizeConfig, _flat, _set, energy_and_derivatives, optimize
from rung.qmc.orbitals import AtomicBasis
from rung.qmc.system import initial_configs
from rung.qmc.vmc import VMCConfig, vmc
from rung.qmc.wavefunction import ProductWF

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


def casci_expansion(mc, ncas, nelecas, ndet):
    """The ``ndet`` largest determinants of a PySCF CASCI (alpha string x beta string CI matrix) as an
    Expansion over mc.mo_coeff (core orbitals first, then the active ones)."""
    ci = np.asarray(mc.ci)
    strings = fci.cistring.make_strings(range(ncas), nelecas // 2)
    flat = np.argsort(-np.abs(ci).ravel(), kind="stable")[:ndet]
    ia, ib = np.unravel_index(flat, ci.shape)

    def occ(s):
        return tuple(list(range(mc.ncore)) + [mc.ncore + i for i in range(ncas) if int(s) >> i & 1])

    return Expansion(ci.ravel()[flat], tuple(occ(strings[i]) for i in ia), tuple(occ(strings[i]) for i in ib),
                     mc.ncore + ncas)


@pytest.fixture(scope="module")
def water():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASCI(mf, 4, 4).run()
    return mol, mc


def _water_wf(mol, mc, method, coef=None, jastrow=True):
    """CASCI(4,4) water, 8 determinants (the last with a zero coefficient: its derivative must still be
    D_I / psi), coefficients moved away from the CASCI ones so that no term is negligible."""
    exp = casci_expansion(mc, 4, 4, 8)
    if coef is None:
        coef = exp.coef + np.random.default_rng(5).normal(scale=0.1, size=exp.coef.size)
        coef[0], coef[-1] = 1.0, 0.0
    exp = dataclasses.replace(exp, coef=coef, optimize_ci=True)
    comps = [build_multislater(AtomicBasis.from_mol(mol), mc.mo_coeff, exp, mol.nelec, method=method)]
    if jastrow:
        jas = Jastrow(mol.atom_coords(), [0, 1, 1], [0.0, 0.0, 0.0], mol.nelec)
        jas.parameters["ee"][...] = [[0.1, -0.2, 0.1, 0.05], [0.3, 0.1, -0.2, 0.1]]
        jas.parameters["en"][...] = [[0.2, -0.1, 0.05, 0.1], [-0.1, 0.1, 0.0, 0.05]]
        comps.append(jas)
    return ProductWF(comps), exp


def test_fixed_coefficient_and_parameter_vector(water):
    mol, mc = water
    wf, exp = _water_wf(mol, mc, "table", jastrow=False)
    assert fixed_determinant(exp.coef) == 0
    assert list(wf.parameters) == ["0.ci"] and wf.parameters["0.ci"].shape == (7,)
    np.testing.assert_array_equal(ci_coefficients(exp, wf.parameters["0.ci"]), exp.coef)
    frozen = build_multislater(AtomicBasis.from_mol(mol), mc.mo_coeff, casci_expansion(mc, 4, 4, 8), mol.nelec)
    assert frozen.parameters == {} and frozen.pgradient() == {}


@pytest.mark.parametrize("method", ["table", "per-determinant"])
def test_log_psi_and_local_energy_derivatives_fd(water, method):
    """d ln|psi| / d c_I and d E_L / d c_I (kinetic and nonlocal ECP terms) against central finite
    differences; Jastrow parameters in the same run against theirs (the CI terms shift no index)."""
    mol, mc = water
    wf, exp = _water_wf(mol, mc, method)
    ham = Hamiltonian.from_mol(mol)
    configs = initial_configs(mol, 3, np.random.default_rng(0))
    wf.recompute(configs)
    p0 = _flat(wf)
    E, O, dE = energy_and_derivatives(wf, ham, configs, np.random.default_rng(7))
    assert O.shape == dE.shape == (3, p0.size) and p0.size == 7 + 16
    h = 1e-6
    for k in list(range(7)) + [7, 12, 19]:  # every CI coefficient, a few Jastrow parameters
        logs, els = [], []
        for s in (1, -1):
            p = p0.copy()
            p[k] += s * h
            _set(wf, p)
            logs.append(wf.recompute(configs)[1])
            els.append(energy_and_derivatives(wf, ham, configs, np.random.default_rng(7))[0])
        _set(wf, p0)
        np.testing.assert_allclose(O[:, k], (logs[0] - logs[1]) / (2 * h), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(dE[:, k], (els[0] - els[1]) / (2 * h), rtol=1e-5, atol=1e-5)
    assert np.abs(O[:, :7]).max() > 1e-2 and np.abs(dE[:, :7]).max() > 1e-2  # the CI terms are not negligible


def test_table_equals_per_determinant(water):
    """Both implementations give the same O, E_L and d E_L (to rounding) on the same configurations,
    and the same per-electron terms at displaced positions (several points per walker); the table's
    value-only path (ECP quadrature points) equals the first of its full terms."""
    mol, mc = water
    ham = Hamiltonian.from_mol(mol)
    configs = initial_configs(mol, 4, np.random.default_rng(1))
    out = []
    for method in ("table", "per-determinant"):
        wf, _ = _water_wf(mol, mc, method)
        wf.recompute(configs)
        pts = configs[:, 5][:, None] + np.random.default_rng(2).normal(scale=0.5, size=(4, 3, 3))
        md = wf.components[0]
        out.append(energy_and_derivatives(wf, ham, configs, np.random.default_rng(7)) + md.parameter_terms(5, pts)
                   + md.parameter_terms(1, configs[:, 1][:, None]) + (md.parameter_values(5, pts),))
        np.testing.assert_allclose(out[-1][-1], out[-1][3], rtol=1e-12, atol=1e-14)  # values only = first term
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10 * max(1.0, np.abs(b).max()))


def test_frozen_ci_keeps_jastrow_only_results_identical(water):
    """optimize_ci off (the default): the optimiser sees only the Jastrow, and a run gives the very same
    numbers as before (same parameters vector, same derivatives)."""
    mol, mc = water
    exp = casci_expansion(mc, 4, 4, 8)
    ham = Hamiltonian.from_mol(mol)
    configs = initial_configs(mol, 3, np.random.default_rng(0))
    wf_on, _ = _water_wf(mol, mc, "table", coef=exp.coef.copy())
    wf_off = ProductWF([build_multislater(AtomicBasis.from_mol(mol), mc.mo_coeff, exp, mol.nelec),
                        wf_on.components[1]])
    assert list(wf_off.parameters) == ["1.ee", "1.en"]
    wf_on.recompute(configs)
    E1, O1, dE1 = energy_and_derivatives(wf_on, ham, configs, np.random.default_rng(7))
    wf_off.recompute(configs)
    E0, O0, dE0 = energy_and_derivatives(wf_off, ham, configs, np.random.default_rng(7))
    np.testing.assert_array_equal(E0, E1)
    np.testing.assert_array_equal(O0, O1[:, 7:])
    np.testing.assert_array_equal(dE0, dE1[:, 7:])


@pytest.fixture(scope="module")
def h2():
    mol = gto.M(atom="H 0 0 0; H 0 0 2.8", unit="Bohr", basis="cc-pvdz", verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASCI(mf, 2, 2).run()
    return mol, mc


def test_linear_method_recovers_casci_coefficients_h2(h2):
    """Stretched H2, CASCI(2,2) without Jastrow (cusp-corrected orbitals), starting from Hartree-Fock
    (c_2 = 0): the linear method in the two-determinant space is the sampled CI eigenproblem, so each
    step lands on PySCF's CASCI c_2 / c_1 (within the sampling noise, 10%), and VMC with the result
    gives the CASCI energy within 3 sigma, well below Hartree-Fock (32 mHa above CASCI)."""
    mol, mc = h2
    exp = casci_expansion(mc, 2, 2, 2)
    casci_ratio = exp.coef[1] / exp.coef[0]
    start = dataclasses.replace(exp, coef=np.array([1.0, 0.0]), optimize_ci=True)
    wf = ProductWF([build_multislater(AtomicBasis.from_mol(mol), mc.mo_coeff, start, mol.nelec,
                                      cusp_atoms=[(0, 1.0), (1, 1.0)])])
    ham = Hamiltonian.from_mol(mol)
    hist, configs = optimize(wf, ham, initial_configs(mol, 200, np.random.default_rng(0)),
                             OptimizeConfig(niter=3, nsteps=20, min_samples=8000, seed=1))
    assert hist[0][2][0] == 0.0
    for _, _, p in hist[1:]:
        assert abs(p[0] - casci_ratio) < 0.1 * abs(casci_ratio), (p, casci_ratio)
    res = vmc(wf, ham, configs, VMCConfig(nwalkers=200, nblocks=20, nsteps=10, nequil=10, seed=3))
    assert abs(res.energy - mc.e_tot) < 3 * res.error, (res.energy, res.error, mc.e_tot)
    assert mc._scf.e_tot - res.energy > 5 * res.error, (res.energy, res.error, mc._scf.e_tot)


@pytest.mark.slow
def test_linear_method_lowers_perturbed_water_ci_toward_casci():
    """Water ccECP, CASCI(8,8) top 10 determinants without Jastrow, coefficients of all excited
    determinants set to 0.1 (about 60 mHa above the CASCI energy of the expansion): a few linear-method
    iterations bring the VMC energy back within 3 sigma + 2 mHa of the energy the CASCI coefficients give."""
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASCI(mf, 8, 8).run()
    exp = casci_expansion(mc, 8, 8, 10)
    ham = Hamiltonian.from_mol(mol)
    basis = AtomicBasis.from_mol(mol)
    vcfg = VMCConfig(nwalkers=200, nblocks=20, nsteps=10, nequil=20, seed=3)

    def energy(wf, configs):
        return vmc(wf, ham, configs, vcfg, rng=np.random.default_rng(4))

    ref = energy(ProductWF([build_multislater(basis, mc.mo_coeff, exp, mol.nelec)]),
                 initial_configs(mol, 200, np.random.default_rng(0)))
    bad = np.r_[exp.coef[0], np.full(exp.coef.size - 1, 0.1)]
    wf = ProductWF([build_multislater(basis, mc.mo_coeff, dataclasses.replace(exp, coef=bad, optimize_ci=True),
                                      mol.nelec)])
    start = energy(wf, initial_configs(mol, 200, np.random.default_rng(0)))
    assert start.energy - ref.energy > 0.03
    _, configs = optimize(wf, ham, initial_configs(mol, 200, np.random.default_rng(0)),
                          OptimizeConfig(niter=4, nsteps=20, seed=1))
    res = energy(wf, configs)
    assert res.energy - ref.energy < 3 * np.hypot(res.error, ref.error) + 0.002, (res.energy, ref.energy)


def test_cli_optimize_ci_saves_coefficients_for_vmc(h2, tmp_path):
    """`qmc optimize --multidet F --optimize-ci --save P` writes the full coefficient vector (the fixed one
    unchanged, the other moved by the optimisation) and `qmc vmc --multidet F --params P` runs with it;
    bad combinations end in one line with exit code 2."""
    import h5py
    from click.testing import CliRunner

    from rung.qmc.cli import CI_KEY, main, saved_ci

    mol, mc = h2
    exp = casci_expansion(mc, 2, 2, 2)
    wf = tmp_path / "h2.wf.h5"
    with h5py.File(wf, "w") as f:
        g = f.create_group("MultiDet")
        g["NbDet"], g["nstate"], g["Nbits"] = 2, 2, 1
        g["Coeff"] = exp.coef
        g["CI_Alpha"] = np.array([[sum(1 << o for o in s)] for s in exp.occ_up], np.int64)
        g["CI_Beta"] = np.array([[sum(1 << o for o in s)] for s in exp.occ_down], np.int64)
        o = f.create_group("orbitals")
        o["mo_coeff"], o["mo_occ"] = mc.mo_coeff, mc._scf.mo_occ
        o.attrs.update(mol=mol.dumps(), xc="hf", e_tot=mc._scf.e_tot)
    xyz = tmp_path / "h2.xyz"
    xyz.write_text("2\n\nH 0 0 0\nH 0 0 1.4817\n")
    common = [str(xyz), "--basis", "cc-pvdz", "--ecp", "none", "--multidet", str(wf), "--walkers", "400",
              "--vmc-blocks", "2", "--vmc-steps", "3"]
    p = tmp_path / "p.h5"
    r = CliRunner().invoke(main, ["optimize", *common, "--optimize-ci", "--iterations", "2", "--opt-steps", "4",
                                  "--save", str(p)])
    assert r.exit_code == 0, r.output
    with h5py.File(p, "r") as f:
        assert "0.ci" not in f and {"1.ee", "1.en"} <= set(f)
        coef = f[CI_KEY][()]
    assert coef.shape == (2,) and coef[0] == exp.coef[0] and coef[1] != exp.coef[1]
    assert saved_ci(exp, {CI_KEY: coef}).coef is coef
    r = CliRunner().invoke(main, ["vmc", *common, "--params", str(p)])
    assert r.exit_code == 0 and "E(VMC)" in r.output, r.output
    for bad, msg in ((["vmc", *common[:5], "--params", str(p)], "give the --multidet"),
                     (["vmc", *common, "--max-dets", "1", "--params", str(p)], "2 CI coefficients"),
                     (["optimize", *common[:5], "--optimize-ci", "--save", str(p)], "--optimize-ci"),
                     (["optimize", *common, "--no-jastrow", "--optimize-ci", "--save", str(p)], "--optimize-ci")):
        r = CliRunner().invoke(main, bad)
        assert r.exit_code == 2 and msg in r.output and "Traceback" not in r.output, r.output


def test_ci_optimisation_is_recorded_as_another_level(tmp_path):
    """qmc_settings records optimize_ci when the CI coefficients were optimised (absent when read as
    given, so earlier records stay valid), and a dataset holding one kind refuses the other."""
    import json

    from rung.core.dataset import Molecule, ResultWriter, create_dataset
    from rung.qmc.run import QMCConfig, check_level, recorded_levels, result_settings
    from rung.qmc.system import InputError, mean_field

    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="sto-3g", verbose=0)
    orb = mean_field(mol)
    exp = Expansion(np.array([0.99, -0.1]), ((0,), (1,)), ((0,), (1,)), 2)
    opt = QMCConfig(VMCConfig(nwalkers=10), None, OptimizeConfig(niter=2))
    frozen = result_settings(mol, orb, opt, exp)
    optimised = result_settings(mol, orb, opt, dataclasses.replace(exp, optimize_ci=True))
    assert "optimize_ci" not in frozen and optimised["optimize_ci"] is True
    assert "optimize_ci" not in result_settings(mol, orb, QMCConfig(VMCConfig(nwalkers=10)), dataclasses.replace(
        exp, optimize_ci=True))  # nothing optimised: the coefficients are as read
    x = np.zeros((2, 2, 3))
    x[:, 1, 2] = 1.4
    ds = create_dataset(tmp_path / "h2.h5", [Molecule("h2", np.array([1, 1]), x)])
    w = ResultWriter(ds, "qmc", {"settings": "dimensionless"})
    w.record("h2", 0, {"settings": json.dumps(frozen)})
    w.close()
    with pytest.raises(InputError, match="optimize_ci"):
        check_level(ds, recorded_levels(ds), "h2", 1, optimised)
    check_level(ds, recorded_levels(ds), "h2", 1, frozen)
