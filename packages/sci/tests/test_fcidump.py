import numpy as np
import pytest

from rung.sci.fcidump import FCIDUMPError, Hamiltonian, from_scf, read_fcidump, write_fcidump

from rung.sci.testing import REFERENCE_FCIDUMP


def _lines():
    return open(REFERENCE_FCIDUMP).read().splitlines()


def _write(tmp_path, lines, name="FCIDUMP"):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_reads_reference_and_matches_pyscf_reader(h2o):
    from pyscf import ao2mo
    from pyscf.tools import fcidump

    d = fcidump.read(REFERENCE_FCIDUMP, verbose=False)
    assert h2o.norb == d["NORB"] == 13 and h2o.nelec == (5, 5)
    np.testing.assert_allclose(h2o.h1, d["H1"], atol=1e-14)
    np.testing.assert_allclose(h2o.eri, ao2mo.restore(1, d["H2"], 13), atol=1e-14)
    assert h2o.ecore == pytest.approx(d["ECORE"], abs=1e-14)
    assert list(h2o.orbsym) == [1, 1, 3, 1, 2, 1, 3, 3, 1, 2, 1, 3, 1]


def test_roundtrip_from_scf(tmp_path):
    from pyscf import gto, scf

    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", basis="sto-3g", unit="Bohr", verbose=0)
    mf = scf.RHF(mol).run()
    ham = from_scf(mf, ncore=1)
    assert ham.nelec == (1, 1) and ham.norb == 5 and ham.ncore == 1
    back = read_fcidump(write_fcidump(ham, tmp_path / "FCIDUMP"))
    np.testing.assert_allclose(back.eri, ham.eri, atol=1e-12)
    np.testing.assert_allclose(back.h1, ham.h1, atol=1e-12)
    assert back.ecore == pytest.approx(ham.ecore, abs=1e-12)


@pytest.mark.parametrize("edit, message", [
    (lambda ls: ls[:-1], "core energy"),  # truncated: the final '0 0 0 0' line is gone
    (lambda ls: ls[:2000] + [ls[2000][:20]], "expected 'value i j k l'"),  # cut mid-line
    (lambda ls: ls[:100] + ["0.5 1 2 x 4"] + ls[100:], "cannot parse"),
    (lambda ls: ls[:100] + ["0.5 1 2 3 14"] + ls[100:], "outside 1..13"),
    (lambda ls: ls[:4], "no integrals"),
    (lambda ls: ls[4:], "not an FCIDUMP"),
    (lambda ls: [ls[0].replace("NELEC=10", "NELEC=30")] + ls[1:], "do not fit 26 spin orbitals"),
    (lambda ls: [ls[0], "  ORBSYM=1,1,3,1,2,1,3,3,1,2,1,3"] + ls[2:], "12 labels for NORB=13"),
    (lambda ls: [ls[0], "  ORBSYM=1,1,3,1,2,1,3,3,1,2,1,3,9"] + ls[2:], "outside the D2h irreps"),
    (lambda ls: [ls[0], "  ORBSYM=1,1,1,1,2,1,3,3,1,2,1,3,1"] + ls[2:], "inconsistent symmetry labels"),
])
def test_bad_files_give_clear_errors(tmp_path, edit, message):
    p = _write(tmp_path, edit(_lines()))
    with pytest.raises(FCIDUMPError, match=message):
        read_fcidump(p)


def test_missing_file(tmp_path):
    with pytest.raises(FCIDUMPError, match="no such file"):
        read_fcidump(tmp_path / "nope")


def test_too_many_electrons_in_hamiltonian():
    with pytest.raises(FCIDUMPError, match="more electrons than spin orbitals"):
        Hamiltonian(np.eye(2), np.zeros((2,) * 4), 0.0, (3, 1))


def test_pyscf_default_fcidump_with_symmetry_0_based_orbsym(tmp_path):
    """PySCF's default FCIDUMP of a molecule with symmetry has 0-based ORBSYM (molpro_orbsym=False);
    it is read, and gives the same Hamiltonian and CIPSI energies as the Molpro-labelled file."""
    from pyscf import gto, scf
    from pyscf.tools import fcidump

    from rung.sci import cipsi

    mol = gto.M(atom="O 0 0 0.22; H 0 1.43 -0.89; H 0 -1.43 -0.89", unit="Bohr", basis="sto-3g",
                symmetry=True, verbose=0)
    mf = scf.RHF(mol).run()
    fcidump.from_scf(mf, str(tmp_path / "pyscf"), molpro_orbsym=False)
    fcidump.from_scf(mf, str(tmp_path / "molpro"), molpro_orbsym=True)
    zero = read_fcidump(tmp_path / "pyscf")
    one = read_fcidump(tmp_path / "molpro")
    assert "ORBSYM=0" in (tmp_path / "pyscf").read_text().replace(" ", "") and zero.orbsym.min() == 1
    np.testing.assert_array_equal(zero.h1, one.h1)
    np.testing.assert_array_equal(zero.eri, one.eri)
    cfg = cipsi.CIPSIConfig(max_det=10**6, pt2_threshold=0.0)
    e0, e1 = (cipsi.kernel(h, cfg, log=None) for h in (zero, one))
    np.testing.assert_allclose(e0.e_var, e1.e_var, atol=1e-10)
    from pyscf import fci
    assert np.min(np.atleast_1d(e0.e_var)) == pytest.approx(fci.FCI(mf).kernel()[0], abs=1e-8)
