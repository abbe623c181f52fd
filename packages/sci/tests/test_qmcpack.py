"""QMCPACK export: the orbital HDF5 against the fields QMCPACK's readers access, the orbitals it defines
against PySCF (re-evaluated here with QMCPACK's documented formulas), and the XML against the HDF5.

QMCPACK is not installable here, so no test runs it. Sources of the rules checked (QMCPACK/qmcpack):
``src/QMCWaveFunctions/LCAO/LCAOrbitalBuilder.cpp`` (``loadBasisSetFromH5``, ``putFromH5``),
``src/QMCWaveFunctions/LCAO/AOBasisBuilder.cpp`` (``putH5``, ``createAOSetH5``, ``expandYlm``),
``src/Numerics/GaussianBasisSet.h`` (``GaussianCombo``: ``NormL``, ``NormPow``, ``putBasisGroupH5``),
``src/Numerics/SoaSphericalTensor.h`` (the real harmonics ``S_l^m`` with the ``(-1)^m`` sign),
``src/io/hdf/hdf_stl.h`` (string reads), ``src/QMCWaveFunctions/Fermion/SlaterDetBuilder.cpp``
(``readDetListH5``: detlist size and nstates must equal the file's).
"""

import xml.etree.ElementTree as ET
from math import pi, sqrt

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from rung.core.errors import InputError
from rung.core.multidet import popcount
from rung.sci.cli import main
from rung.sci.qmcpack import export, write_orbitals_h5

GEOM = "O 0 0 0.1; H 0 1.4 -0.8; H 0.1 -1.4 -0.9"


def _dfact(n):
    return 1 if n < 2 else n * _dfact(n - 2)


def _real_ylm(l, m, theta, phi):
    """QMCPACK's S_l^m (addsign): Y_l^0; (-1)^m sqrt(2) Re Y_l^|m| (m > 0); (-1)^m sqrt(2) Im Y_l^|m| (m < 0),
    Y_l^m the complex harmonics with the Condon-Shortley phase (SciPy's, as Jackson's used by QMCPACK)."""
    from scipy.special import sph_harm_y

    y = sph_harm_y(l, abs(m), theta, phi)
    if m == 0:
        return y.real
    return (-1) ** m * sqrt(2) * (y.real if m > 0 else y.imag)


def qmcpack_orbitals(path, points):
    """(npoints, nmo) orbital values the way QMCPACK builds them from the file alone."""
    with h5py.File(path) as f:
        pos = f["atoms/positions"][()]
        sid = f["atoms/species_ids"][()]
        names = [f[f"atoms/species_{s}/name"][0].decode() for s in range(int(f["atoms/number_of_species"][0]))]
        bases = {}
        for k in range(int(f["basisset/NbElements"][0])):
            a = f[f"basisset/atomicBasisSet{k}"]
            assert a["expandYlm"][0] == b"pyscf" and a["normalized"][0] == b"no" and a["angular"][0] == b"spherical"
            groups = []
            for g in range(int(a["NbBasisGroups"][0])):
                bg, rf = a[f"basisGroup{g}"], a[f"basisGroup{g}/radfunctions"]
                prim = [(rf[f"DataRad{i}/exponent"][0], rf[f"DataRad{i}/contraction"][0])
                        for i in range(int(bg["NbRadFunc"][0]))]
                groups.append((int(bg["l"][0]), prim))
            bases[a["elementType"][0].decode()] = groups
        mo = f["Super_Twist/eigenset_0"][()]  # (nmo, nao)
    cols = []
    for i, x in enumerate(pos):  # AO order: ions in particle-set order, basis groups, m
        d = points - x
        r = np.linalg.norm(d, axis=1)
        theta = np.arccos(np.clip(d[:, 2] / r, -1, 1))
        phi = np.arctan2(d[:, 1], d[:, 0])
        for l, prim in bases[names[sid[i]]]:
            norm_l = 2 ** (l + 1) * sqrt(2 / _dfact(2 * l + 1)) * (2 / pi) ** 0.25
            radial = sum(c * norm_l * a ** (l / 2 + 0.75) * np.exp(-a * r * r) for a, c in prim)
            for m in ([1, -1, 0] if l == 1 else range(-l, l + 1)):  # MOD_NATURAL_EXPAND
                cols.append(radial * r**l * _real_ylm(l, m, theta, phi))
    return np.array(cols).T @ mo.T


