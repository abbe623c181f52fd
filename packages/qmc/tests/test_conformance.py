"""The wave-function conformance kit (rung.qmc.testing) on every component type, and proof that it fails
for wrong components (deliberately broken wrappers), so that it cannot pass vacuously."""

import numpy as np
import pytest
from pyscf import gto, mcscf, scf

from rung.qmc import testing
from rung.qmc.determinants import SlaterDeterminant
from rung.qmc.jastrow import Jastrow
from rung.qmc.jastrow3 import ThreeBodyJastrow
from rung.qmc.multideterminant import Expansion, build_multislater
from rung.qmc.orbitals import AtomicBasis
from rung.qmc.system import mean_field, slater_jastrow
from rung.qmc.wavefunction import ProductWF

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


def _randomise(wf, seed, scale=0.2):
    rng = np.random.default_rng(seed)
    for v in wf.parameters.values():
        v[...] = rng.normal(scale=scale, size=v.shape)


def _configs(mol, nw, seed):
    rng = np.random.default_rng(seed)
    return mol.atom_coords().mean(0) + rng.normal(scale=1.2, size=(nw, sum(mol.nelec), 3))


@pytest.fixture(scope="module")
def water():
    """ccECP water, RHF orbitals, three walkers."""
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    return mol, mean_field(mol), _configs(mol, 3, 0)


def test_slater_determinant(water):
    mol, orb, configs = water
    det = slater_jastrow(mol, orb, jastrow=False).components[0]
    assert type(det) is SlaterDeterminant
    report = testing.assert_wavefunction(det, configs)
    assert "gradient_laplacian.lap" in report and "update.value" in report and "pgradient" not in report


@pytest.mark.parametrize("backend", ["numba", pytest.param("numpy", marks=pytest.mark.slow)])
def test_jastrow(water, backend):
    """The one- and two-body Jastrow alone (random parameters, so both terms are on) under each backend."""
    mol, orb, configs = water
    jas = slater_jastrow(mol, orb, backend=backend).components[1]
    assert type(jas) is Jastrow
    _randomise(jas, 1)
    report = testing.assert_wavefunction(jas, configs)
    assert {"pgradient", "parameter_terms.value", "parameter_terms.grad", "parameter_terms.lap"} <= set(report)


@pytest.mark.parametrize("term", ["ee", "en"])
def test_jastrow_single_term(water, term):
    """Two-body only and one-body only (the other term's parameters zero)."""
    mol, orb, configs = water
    jas = slater_jastrow(mol, orb).components[1]
    jas.parameters[term][...] = np.random.default_rng(2).normal(scale=0.3, size=jas.parameters[term].shape)
    testing.assert_wavefunction(jas, configs)


def test_three_body_jastrow():
    """Two atoms of two species, three electrons (parallel and antiparallel pairs)."""
    atoms = np.array([[0.0, 0.0, 0.0], [0.0, 0.3, 2.2]])
    j3 = ThreeBodyJastrow(atoms, [0, 1], (2, 1), nbasis=2, rcut=4.0)
    _randomise(j3, 3, 0.5)
    configs = np.random.default_rng(4).normal(scale=1.2, size=(3, 3, 3)) + [0, 0, 1.1]
    testing.assert_wavefunction(j3, configs)


@pytest.fixture(scope="module")
def radical():
    """Open-shell all-electron LiH (3, 1): cusp-corrected UHF orbitals."""
    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", basis="6-31g", spin=2, verbose=0)
    return mol, mean_field(mol), _configs(mol, 3, 14)


@pytest.mark.parametrize("which", ["water", "radical"])
def test_slater_jastrow_product(which, request):
    """D_up D_down exp(J1 + J2 + J3) with the e-n cusp in the Jastrow (all-electron LiH), random parameters:
    the trial functions of test_wavefunction.py's finite-difference, ratio and update tests."""
    mol, orb, configs = request.getfixturevalue(which)
    det, jas = slater_jastrow(mol, orb, en_cusp=True).components
    # two basis functions per distance in J3 (12 parameters, not 36: the same code, a third of the time)
    wf = ProductWF([det, jas, ThreeBodyJastrow(mol.atom_coords(), jas.atom_species, mol.nelec, nbasis=2)])
    _randomise(wf, 4)
    testing.assert_wavefunction(wf, configs, eps=3e-4)


