"""The SCF of a conformation (rung.dft_gpu.scf) and the farm (rung.dft_gpu.run): energies and gradients
against a plain PySCF run, SCF fallbacks, per-conformation validation, the orbitals and FCIDUMP files.

Oracles: an independent PySCF script with the same settings (density-fitted SCF on grid 3 for the
energy; a separate SCF on grid 4 from scratch for the gradient; coarser grids in the fast tests); PySCF's exact-integral Hartree-Fock
energy functional of the stored orbitals for the FCIDUMP.
"""

import functools
import importlib.util
import json
from dataclasses import replace

import h5py
import numpy as np
import pytest

from rung.core.dataset import DONE, FAILED, Molecule, create_dataset, read_property
from rung.core.units import ANGSTROM_TO_BOHR
from rung.dft_gpu.run import run, status
from rung.dft_gpu.scf import (ConformationError, DFTConfig, SCFNotConverged, build_mol, converge, kernel,
                              make_scf)

HAVE_ENGINE = importlib.util.find_spec("rung.dft_gpu.jk") is not None
JK = ["pyscf", pytest.param("engine", marks=pytest.mark.skipif(not HAVE_ENGINE, reason="rung.dft_gpu.jk absent"))]
AUX = "def2-universal-jkfit"  # the same fitting basis for ours and the oracle
TIGHT = dict(conv_tol=1e-10, conv_tol_grad=1e-6)

WATER = ([8, 1, 1], [[0, 0, 0.119262], [0, 0.763239, -0.477047], [0, -0.763239, -0.477047]])  # G2, Angstrom
METHANE = ([6, 1, 1, 1, 1], [[0, 0, 0], [0.629118, 0.629118, 0.629118], [-0.629118, -0.629118, 0.629118],
                             [0.629118, -0.629118, -0.629118], [-0.629118, 0.629118, -0.629118]])
OH = ([8, 1], [[0, 0, 0], [0, 0, 0.97]])
NH2 = ([7, 1, 1], [[0, 0, 0.1405], [0, 0.8005, -0.4918], [0, -0.8005, -0.4918]])  # 2B1: no degenerate SOMO


def molecule(name, spec, charge=0, multiplicity=1, shifts=(0.0,)):
    z, x = spec
    x = np.asarray(x, dtype=float) * ANGSTROM_TO_BOHR
    confs = [x + s * np.eye(len(z), 3)[::-1] for s in shifts]  # distorted copies
    return Molecule(name, np.array(z), np.array(confs), charge, multiplicity)


@functools.lru_cache
def pyscf_reference(mol_spec, config: DFTConfig, charge=0, spin=0):
    """A plain PySCF run, written independently of the farm: E on the energy grid, dE/dR from a
    fresh SCF on the force grid, both density-fitted with the same auxbasis (``auxbasis=None``: the
    J/K engine's default, as the engine resolves it for this molecule)."""
    from pyscf import dft, gto, scf

    z, x = mol_spec
    mol = gto.M(atom=[(int(a), tuple(np.asarray(p) * ANGSTROM_TO_BOHR)) for a, p in zip(z, x)], unit="Bohr",
                basis=config.basis, ecp=config.ecp or {}, charge=charge, spin=spin, verbose=0)

    auxbasis = config.auxbasis
    if auxbasis is None:
        from rung.dft_gpu.jk import resolve_auxbasis

        auxbasis = resolve_auxbasis(mol)

    def scf_on(level):
        if config.xc == "hf":
            mf = scf.RHF(mol) if spin == 0 else scf.UHF(mol)
        else:
            mf = dft.RKS(mol, xc=config.xc) if spin == 0 else dft.UKS(mol, xc=config.xc)
            mf.grids.level = level
        mf = mf.density_fit(auxbasis=auxbasis)
        mf.conv_tol, mf.conv_tol_grad, mf.verbose = config.conv_tol, config.conv_tol_grad, 0
        mf.kernel()
        assert mf.converged
        return mf

    mf3 = scf_on(config.energy_grid)
    mf4 = scf_on(config.force_grid)
    return mf3.e_tot, mf4.nuc_grad_method().kernel(), mf3.dip_moment(unit="AU", verbose=0)


def _hashable(spec):
    return tuple(spec[0]), tuple(map(tuple, spec[1]))


