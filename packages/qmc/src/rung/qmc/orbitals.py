"""Molecular orbitals from Gaussian atomic orbitals (LCAO), batched over positions and centres.

Contract: ``AtomicBasis.from_mol(mol)`` flattens PySCF's shell table with the centres grouped by
species; ``evaluate_aos(basis, pos, deriv)`` returns the AOs exactly as PySCF's ``mol.eval_gto``
defines them (spherical or cartesian, matching ``mol.cart``), with gradients and Laplacians;
``MolecularOrbitals`` turns positions into orbital values with one GEMM.

Algorithm (the multi-level batching of the QMCPACK LCAO paper, sec. 5.2.1): every position (walkers x
electrons, flattened) against every centre of a species in one pass; the radial contraction
``R(s) = sum_p c_p exp(-a_p s)`` and the cartesian monomials ``x^lx y^ly z^lz`` are formed separately
and combined once into *cartesian* AOs. The cartesian-to-spherical transformation (PySCF's
``cart2sph(l, normalized='sp')``) is folded into the orbital coefficients, ``C_cart = T C``, so
cartesian AOs go to molecular orbitals in a single matrix product:

    phi_k(r) = sum_mu chi^cart_mu(r) (T C)_{mu k}

Names: ``nao`` spherical (or cartesian) AOs of the molecule, ``ncart`` cartesian AOs, ``nmo`` orbitals.
Reference: Q. Sun et al., "Libcint: an efficient general integral library for Gaussian basis
functions", J. Comput. Chem. 36, 1664 (2015) (normalisation conventions).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

BACKENDS = ("numpy", "numba", "cuda")
FAC_SP = {0: 0.5 / np.sqrt(np.pi), 1: np.sqrt(3.0 / (4.0 * np.pi))}  # libcint CINTcommon_fac_sp
SCREEN = 50.0  # primitives with a r^2 above this contribute < 2e-22 x coefficient: skipped (numba kernel)


@dataclass(frozen=True)
class AtomicBasis:
    """Flattened shell table of a PySCF molecule, centres grouped by species.

    sh_center : (nsh, 3) float64, Bohr; sh_l, sh_col : (nsh,) int64; sh_pstart : (nsh+1,) int64;
    exps, coefs : (nprim,) float64; ncart : int; c2s : (ncart, nao) float64 cartesian-to-AO transform;
    species : the same table per species for the NumPy reference (list of dicts).
    """

    sh_center: np.ndarray
    sh_l: np.ndarray
    sh_pstart: np.ndarray
    sh_col: np.ndarray
    exps: np.ndarray
    coefs: np.ndarray
    ncart: int
    nao: int
    c2s: np.ndarray
    species: list

    @cached_property
    def sh_minexp(self) -> np.ndarray:
        """(nsh,) float64: the smallest exponent of each shell (shell-level screening in the kernels)."""
        return np.minimum.reduceat(self.exps, self.sh_pstart[:-1])

    @classmethod
    def from_mol(cls, mol) -> "AtomicBasis":
        from pyscf import gto

        coords = mol.atom_coords()  # Bohr
        # first cartesian column of each PySCF shell, in PySCF order (that order defines the AO order)
        cart_col, col = [], 0
        for ib in range(mol.nbas):
            cart_col.append(col)
            col += (mol.bas_angular(ib) + 1) * (mol.bas_angular(ib) + 2) // 2 * mol.bas_nctr(ib)
        ncart = col
        c2s = np.zeros((ncart, mol.nao))
        ao = 0
        for ib in range(mol.nbas):
            l, nctr = mol.bas_angular(ib), mol.bas_nctr(ib)
            nc = (l + 1) * (l + 2) // 2
            t = np.eye(nc) if mol.cart else gto.cart2sph(l, normalized="sp")  # (nc, nsph)
            for k in range(nctr):
                c0 = cart_col[ib] + k * nc
                c2s[c0:c0 + nc, ao:ao + t.shape[1]] = t
                ao += t.shape[1]
        if ao != mol.nao:
            raise RuntimeError(f"internal error: {ao} AOs assembled, PySCF has {mol.nao}")

        # group atoms by species (same basis shells), keep the species order of first appearance
        def shell_key(ib):
            return (mol.bas_angular(ib), tuple(mol.bas_exp(ib)), tuple(mol._libcint_ctr_coeff(ib).ravel()))

        atom_shells = {ia: [ib for ib in range(mol.nbas) if mol.bas_atom(ib) == ia] for ia in range(mol.natm)}
        groups: dict = {}
        for ia in range(mol.natm):
            key = tuple(shell_key(ib) for ib in atom_shells[ia])
            groups.setdefault(key, []).append(ia)
        sh_center, sh_l, sh_pstart, sh_col, exps, coefs, species = [], [], [0], [], [], [], []
        for atoms in groups.values():
            first = atom_shells[atoms[0]]
            base = cart_col[first[0]] if first else 0
            sp_shells = []
            for ib in first:
                l = mol.bas_angular(ib)
                nc = (l + 1) * (l + 2) // 2
                # libcint leaves the angular factors of s and p shells out of the stored coefficients
                cc = mol._libcint_ctr_coeff(ib) * FAC_SP.get(l, 1.0)  # (nprim, nctr)
                for k in range(mol.bas_nctr(ib)):
                    sp_shells.append((l, mol.bas_exp(ib).copy(), cc[:, k].copy(), cart_col[ib] + k * nc - base))
            offsets = np.array([cart_col[atom_shells[ia][0]] if atom_shells[ia] else 0 for ia in atoms], dtype=np.int64)
            species.append({"atoms": atoms, "centers": coords[atoms], "offsets": offsets, "shells": sp_shells})
            for ia, off in zip(atoms, offsets):
                for l, e, c, loc in sp_shells:
                    sh_center.append(coords[ia])
                    sh_l.append(l)
                    sh_col.append(off + loc)
                    exps.extend(e)
                    coefs.extend(c)
                    sh_pstart.append(sh_pstart[-1] + len(e))
        return cls(
            sh_center=np.array(sh_center, dtype=np.float64).reshape(-1, 3),
            sh_l=np.array(sh_l, dtype=np.int64),
            sh_pstart=np.array(sh_pstart, dtype=np.int64),
            sh_col=np.array(sh_col, dtype=np.int64),
            exps=np.array(exps, dtype=np.float64),
            coefs=np.array(coefs, dtype=np.float64),
            ncart=ncart,
            nao=mol.nao,
            c2s=c2s,
            species=species,
        )


def evaluate_cart(basis: AtomicBasis, pos, deriv: int = 0, backend: str = "numba") -> np.ndarray:
    """Cartesian AOs at positions.

    Parameters
    ----------
    pos : (..., 3) float64, Bohr
    deriv : 0 (values), 1 (+ gradient), 2 (+ Laplacian)

    Returns
    -------
    (nout, ..., ncart) float64 with nout = 1, 4, 5: value, d/dx, d/dy, d/dz, Laplacian (Bohr^-n)
    """
    pos = np.asarray(pos, dtype=np.float64)
    shape = pos.shape[:-1]
    flat = np.ascontiguousarray(pos.reshape(-1, 3))
    if backend == "numba":
        from rung.qmc._kernels.cpu import eval_cart

        out = eval_cart(flat, basis.sh_center, basis.sh_l, basis.sh_pstart, basis.sh_col, basis.sh_minexp, basis.exps,
                        basis.coefs, basis.ncart, deriv, SCREEN)
    elif backend == "cuda":
        from numba import cuda

        if not cuda.is_available():
            from rung.core.backend import BackendUnavailable

            raise BackendUnavailable("backend 'cuda' needs an NVIDIA GPU (or NUMBA_ENABLE_CUDASIM=1 for testing)")
        from rung.qmc._kernels.gpu import eval_cart

        minexp = np.minimum.reduceat(basis.exps, basis.sh_pstart[:-1])
        out = eval_cart(flat, basis.sh_center, basis.sh_l, basis.sh_pstart, basis.sh_col, minexp, basis.exps,
                        basis.coefs, basis.ncart, deriv, SCREEN)
    elif backend == "numpy":
        from rung.qmc._kernels.reference import eval_cart_species

        out = eval_cart_species(flat, basis.species, basis.ncart, deriv)
    else:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return out.reshape((out.shape[0],) + shape + (basis.ncart,))


def evaluate_aos(basis: AtomicBasis, pos, deriv: int = 0, backend: str = "numba") -> np.ndarray:
    """AOs in PySCF's order and normalisation (``mol.eval_gto('GTOval_sph_deriv2')`` layout but with the
    Laplacian instead of the six second derivatives): (nout, ..., nao) float64."""
    return evaluate_cart(basis, pos, deriv, backend) @ basis.c2s


class MolecularOrbitals:
    """Orbital values at positions: one AO pass, one GEMM.

    Parameters
    ----------
    basis : AtomicBasis
    mo_coeff : (nao, nmo) float64 — columns are orbitals (PySCF ``mo_coeff`` layout)
    backend : "numba" or "numpy"
    """

    def __init__(self, basis: AtomicBasis, mo_coeff, backend: str = "numba", cusp_atoms=None):
        mo_coeff = np.asarray(mo_coeff, dtype=np.float64)
        if mo_coeff.ndim != 2 or mo_coeff.shape[0] != basis.nao:
            raise ValueError(
                f"orbital coefficients have shape {mo_coeff.shape}, but the basis has {basis.nao} AOs: "
                "basis/orbital mismatch (were the orbitals computed with another basis or ECP?)"
            )
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.basis = basis
        self.backend = backend
        self.mo_coeff = mo_coeff
        self.coef_cart = basis.c2s @ mo_coeff  # (ncart, nmo)
        self.cusp = None
        if cusp_atoms:  # [(atom index, Z)] of all-electron atoms: see rung.qmc.cusp
            from rung.qmc.cusp import CuspCorrection

            self.cusp = CuspCorrection(basis, self.coef_cart, cusp_atoms,
                                       evaluate=lambda p: evaluate_cart(basis, p, 0, backend) @ self.coef_cart)

    @property
    def nmo(self) -> int:
        return self.mo_coeff.shape[1]

    def __call__(self, pos, deriv: int = 0) -> np.ndarray:
        """(nout, ..., nmo) float64: orbital values (and gradient, Laplacian) at ``pos`` (..., 3) Bohr."""
        cart = evaluate_cart(self.basis, pos, deriv, self.backend)
        out = cart @ self.coef_cart
        if self.cusp is not None:
            shape = out.shape
            self.cusp.apply(np.asarray(pos, dtype=np.float64).reshape(-1, 3), cart.reshape(cart.shape[0], -1, cart.shape[-1]),
                            out.reshape(shape[0], -1, shape[-1]))
        return out