@pytest.fixture(scope="module")
def water_cas():
    """A CASCI(4e, 4o) expansion of ccECP water (its determinants with |c| > 1e-8)."""
    from pyscf import fci

    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASCI(mf, 4, 4).run()
    ci = np.asarray(mc.ci)
    strings = fci.cistring.make_strings(range(4), 2)
    ia, ib = np.nonzero(np.abs(ci) > 1e-8)

    def occ(s):
        return tuple(list(range(mc.ncore)) + [mc.ncore + i for i in range(4) if int(s) >> i & 1])

    exp = Expansion(ci[ia, ib], tuple(occ(strings[i]) for i in ia), tuple(occ(strings[i]) for i in ib),
                    mf.mo_coeff.shape[1])
    assert len(exp.coef) > 4
    return mol, mf, exp, _configs(mol, 3, 5)


@pytest.mark.parametrize("method", ["table", "per-determinant"])
def test_multideterminant(water_cas, method):
    """TableMultiSlater and MultiSlater, alone and times a Jastrow."""
    mol, mf, exp, configs = water_cas
    md = build_multislater(AtomicBasis.from_mol(mol), mf.mo_coeff, exp, mol.nelec, method=method)
    testing.assert_wavefunction(md, configs)
    jas = Jastrow(mol.atom_coords(), [0, 1, 1], [0.0] * 3, mol.nelec)
    _randomise(jas, 6)
    testing.assert_wavefunction(ProductWF([md, jas]), configs, parameters=False)


@pytest.mark.parametrize("method", ["table", pytest.param("per-determinant", marks=pytest.mark.slow)])
def test_multideterminant_ci_parameters(water_cas, method):
    """The CI coefficients as parameters: pgradient, parameter_terms, parameter_values; alone and times a
    Jastrow."""
    import dataclasses

    mol, mf, exp, configs = water_cas
    exp = dataclasses.replace(exp, optimize_ci=True)
    md = build_multislater(AtomicBasis.from_mol(mol), mf.mo_coeff, exp, mol.nelec, method=method)
    report = testing.check_parameter_derivatives(md, configs[:2])
    assert set(report) == {"pgradient", "parameter_terms.value", "parameter_terms.grad", "parameter_terms.lap",
                           "parameter_values"}
    testing.assert_conforms(report)
    jas = Jastrow(mol.atom_coords(), [0, 1, 1], [0.0] * 3, mol.nelec)
    _randomise(jas, 15)
    testing.assert_wavefunction(ProductWF([md, jas]), configs[:2])


def test_cusp_corrected_all_electron_water():
    """All-electron water: cusp-corrected orbitals (O and H) and the Jastrow with the e-n cusp, with
    electrons inside the O correction radius (0.5 / 8 Bohr) and the H ones (0.5 Bohr)."""
    mol = gto.M(atom=WATER, unit="Bohr", basis="6-31g", verbose=0)
    wf = slater_jastrow(mol, mean_field(mol), en_cusp=True)
    assert all(o.cusp is not None for o in wf.components[0].orbitals)
    _randomise(wf, 7, 0.1)
    configs = _configs(mol, 3, 8)
    rng = np.random.default_rng(9)
    coords = mol.atom_coords()
    for w in range(3):  # one electron of each spin near O, inside r_c, and one near an H
        for e in (0, 5):
            u = rng.normal(size=3)
            configs[w, e] = coords[0] + rng.uniform(0.01, 0.05) * u / np.linalg.norm(u)
        configs[w, 1] = coords[1 + w % 2] + rng.normal(scale=0.15, size=3)
    # h = 3e-4 Bohr: the five-point error (h / r)^4 is 1e-5 at 1e-3 Bohr for an electron 0.014 Bohr from O
    testing.assert_wavefunction(wf, configs, eps=3e-4)


def test_no_electron_of_one_spin():
    """All-electron H2 triplet, (2, 0) electrons: the cusp correction of an empty spin-down orbital set
    (it raised ValueError before) and the components with no spin-down electron."""
    mol = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvdz", spin=2, verbose=0)
    wf = slater_jastrow(mol, mean_field(mol), en_cusp=True)
    _randomise(wf, 12, 0.1)
    testing.assert_wavefunction(wf, _configs(mol, 3, 13), eps=3e-4)