CASES = {  # name: (spec, charge, multiplicity, config options)
    # coarser grids than the paper's 3/4 keep the default suite fast; the slow test below uses 3/4
    "water-wb97m-d3bj": (WATER, 0, 1, dict(xc="wb97m-d3bj", basis="ccecp-cc-pvdz", ecp="ccecp", energy_grid=1, force_grid=2)),
    "nh2-radical-pbe": (NH2, 0, 2, dict(xc="pbe", basis="6-31g", ecp=None, energy_grid=0, force_grid=1)),
    "methane-hf-allelectron": (METHANE, 0, 1, dict(xc="hf", basis="6-31g", ecp=None)),
}


NEEDS_ENGINE = pytest.mark.skipif(not HAVE_ENGINE, reason="rung.dft_gpu.jk absent")
SLOW = pytest.mark.slow  # the same check through the other J/K path; the default suite keeps one of each


@pytest.mark.parametrize("case, jk", [
    pytest.param("water-wb97m-d3bj", "engine", marks=NEEDS_ENGINE),
    pytest.param("water-wb97m-d3bj", "pyscf", marks=SLOW),
    ("nh2-radical-pbe", "pyscf"),
    pytest.param("nh2-radical-pbe", "engine", marks=[NEEDS_ENGINE, SLOW]),
    pytest.param("methane-hf-allelectron", "engine", marks=NEEDS_ENGINE),
    ("methane-hf-allelectron", "pyscf"),
])
def test_matches_plain_pyscf(case, jk):
    spec, charge, mult, opts = CASES[case]
    # the engine with its default auxbasis (the default path of `dft-gpu run`); the oracle gets it explicitly
    config = DFTConfig(auxbasis=AUX if jk == "pyscf" else None, jk=jk, **TIGHT, **opts)
    res = kernel(molecule("m", spec, charge, mult), 0, config)
    e_ref, g_ref, dip_ref = pyscf_reference(_hashable(spec), replace(config, jk="pyscf"), charge, mult - 1)
    v = res.values()
    assert abs(v["total_energy"] - e_ref) < 1e-7
    np.testing.assert_allclose(v["total_gradient"], g_ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(v["dipole"], dip_ref, rtol=0, atol=1e-6)
    assert v["total_gradient"].shape == (len(spec[0]), 3)
    assert v["jk_backend"] == "pyscf-df" if jk == "pyscf" else v["jk_backend"].startswith("engine:")
    if config.xc != "hf":  # the warm start on the finer grid needs fewer cycles than the first SCF
        assert 0 < v["gradient_scf_cycles"] < v["scf_cycles"]


@pytest.mark.slow
@pytest.mark.parametrize("jk", JK)
def test_matches_plain_pyscf_paper_basis(jk):
    config = DFTConfig(jk=jk, auxbasis=AUX, **TIGHT)  # the paper's defaults: wB97M-D3BJ, ccecp-aug-cc-pvtz
    res = kernel(molecule("water", WATER), 0, config)
    e_ref, g_ref, _ = pyscf_reference(_hashable(WATER), replace(config, jk="pyscf"))
    assert abs(res.energy - e_ref) < 1e-7
    np.testing.assert_allclose(res.gradient, g_ref, rtol=0, atol=1e-6)


FAST = dict(xc="hf", basis="6-31g", ecp=None, jk="pyscf")  # the farm's logic, not the functional


@NEEDS_ENGINE
def test_fast_paths_give_pyscf_numbers():
    """The cached-AO XC quadrature and the cheaper gradient pieces against PySCF's own code paths
    (``fast_paths=False``), end to end on one conformation. The force SCF is converged to 1e-8 in the
    orbital gradient: at the default 1e-6 the two gradients differ by 3-10e-9 Hartree/Bohr from where the
    SCFs stop (varying with the BLAS threads' summation order), too close to the 1e-8 checked."""
    config = DFTConfig(**{**CASES["water-wb97m-d3bj"][3], "energy_grid": 0, "force_grid": 1,
                          "force_conv_tol_grad": 1e-8})
    mol = molecule("water", WATER)
    fast = kernel(mol, 0, config).values()
    slow = kernel(mol, 0, replace(config, fast_paths=False)).values()
    assert fast["total_energy"] == pytest.approx(slow["total_energy"], abs=1e-9)
    np.testing.assert_allclose(fast["total_gradient"], slow["total_gradient"], atol=1e-8, rtol=0)
    assert fast["scf_cycles"] == slow["scf_cycles"]


def test_force_grid_scf_reuses_the_core_hamiltonian(monkeypatch):
    """fast_paths: the core Hamiltonian (with its costly ECP integrals) is computed once for the energy
    and the force SCF of a conformation, again for another geometry, and is read-only."""
    from pyscf.scf import hf

    calls = []
    monkeypatch.setattr(hf, "get_hcore", lambda mol, _f=hf.get_hcore: calls.append(1) or _f(mol))
    config = DFTConfig(**{**CASES["water-wb97m-d3bj"][3], "energy_grid": 0, "force_grid": 1})
    mol = build_mol(molecule("water", WATER, shifts=(0.0, 0.02)), 0, config)
    mf = make_scf(mol, config)
    converge(mf, None, config)
    mf.grids.level = 1
    mf.grids.reset()
    converge(mf, mf.make_rdm1(), config)
    assert len(calls) == 1 and not mf.get_hcore().flags.writeable
    other = build_mol(molecule("water", WATER, shifts=(0.0, 0.02)), 1, config)
    mf.get_hcore(other)
    assert len(calls) == 2


def test_force_scf_is_converged_to_its_own_tolerance():
    """The SCF the forces come from is re-converged to ``force_conv_tol_grad`` even on the energy grid
    (Hartree-Fock: no grid); oracle: PySCF's RHF gradient converged to 1e-9 in the orbital gradient."""
    from pyscf import gto, scf

    z, x = METHANE
    distorted = np.asarray(x) + 0.05 * np.eye(5, 3)
    config = DFTConfig(**FAST, force_conv_tol_grad=1e-7)
    values = kernel(Molecule("m", np.array(z), distorted[None] * ANGSTROM_TO_BOHR), 0, config).values()
    assert values["gradient_scf_cycles"] > 0  # re-converged beyond the energy SCF's sqrt(conv_tol)
    mol = gto.M(atom=[(a, tuple(p)) for a, p in zip(z, distorted)], basis="6-31g", verbose=0)
    ref = scf.RHF(mol).density_fit()
    ref.conv_tol, ref.conv_tol_grad = 1e-12, 1e-9
    ref.kernel()
    np.testing.assert_allclose(values["total_gradient"], ref.nuc_grad_method().kernel(), atol=1e-7, rtol=0)


def test_fallback_converges_what_diis_cannot():
    w = molecule("water", WATER)
    ref = kernel(w, 0, DFTConfig(**FAST)).values()
    assert ref["scf_strategy"] == "diis" and ref["scf_cycles"] > 4
    # DIIS gets 4 cycles (not enough); the second-order solver takes over from there
    v = kernel(w, 0, DFTConfig(**FAST, max_cycle=4, strategies=("diis", "newton"))).values()
    assert v["scf_strategy"].startswith("newton")
    assert abs(v["total_energy"] - ref["total_energy"]) < 1e-8
    np.testing.assert_allclose(v["total_gradient"], ref["total_gradient"], atol=1e-5)


def test_scf_failure_lists_every_attempt():
    mol = build_mol(molecule("water", WATER), 0, DFTConfig(**FAST))
    config = DFTConfig(**FAST, max_cycle=2, strategies=("diis", "level_shift", "damping"))
    mf = make_scf(mol, config)
    with pytest.raises(SCFNotConverged, match=r"diis \(2 cycles.*level_shift \(2 cycles.*damping \(2 cycles"):
        converge(mf, None, config)


def test_validation_per_conformation():
    base = DFTConfig(basis="ccecp-cc-pvdz", ecp="ccecp", jk="pyscf")
    # the ccECP removes oxygen's 1s pair: O^5+ keeps 1 electron, so a quartet is impossible
    # (all-electron it has 3, and the quartet is fine)
    o5 = Molecule("o5", np.array([8]), np.zeros((1, 1, 3)), charge=5, multiplicity=4)
    with pytest.raises(ConformationError, match="impossible with 1 electrons.*2 ECP core electrons"):
        build_mol(o5, 0, base)
    assert build_mol(o5, 0, DFTConfig(basis="6-31g", ecp=None, jk="pyscf")).nelectron == 3
    with pytest.raises(ConformationError, match="multiplicity 2 is impossible"):
        build_mol(molecule("w", WATER, multiplicity=2), 0, base)
    squashed = Molecule("sq", np.array([1, 1]), np.array([[[0, 0, 0], [0, 0, 0.01]]]))
    with pytest.raises(ConformationError, match="on top of each other"):
        build_mol(squashed, 0, base)
    xe = Molecule("xe", np.array([54]), np.zeros((1, 1, 3)))
    with pytest.raises(ConformationError, match="Xe"):
        build_mol(xe, 0, base)


def test_engine_choice_without_engine_is_an_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "rung.dft_gpu.jk", None)  # as if the engine were not installed
    mol = build_mol(molecule("w", WATER), 0, DFTConfig(**FAST))
    with pytest.raises(RuntimeError, match="jk='pyscf'"):
        make_scf(mol, DFTConfig(jk="engine"))
    src = tmp_path / "in.h5"
    create_dataset(src, [molecule("w", WATER)])
    with pytest.raises(RuntimeError, match="rung.dft_gpu.jk"):
        run(src, tmp_path / "out.h5", DFTConfig(jk="engine"), progress=False)