def _rhf(basis, ecp=None, atom=GEOM):
    from pyscf import gto, scf

    mol = gto.M(atom=atom, unit="Bohr", basis=basis, ecp=ecp, verbose=0)
    return mol, scf.RHF(mol).run()


@pytest.mark.parametrize("basis, ecp", [("ccecp-cc-pvdz", "ccecp"), ("cc-pvtz", None)])  # s..d with ECP; s..f
def test_orbitals_qmcpack_builds_equal_pyscf(tmp_path, basis, ecp):
    mol, mf = _rhf(basis, ecp)
    with h5py.File(tmp_path / "o.h5", "w") as f:
        write_orbitals_h5(f, mol, mf.mo_coeff, mf.mo_energy)
    pts = np.random.default_rng(0).normal(size=(40, 3)) * 1.5
    ref = mol.eval_gto("GTOval_sph", pts) @ mf.mo_coeff
    np.testing.assert_allclose(qmcpack_orbitals(tmp_path / "o.h5", pts), ref, rtol=0, atol=1e-12)
    with h5py.File(tmp_path / "o.h5") as f:  # round trip, and the counts QMCPACK checks against each other
        np.testing.assert_array_equal(f["Super_Twist/eigenset_0"][()].T, mf.mo_coeff)
        np.testing.assert_array_equal(f["Super_Twist/eigenval_0"][0], mf.mo_energy)
        assert int(f["parameters/numAO"][0]) == mol.nao and int(f["parameters/numMO"][0]) == mf.mo_coeff.shape[1]


@pytest.fixture(scope="module")
def water_wf(tmp_path_factory):
    """A complete CIPSI on water/ccecp-cc-pVDZ (1 frozen orbital, 6 active), with its /orbitals."""
    from rung.sci import cipsi
    from rung.sci.fcidump import from_scf
    from rung.sci.workflow import write_orbitals

    mol, mf = _rhf("ccecp-cc-pvdz", "ccecp")
    path = tmp_path_factory.mktemp("wf") / "water.sci.h5"
    cipsi.kernel(from_scf(mf, ncore=1, ncas=6), cipsi.CIPSIConfig(max_det=10**4, pt2_threshold=0.0), checkpoint=path,
                 log=None)
    write_orbitals(path, dict(mo_coeff=mf.mo_coeff, mo_occ=mf.mo_occ, mo_energy=mf.mo_energy, mol=mol.dumps(),
                              xc="hf", e_tot=mf.e_tot, basis="ccecp-cc-pvdz", ecp="ccecp"))
    return mol, mf, path


