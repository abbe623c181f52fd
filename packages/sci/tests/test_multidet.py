"""QMCPACK /MultiDet export: layout against QMCPACK's reader, reader of other programs' files, and signs
against PySCF FCI vectors."""

import h5py
import numpy as np
import pytest

from rung.sci import cipsi
from rung.sci.determinants import Layout
from rung.sci.multidet import from_active, read_multidet, write_multidet


def test_fci_vector_signs_match_pyscf(tmp_path):
    """LiH/6-31G with a frozen 1s: the exported complete-space expansion equals PySCF's FCI vector."""
    from pyscf import fci, gto, scf
    from pyscf.fci import cistring

    from rung.sci.fcidump import from_scf

    mol = gto.M(atom="Li 0 0 0; H 0 0 3.0", basis="6-31g", unit="Bohr", verbose=0)
    mf = scf.RHF(mol).run()
    ham = from_scf(mf, ncore=1, ncas=7)
    res = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=10**5, pt2_threshold=0.0), checkpoint=tmp_path / "wf.h5",
                       log=None)
    e, vec = fci.direct_spin1.kernel(ham.h1, ham.eri, 7, ham.nelec, conv_tol=1e-12)
    assert res.e_var[0] == pytest.approx(e + ham.ecore, abs=1e-8)  # the sigma-symmetry block of the FCI space
    md = read_multidet(tmp_path / "wf.h5")
    assert md.nstate == 8
    assert abs(md.coef[0]) == pytest.approx(np.abs(vec).max(), abs=1e-6)  # largest first
    sa = cistring.make_strings(range(7), ham.nelec[0])
    sb = cistring.make_strings(range(7), ham.nelec[1])
    ref = {}
    for i, a in enumerate(sa):
        for j, b in enumerate(sb):
            ref[(int(a) << 1 | 1, int(b) << 1 | 1)] = vec[i, j]  # core orbital 0 set, active shifted by one
    got = np.array([ref[(int(a[0]), int(b[0]))] for a, b in zip(md.alpha, md.beta)])
    sign = np.sign(got[0] * md.coef[0])
    np.testing.assert_allclose(md.coef, sign * got, atol=2e-6)
    assert np.sum(got**2) == pytest.approx(1.0, abs=1e-9)  # nothing of PySCF's vector is missing
    with h5py.File(tmp_path / "wf.h5") as f:
        g = f["MultiDet"]
        # QMCPACK's SlaterDetBuilder::readDetListH5 (QMCPACK/qmcpack src/QMCWaveFunctions/Fermion/
        # SlaterDetBuilder.cpp) aborts unless H5Tequal(type, native uint64): little-endian unsigned 64-bit
        for name in ("CI_Alpha", "CI_Beta"):
            assert g[name].dtype == np.dtype("<u8") and g[name].shape == (md.ndet, 1)
        assert int(g["Nbits"][()]) == 1 and int(g["NbDet"][()]) == md.ndet
        # convert4qmc's LCAOHDFParser reads nexcitedstate unconditionally (src/QMCTools/LCAOHDFParser.cpp)
        assert int(g["nexcitedstate"][()]) == 1 and "Coeff_1" not in g


def test_multiword_core_shift_roundtrip(tmp_path):
    lay = Layout(70, 2, 2)
    dets = lay.from_occupations([[0, 63], [1, 69]], [[0, 1], [64, 65]])
    md = from_active(dets, np.array([0.3, -0.9]), ncore=3, nstate=73)
    write_multidet(tmp_path / "md.h5", md)
    back = read_multidet(tmp_path / "md.h5")
    assert back.alpha.shape == (2, 2)
    assert back.occupations(0) == ([0, 1, 2, 4, 72], [0, 1, 2, 67, 68])  # largest |c| first
    assert back.occupations(1) == ([0, 1, 2, 3, 66], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(back.coef, [-0.9, 0.3])


def test_reader_errors(tmp_path):
    from rung.core.errors import InputError

    with pytest.raises(InputError, match="no such file"):
        read_multidet(tmp_path / "none.h5")
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="garbage.h5: not a readable /MultiDet file"):
        read_multidet(tmp_path / "garbage.h5")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_group("other")
    with pytest.raises(ValueError, match="no /MultiDet"):
        read_multidet(tmp_path / "x.h5")


