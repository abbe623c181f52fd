"""Analytic per-sample nuclear derivatives d_I ln|psi| and d_I E_L, all atoms in one pass.

For the Slater-Jastrow trial function psi = D_up D_down exp(J) (LCAO orbitals without the cusp
correction, one/two-body Jastrow) and a Hamiltonian with ccECPs; a table-method multideterminant
expansion in place of D_up D_down through the same contractions with A^T -> G and X^T -> -Gd
(:mod:`rung.qmc.multidet_forces`). Same derivative as
:class:`rung.qmc.forces.NuclearDerivatives` (its finite differences are the test oracle): electrons
fixed, MO coefficients frozen, AOs and the Jastrow's electron-nucleus terms moving with their nuclei,
ECP quadrature points moving with their ion under one fixed random rotation.

Matrix formalism (Filippi, Assaraf, Moroni, J. Chem. Phys. 144, 194105 (2016)). Per spin, M[i, k] =
phi_k(r_i), A = M^-1 (orbital k, electron i), phi_k = sum_mu C[mu, k] chi_mu, B0 = C A (AO mu, electron
i). An AO centred on nucleus I depends on R_I only through r - R_I, so d chi_mu / dR_I = -grad chi_mu
for mu on I and 0 otherwise, and d M / dR_{I,a} = -(sum over mu on I of C[mu, k] d_a chi_mu(r_i)):

    d_{I,a} ln|D| = -sum_j sum_{mu on I} B0[mu, j] d_a chi_mu(r_j)

Every determinant term of E_L is tr(A Op) for a one-body operator matrix Op[i, k] = (O_i phi_k)(r_i),

    Op = -1/2 lap phi - grad_i J . grad phi + V_NL phi      (kinetic, its Jastrow cross term, nonlocal ECP)

with grad_i J and the Jastrow ratios inside V_NL held fixed, and d tr(A Op) = tr(A dOp) - tr(X dM),
X = A Op A. Both traces are contractions over (electron, AO on I) pairs, so all 3 N_atom components
come from one AO evaluation up to third derivatives (value, gradient, Hessian, grad of the Laplacian)
at the electrons:

    d_{I,a} sum_i tr(A Op) = sum_j sum_{mu on I} [ B0[mu, j] (1/2 d_a lap chi_mu + sum_x (d_x J)_j d_a d_x chi_mu)
                                                 + (C X)[mu, j] d_a chi_mu ](r_j)  + (nonlocal tr(A dOp))

The rest is by hand: the Jastrow one-body function chi_I(r) (kinetic terms through its Hessian and
the gradient of its Laplacian), -Z_I / r, the ccECP local radial function, the nuclear repulsion,
and the nonlocal ECP terms' own R dependence (projector v_l(r) P_l(cos), quadrature points
R_A + r_iA q moving with the ion, AOs on I at the points, the Jastrow ratio exp(J_i(r') - J_i(r_i))).

Space warp (module docstring of :mod:`rung.qmc.forces`): d^W_{I,a} ln|psi| = d_{I,a} ln|psi| +
sum_i omega_I(r_i) d_{i,a} ln|psi| + 1/2 sum_i d_a omega_I(r_i) and d^W_{I,a} E_L = d_{I,a} E_L +
sum_i omega_I(r_i) d_{i,a} E_L, with grad_i E_L analytic too, from the same pieces: moving electron j
moves row j of every AO, so its determinant part is minus the (electron j, AO mu) terms above summed
over all mu instead of mu on I; the Jastrow's two-body Hessians and gradients of Laplacians, 1/r_jk,
and the nonlocal terms' own r_j dependence (electron j's projector and quadrature points, the
electron-electron Jastrow in the other electrons' ratios) are added by hand.
"""

from __future__ import annotations

import copy
from functools import cached_property
from typing import NamedTuple

import numpy as np

from rung.qmc.forces import ForceConfig, warp_weights
from rung.qmc.jastrow import EE_CUSP

# components of PySCF's eval_gto deriv3 layout: value, x, y, z, xx, xy, xz, yy, yz, zz, xxx, xxy, xxz, xyy,
# xyz, xzz, yyy, yyz, yzz, zzz
HESS = ((4, 5, 6), (5, 7, 8), (6, 8, 9))  # d_a d_b
GRAD_LAP = ((10, 13, 15), (11, 16, 18), (12, 17, 19))  # d_a (xx + yy + zz)


def unsupported_reason(wf) -> str | None:
    """None when :class:`AnalyticDerivatives` serves ``wf``, else why not (one line)."""
    from rung.qmc.determinants import SlaterDeterminant
    from rung.qmc.jastrow import Jastrow
    from rung.qmc.multideterminant import TableMultiSlater
    from rung.qmc.wavefunction import ProductWF

    if type(wf) is not ProductWF or not 1 <= len(wf.components) <= 2:
        return "only D_up D_down [exp(J)] has analytic nuclear derivatives (three-body Jastrow, other products: no)"
    det, *rest = wf.components
    if type(det) is not SlaterDeterminant and type(det) is not TableMultiSlater:
        return "only the table-method multideterminant (TableMultiSlater) has analytic nuclear derivatives"
    if any(o.cusp is not None for o in det.orbitals):
        return "cusp-corrected orbitals (all-electron atoms) have no analytic nuclear derivatives yet"
    if rest and type(rest[0]) is not Jastrow:
        return "only the one/two-body Jastrow has analytic nuclear derivatives"
    return None