@pytest.mark.parametrize("warp", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_nuclear_derivatives(water, warp):
    """Analytic d ln|psi| / dR and d E_L / dR (ccECP, Jastrow), with and without the space warp."""
    from rung.qmc.force_derivs import AnalyticDerivatives
    from rung.qmc.forces import ForceConfig, displaced_builder
    from rung.qmc.hamiltonian import Hamiltonian

    mol, orb, configs = water
    wf = slater_jastrow(mol, orb)
    _randomise(wf, 10, 0.1)
    build = displaced_builder(mol, orb, parameters=wf.parameters)
    derivs = AnalyticDerivatives(mol, wf, Hamiltonian.from_mol(mol), ForceConfig(warp=warp, seed=3))
    testing.assert_conforms(testing.check_nuclear_derivatives(derivs, build, mol.atom_coords(), configs[:2]))


# ------------------------------------------------------------------ the kit fails for wrong components

class _Broken:
    """A component that delegates to ``inner`` except for one deliberately wrong quantity."""

    def __init__(self, inner, fault):
        self.inner, self.fault = inner, fault

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def testvalue(self, e, epos, mask=None):
        r = self.inner.testvalue(e, epos, mask)
        if self.fault == "ratio.mask" and mask is not None:
            return r[::-1]  # the masked walkers in the wrong order
        return r

    def gradient_value(self, e, epos):
        g, r, saved = self.inner.gradient_value(e, epos)
        return (g * (1 + 1e-4) if self.fault == "gradient_value" else g), r, saved

    def gradient_laplacian(self, e, epos):
        g, lap = self.inner.gradient_laplacian(e, epos)
        return g, (lap + 1e-3 if self.fault == "gradient_laplacian.lap" else lap)

    def gradient_laplacian_all(self):
        g, lap = self.inner.gradient_laplacian_all()
        return (g[:, ::-1] if self.fault == "gradient_laplacian_all.grad" else g), lap  # electrons swapped

    def resample(self, idx):
        self.inner.resample(np.sort(idx) if self.fault == "resample.value" else idx)  # walkers mixed up

    def accept(self, e, epos, mask, saved=None):
        if self.fault == "update.value":  # moves every walker, ignoring the mask
            mask = np.ones_like(mask, dtype=bool)
        self.inner.accept(e, epos, mask, saved)

    def pgradient(self):
        pg = self.inner.pgradient()
        return {k: (v * (1 + 1e-4) if self.fault == "pgradient" else v) for k, v in pg.items()}

    def parameter_terms(self, e, epos):
        val, grad, lap = self.inner.parameter_terms(e, epos)
        return val, grad, (lap * (1 + 1e-4) if self.fault == "parameter_terms.lap" else lap)


@pytest.mark.parametrize("fault", [None, "ratio.mask", "gradient_value", "gradient_laplacian.lap",
                                   "gradient_laplacian_all.grad", "update.value", "resample.value", "pgradient",
                                   "parameter_terms.lap"])
def test_kit_catches_a_wrong_component(water, fault):
    """Each fault (1e-4 relative in a gradient, 1e-3 Bohr^-2 in a Laplacian, ...) is reported under its
    name, far above its tolerance, and makes the assertion fail; the clean wrapper passes."""
    mol, orb, configs = water
    jas = slater_jastrow(mol, orb).components[1]
    _randomise(jas, 11)
    broken = _Broken(jas, fault)
    report = testing.check_wavefunction(broken, configs)
    if fault is None:
        testing.assert_conforms(report)
        return
    assert report[fault] > 10 * testing.TOLERANCES[fault], report
    with pytest.raises(AssertionError, match=fault):
        testing.assert_conforms(report)


def test_assert_conforms_refuses_nan_and_takes_tolerances():
    with pytest.raises(AssertionError, match="ratio: error nan"):
        testing.assert_conforms({"ratio": float("nan")})
    testing.assert_conforms({"gradient_value": 1e-5}, tol={"gradient_value": 1e-4})
    with pytest.raises(AssertionError, match="gradient_value"):
        testing.assert_conforms({"gradient_value": 1e-5})


@pytest.mark.slow  # 0.5 CPU-s of re-built trial functions; the electron-side faults above are the fast proof
def test_kit_catches_wrong_nuclear_derivatives(water):
    from rung.qmc.force_derivs import AnalyticDerivatives
    from rung.qmc.forces import ForceConfig, displaced_builder
    from rung.qmc.hamiltonian import Hamiltonian

    mol, orb, configs = water
    derivs = AnalyticDerivatives(mol, slater_jastrow(mol, orb), Hamiltonian.from_mol(mol), ForceConfig(warp=False))

    class Scaled:  # d E_L off by 1e-4 relative
        config = derivs.config
        state, set_state = derivs.state, derivs.set_state

        def __call__(self, c):
            dl, de = derivs(c)
            return dl, de * (1 + 1e-4)

    report = testing.check_nuclear_derivatives(Scaled(), displaced_builder(mol, orb), mol.atom_coords(), configs[:2])
    assert report["nuclear.dlogpsi"] < testing.TOLERANCES["nuclear.dlogpsi"]
    assert report["nuclear.dlocal_energy"] > 10 * testing.TOLERANCES["nuclear.dlocal_energy"], report