def test_export_files_hold_what_qmcpack_reads(water_wf, tmp_path):
    mol, mf, wf = water_wf
    out = export(wf, tmp_path / "water")
    assert out.ecp_files == ("O.ccECP.xml", "H.ccECP.xml")
    with h5py.File(out.h5) as f:
        def strings(g):  # every string a (1,) fixed-length value with no padding (hdf_stl.h sizes it by type)
            for k, d in g.items():
                if isinstance(d, h5py.Group):
                    strings(d)
                elif d.dtype.kind == "S":
                    assert d.shape == (1,) and d.dtype.itemsize == len(d[0].rstrip(b"\0")), k
        strings(f)
        assert bool(f["PBC/PBC"][0]) is False and int(f["basisset/NbElements"][0]) == 2
        assert f["basisset/name"][0] == b"LCAOBSet"
        nao = 0
        for k in range(2):
            a = f[f"basisset/atomicBasisSet{k}"]
            for key in ("angular", "elementType", "normalized", "expandYlm", "name", "grid_type"):
                assert key in a
            for key in ("grid_ri", "grid_rf", "grid_npts", "NbBasisGroups"):
                assert a[key].shape == (1,)
            ng = int(a["NbBasisGroups"][0])
            assert sorted(x for x in a if x.startswith("basisGroup")) == sorted(f"basisGroup{g}" for g in range(ng))
            rids = [a[f"basisGroup{g}/rid"][0] for g in range(ng)]
            assert len(set(rids)) == ng  # AOBasisBuilder reuses a radial function whose rid it has seen
            natom = int(np.sum(f["atoms/species_ids"][()] == k))
            nao += natom * sum(2 * int(a[f"basisGroup{g}/l"][0]) + 1 for g in range(ng))
        assert nao == mol.nao == f["Super_Twist/eigenset_0"].shape[1]
        md = f["MultiDet"]
        assert md["CI_Alpha"].dtype == np.dtype("<u8") and int(md["nstate"][()]) == 7
        np.testing.assert_array_equal(popcount(md["CI_Alpha"][()]), mol.nelec[0])  # frozen core set in the strings
        ndet = int(md["NbDet"][()])
    sim = ET.parse(out.xml).getroot()
    det = sim.find(".//multideterminant/detlist")
    assert det.get("href") == "water.h5" and sim.find(".//sposet_collection").get("href") == "water.h5"
    assert int(det.get("size")) == ndet and int(det.get("nstates")) == 7
    assert (det.get("nca"), det.get("ncb"), det.get("nea"), det.get("neb")) == ("0", "0", "4", "4")
    for sp in sim.iter("sposet"):
        assert sp.get("size") == "7" and sp.find("coefficient").get("spindataset") == "0"
    ions = sim.find(".//particleset[@name='ion0']")
    groups = {g.get("name"): {p.get("name"): p.text for p in g.iter("parameter")} for g in ions.iter("group")}
    assert groups == {"O": {"charge": "6", "valence": "6", "atomicnumber": "8"},
                      "H": {"charge": "1", "valence": "1", "atomicnumber": "1"}}
    xyz = np.array(ions.find("attrib[@name='position']").text.split(), float).reshape(-1, 3)
    np.testing.assert_allclose(xyz, mol.atom_coords(), atol=1e-14)
    assert ions.find("attrib[@name='ionid']").text.split() == ["O", "H", "H"]
    sizes = {g.get("name"): g.get("size") for g in sim.find(".//particleset[@name='e']").iter("group")}
    assert sizes == {"u": "4", "d": "4"}
    pseudo = {p.get("elementType"): p.get("href") for p in sim.iter("pseudo")}
    assert pseudo == {"O": "O.ccECP.xml", "H": "H.ccECP.xml"}
    assert sim.find(".//pairpot[@name='IonElec']") is None  # the ECP's local part is the e-ion term
    for c in sim.iter("coefficients"):
        assert np.all(np.array(c.text.split(), float) == 0.0)  # placeholders


def test_export_cli_and_refusals(water_wf, tmp_path):
    mol, mf, wf = water_wf
    r = CliRunner().invoke(main, ["export-qmcpack", str(wf), "--out", str(tmp_path / "w"), "--max-dets", "3"])
    assert r.exit_code == 0, r.output
    assert "O.ccECP.xml" in r.output
    with h5py.File(tmp_path / "w.h5") as f:
        assert int(f["MultiDet/NbDet"][()]) == 3
    r = CliRunner().invoke(main, ["export-qmcpack", str(wf), "--out", str(tmp_path / "x"), "--ext-level", "1"])
    assert r.exit_code == 2 and "--ext-level 1" in r.output and "1 state(s)" in r.output
    with h5py.File(tmp_path / "part.h5", "w") as f, h5py.File(wf) as g:
        g.copy("MultiDet", f)
        f["MultiDet"].attrs["complete"] = False
    r = CliRunner().invoke(main, ["export-qmcpack", str(tmp_path / "part.h5"), "--out", str(tmp_path / "p")])
    assert r.exit_code == 2 and "unfinished sci run" in r.output and not (tmp_path / "p.h5").exists()
    r = CliRunner().invoke(main, ["export-qmcpack", str(tmp_path / "part.h5"), "--out", str(tmp_path / "p"),
                                  "--allow-incomplete"])
    assert r.exit_code == 2 and "no orbitals group 'orbitals'" in r.output  # nothing says which orbitals
    r = CliRunner().invoke(main, ["export-qmcpack", str(tmp_path / "part.h5"), "--out", str(tmp_path / "p"),
                                  "--allow-incomplete", "--orbitals", str(wf)])
    assert r.exit_code == 0, r.output