def test_config_rejects_bad_options():
    with pytest.raises(ValueError, match="jk"):
        DFTConfig(jk="magic")
    with pytest.raises(ValueError, match="strategies"):
        DFTConfig(strategies=("diis", "prayer"))
    with pytest.raises(ValueError, match="engine only"):
        DFTConfig(jk="pyscf", backend="numba")
    with pytest.raises(ValueError, match="grid level"):
        DFTConfig(energy_grid=12)
    with pytest.raises(ValueError, match="force_conv_tol_grad must be > 0"):
        DFTConfig(force_conv_tol_grad=0.0)
    with pytest.raises(ValueError, match="conv_tol_grad must be > 0"):
        DFTConfig(conv_tol_grad=-1e-6)


def _bad_input(path):
    """A SPICE-style file: good molecules, one bad per-conformation case, one unreadable group."""
    ok = molecule("water", WATER, shifts=(0.0, 0.05))
    with h5py.File(path, "w") as f:
        for m in (ok, molecule("radical-parity", WATER, multiplicity=2),
                  Molecule("overlap", np.array([1, 1]), np.array([[[0, 0, 0], [0, 0, 1.4]], [[0, 0, 0], [0, 0, 0.02]]]))):
            g = f.create_group(m.name)
            g["atomic_numbers"] = m.atomic_numbers
            g["conformations"] = m.conformations
            g["conformations"].attrs["units"] = "bohr"
            g["multiplicity"] = m.multiplicity
        g = f.create_group("nan-coords")
        g["atomic_numbers"] = [1, 1]
        g["conformations"] = np.array([[[0, 0, 0], [0, 0, np.nan]]])
        g["conformations"].attrs["units"] = "bohr"