def _qp_style_file(path, alpha, beta, coef, nstate, coef_1=None, int_dtype="<u8"):
    """A /MultiDet group laid out as Quantum Package's save_for_qmcpack writes it (QMCPACK's test file
    tests/molecules/C4_ae/C4_AE_Mol_QP.h5: (1,) int32 scalars, uint64 strings, Coeff_1 and nexcitedstate = 2)."""
    with h5py.File(path, "w") as f:
        g = f.create_group("MultiDet")
        for name, v in (("NbDet", len(coef)), ("Nbits", alpha.shape[1]), ("nstate", nstate),
                        ("nexcitedstate", 1 if coef_1 is None else 2)):
            g.create_dataset(name, data=np.array([v], np.int32))
        g["Coeff"] = np.asarray(coef, float)
        if coef_1 is not None:
            g["Coeff_1"] = np.asarray(coef_1, float)
        g.create_dataset("CI_Alpha", data=np.asarray(alpha).astype(int_dtype))
        g.create_dataset("CI_Beta", data=np.asarray(beta).astype(int_dtype))


def test_reads_quantum_package_layout_and_old_int64_files(tmp_path):
    a = np.array([[0b0111, 0], [0b0011, 1]], np.uint64)  # orbital 64 set in the second word of det 1
    b = np.array([[0b0111, 0], [0b0111, 0]], np.uint64)
    _qp_style_file(tmp_path / "qp.h5", a, b, [0.9, -0.3], 70, coef_1=[0.3, 0.9])
    md = read_multidet(tmp_path / "qp.h5")
    assert md.ndet == 2 and md.nstate == 70 and md.nelec == (3, 3) and md.complete is None
    assert md.occupations(1) == ([0, 1, 64], [0, 1, 2])
    np.testing.assert_array_equal(md.excited, [[0.3, 0.9]])
    _qp_style_file(tmp_path / "old.h5", a, b, [0.9, -0.3], 70, int_dtype="<i8")  # rung schema 1 wrote int64
    np.testing.assert_array_equal(read_multidet(tmp_path / "old.h5").alpha, a)
    _qp_style_file(tmp_path / "be.h5", a, b, [0.9, -0.3], 70, int_dtype=">u8")  # big-endian words
    np.testing.assert_array_equal(read_multidet(tmp_path / "be.h5").alpha, a)


@pytest.mark.parametrize("alpha, nstate, match", [
    ([[0b0111], [0b1110000]], 6, "beyond nstate"),
    ([[0b0111], [0b0011]], 8, "different electron counts"),
])
def test_inconsistent_multidet_is_refused(tmp_path, alpha, nstate, match):
    from rung.core.errors import InputError

    b = np.array([[0b0111], [0b0111]], np.uint64)
    _qp_style_file(tmp_path / "bad.h5", np.array(alpha, np.uint64), b, [0.9, -0.3], nstate)
    with pytest.raises(InputError, match=f"bad.h5: /MultiDet: CI_Alpha.*{match}"):
        read_multidet(tmp_path / "bad.h5")


def test_excited_roots_written_as_coeff_k(h2o_small, tmp_path):
    """nroots = 2 on a complete space: Coeff_1 holds the second root in the file's determinant order."""
    from dataclasses import replace

    ham = replace(h2o_small, h1=h2o_small.h1[:5, :5], eri=h2o_small.eri[:5, :5, :5, :5], orbsym=None,
                  nelec=(3, 3), ncore=2)
    res = cipsi.kernel(ham, cipsi.CIPSIConfig(max_det=10**4, pt2_threshold=0.0, nroots=2),
                       checkpoint=tmp_path / "wf.h5", log=None)
    md = read_multidet(tmp_path / "wf.h5")
    assert md.excited.shape == (1, md.ndet) and md.nstate == 7 and md.nelec == (5, 5)
    with h5py.File(tmp_path / "wf.h5") as f:
        assert int(f["MultiDet/nexcitedstate"][()]) == 2
    lay = Layout(5, 3, 3)
    keys = lay.keys(res.dets)
    act = np.array([lay.keys(np.stack([np.stack([a >> np.uint64(2), b >> np.uint64(2)])]))[0]
                    for a, b in zip(md.alpha, md.beta)])  # back to active-space keys (2 core bits off)
    pos = np.searchsorted(keys, act)
    np.testing.assert_array_equal(keys[pos], act)
    np.testing.assert_allclose(md.coef, res.coef[pos, 0], atol=0)
    np.testing.assert_allclose(md.excited[0], res.coef[pos, 1], atol=0)