def _ao_by_atom(mol) -> np.ndarray:
    """(nao, natom) float64 indicator: 1 where AO mu sits on atom I (PySCF's AO order)."""
    s = np.zeros((mol.nao, mol.natm))
    for ia, (_, _, a0, a1) in enumerate(mol.aoslice_by_atom()):
        s[a0:a1, ia] = 1.0
    return s


def radial_poly(poly, L, r):
    """f, f', f'', f''' of f(r) = sum_m poly[..., m] (r/L)^m for r < L, 0 beyond (Jastrow cutoff
    polynomials). poly (..., ndeg) broadcast against r (...); r Bohr."""
    y = r / L
    inside = y < 1.0
    yc = np.where(inside, y, 1.0)
    v = d1 = d2 = d3 = np.zeros_like(r)
    for m in range(poly.shape[-1] - 1, -1, -1):
        d3 = d3 * yc + 3.0 * d2
        d2 = d2 * yc + 2.0 * d1
        d1 = d1 * yc + v
        v = v * yc + poly[..., m]
    return v * inside, d1 * inside / L, d2 * inside / L**2, d3 * inside / L**3


def _legendre_d(l, x):
    """P_l(x) and P_l'(x) by the recurrences (n+1) P_{n+1} = (2n+1) x P_n - n P_{n-1},
    P'_{n+1} = P'_{n-1} + (2n+1) P_n."""
    p0, p1, d0, d1 = np.ones_like(x), x, np.zeros_like(x), np.ones_like(x)
    if l == 0:
        return p0, d0
    for n in range(1, l):
        p0, p1, d0, d1 = p1, ((2 * n + 1) * x * p1 - n * p0) / (n + 1), d1, d0 + (2 * n + 1) * p1
    return p1, d1


def _radial_d(channel, r):
    """v(r) = sum c r^p exp(-a r^2) of an ECP channel [(p, a, c)] and v'(r); r (...) Bohr."""
    v, d = np.zeros_like(r), np.zeros_like(r)
    for p, a, c in channel:
        e = c * np.exp(-a * r * r)
        v = v + e * r**p
        d = d + e * (p * r ** (p - 1) - 2.0 * a * r ** (p + 1))
    return v, d


class KernelTables(NamedTuple):
    """The force kernels' arguments that are not walker data, grouped in their argument order (built once per
    :class:`AnalyticDerivatives`; NumPy arrays, or their device copies in ``device_tables``).

    shells : det_terms' cartesian shell table: sh_center (nsh, 3) Bohr, sh_l, sh_pstart, sh_col, sh_minexp,
        sh_atom (the atom of each shell), exps, coefs
    coords : (natom, 3) float64, Bohr; charges : (natom,) float64; spin : (ne,) int64
    jastrow : use_j, ee_poly, ee_g, L_ee, L_eec, en_poly, en_g, L_en, L_enc (placeholders without a Jastrow)
    local : the local ccECP channels: molecule atom, term start, powers, exponents, coefficients
    quadrature : the ECP rule's directions (nq, 3) and weights (nq,)
    channels : the nonlocal ccECP channels (atom_R, atom_rc, their molecule atoms, ch_atom, ch_l, ch_tstart,
        t_pow, t_a, t_c)
    centres : the AO centres (cen_R, cen_shstart, cen_minexp, cen_atom) and the shell table and radial
        splines the nonlocal kernel reads (sh_l, sh_col, sh_minexp, spl_tab, sh_tstart, sh_nint, sh_inv_h)
    """

    shells: tuple
    coords: np.ndarray
    charges: np.ndarray
    spin: np.ndarray
    jastrow: tuple
    local: tuple
    quadrature: tuple
    channels: tuple
    centres: tuple


