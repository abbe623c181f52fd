"""From a molecule to a trial wave function and Hamiltonian.

``build_mol`` makes the PySCF molecule (checking that every element has the requested ECP),
``mean_field`` runs the SCF when no orbitals are given (RHF for singlets, UHF otherwise),
``load_orbitals`` reads the orbitals the DFT rung saved (contract in notes/contracts.md), and
``slater_jastrow`` assembles ``psi = D_up D_down exp(J)`` from orbitals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rung.core.errors import InputError  # the shared bad-input base, re-exported: rung.qmc.system.InputError
from rung.qmc.determinants import SlaterDeterminant
from rung.qmc.jastrow import Jastrow
from rung.qmc.orbitals import AtomicBasis, MolecularOrbitals
from rung.qmc.wavefunction import ProductWF


@dataclass(frozen=True)
class Orbitals:
    """mo_coeff (2, nao, nmo) float64 (spin up, down); mo_occ (2, nmo) float64; e_tot Hartree; source."""

    mo_coeff: np.ndarray
    mo_occ: np.ndarray
    e_tot: float
    source: str


def build_mol(atomic_numbers, coords_bohr, basis: str, ecp: str | None = None, charge: int = 0, spin: int = 0):
    """PySCF molecule; coordinates (natom, 3) Bohr.

    Raises InputError if an element lacks the ECP, and for a conformation that fails the check every
    rung runs (:func:`rung.core.dataset.check_conformation`: atoms on top of each other, a charge or
    spin that does not fit the electrons).
    """
    from pyscf import gto

    from rung.core.dataset import check_conformation

    check_conformation(atomic_numbers, coords_bohr, charge, spin + 1)
    atom = [(int(z), tuple(map(float, x))) for z, x in zip(atomic_numbers, np.asarray(coords_bohr))]
    try:
        mol = gto.M(atom=atom, unit="Bohr", basis=basis, ecp=ecp, charge=charge, spin=spin, verbose=0)
    except (KeyError, RuntimeError, ValueError) as err:
        raise InputError(f"PySCF cannot build the molecule with basis {basis!r}, ecp {ecp!r}: {err}") from err
    if ecp:
        missing = sorted({mol.atom_pure_symbol(i) for i in range(mol.natm)} - {k for k in mol._ecp})
        if missing:
            raise InputError(f"no {ecp!r} pseudopotential for element(s) {missing}, but ECPs were requested")
    return mol


def mean_field(mol, xc: str | None = None) -> Orbitals:
    """SCF orbitals (HF, or KS-DFT with ``xc``) as up/down arrays."""
    from pyscf import dft, scf

    if mol.spin == 0:
        mf = scf.RHF(mol) if xc is None else dft.RKS(mol, xc=xc)
    else:
        mf = scf.UHF(mol) if xc is None else dft.UKS(mol, xc=xc)
    mf.verbose = 0
    e = mf.kernel()
    if not mf.converged:
        raise RuntimeError("the SCF did not converge")
    return _spin_orbitals(mf.mo_coeff, mf.mo_occ, e, "pyscf " + (xc or "hf"))


def _spin_orbitals(mo_coeff, mo_occ, e_tot, source) -> Orbitals:
    c, occ = np.asarray(mo_coeff, dtype=np.float64), np.asarray(mo_occ, dtype=np.float64)
    if c.ndim == 2:  # restricted: doubly occupied orbitals in both spins, singly in spin up
        c = np.stack([c, c])
        occ = np.stack([(occ > 0.5).astype(float), (occ > 1.5).astype(float)])
    return Orbitals(c, occ, float(e_tot), source)


def load_orbitals(path, molecule: str | None, index: int | None = None, group: str | None = None) -> tuple:
    """Read (mol, Orbitals) in the DFT-orbitals layout: the DFT rung's ``<dataset>.orbitals.h5`` (group
    /molecule/index) or the ``/orbitals`` group of a sci wave-function file (``group="orbitals"``)."""
    import h5py
    from pyscf import gto

    path = Path(path)
    group = group or f"{molecule}/{index}"
    try:
        with h5py.File(path, "r") as f:
            g = f[group]
            mol = gto.loads(g.attrs["mol"])
            orb = _spin_orbitals(g["mo_coeff"][()], g["mo_occ"][()], float(g.attrs.get("e_tot", np.nan)),
                                 f"{path.name}:{group} ({g.attrs.get('xc', '?')})")
    except (OSError, KeyError) as err:
        raise InputError(f"{path}: cannot read orbitals from group {group!r}: {err}") from err
    mol.verbose = 0
    return mol, orb


def check_orbitals(mol, orb: Orbitals) -> None:
    if orb.mo_coeff.shape[1] != mol.nao:
        raise InputError(f"orbitals have {orb.mo_coeff.shape[1]} AO rows but the basis of the molecule has "
                         f"{mol.nao} AOs: basis/orbital mismatch")
    nocc = tuple(int(round(orb.mo_occ[s].sum())) for s in (0, 1))
    if nocc != tuple(mol.nelec):
        raise InputError(f"orbitals occupy {nocc} (up, down) electrons, the molecule has {mol.nelec}")


def all_electron_charges(mol) -> np.ndarray:
    """(natom,) nuclear charge for atoms without a pseudopotential (they need an e-n cusp), else 0."""
    return np.array([float(mol.atom_charge(i)) if mol.atom_nelec_core(i) == 0 and
                     mol.atom_symbol(i) not in mol._ecp and mol.atom_pure_symbol(i) not in mol._ecp else 0.0
                     for i in range(mol.natm)])


def slater_jastrow(mol, orb: Orbitals, *, jastrow: bool = True, backend: str = "numba", nbasis: int = 4,
                   en_cusp: bool = False, parameters: dict | None = None, expansion=None,
                   three_body: bool = False, cusp_correction: bool = True) -> ProductWF:
    """psi = D_up D_down [exp(J)] from occupied orbitals; ``backend`` for the AO kernel ("cupy": the AOs on
    the CUDA device, the Jastrow and the determinant updates with the CPU kernels, "numba").

    ``en_cusp`` adds the electron-nucleus cusp of all-electron atoms to the one-body Jastrow. It is off
    by default: multiplying Gaussian orbitals by a fixed cusp factor also reshapes them and, without
    optimising the one-body terms, raises the variance (measured on He: 0.3 -> 3-9 Ha^2).
    ``expansion`` (:class:`rung.qmc.multideterminant.Expansion`) replaces the single determinant by a
    multideterminant expansion over the spin-up orbitals of ``orb`` (restricted orbitals).
    ``cusp_correction`` corrects the orbitals near all-electron nuclei (:mod:`rung.qmc.cusp`; no-op
    with ECPs on every atom). ``three_body`` adds the electron-electron-nucleus term
    (:mod:`rung.qmc.jastrow3`). ``parameters``
    use the names of ``ProductWF.parameters`` (e.g. ``"1.ee"``).
    """
    check_orbitals(mol, orb)
    basis = AtomicBasis.from_mol(mol)
    charges = all_electron_charges(mol)
    cusp_atoms = [(i, z) for i, z in enumerate(charges) if z > 0] if cusp_correction else None
    mos = tuple(MolecularOrbitals(basis, orb.mo_coeff[s][:, orb.mo_occ[s] > 0.5], backend, cusp_atoms)
                for s in (0, 1))
    if expansion is not None:
        from rung.qmc.multideterminant import build_multislater

        comps = [build_multislater(basis, orb.mo_coeff[0], expansion, mol.nelec, backend, cusp_atoms)]
    else:
        comps = [SlaterDeterminant(mos, mol.nelec)]
    if jastrow:
        symbols = [mol.atom_pure_symbol(i) for i in range(mol.natm)]
        species = {s: k for k, s in enumerate(dict.fromkeys(symbols))}
        cusp = charges if en_cusp else np.zeros(mol.natm)
        comps.append(Jastrow(mol.atom_coords(), [species[s] for s in symbols], cusp,
                             mol.nelec, nbasis=nbasis, backend="numba" if backend == "cupy" else backend))
        if three_body:
            from rung.qmc.jastrow3 import ThreeBodyJastrow

            comps.append(ThreeBodyJastrow(mol.atom_coords(), [species[s] for s in symbols], mol.nelec))
    wf = ProductWF(comps)
    if parameters:
        unknown = set(parameters) - set(wf.parameters)
        if unknown:
            raise InputError(f"parameters {sorted(unknown)} do not belong to this wave function "
                             f"(it has {sorted(wf.parameters)})")
        for k, v in parameters.items():
            if np.shape(v) != wf.parameters[k].shape:
                raise InputError(f"parameter {k!r} has shape {np.shape(v)}, the wave function needs "
                                 f"{wf.parameters[k].shape}")
        wf.set_parameters(parameters)
    return wf


def initial_configs(mol, nwalkers: int, rng: np.random.Generator) -> np.ndarray:
    """(nwalkers, nelec, 3) Bohr: electrons placed around atoms by their valence charge, spread 0.5-1 Bohr."""
    charges = mol.atom_charges().astype(float)
    nup, ndn = mol.nelec
    coords = mol.atom_coords()
    out = np.empty((nwalkers, nup + ndn, 3))
    for w in range(nwalkers):
        left = charges.copy()
        atoms = []
        for _ in range(nup + ndn):
            a = int(np.argmax(left)) if left.max() > 0 else int(rng.integers(len(charges)))
            left[a] -= 1
            atoms.append(a)
        # alternate spins over the same atom list so both spins sit on every atom
        order = atoms[0::2] + atoms[1::2]
        sel = np.array(order[:nup] + order[nup:nup + ndn])
        out[w] = coords[sel] + rng.normal(scale=0.7, size=(nup + ndn, 3))
    return out