def test_run_records_failures_and_continues(tmp_path):
    src, out = tmp_path / "spice.h5", tmp_path / "out.h5"
    _bad_input(src)
    s = run(src, out, DFTConfig(**FAST), progress=False)
    assert (s.n_conformations, s.n_done, s.n_failed, s.n_pending) == (5, 3, 2, 0)
    assert "nan-coords" in s.rejected and "NaN" in s.rejected["nan-coords"]
    with h5py.File(out, "r") as f:
        assert list(f["overlap/dft_status"][()]) == [DONE, FAILED]
        assert "on top of each other" in f["overlap/dft_error"][1].decode()
        assert np.isnan(f["overlap/dft_total_energy"][1]) and np.isfinite(f["overlap/dft_total_energy"][0])
        assert "multiplicity 2" in f["radical-parity/dft_error"][0].decode()
        assert "nan-coords" not in f and json.loads(f.attrs["dft_rejected"]) == s.rejected
        e = f["water/dft_total_energy"]
        assert e.attrs["units"] == "hartree" and e.attrs["xc"] == "hf" and e.attrs["pyscf_version"]
        assert f["water/dft_total_gradient"].attrs["units"] == "hartree/bohr"
        assert f["water/dft_total_gradient"].shape == (2, 3, 3)
        assert f.attrs["backend"] == "pyscf"
    st = status(out)
    assert st["counts"] == {"pending": 0, "done": 3, "failed": 2}
    assert {(m, i) for m, i, _ in st["failures"]} == {("overlap", 1), ("radical-parity", 0)}
    assert st["wall_time_s"]["total"] > 0 and st["rejected"] == s.rejected
    # a rerun computes nothing; another level of theory on the same file is refused
    again = run(src, out, DFTConfig(**FAST), progress=False)
    assert again.computed == 0 and again.n_done == 3
    with pytest.raises(ValueError, match="xc: 'hf' there, 'b3lyp' now"):
        run(src, out, DFTConfig(**{**FAST, "xc": "b3lyp"}), progress=False)
    if HAVE_ENGINE:  # the engine's default fitting basis is not PySCF's: a different level of theory
        with pytest.raises(ValueError, match="auxbasis: 'pyscf default"):
            run(src, out, DFTConfig(**{**FAST, "jk": "engine"}), progress=False)


