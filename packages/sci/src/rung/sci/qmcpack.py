"""Export a sci wavefunction for QMCPACK: the orbital/basis HDF5 file and the XML input that runs it.

:func:`export` writes ``<prefix>.h5`` (Gaussian basis, molecular orbitals and the ``/MultiDet`` expansion of
:mod:`rung.core.multidet`) and ``<prefix>.xml`` (particle sets, multideterminant wavefunction with
placeholder Jastrow factors, Hamiltonian with the ECP references, one VMC block). QMCPACK itself is not
installed with rung: the files are checked against the fields its readers access (listed below), and the
orbitals written are checked against PySCF by re-evaluating them with QMCPACK's documented formulas.

HDF5 layout, as QMCPACK's LCAO reader takes it (QMCPACK/qmcpack ``src/QMCWaveFunctions/LCAO/
LCAOrbitalBuilder.cpp``: ``loadBasisSetFromH5``, ``putFromH5``; ``AOBasisBuilder.cpp``: ``putH5``,
``createAOSetH5``; ``RadialOrbitalSetBuilder.h``: ``addGridH5``; ``src/Numerics/GaussianBasisSet.h``:
``putBasisGroupH5``) and as QMCPACK's ``src/QMCTools/PyscfToQmcpack.py`` and Quantum Package write it::

    /PBC/PBC                    (1,) bool     False: molecule (LCAOrbitalBuilder reads it when /PBC exists)
    /parameters/{ECP, Unit, IsComplex, SpinRestricted, Multidet} (1,) bool; Unit True = Bohr
    /parameters/{NbAlpha, NbBeta, NbTotElec, spin, numAO, numMO} (1,) int32
    /atoms/number_of_atoms, number_of_species (1,) int32; positions (natom, 3) float64 Bohr;
    /atoms/species_ids (natom,) int32; species_<s>/{atomic_number int32, charge float64 (valence),
        core float64 (electrons in the ECP), name str}           (read by convert4qmc, not by QMCPACK)
    /basisset/NbElements (1,) int32, name "LCAOBSet"
    /basisset/atomicBasisSet<s>/ elementType (the ion species), angular "spherical", expandYlm "pyscf",
        normalized "no", name, grid_type "log", grid_ri 1e-6, grid_rf 100, grid_npts 1001, NbBasisGroups
    /basisset/atomicBasisSet<s>/basisGroup<g>/ type "Gaussian", rid (unique per radial function), n, l,
        NbRadFunc (1,) int32, radfunctions/DataRad<k>/{exponent, contraction} (1,) float64
    /Super_Twist/eigenset_0     (nmo, nao) float64   molecular orbitals, one row per orbital (mo_coeff.T)
    /Super_Twist/eigenval_0     (1, nmo) float64, Hartree
    /MultiDet/...               rung.core.multidet

Strings are (1,) fixed-length byte strings exactly as long as their text: QMCPACK's
``h5data_proxy<std::string>::read`` (``src/io/hdf/hdf_stl.h``) sizes the string from the HDF5 type, so any
padding would become part of the compared value.

What QMCPACK computes from this (the contract the tests check against PySCF): the atomic orbitals of each
atom, in basis-group order, are ``R_g(r) r^l S_l^m(theta, phi)`` with

    R_g(r) = sum_k c_k N_l(a_k) exp(-a_k r^2),  N_l(a) = 2^(l+1) sqrt(2 / (2l+1)!!) (2/pi)^(1/4) a^(l/2 + 3/4)

(``GaussianCombo``: ``normalized="no"`` multiplies each contraction by the primitive norm), ``S_l^m`` the real
spherical harmonics with QMCPACK's ``(-1)^m`` sign (``SoaSphericalTensor``, ``addsign``), and m ordered
``1, -1, 0`` for l = 1 and ``-l .. l`` otherwise (``expandYlm="pyscf"``, ``MOD_NATURAL_EXPAND``). The contractions
written are PySCF's ``bas_ctr_coeff`` (coefficients of normalized primitives), so these are PySCF's
spherical AOs, and orbital ``i`` is ``sum_mu eigenset_0[i, mu] AO_mu``. Cartesian basis sets are refused.

XML (QMCPACK's converter output in its tests, e.g. ``tests/molecules/C2_pp/C2-H5.wfj.xml``,
``tests/converter/test_LiH_MSD_pyscf/gold.*.xml``): ``<detlist type="DETS" size=NbDet nstates=nstate
nca="0" ncb="0" nea neb ext_level href>`` (``SlaterDetBuilder::readDetListH5`` aborts when size or nstates
differ from the file; its H5 path assumes no core: the strings carry every electron), two ``sposet``
of ``nstate`` orbitals over ``spindataset="0"`` (the FCIDUMP orbitals, alpha ones for an open shell),
B-spline one- and two-body Jastrow factors with zero coefficients (placeholders: optimize them),
``cuspCorrection="yes"`` when an atom has no ECP. The Hamiltonian uses ``<pseudo elementType=X
href="X.<ecp>.xml">`` (``ccecp`` -> ``X.ccECP.xml``, the names of pseudopotentiallibrary.org, files the user
supplies) when every atom has an ECP, bare Coulomb when none has; a molecule mixing both is refused
(QMCPACK's ``LocalECPotential`` covers only ions with a pseudopotential, and a Coulomb ``IonElec`` term would
count the others twice).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from rung.core.errors import InputError
from rung.core.multidet import MultiDet, read_multidet, write_multidet
from rung.sci import __version__

ECP_FILE_TAGS = {"ccecp": "ccECP", "bfd": "BFD"}  # rung/PySCF name -> the tag in QMCPACK pseudopotential file names
GRID = dict(grid_type="log", grid_ri=1e-6, grid_rf=100, grid_npts=1001)  # the converters' radial grid


@dataclass(frozen=True)
class Export:
    """Paths written by :func:`export` and the pseudopotential files the XML refers to (to be supplied)."""

    h5: Path
    xml: Path
    ecp_files: tuple[str, ...]


def _string(g: h5py.Group, name: str, text: str) -> None:
    g.create_dataset(name, data=np.array([text.encode("ascii")], dtype=f"S{max(1, len(text))}"))


def _int(g: h5py.Group, name: str, value: int) -> None:
    g.create_dataset(name, data=np.array([value], np.int32))


def _bool(g: h5py.Group, name: str, value: bool) -> None:
    g.create_dataset(name, data=np.array([bool(value)]))


def _species(mol) -> tuple[list[str], list[int]]:
    """Species names (PySCF atom labels) in first-seen order and each atom's species index; every atom of a
    species must carry the same shells (QMCPACK builds one basis per species)."""
    names: list[str] = []
    ids = []
    shells: dict[str, list] = {}
    for i in range(mol.natm):
        s = mol.atom_symbol(i)
        sh = [(mol.bas_angular(b), mol.bas_exp(b).tolist(), mol.bas_ctr_coeff(b).tolist()) for b in mol.atom_shell_ids(i)]
        if s not in shells:
            shells[s] = sh
            names.append(s)
        elif shells[s] != sh:
            raise InputError(f"atoms labelled {s} carry different basis sets; label them apart (e.g. {s}1, {s}2)")
        ids.append(names.index(s))
    return names, ids


def _ecp_kind(mol) -> str:
    """"all" (every atom has an ECP), "none", else refuse."""
    has = [mol.atom_symbol(i) in mol._ecp or mol.atom_pure_symbol(i) in mol._ecp for i in range(mol.natm)]
    if all(has):
        return "all"
    if not any(has):
        return "none"
    raise InputError("QMCPACK export: a molecule mixing atoms with and without an ECP is not supported "
                     "(QMCPACK's pseudopotential term covers only the ECP atoms)")


def write_orbitals_h5(f: h5py.File, mol, mo_coeff: np.ndarray, mo_energy: np.ndarray | None = None,
                      *, basis_name: str = "gaussian", multidet: bool = True) -> None:
    """Write the QMCPACK orbital/basis groups (module docstring) into an open file ``f``.

    Parameters
    ----------
    mol : pyscf.gto.Mole, spherical basis, coordinates in Bohr
    mo_coeff : (nao, nmo) float64, orbitals as columns (PySCF's AO order)
    mo_energy : (nmo,) float64, Hartree, or None (written as zeros)
    """
    if mol.cart:
        raise InputError("QMCPACK export: cartesian basis sets are not supported (use a spherical basis)")
    c = np.asarray(mo_coeff, np.float64)
    if c.ndim != 2 or c.shape[0] != mol.nao:
        raise InputError(f"orbitals of shape {c.shape} do not fit the {mol.nao} AOs of the molecule")
    nao, nmo = c.shape
    names, ids = _species(mol)
    app = f.create_group("application")
    _string(app, "code", "rung")
    app.create_dataset("version", data=np.array([int(x) for x in __version__.split(".")[:3]], np.int32))
    _bool(f.create_group("PBC"), "PBC", False)
    p = f.create_group("parameters")
    for k, v in (("ECP", mol.has_ecp()), ("Unit", True), ("IsComplex", False), ("SpinRestricted", True),
                 ("Multidet", multidet)):
        _bool(p, k, v)
    for k, v in (("NbAlpha", mol.nelec[0]), ("NbBeta", mol.nelec[1]), ("NbTotElec", sum(mol.nelec)),
                 ("spin", mol.spin), ("numAO", nao), ("numMO", nmo)):
        _int(p, k, v)
    at = f.create_group("atoms")
    _int(at, "number_of_atoms", mol.natm)
    _int(at, "number_of_species", len(names))
    at.create_dataset("positions", data=mol.atom_coords(unit="Bohr")).attrs["units"] = "bohr"
    at.create_dataset("species_ids", data=np.array(ids, np.int32))
    for s, name in enumerate(names):
        i = ids.index(s)
        g = at.create_group(f"species_{s}")
        _int(g, "atomic_number", int(mol.atom_charge(i) + mol.atom_nelec_core(i)))
        g.create_dataset("charge", data=np.array([float(mol.atom_charge(i))]))
        g.create_dataset("core", data=np.array([float(mol.atom_nelec_core(i))]))
        _string(g, "name", name)
    bs = f.create_group("basisset")
    _int(bs, "NbElements", len(names))
    _string(bs, "name", "LCAOBSet")
    for s, name in enumerate(names):
        i = ids.index(s)
        a = bs.create_group(f"atomicBasisSet{s}")
        for k, v in (("elementType", name), ("angular", "spherical"), ("expandYlm", "pyscf"), ("normalized", "no"),
                     ("name", basis_name), ("grid_type", GRID["grid_type"])):
            _string(a, k, v)
        a.create_dataset("grid_ri", data=np.array([GRID["grid_ri"]]))
        _int(a, "grid_rf", GRID["grid_rf"])  # read as a double; int32 as the converters write it
        _int(a, "grid_npts", GRID["grid_npts"])
        n = 0
        for b in mol.atom_shell_ids(i):
            l, exps = mol.bas_angular(b), mol.bas_exp(b)
            for ctr in mol.bas_ctr_coeff(b).T:  # one basis group per contraction, PySCF's AO order
                bg = a.create_group(f"basisGroup{n}")
                _string(bg, "type", "Gaussian")
                _string(bg, "rid", f"{name}{n}{l}")
                _int(bg, "n", n)
                _int(bg, "l", l)
                _int(bg, "NbRadFunc", exps.size)
                bg.create_dataset("Shell_coord", data=mol.bas_coord(b))
                rf = bg.create_group("radfunctions")
                for k, (e, cc) in enumerate(zip(exps, ctr)):
                    d = rf.create_group(f"DataRad{k}")
                    d.create_dataset("exponent", data=np.array([e], np.float64))
                    d.create_dataset("contraction", data=np.array([cc], np.float64))
                n += 1
        _int(a, "NbBasisGroups", n)
    st = f.create_group("Super_Twist")
    st.create_dataset("eigenset_0", data=np.ascontiguousarray(c.T)).attrs["units"] = "dimensionless"
    e = np.zeros(nmo) if mo_energy is None else np.asarray(mo_energy, np.float64).reshape(-1)[:nmo]
    st.create_dataset("eigenval_0", data=e[None, :]).attrs["units"] = "hartree"


def _ecp_href(mol, symbol: str) -> str:
    name = mol.ecp if isinstance(mol.ecp, str) else (mol.ecp or {}).get(symbol, "")
    name = name if isinstance(name, str) and name else "ecp"
    return f"{symbol}.{ECP_FILE_TAGS.get(name.lower(), name)}.xml"


def _sub(parent, tag, text=None, **attrs):
    e = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        e.text = text
    return e


def input_xml(mol, md: MultiDet, h5_name: str, *, project: str = "rung", ext_level: int = 0,
              jastrow_rcut: float = 10.0, jastrow_size: int = 10) -> tuple[str, tuple[str, ...]]:
    """QMCPACK input (one ``<simulation>``) for ``md`` over the orbitals in ``h5_name``: (xml text, ECP files)."""
    kind = _ecp_kind(mol)
    names, ids = _species(mol)
    na, nb = md.nelec
    sim = ET.Element("simulation")
    _sub(sim, "project", id=project, series=0)
    qs = _sub(sim, "qmcsystem")
    ions = _sub(qs, "particleset", name="ion0", size=mol.natm)
    for s, name in enumerate(names):
        i = ids.index(s)
        g = _sub(ions, "group", name=name)
        _sub(g, "parameter", f"{mol.atom_charge(i):g}", name="charge")
        _sub(g, "parameter", f"{mol.atom_charge(i):g}", name="valence")
        _sub(g, "parameter", str(int(mol.atom_charge(i) + mol.atom_nelec_core(i))), name="atomicnumber")
    xyz = mol.atom_coords(unit="Bohr")
    _sub(ions, "attrib", "\n" + "\n".join(" ".join(f"{x: .16e}" for x in r) for r in xyz) + "\n",
         name="position", datatype="posArray")
    _sub(ions, "attrib", " " + " ".join(names[k] for k in ids) + " ", name="ionid", datatype="stringArray")
    els = _sub(qs, "particleset", name="e", random="yes", randomsrc="ion0")
    for name, size in (("u", na), ("d", nb)):
        _sub(_sub(els, "group", name=name, size=size), "parameter", "-1", name="charge")
    wf = _sub(qs, "wavefunction", name="psi0", target="e")
    spo_attrs = dict(type="MolecularOrbital", name="LCAOBSet", source="ion0", transform="yes", href=h5_name)
    if kind == "none":
        spo_attrs["cuspCorrection"] = "yes"  # Gaussian orbitals lack the electron-nucleus cusp
    coll = _sub(wf, "sposet_collection", **spo_attrs)
    for name in ("spo-up", "spo-dn"):
        sp = _sub(coll, "sposet", basisset="LCAOBSet", name=name, size=md.nstate)
        _sub(sp, "occupation", mode="ground")
        _sub(sp, "coefficient", size=md.nstate, spindataset=0)
    ds = _sub(wf, "determinantset")
    msd = _sub(ds, "multideterminant", optimize="no", spo_up="spo-up", spo_dn="spo-dn")
    _sub(msd, "detlist", size=md.ndet, type="DETS", nca=0, ncb=0, nea=na, neb=nb, nstates=md.nstate, cutoff="1e-20",
         ext_level=ext_level, href=h5_name)
    zeros = " " + " ".join(["0.0"] * jastrow_size) + " "
    j2 = _sub(wf, "jastrow", name="J2", type="Two-Body", function="Bspline", print="yes")
    for b, ident in (("u", "uu"), ("d", "ud")):
        c = _sub(j2, "correlation", rcut=jastrow_rcut, size=jastrow_size, speciesA="u", speciesB=b)
        _sub(c, "coefficients", zeros, id=ident, type="Array")
    j1 = _sub(wf, "jastrow", name="J1", type="One-Body", function="Bspline", source="ion0", print="yes")
    for name in names:
        c = _sub(j1, "correlation", rcut=jastrow_rcut, size=jastrow_size, cusp=0, elementType=name)
        _sub(c, "coefficients", zeros, id=f"e{name}", type="Array")
    ham = _sub(qs, "hamiltonian", name="h0", type="generic", target="e")
    _sub(ham, "pairpot", name="ElecElec", type="coulomb", source="e", target="e", physical="true")
    _sub(ham, "pairpot", name="IonIon", type="coulomb", source="ion0", target="ion0")
    files: list[str] = []
    if kind == "none":
        _sub(ham, "pairpot", name="IonElec", type="coulomb", source="ion0", target="e")
    else:
        pp = _sub(ham, "pairpot", type="pseudo", name="PseudoPot", source="ion0", wavefunction="psi0", format="xml")
        for s, name in enumerate(names):
            href = _ecp_href(mol, mol.atom_pure_symbol(ids.index(s)))
            _sub(pp, "pseudo", elementType=name, href=href)
            files.append(href)
    vmc = _sub(sim, "qmc", method="vmc", move="pbyp", checkpoint="-1")
    _sub(vmc, "estimator", name="LocalEnergy", hdf5="no")
    for k, v in (("warmupSteps", 100), ("blocks", 20), ("steps", 50), ("substeps", 8), ("timestep", 0.5),
                 ("usedrift", "no")):
        _sub(vmc, "parameter", str(v), name=k)
    ET.indent(sim)
    head = ("<?xml version=\"1.0\"?>\n<!-- written by rung.sci.qmcpack: the Jastrow factors are zero placeholders "
            "(optimize them before production runs)"
            + ("; pseudopotential files to supply: " + ", ".join(files) if files else "") + " -->\n")
    return head + ET.tostring(sim, encoding="unicode") + "\n", tuple(files)


def load_orbitals(path, group: str = "orbitals"):
    """(mol, mo_coeff (nao, nmo), mo_energy (nmo,) or None) from a file in the DFT-orbitals layout
    (``/orbitals`` of a sci wavefunction file, or ``<molecule>/<index>`` of the DFT rung's orbitals file).

    Unrestricted orbitals (2, nao, nmo): the alpha set, the orbitals of the DFT rung's FCIDUMP."""
    from pyscf import gto

    try:
        with h5py.File(path, "r") as f:
            if group not in f:
                raise InputError(f"{path}: no orbitals group {group!r} (give the DFT rung's orbitals file with "
                                 "--orbitals and its molecule/index group)")
            g = f[group]
            mol = gto.loads(g.attrs["mol"])
            c = np.asarray(g["mo_coeff"][()], np.float64)
            e = np.asarray(g["mo_energy"][()], np.float64) if "mo_energy" in g else None
            basis = str(g.attrs.get("basis", "gaussian")) or "gaussian"
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: cannot read orbitals from group {group!r}: {err}") from err
    if c.ndim == 3:
        c, e = c[0], (None if e is None else e[0])
    mol.verbose = 0
    return mol, c, e, basis


def export(wavefunction, prefix, *, orbitals=None, orbitals_group: str = "orbitals", max_dets: int | None = None,
           ext_level: int = 0, allow_incomplete: bool = False) -> Export:
    """Write ``<prefix>.h5`` and ``<prefix>.xml`` for QMCPACK from a ``/MultiDet`` file.

    Parameters
    ----------
    wavefunction : path of a file with ``/MultiDet`` (a ``sci run`` output)
    prefix : output path without extension
    orbitals, orbitals_group : file and group of the orbitals the expansion was built on (DFT-orbitals layout);
        default the ``/orbitals`` group of ``wavefunction`` (written when the sci rung made its own RHF)
    max_dets : keep only the largest ``max_dets`` determinants (by ground-state |c|)
    ext_level : the state QMCPACK evaluates (0: ground state, k: ``Coeff_k``)
    allow_incomplete : accept an expansion whose run had not finished
    """
    md = read_multidet(wavefunction)
    if md.complete is False and not allow_incomplete:
        raise InputError(f"{wavefunction}: the /MultiDet expansion is from an unfinished sci run (complete = False); "
                         "finish it, or export it anyway with --allow-incomplete")
    nstates = 1 + (0 if md.excited is None else md.excited.shape[0])
    if not 0 <= ext_level < nstates:
        raise InputError(f"--ext-level {ext_level}: {wavefunction} holds {nstates} state(s) (0 .. {nstates - 1})")
    if max_dets is not None and max_dets < md.ndet:
        keep = np.argsort(-np.abs(md.coef), kind="stable")[:max_dets]
        md = MultiDet(md.alpha[keep], md.beta[keep], md.coef[keep], md.nstate, md.complete,
                      None if md.excited is None else md.excited[:, keep])
    mol, c, e, basis = load_orbitals(orbitals or wavefunction, orbitals_group)
    if c.shape[1] < md.nstate:
        raise InputError(f"the expansion spans {md.nstate} orbitals, the orbitals file has {c.shape[1]}")
    if md.nelec != tuple(mol.nelec):
        raise InputError(f"the expansion holds {md.nelec} (alpha, beta) electrons, the molecule of the orbitals "
                         f"{tuple(mol.nelec)}: not the orbitals of this expansion")
    _ecp_kind(mol)
    prefix = Path(prefix)
    h5 = prefix.with_name(prefix.name + ".h5")
    xml_path = prefix.with_name(prefix.name + ".xml")
    text, files = input_xml(mol, md, h5.name, project=prefix.name, ext_level=ext_level)
    tmp = h5.with_name(h5.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        write_orbitals_h5(f, mol, c, e, basis_name=basis)
        write_multidet(None, md, group=f)
    tmp.replace(h5)
    xml_path.write_text(text)
    return Export(h5, xml_path, files)


__all__ = ["Export", "export", "input_xml", "load_orbitals", "write_orbitals_h5"]