class AnalyticDerivatives:
    """Per-sample d ln|psi| / dR and d E_L / dR (electrons fixed), every atom in one pass.

    Same call interface as :class:`rung.qmc.forces.NuclearDerivatives`.

    Parameters
    ----------
    mol : PySCF molecule of the trial function (its geometry and AO basis)
    wf : ProductWF, D_up D_down [exp(J)] (see :func:`unsupported_reason`); copied, not modified
    ham : Hamiltonian at the same geometry
    config : ForceConfig
    backend : "numba" (cartesian AOs, the kernels of :mod:`rung.qmc._kernels.cpu.forces`: ``det_terms``,
        ``nonlocal_terms``, ``electron_terms``), "cupy" (the same with ``det_terms`` and ``electron_terms``
        from the numba.cuda kernels of :mod:`rung.qmc._kernels.forces_gpu`, NumPy arrays in and out; the
        nonlocal terms from :mod:`rung.qmc._kernels.forces_ecp_gpu`) or "numpy" (PySCF's AOs and einsums: the oracle)

    The kernels' tables (shells, Jastrow, ECP channels, atoms: :class:`KernelTables`) are built once, in
    ``tables``; with "cupy" their device copies (``device_tables``) are made on the first call and kept, so a
    call copies only walker data to the device.

    A call given the sampler's trial function (``wf``, ``grad``: see :meth:`__call__`) reads its state and
    recomputes nothing; without it this instance's own deep copy is recomputed at the walkers.
    """

    def __init__(self, mol, wf, ham, config: ForceConfig = ForceConfig(), backend: str = "numba"):
        why = unsupported_reason(wf)
        if why is not None:
            raise ValueError(why)
        if backend not in ("numba", "numpy", "cupy"):
            raise ValueError(f"backend must be 'numba', 'numpy' or 'cupy', got {backend!r}")
        if backend == "cupy":
            from numba import cuda

            if not cuda.is_available():
                from rung.core.backend import BackendUnavailable

                raise BackendUnavailable("backend 'cupy' needs an NVIDIA GPU (or NUMBA_ENABLE_CUDASIM=1 for testing)")
        self.backend = backend
        self.config = config
        self.mol = mol
        self.wf = copy.deepcopy(wf)  # own state: the sampler's trial function is never touched
        self.det = self.wf.components[0]
        self.jas = self.wf.components[1] if len(self.wf.components) > 1 else None
        self.ham = ham
        self.coords = np.array(mol.atom_coords(), dtype=np.float64)
        self.natom = self.coords.shape[0]
        self.rng = np.random.default_rng(config.seed)
        self.eval_name = "GTOval_cart_deriv" if mol.cart else "GTOval_sph_deriv"
        self.basis = self.det.orbitals[0].basis
        if backend != "numpy":  # cartesian AOs throughout: phi = chi_cart C_cart
            self.cmo = [o.coef_cart for o in self.det.orbitals]  # (ncart, n) per spin
        else:
            self.ao_atom = _ao_by_atom(mol)
            self.cmo = [o.mo_coeff for o in self.det.orbitals]  # (nao, n) per spin
        charges = self.charges = np.asarray(ham.atom_charges, dtype=np.float64)
        d = self.coords[:, None] - self.coords[None]
        r3 = np.linalg.norm(d, axis=-1) ** 3
        np.fill_diagonal(r3, np.inf)
        self.dnn = -np.einsum("a,b,abx,ab->ax", charges, charges, d, 1.0 / r3)  # d V_nn / dR (natom, 3)
        if self.jas is not None:
            j = self.jas
            self.en_poly = j.parameters["en"][j.atom_species] @ j.bcoef  # (natom, ndeg)
            same = j._same  # (ne, ne) bool, parallel spins
            self.ee_poly = np.where(same[..., None], (j.parameters["ee"] @ j.bcoef)[0], (j.parameters["ee"] @ j.bcoef)[1])
            self.ee_g = np.where(same, EE_CUSP[0], EE_CUSP[1])  # (ne, ne) cusp slopes
        self.spin = np.array([0] * self.det.nelec[0] + [1] * self.det.nelec[1], dtype=np.int64)
        self.tables = self._kernel_tables() if backend != "numpy" else None

    def _kernel_tables(self) -> KernelTables:
        """The kernels' NumPy tables of this trial function and Hamiltonian (see :class:`KernelTables`)."""
        from rung.qmc.ecp import _ICOSAHEDRON

        b, ecp = self.basis, self.ham.ecp
        dist = np.linalg.norm(b.sh_center[:, None] - self.coords[None], axis=-1)
        sh_atom = np.argmin(dist, axis=1).astype(np.int64)  # (nsh,) atom of each shell
        new = np.ones(b.sh_l.size, dtype=bool)  # AO centres: runs of consecutive shells on one atom
        new[1:] = sh_atom[1:] != sh_atom[:-1]
        start = np.append(np.nonzero(new)[0], b.sh_l.size).astype(np.int64)
        sp = b.radial_splines  # radial parts at the ECP quadrature points (as the energy's kernel)
        centres = (np.ascontiguousarray(b.sh_center[start[:-1]]), start, np.minimum.reduceat(b.sh_minexp, start[:-1]),
                   sh_atom[start[:-1]], b.sh_l, b.sh_col, b.sh_minexp, sp.tab, sp.sh_start, sp.sh_nint, sp.sh_inv_h)
        if self.jas is None:  # placeholders: the kernels read no Jastrow table when use_j is False
            jastrow = (False, np.zeros((2, 1)), np.zeros(2), 1.0, 1.0, np.zeros((self.natom, 1)), np.zeros(self.natom),
                       1.0, 1.0)
        else:
            j = self.jas
            jastrow = (True, np.ascontiguousarray(j.parameters["ee"] @ j.bcoef), np.array(EE_CUSP), j.rcut_ee,
                       j.rcut_ee_cusp, np.ascontiguousarray(self.en_poly), -j.cusp_charges, j.rcut_en, j.rcut_cusp)
        _, lstart, lp, la, lc = ecp.local_tables()  # the local ccECP channels and their molecule atoms
        local = (np.array([ia for ia, *_ in ecp.atoms], dtype=np.int64), lstart, lp, la, lc)
        ch = ecp._packed()
        nl_atom = np.array([ia for ia, _, _, nl in ecp.atoms if nl], dtype=np.int64)  # molecule atoms of ch.atom_R
        channels = (ch.atom_R, ch.atom_rc, nl_atom, ch.ch_atom, ch.ch_l, ch.ch_tstart, ch.t_pow, ch.t_a, ch.t_c)
        return KernelTables((b.sh_center, b.sh_l, b.sh_pstart, b.sh_col, b.sh_minexp, sh_atom, b.exps, b.coefs),
                            self.coords, self.charges, self.spin, jastrow, local, _ICOSAHEDRON, channels, centres)

    @cached_property
    def device_tables(self) -> KernelTables:
        """``tables`` with every array copied to the CUDA device, once (on the first call of the "cupy"
        backend; an array shared by two groups is copied once); scalars as they are."""
        from numba import cuda

        from rung.qmc._kernels.forces_gpu import LMAX

        if int(self.basis.sh_l.max()) > LMAX:
            raise ValueError(f"the CUDA force kernel handles shells up to l = {LMAX}, "
                             f"the basis has l = {int(self.basis.sh_l.max())}")
        copies = {}  # id of a host array -> its device copy

        def dev(a):
            if not isinstance(a, np.ndarray):
                return a
            if id(a) not in copies:
                copies[id(a)] = cuda.to_device(np.ascontiguousarray(a))
            return copies[id(a)]

        return KernelTables(*(tuple(map(dev, f)) if isinstance(f, tuple) else dev(f) for f in self.tables))

    # ------------------------------------------------------------------ pieces
    def _en_jastrow(self, r):
        """The one-body Jastrow function of every atom, chi_I(r) and three r-derivatives: r (..., natom)."""
        j = self.jas
        f = list(radial_poly(self.en_poly, j.rcut_en, r))
        G, Lc = -j.cusp_charges, j.rcut_cusp
        t = np.clip(1.0 - r / Lc, 0.0, None)
        cin = r < Lc
        f[0] = f[0] - G * Lc * t**3 / 3.0
        f[1] = f[1] + G * t**2
        f[2] = f[2] - 2.0 * G * t / Lc
        f[3] = f[3] + np.where(cin, 2.0 * G / Lc**2, 0.0)
        return f

    def _ee_jastrow(self, r, rows=slice(None)):
        """The pair function u of electrons (j, k) and three r-derivatives: r (..., ne_rows, ne) Bohr for
        electrons j in ``rows`` (an index into the electrons, or a slice) against every k."""
        j = self.jas
        f = list(radial_poly(self.ee_poly[rows], j.rcut_ee, r))
        G, Lc = self.ee_g[rows], j.rcut_ee_cusp
        t = np.clip(1.0 - r / Lc, 0.0, None)
        f[0] = f[0] - G * Lc * t**3 / 3.0
        f[1] = f[1] + G * t**2
        f[2] = f[2] - 2.0 * G * t / Lc
        f[3] = f[3] + np.where(r < Lc, 2.0 * G / Lc**2, 0.0)
        return f

    def _aos(self, pos, deriv):
        """PySCF's AOs (value, gradient) at pos (npos, 3) Bohr: (4, npos, nao) (the NumPy path)."""
        return self.mol.eval_gto(self.eval_name + str(deriv), pos)

    def _kernels(self):
        """(the module of ``det_terms`` and ``electron_terms``, the tables they take): the numba.cuda kernels
        and the device tables for "cupy", else the CPU kernels and the NumPy tables."""
        if self.backend == "cupy":
            from rung.qmc._kernels import forces_gpu

            return forces_gpu, self.device_tables
        from rung.qmc._kernels.cpu import forces as forces_cpu

        return forces_cpu, self.tables

    def _spins(self):
        n0, n1 = self.det.nelec
        return [(0, slice(0, n0)), (1, slice(n0, n0 + n1))]

    def _draw_rotations(self, nw, ne):
        """One random rotation per walker and electron, (nw, ne, 3, 3), from the same numbers the ECP's
        nonlocal term draws (one (nw, 4) block of normals per electron, in electron order; one (ne, nw, 4)
        draw is the same sequence), so that the finite-difference oracle sharing the stream uses the same
        quadrature. None without nonlocal channels (nothing is drawn then)."""
        if not self.ham.ecp.has_nonlocal:
            return None
        q = self.rng.normal(size=(ne, nw, 4))
        q /= np.linalg.norm(q, axis=-1, keepdims=True)
        w, x, y, z = np.moveaxis(q, -1, 0)  # each (ne, nw)
        m = np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                      2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                      2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], axis=-1)
        return np.ascontiguousarray(m.reshape(ne, nw, 3, 3).transpose(1, 0, 2, 3))  # as ecp.random_rotations

    def _nonlocal(self, configs, rot, b0, de, ge, jg, jas, with_ge=True):
        """Nonlocal ECP: its direct R derivative added into ``de`` (nw, natom, 3) and its direct electron
        gradient into ``ge`` (nw, ne, 3) (jg (nw, ne, 3) grad J, jas the Jastrow component in the state of
        configs, or None); returns the operator matrices VM[s]
        (nw, n_electron, n_orbital) (V_NL phi_k at each electron, Jastrow ratio included), whose
        dependence through A = M^-1 the caller's tr(X dM) term carries."""
        from rung.qmc.ecp import _ICOSAHEDRON

        nw, ne, _ = configs.shape
        ecp = self.ham.ecp
        vm = [np.zeros((nw, sl.stop - sl.start, self.cmo[s].shape[1])) for s, sl in self._spins()]
        if rot is None:
            return vm
        dirs, weights = _ICOSAHEDRON
        if self.backend != "numpy":  # triples, projector, AOs and the Jastrow at the points inside the kernel
            if self.backend == "cupy":
                from rung.qmc._kernels.forces_ecp_gpu import nonlocal_terms
            else:
                from rung.qmc._kernels.cpu.forces import nonlocal_terms
            from rung.qmc.orbitals import SCREEN

            t = self._kernels()[1]
            j0 = np.zeros((nw, ne)) if jas is None else \
                np.concatenate([jas._current(k) for k in range(ne)], 1)  # J_e at r_e (cached), (nw, ne)
            for s, sl in self._spins():
                vm_ao = np.zeros((nw, sl.stop - sl.start, self.basis.ncart))
                nonlocal_terms(rot, *t.quadrature, sl.start, sl.stop - sl.start, *t.channels, j0, *t.centres, SCREEN,
                               b0[s], configs, jg, t.coords, t.spin, with_ge, *t.jastrow, de, ge, vm_ao)
                vm[s] += vm_ao @ self.cmo[s]
            return vm
        atoms = [(ia, R, nl, rc) for (ia, R, _, nl), rc in zip(ecp.atoms, ecp._cut) if nl]
        nq = dirs.shape[0]
        qd = np.einsum("weij,qj->weqi", rot, dirs)  # (nw, ne, nq, 3) rotated directions
        Ra = np.array([R for _, R, _, _ in atoms])  # (na, 3)
        atom_index = np.array([ia for ia, *_ in atoms])  # molecule atom of each ECP atom
        d = configs[:, :, None, :] - Ra  # (nw, ne, na, 3)
        r = np.linalg.norm(d, axis=-1)
        near = r < np.array([rc for *_, rc in atoms])
        for s, sl in self._spins():
            w, e, a = np.nonzero(near[:, sl])  # triples (walker, electron of spin s, ECP atom), e within spin
            if w.size == 0:
                continue
            eg = e + sl.start  # global electron index
            rr = r[w, eg, a]  # (T,)
            rhat = d[w, eg, a] / rr[:, None]  # (T, 3)
            q = qd[w, eg]  # (T, nq, 3)
            pts = Ra[a][:, None, :] + rr[:, None, None] * q  # (T, nq, 3)
            cos = np.einsum("tqx,tx->tq", q, rhat)
            # projector c = w_q sum_l (2l+1) v_l(r) P_l(cos), its r and cos derivatives
            c, c_r, c_cos = (np.zeros_like(cos) for _ in range(3))
            for k in np.unique(a):
                on = a == k
                for l, ch in atoms[k][2].items():
                    v, dv = _radial_d(ch, rr[on])
                    p, dp = _legendre_d(l, cos[on])
                    c[on] += (2 * l + 1) * v[:, None] * p
                    c_r[on] += (2 * l + 1) * dv[:, None] * p
                    c_cos[on] += (2 * l + 1) * v[:, None] * dp
            c, c_r, c_cos = c * weights, c_r * weights, c_cos * weights
            ao = self._aos(pts.reshape(-1, 3), 1).reshape(4, w.size, nq, -1)
            rj = np.ones_like(c)  # Jastrow ratio and its gradient at the points
            gjp = np.zeros(pts.shape)
            if jas is not None:
                for ei in np.unique(eg):
                    on = np.nonzero(eg == ei)[0]
                    jv, jgr, _ = jas._electron_terms(ei, np.ascontiguousarray(pts[on]), 1, w[on])
                    j0 = jas._current(ei)[w[on]]  # J_e at r_e (cached by gradient_laplacian_all)
                    rj[on] = np.exp(jv - j0)
                    gjp[on] = jgr
            b = b0[s][w, :, e]  # (T, nao): column e of C A
            rd = np.einsum("tqm,tm->tq", ao[0], b)  # determinant ratio
            grd = np.einsum("xtqm,tm->tqx", ao[1:4], b)  # its gradient in the point
            u = c * rj  # (T, nq)
            t = u * rd  # the terms of V_NL psi / psi
            # I = A: projector (r, cos through rhat) and the points moving with the ion
            dc = -(c_r * rj * rd)[..., None] * rhat[:, None, :] \
                - (c_cos * rj * rd / rr[:, None])[..., None] * (q - cos[..., None] * rhat[:, None, :])
            g = t[..., None] * gjp + u[..., None] * grd  # d term / d point
            move = g - np.einsum("tqx,tqx->tq", q, g)[..., None] * rhat[:, None, :]
            np.add.at(de, (w, atom_index[a]), (dc + move).sum(1))
            # electron e's own quadrature: projector and points follow r_e (dp = q (rhat . dr)); J_e(r_e)
            own = -dc + np.einsum("tqx,tqx->tq", q, g)[..., None] * rhat[:, None, :]
            np.add.at(ge, (w, eg), own.sum(1) - t.sum(1)[:, None] * jg[w, eg])
            if self.jas is not None:  # the other electrons k through u(|r' - r_k|) - u(|r_e - r_k|)
                dpk = pts[:, :, None, :] - configs[w][:, None, :, :]  # (T, nq, ne, 3)
                rpk = np.linalg.norm(dpk, axis=-1)
                dek = configs[w, eg][:, None, :] - configs[w]  # (T, ne, 3)
                rek = np.linalg.norm(dek, axis=-1)
                rek[np.arange(w.size), eg] = 1.0
                f1p = self._ee_jastrow(rpk, eg[:, None])[1] / rpk  # rows: spin relation of e to k
                f1e = self._ee_jastrow(rek, eg)[1] / rek
                other = -np.einsum("tq,tqk,tqkx->tkx", t, f1p, dpk) + (t.sum(1)[:, None] * f1e)[..., None] * dek
                other[np.arange(w.size), eg] = 0.0
                np.add.at(ge, w, other)
            # every I: the AOs on I at the points (b weighted), the one-body Jastrow at the points and at r_e
            per_atom = np.einsum("xtqm,tm,mI->tIx", ao[1:4] * u[None, ..., None], b, self.ao_atom)
            tot = -per_atom
            if self.jas is not None:
                dp = pts[:, :, None, :] - self.coords  # (T, nq, natom, 3)
                rp = np.linalg.norm(dp, axis=-1)
                f1 = self._en_jastrow(rp)[1]
                tot -= np.einsum("tq,tqI,tqIx->tIx", t, f1 / rp, dp)
                dx = configs[w, eg][:, None, :] - self.coords  # (T, natom, 3)
                rx = np.linalg.norm(dx, axis=-1)
                tot += t.sum(1)[:, None, None] * (self._en_jastrow(rx)[1] / rx)[..., None] * dx
            np.add.at(de, w, tot)
            # the operator matrix: V_NL applied to every orbital of spin s at electron e
            phi = np.einsum("tqm,mk->tqk", ao[0], self.cmo[s])
            np.add.at(vm[s], (w, e), np.einsum("tq,tqk->tk", u, phi))
        return vm

    # ------------------------------------------------------------------ all derivatives
    def _electron_terms_numpy(self, configs, gt, dl, de, ge):
        """NumPy oracle of :func:`rung.qmc._kernels.cpu.forces.electron_terms`: the one/two-body Jastrow,
        -Z/r, 1/r_jk and local-ECP terms of the derivatives, added into dl, de (nw, natom, 3), ge (nw, ne, 3)."""
        nw, ne, _ = configs.shape
        d = configs[:, :, None, :] - self.coords  # (nw, ne, natom, 3)
        r = np.linalg.norm(d, axis=-1)
        rhat = d / r[..., None]
        if self.jas is not None:  # one-body Jastrow: ln psi and the kinetic energy
            _, f1, f2, f3 = self._en_jastrow(r)
            dl -= np.einsum("wia,wiax->wax", f1, rhat)
            # H_iI (grad ln psi)_i and grad lap chi_I(r_i), H the Hessian of chi_I: T's one-body terms give
            # d_{I,a} T = sum_i (H G)_a + 1/2 (grad lap)_a, grad_i T = -sum_I [(H G) + 1/2 grad lap]
            rg = np.einsum("wiax,wix->wia", rhat, gt)
            hg = (((f2 - f1 / r) * rg)[..., None] * rhat + (f1 / r)[..., None] * gt[:, :, None, :]
                  + 0.5 * (f3 + 2.0 * f2 / r - 2.0 * f1 / r**2)[..., None] * rhat)  # (nw, ne, natom, 3)
            de += hg.sum(1)
            ge -= hg.sum(2)
            # two-body terms: grad_j T = -sum_k [H_u(d_jk) (G_j - G_k) + grad lap u(d_jk)]
            djk = configs[:, :, None, :] - configs[:, None, :, :]  # (nw, ne, ne, 3)
            rjk = np.linalg.norm(djk, axis=-1)
            rjk[:, np.arange(ne), np.arange(ne)] = 1.0
            _, u1, u2, u3 = self._ee_jastrow(rjk)
            off = 1.0 - np.eye(ne)
            rh = djk / rjk[..., None]
            dg = gt[:, :, None, :] - gt[:, None, :, :]
            rdg = np.einsum("wjkx,wjkx->wjk", rh, dg)
            hh = (((u2 - u1 / rjk) * rdg)[..., None] * rh + (u1 / rjk)[..., None] * dg
                  + (u3 + 2.0 * u2 / rjk - 2.0 * u1 / rjk**2)[..., None] * rh)
            ge -= np.einsum("wjkx,jk->wjx", hh, off)
        charges = np.asarray(self.ham.atom_charges, dtype=np.float64)
        en = charges[:, None] * d / r[..., None] ** 3  # (nw, ne, natom, 3): d/dR_I of -Z_I / |r - R_I|, negated
        de -= en.sum(1)
        ge += en.sum(2)
        dee = configs[:, :, None, :] - configs[:, None, :, :]
        ree = np.linalg.norm(dee, axis=-1)
        ree[:, np.arange(ne), np.arange(ne)] = np.inf
        ge -= np.einsum("wjkx,wjk->wjx", dee, 1.0 / ree**3)  # 1 / r_jk
        for ia, _, local, _ in self.ham.ecp.atoms:  # ccECP local part
            if local:
                g = _radial_d(local, r[:, :, ia])[1][..., None] * rhat[:, :, ia]  # (nw, ne, 3)
                de[:, ia] -= g.sum(1)
                ge += g

    def _state(self, configs, wf, grad):
        """(determinant, Jastrow or None, grad J (nw, ne, 3)) in the state of configs: the sampler's trial
        function ``wf`` as it is (its inverse Slater matrices and cached orbital values, gradients and
        Laplacians; ``grad`` its grad ln psi from the local energy, which gives grad J without another
        Jastrow evaluation), or this instance's own copy recomputed when ``wf`` is None."""
        if wf is None:
            self.wf.recompute(configs)
            det, jas = self.det, self.jas
        else:
            from rung.qmc.multidet_forces import ci_vector

            why = unsupported_reason(wf)
            det, jas = wf.components[0], (wf.components[1] if len(wf.components) > 1 else None)
            same = why is None and type(det) is type(self.det) and (jas is None) == (self.jas is None) and all(
                np.array_equal(o.mo_coeff, p.mo_coeff) for o, p in zip(det.orbitals, self.det.orbitals)) and \
                np.array_equal(ci_vector(det), ci_vector(self.det))  # the CI coefficients (None: one determinant)
            if same and jas is not None:
                same = all(np.array_equal(jas.parameters[k], v) for k, v in self.jas.parameters.items()) and \
                    (jas.rcut_ee, jas.rcut_en, jas.rcut_ee_cusp, jas.rcut_cusp) == \
                    (self.jas.rcut_ee, self.jas.rcut_en, self.jas.rcut_ee_cusp, self.jas.rcut_cusp)
            if not same:
                raise ValueError("the sampler's trial function is not the one these derivatives were built for "
                                 "(other orbitals, Jastrow parameters or form)")
            if not np.array_equal(det.configs, configs):
                raise ValueError("the sampler's trial function is not in the state of the configurations given")
        if jas is None:
            return det, None, np.zeros_like(configs)
        if grad is None:
            return det, jas, jas.gradient_laplacian_all()[0]
        return det, jas, grad - det.gradient_laplacian_all()[0]  # grad ln |D| from the cached orbital data

    def derivatives(self, configs, rot=None, wf=None, grad=None, electron_gradient=True):
        """Unwarped derivatives at configs (nw, ne, 3) Bohr; ``rot`` (nw, ne, 3, 3) the ECP quadrature rotations;
        ``wf`` the sampler's trial function in the state of configs and ``grad`` (nw, ne, 3) its grad ln psi
        (optional: see :meth:`__call__`); ``electron_gradient`` False skips grad_i E_L (only the space warp
        needs it; ``ge`` is None then).

        Returns
        -------
        dl : (nw, natom, 3) float64, Bohr^-1 — d ln|psi| / dR
        de : (nw, natom, 3) float64, Hartree/Bohr — d E_L / dR
        grad : (nw, ne, 3) float64, Bohr^-1 — grad_i ln psi
        ge : (nw, ne, 3) float64, Hartree/Bohr — grad_i E_L (same rotation held fixed); None without
            ``electron_gradient``
        """
        configs = np.ascontiguousarray(configs, dtype=np.float64)
        nw, ne, _ = configs.shape
        det, jas, jg = self._state(configs, wf, grad)
        if grad is None:
            grad = det.gradient_laplacian_all()[0] + jg
        gt = grad  # grad ln psi
        dl = np.zeros((nw, self.natom, 3))
        de = np.zeros((nw, self.natom, 3))
        ge = np.zeros((nw, ne, 3))
        if self.backend != "numpy":
            kernels, t = self._kernels()
            kernels.electron_terms(configs, np.ascontiguousarray(gt), t.coords, t.charges, t.spin, electron_gradient,
                                   *t.jastrow, *t.local, dl, de, ge)
        else:
            self._electron_terms_numpy(configs, gt, dl, de, ge)
        de += self.dnn
        from rung.qmc.determinants import SlaterDeterminant

        multi = type(det) is not SlaterDeterminant  # TableMultiSlater: A^T -> G, X^T -> -Gd (rung.qmc.multidet_forces)
        if multi:
            from rung.qmc.multidet_forces import effective_matrices, ratio_matrices

            b0 = [self.cmo[s] @ np.swapaxes(g, 1, 2) for s, g in enumerate(ratio_matrices(det))]  # C G^T
        else:
            b0 = [self.cmo[s] @ det.inverse[s] for s in (0, 1)]  # C A, (nw, nao, n)
        vm = self._nonlocal(configs, rot, b0, de, ge, jg, jas, electron_gradient)
        ops = []  # Op[i, k] = (O_i phi_k)(r_i): kinetic, its Jastrow cross term, nonlocal ECP
        for s, sl in self._spins():
            mo, g = det.mo[s], jg[:, sl, :, None]  # mo (5, nw, n_electron, n_orbital): value, gradient, Laplacian
            ops.append(vm[s] - 0.5 * mo[4] - g[:, :, 0] * mo[1] - g[:, :, 1] * mo[2] - g[:, :, 2] * mo[3])
        if multi:
            gd = effective_matrices(det, ops, self.backend != "numpy")[1]
            cxs = [-(self.cmo[s] @ np.swapaxes(gd[s], 1, 2)) for s in (0, 1)]
        for s, sl in self._spins():
            n = sl.stop - sl.start
            if n == 0:
                continue
            if multi:
                cx = cxs[s]
            else:
                A = det.inverse[s]  # (nw, n_orbital, n_electron)
                cx = self.cmo[s] @ (A @ ops[s] @ A)  # C X, (nw, nao, n)
            if self.backend != "numpy":
                from rung.qmc.orbitals import SCREEN

                kernels, t = self._kernels()
                out = kernels.det_terms(np.ascontiguousarray(configs[:, sl]), *t.shells, b0[s], cx,
                                        np.ascontiguousarray(jg[:, sl]), self.natom, SCREEN)
            else:
                ao = self.mol.eval_gto(self.eval_name + "3", configs[:, sl].reshape(-1, 3)).reshape(20, nw, n, -1)
                out = det_terms_numpy(ao, b0[s], cx, jg[:, sl], self.ao_atom)
            de += out[0]
            ge[:, sl] += out[1]
            dl += out[2]
        return dl, de, gt, (ge if electron_gradient else None)

    def __call__(self, configs, wf=None, grad=None):
        """(d ln|psi| (nw, natom, 3) Bohr^-1, d E_L (nw, natom, 3) Hartree/Bohr) at configs (nw, nelec, 3),
        space-warped when ``config.warp``: d^W f = d f + sum_i omega_I(r_i) d_{i,a} f (+ the half
        log-Jacobian for ln psi).

        ``wf``: the sampler's trial function, in the state of configs (what a VMC/DMC step has after its
        local energy) with the same orbitals and parameters as the one given to the constructor; its
        inverse Slater matrices and cached orbital data are used (read only) instead of a recomputation.
        ``grad``: (nw, nelec, 3) its grad ln psi (the local energy's), saving the Jastrow gradient.
        Without them this instance's own copy is recomputed at configs (same values to round-off)."""
        nw, ne, _ = configs.shape
        rot = self._draw_rotations(nw, ne)
        dl, de, grad, ge = self.derivatives(configs, rot, wf, grad, electron_gradient=self.config.warp)
        if self.config.warp:
            omega, domega = warp_weights(configs, self.coords)
            ot = omega.transpose(0, 2, 1)  # (nw, natom, ne)
            dl = dl + ot @ grad + 0.5 * domega.sum(1)
            de = de + ot @ ge
        return dl, de

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def det_terms_numpy(ao, b0, cx, jg, ao_atom):
    """NumPy oracle of :func:`rung.qmc._kernels.cpu.forces.det_terms` (same outputs) from AOs up to third
    derivatives, PySCF's layout ao (20, nw, n, nao); b0, cx (nw, nao, n); jg (nw, n, 3); ao_atom (nao, natom)."""
    dchi = ao[1:4]  # (3, nw, n, nao)
    hj = np.stack([sum(jg[..., x, None] * ao[HESS[a][x]] for x in range(3)) for a in range(3)])
    gl = np.stack([ao[i] + ao[j] + ao[k] for i, j, k in GRAD_LAP])
    # per (electron j, AO mu): B0 (1/2 grad lap chi + grad J . Hess chi) + (C X) grad chi
    q = np.einsum("wmj,awjm->wjma", b0, 0.5 * gl + hj) + np.einsum("wmj,awjm->wjma", cx, dchi)
    p = -np.einsum("wmj,awjm->wma", b0, dchi)
    # moving electron j moves its row of every AO: minus the sum over all mu
    return np.einsum("wjma,mI->wIa", q, ao_atom), -q.sum(2), np.einsum("wma,mI->wIa", p, ao_atom)