def test_nan_conformation_is_rejected_alone(tmp_path):
    src, out = tmp_path / "spice.h5", tmp_path / "out.h5"
    water = molecule("water", WATER, shifts=(0.0, 0.05, 0.1))
    with h5py.File(src, "w") as f:
        g = f.create_group("water")
        g["atomic_numbers"] = water.atomic_numbers
        x = water.conformations.copy()
        x[1, 2, 0] = np.nan
        g["conformations"] = x
        g["conformations"].attrs["units"] = "bohr"
    s = run(src, out, DFTConfig(**FAST), progress=False)
    assert (s.n_conformations, s.n_done, s.n_failed, s.computed) == (3, 2, 1, 2) and s.rejected == {}
    with h5py.File(out, "r") as f:
        assert list(f["water/dft_status"][()]) == [DONE, FAILED, DONE]
        assert "conformation 1 has NaN" in f["water/dft_error"][1].decode()
        assert np.isnan(f["water/dft_total_energy"][1]) and np.all(np.isfinite(f["water/dft_total_energy"][[0, 2]]))
    again = run(src, out, DFTConfig(**FAST), progress=False)  # resumes: nothing left, the failure kept
    assert (again.computed, again.n_done, again.n_failed) == (0, 2, 1)


def test_nan_rows_and_a_bad_molecule_reject_only_that_molecule(tmp_path):
    from rung.dft_gpu.run import _read_input

    src = tmp_path / "spice.h5"
    water = molecule("water", WATER, shifts=(0.0, 0.05))
    with h5py.File(src, "w") as f:
        for name, mult in (("water", 1), ("bad", 0)):
            g = f.create_group(name)
            g["atomic_numbers"] = water.atomic_numbers
            x = water.conformations.copy()
            if name == "bad":
                x[1, 0, 0] = np.nan  # a NaN row, and a multiplicity no conformation can have
            g["conformations"] = x
            g["conformations"].attrs["units"] = "bohr"
            g["multiplicity"] = mult
    molecules, rejected, bad_conformations = _read_input(src)
    assert [m.name for m in molecules] == ["water"] and bad_conformations == {}
    assert list(rejected) == ["bad"] and "multiplicity must be >= 1" in rejected["bad"]