def test_orbitals_of_another_molecule_or_basis_kind_refused(water_wf, tmp_path):
    from pyscf import gto

    from rung.sci.workflow import write_orbitals

    _, _, wf = water_wf
    mol, mf = _rhf("sto-3g", None, atom="Li 0 0 0; H 0 0 3.0")
    write_orbitals(tmp_path / "lih.h5", dict(mo_coeff=mf.mo_coeff, mo_occ=mf.mo_occ, mo_energy=mf.mo_energy,
                                             mol=mol.dumps(), xc="hf", e_tot=mf.e_tot, basis="sto-3g", ecp=""))
    with pytest.raises(InputError, match="spans 7 orbitals, the orbitals file has 6"):
        export(wf, tmp_path / "a", orbitals=tmp_path / "lih.h5")
    mixed = gto.M(atom=GEOM, unit="Bohr", basis="ccecp-cc-pvdz", ecp={"O": "ccecp"}, verbose=0)
    with pytest.raises(InputError, match="mixing atoms with and without an ECP"):
        from rung.sci.qmcpack import input_xml
        from rung.core.multidet import read_multidet

        input_xml(mixed, read_multidet(wf), "x.h5")
    cart = gto.M(atom="H 0 0 0; H 0 0 1.4", unit="Bohr", basis="cc-pvdz", cart=True, verbose=0)
    with h5py.File(tmp_path / "c.h5", "w") as f, pytest.raises(InputError, match="cartesian"):
        write_orbitals_h5(f, cart, np.eye(cart.nao))


def test_all_electron_export_uses_coulomb_and_cusp_correction(tmp_path):
    """LiH/STO-3G without ECP: bare e-ion Coulomb, cusp-corrected orbitals, no pseudopotential file."""
    from rung.sci import cipsi
    from rung.sci.fcidump import from_scf
    from rung.sci.workflow import write_orbitals

    mol, mf = _rhf("sto-3g", None, atom="Li 0 0 0; H 0 0 3.0")
    wf = tmp_path / "lih.sci.h5"
    cipsi.kernel(from_scf(mf), cipsi.CIPSIConfig(max_det=100, pt2_threshold=0.0), checkpoint=wf, log=None)
    write_orbitals(wf, dict(mo_coeff=mf.mo_coeff, mo_occ=mf.mo_occ, mo_energy=mf.mo_energy, mol=mol.dumps(),
                            xc="hf", e_tot=mf.e_tot, basis="sto-3g", ecp=""))
    out = export(wf, tmp_path / "lih")
    assert out.ecp_files == ()
    sim = ET.parse(out.xml).getroot()
    assert sim.find(".//sposet_collection").get("cuspCorrection") == "yes"
    assert sim.find(".//pairpot[@name='IonElec']").get("type") == "coulomb" and not list(sim.iter("pseudo"))
    det = sim.find(".//detlist")
    assert (det.get("nea"), det.get("neb"), det.get("nstates")) == ("2", "2", "6")
    with h5py.File(out.h5) as f:
        assert bool(f["parameters/ECP"][0]) is False and f["atoms/species_0/core"][0] == 0.0
