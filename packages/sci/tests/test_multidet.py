"""QMCPACK /MultiDet export: layout, reader, and signs against PySCF FCI vectors."""

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
    res = cipsi.kernel(ham, cipsi.Config(max_det=10**5, pt2_threshold=0.0), checkpoint=tmp_path / "wf.h5", log=None)
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
        assert g["CI_Alpha"].dtype == np.int64 and g["CI_Alpha"].shape == (md.ndet, 1)
        assert int(g["Nbits"][()]) == 1 and int(g["NbDet"][()]) == md.ndet


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