def test_orbitals_and_fcidump_files(tmp_path):
    from pyscf import gto, scf
    from pyscf.tools import fcidump

    src, out = tmp_path / "in.h5", tmp_path / "set.h5"
    create_dataset(src, [molecule("water", WATER, shifts=(0.0, 0.03)), molecule("oh", OH, multiplicity=2)])
    config = DFTConfig(**FAST, save_orbitals=True, save_fcidump=True)
    run(src, out, config, progress=False)
    energies, _ = read_property(out, "water", "dft_total_energy")
    with h5py.File(out, "r") as f:
        assert f["water"].attrs["dft_orbitals_file"] == "set.orbitals.h5"
        files = [n.decode() if isinstance(n, bytes) else n for n in f["water"].attrs["dft_fcidump_files"]]
        assert files == ["set.water.0.fcidump", "set.water.1.fcidump"]
        oh_files = [n.decode() if isinstance(n, bytes) else n for n in f["oh"].attrs["dft_fcidump_files"]]
        assert oh_files == ["set.oh.0.fcidump"]  # open shell: alpha-orbital basis, MS2 = 2S
    assert not (tmp_path / "set.orbitals.parts").exists()
    with h5py.File(tmp_path / "set.orbitals.h5", "r") as f:
        g = f["water/1"]
        mol = gto.loads(g.attrs["mol"])
        assert g.attrs["e_tot"] == energies[1] and g.attrs["xc"] == "hf"
        c, occ = g["mo_coeff"][()], g["mo_occ"][()]
        assert c.shape == (mol.nao, mol.nao) and occ.sum() == mol.nelectron
        assert f["oh/0/mo_coeff"].shape == (2, 11, 11)  # unrestricted
    # Oracle: <Phi|H|Phi> of the KS determinant from exact integrals equals the FCIDUMP's
    # E_core + sum_i 2 h_ii + sum_ij (2 (ii|jj) - (ij|ji)), with and without a frozen core
    dm = (c * occ) @ c.T
    e_hf = scf.RHF(mol).energy_tot(dm)
    for ncore, path in ((0, tmp_path / "set.water.1.fcidump"), (1, None)):
        if path is None:
            from rung.dft_gpu.outputs import write_fcidump

            path = write_fcidump(tmp_path / "fc.h5", "water", 1, mol, c, DFTConfig(**FAST, fcidump_ncore=1))
        d = fcidump.read(str(path))
        norb, nelec = d["NORB"], d["NELEC"]
        assert (norb, nelec) == (mol.nao - ncore, mol.nelectron - 2 * ncore)
        from pyscf import ao2mo

        h1, h2 = d["H1"], ao2mo.restore(1, d["H2"], norb)
        nocc = nelec // 2
        e = d["ECORE"] + 2 * np.trace(h1[:nocc, :nocc]) + sum(
            2 * h2[i, i, j, j] - h2[i, j, j, i] for i in range(nocc) for j in range(nocc))
        assert abs(e - e_hf) < 1e-8
    # Open shell (OH, doublet): the alpha orbitals as the spatial basis, alpha electrons in the lowest
    # n_alpha and beta in the lowest n_beta of them. Oracle: PySCF's exact-integral UHF energy of those
    # two densities against E_core + one- and two-electron sums over the FCIDUMP's integrals.
    with h5py.File(tmp_path / "set.orbitals.h5", "r") as f:
        g = f["oh/0"]
        mol = gto.loads(g.attrs["mol"])
        ca = g["mo_coeff"][0]
    from pyscf import ao2mo

    for ncore in (0, 1):
        if ncore == 0:
            path = tmp_path / "set.oh.0.fcidump"
        else:
            from rung.dft_gpu.outputs import write_fcidump

            unrestricted = np.stack([ca, ca])  # (2, nao, nmo): the alpha set is the one used
            path = write_fcidump(tmp_path / "fc.h5", "oh", 0, mol, unrestricted, DFTConfig(**FAST, fcidump_ncore=1))
        d = fcidump.read(str(path))
        assert (d["MS2"], d["NELEC"], d["NORB"]) == (1, mol.nelectron - 2 * ncore, mol.nao - ncore)
        na, nb = (d["NELEC"] + 1) // 2, (d["NELEC"] - 1) // 2
        h1, h2 = d["H1"], ao2mo.restore(1, d["H2"], d["NORB"])
        e = d["ECORE"] + np.trace(h1[:na, :na]) + np.trace(h1[:nb, :nb])
        for n in (na, nb):  # same spin: Coulomb minus exchange
            e += 0.5 * sum(h2[i, i, j, j] - h2[i, j, j, i] for i in range(n) for j in range(n))
        e += sum(h2[i, i, j, j] for i in range(na) for j in range(nb))  # opposite spins: Coulomb
        na_all, nb_all = na + ncore, nb + ncore
        e_uhf = scf.UHF(mol).energy_tot((ca[:, :na_all] @ ca[:, :na_all].T, ca[:, :nb_all] @ ca[:, :nb_all].T))
        assert abs(e - e_uhf) < 1e-8


def test_progress_bar_on_a_terminal_log_lines_otherwise(tmp_path, monkeypatch, caplog):
    import io
    import logging
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    src = tmp_path / "in.h5"
    create_dataset(src, [molecule("water", WATER, shifts=(0.0, 0.02))])
    config = DFTConfig(**{**FAST, "basis": "sto-3g", "forces": False})
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    with caplog.at_level(logging.INFO, logger="rung.dft_gpu.run"):
        run(src, tmp_path / "tty.h5", config)
    bar = term.getvalue()
    assert "dft-gpu run" in bar and "2/2" in bar and "conf/s" in bar and "<" in bar  # rate and ETA
    assert not caplog.records
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    with caplog.at_level(logging.INFO, logger="rung.dft_gpu.run"):
        run(src, tmp_path / "plain.h5", config)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[1].startswith("dft-gpu run 2/2 (100%)") and "water[1] E = " in lines[1]


@pytest.mark.slow
def test_ladder_step(tmp_path):
    from ase.collections import g2

    from rung.dft_gpu.ladder import step

    dataset = create_dataset(tmp_path / "water.h5", [Molecule("water", g2["H2O"].numbers,
                                                              g2["H2O"].positions[None] * ANGSTROM_TO_BOHR)])
    line = step(tmp_path, dataset, "water")
    assert line.startswith("E(wB97M-D3BJ/ccECP/cc-pVDZ) = -17.2") and "computed" in line
    assert (tmp_path / "water.orbitals.h5").exists() and (tmp_path / "water.water.0.fcidump").exists()
    assert "from the dataset" in step(tmp_path, dataset, "water")  # a rerun computes nothing
