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

BACKENDS = ("numpy", "numba", "cupy")  # rung.core.backend's vocabulary: "cupy" is the GPU (numba.cuda kernels)
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

    @cached_property
    def device_tables(self) -> tuple:
        """The shell table on the CUDA device, copied once: (sh_center, sh_l, sh_pstart, sh_col, sh_minexp,
        exps, coefs), the arguments of :func:`rung.qmc._kernels.gpu.eval_cart` (``backend="cupy"``)."""
        from numba import cuda

        from rung.qmc._kernels.gpu import LMAX

        if int(self.sh_l.max()) > LMAX:
            raise ValueError(f"the CUDA AO kernel handles l <= {LMAX}, the basis has l = {int(self.sh_l.max())}")
        return tuple(cuda.to_device(np.ascontiguousarray(a)) for a in
                     (self.sh_center, self.sh_l, self.sh_pstart, self.sh_col, self.sh_minexp, self.exps, self.coefs))

    @cached_property
    def radial_splines(self) -> "RadialSplines":
        """Quintic-spline tables of the contracted radial parts (see :class:`RadialSplines`), built once."""
        return RadialSplines.build(self)

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


def radial_values(a, c, r, deriv: int = 0) -> np.ndarray:
    """Contracted radial part R(r) = sum_p c_p exp(-a_p r^2) (deriv 0) or its first / second r-derivative.

    a, c : (nprim,) float64, Bohr^-2 and the coefficients; r : (n,) float64, Bohr. Returns (n,) float64.
    """
    g = np.exp(-np.outer(r * r, a))  # (n, nprim)
    if deriv == 0:
        return g @ c
    if deriv == 1:
        return (g * (-2.0 * a * r[:, None])) @ c
    return (g * (4.0 * a * a * r[:, None] ** 2 - 2.0 * a)) @ c


@dataclass(frozen=True)
class RadialSplines:
    """Piecewise quintic (Hermite) tables of the contracted radial parts R(r) of the shells, in r (Bohr).

    On [i h, (i+1) h] the table holds the power-series coefficients in t = r/h - i of the quintic that
    matches R, h R' and h^2 R'' (exact, from the primitives) at both ends; so R and its first two
    derivatives are continuous. Shells of one species share a table. The step h of a table is halved
    until the spline is within ``tol`` of R at five interior points of every interval, relative to
    max_r |R(r)| r^l and with the error weighted by max(r, 1)^l (the cartesian factor). Beyond
    r_max = sqrt(SCREEN / a_min) the table ends and R is taken as 0 (as the exact kernels screen
    primitives with a r^2 > SCREEN). Used where many AO values are needed at points that are not
    differentiated: the nonlocal ECP quadrature (:func:`rung.qmc._kernels.cpu.ecp_nonlocal`). The same
    construction is used by QMCPACK for its LCAO radial functions.

    tab : (nrow, 6) float64; sh_start, sh_nint : (nsh,) int64 first row and number of intervals of each
    shell's table (followed by one zero row); sh_inv_h : (nsh,) float64, 1/h in Bohr^-1.
    """

    tab: np.ndarray
    sh_start: np.ndarray
    sh_nint: np.ndarray
    sh_inv_h: np.ndarray

    @classmethod
    def build(cls, basis: AtomicBasis, tol: float = 1e-13) -> "RadialSplines":
        tables, starts, nints, inv_h, known = [], [], [], [], {}
        row = 0
        for ish in range(basis.sh_l.size):
            p0, p1 = basis.sh_pstart[ish], basis.sh_pstart[ish + 1]
            a, c, l = basis.exps[p0:p1], basis.coefs[p0:p1], int(basis.sh_l[ish])
            key = (l, a.tobytes(), c.tobytes())
            if key not in known:
                tab, h = quintic_table(a, c, l, tol)
                known[key] = (row, tab.shape[0], 1.0 / h)
                tables += [tab, np.zeros((1, 6))]  # the zero row ends the table (R = 0 beyond it)
                row += tab.shape[0] + 1
            r0, n, ih = known[key]
            starts.append(r0)
            nints.append(n)
            inv_h.append(ih)
        return cls(np.ascontiguousarray(np.concatenate(tables) if tables else np.zeros((0, 6))),
                   np.array(starts, dtype=np.int64), np.array(nints, dtype=np.int64), np.array(inv_h, dtype=np.float64))


def quintic_table(a, c, l: int, tol: float = 1e-13, nint: int = 64):
    """(table (nint, 6) float64, h Bohr) for R(r) = sum_p c_p exp(-a_p r^2) on [0, sqrt(SCREEN / min a)]
    (see :class:`RadialSplines`); nint doubles until the tolerance is met."""
    rmax = np.sqrt(SCREEN / a.min())
    t = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    while True:
        h = rmax / nint
        r = np.arange(nint + 1) * h
        f0, f1, f2 = radial_values(a, c, r), h * radial_values(a, c, r, 1), h * h * radial_values(a, c, r, 2)
        c0, c1, c2 = f0[:-1], f1[:-1], 0.5 * f2[:-1]
        # the cubic to quintic coefficients from the values and derivatives at t = 1
        A, B, C = f0[1:] - c0 - c1 - c2, f1[1:] - c1 - 2.0 * c2, f2[1:] - 2.0 * c2
        tab = np.stack([c0, c1, c2, 10.0 * A - 4.0 * B + 0.5 * C, -15.0 * A + 7.0 * B - C, 6.0 * A - 3.0 * B + 0.5 * C], 1)
        rt = (np.arange(nint)[:, None] + t) * h  # (nint, 5)
        exact = radial_values(a, c, rt.ravel()).reshape(rt.shape)
        err = np.abs(spline_reference(tab, t) - exact) * np.maximum(rt, 1.0) ** l
        if err.max() <= tol * np.max(np.abs(exact) * rt ** l):
            return tab, h
        if nint >= 2**20:
            raise RuntimeError(f"radial spline of a shell (l = {l}, exponents {a.min():.3g}..{a.max():.3g}) does not "
                               f"reach the tolerance {tol:g} with {nint} intervals (error {err.max():.3g})")
        nint *= 2


def spline_reference(tab, t):
    """The quintics of ``tab`` (nint, 6) at t (m,) in [0, 1]: (nint, m) float64 (NumPy oracle of the kernel)."""
    v = tab[:, 5:6] * t
    for k in (4, 3, 2, 1):
        v = (v + tab[:, k:k + 1]) * t
    return v + tab[:, 0:1]


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
    elif backend == "cupy":
        from numba import cuda

        if not cuda.is_available():
            from rung.core.backend import BackendUnavailable

            raise BackendUnavailable("backend 'cupy' needs an NVIDIA GPU (or NUMBA_ENABLE_CUDASIM=1 for testing)")
        from rung.qmc._kernels.gpu import eval_cart

        out = eval_cart(flat, *basis.device_tables, basis.ncart, deriv, SCREEN)
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
    backend : "numba", "numpy" or "cupy" (the AOs on the CUDA device, copied back to the host)
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
