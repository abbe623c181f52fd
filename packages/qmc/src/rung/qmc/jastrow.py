"""Jastrow factor ``exp(J)``: one-body (electron-nucleus) and two-body (electron-electron) terms.

    J = sum_{i<j} u_{s_i s_j}(r_ij) + sum_{i,A} chi_{Z_A}(r_iA)
    u_s(r)   = c_s(r; L_ee_cusp) + sum_k a_{s,k} b_k(r / L_ee)          s = parallel (0) / antiparallel (1)
    chi_Z(r) = [-Z c(r; L_cusp) if the atom is all-electron] + sum_k d_{Z,k} b_k(r / L_en)

Basis with a cutoff, smooth to the second derivative at ``y = r/L = 1`` and flat at ``r = 0`` (so the
variational terms never change a cusp): ``b_k(y) = (1 - y)^3 (1 + 3y) y^{p_k}``, ``p = 0, 2, 3, 4, ...``.
Cusp function ``c(r; L) = -G L (1 - r/L)^3 / 3`` for ``r < L`` has ``c'(0) = G``; with ``G = 1/2``
(antiparallel) and ``1/4`` (parallel) it gives the exact electron-electron cusp (Kato), and with
``G = -Z`` the electron-nucleus cusp of all-electron atoms, which Gaussian orbitals lack.
Parameters are per spin pair (two-body) and per species (one-body).
Reference: N. D. Drummond, M. D. Towler, R. J. Needs, Phys. Rev. B 70, 235119 (2004) (cutoff forms).
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial import polynomial as P

from rung.qmc._kernels.reference import jastrow_basis

EE_CUSP = (0.25, 0.5)  # d u / d r at r = 0: parallel, antiparallel spins


def basis_coefficients(nbasis: int) -> np.ndarray:
    """(nbasis, 8) float64: polynomial coefficients in y of b_k(y) = (1-y)^3 (1+3y) y^p_k, lowest power first."""
    powers = [0] + list(range(2, nbasis + 1))
    base = P.polymul(P.polypow([1.0, -1.0], 3), [1.0, 3.0])
    out = np.zeros((nbasis, 4 + nbasis + 1))
    for k, p in enumerate(powers[:nbasis]):
        c = P.polymul(base, [0.0] * p + [1.0])
        out[k, : len(c)] = c
    return out


def no_jastrow_arguments(configs, e):
    """Placeholders of :meth:`Jastrow.kernel_arguments` for a wave function without a Jastrow factor
    (the numba kernels called with ``use_j`` False do not read them); configs (nw, ne, 3) float64."""
    from rung.qmc._kernels.cpu.jastrow import JastrowArguments

    return JastrowArguments(configs, int(e), np.zeros(1, dtype=np.bool_), np.zeros((2, 1)), np.zeros(2),
                            np.zeros((0, 1)), np.zeros(0), np.zeros((0, 3)), 1.0, 1.0, 1.0, 1.0)


class Jastrow:
    """One- and two-body Jastrow component (protocol in :mod:`rung.qmc.wavefunction`).

    Parameters
    ----------
    atom_coords : (natom, 3) float64, Bohr
    atom_species : (natom,) int, species index of each atom (into ``parameters['en']``)
    cusp_charges : (natom,) float64, nuclear charge for atoms that need an e-n cusp (all-electron), else 0
    nelec : (nup, ndown)
    nbasis : number of basis functions per term; rcut_ee, rcut_en (variational terms), rcut_ee_cusp,
        rcut_cusp (e-e and e-n cusp terms) : Bohr
    """

    def __init__(self, atom_coords, atom_species, cusp_charges, nelec, nbasis=4, rcut_ee=7.0, rcut_en=5.0,
                 rcut_cusp=0.5, rcut_ee_cusp=3.0, parameters=None, backend="numba"):
        self.atom_coords = np.asarray(atom_coords, dtype=np.float64)
        self.atom_species = np.asarray(atom_species, dtype=np.int64)
        self.cusp_charges = np.asarray(cusp_charges, dtype=np.float64)
        self.nelec = (int(nelec[0]), int(nelec[1]))
        self.ne = sum(self.nelec)
        self.bcoef = basis_coefficients(nbasis)
        self.rcut_ee, self.rcut_en, self.rcut_cusp = float(rcut_ee), float(rcut_en), float(rcut_cusp)
        self.rcut_ee_cusp = float(rcut_ee_cusp)
        nspecies = int(self.atom_species.max()) + 1 if self.atom_species.size else 0
        self.parameters = {"ee": np.zeros((2, nbasis)), "en": np.zeros((nspecies, nbasis))}
        if parameters is not None:
            for k, v in parameters.items():
                if np.shape(v) != self.parameters[k].shape:
                    raise ValueError(f"Jastrow parameter {k!r} has shape {np.shape(v)}, expected {self.parameters[k].shape}")
                self.parameters[k] = np.array(v, dtype=np.float64)
        self.spin = np.array([0] * self.nelec[0] + [1] * self.nelec[1])
        self._same = self.spin[:, None] == self.spin[None, :]  # (ne, ne) bool: parallel spins
        if backend not in ("numba", "numpy"):
            raise ValueError(f"backend must be 'numba' or 'numpy', got {backend!r}")
        self.backend = backend

    # ---------------------------------------------------------------- radial functions
    def _basis(self, r, L):
        """b_k(r/L) and r-derivatives: three arrays (nb, ...)."""
        v, d1, d2 = jastrow_basis(r / L, self.bcoef)
        return v, d1 / L, d2 / L**2

    @staticmethod
    def _cusp(r, G, L):
        """c(r) = -G L (1 - r/L)^3 / 3 and derivatives; G broadcast with r."""
        t = np.clip(1.0 - r / L, 0.0, None)
        return -G * L * t**3 / 3.0, G * t**2, -2.0 * G * t / L

    def _ee(self, r, same):
        """u, u', u'' for e-e distances r (...) with spin relation same (...) bool (True = parallel)."""
        b, b1, b2 = self._basis(r, self.rcut_ee)
        a = np.where(same[..., None], self.parameters["ee"][0], self.parameters["ee"][1])  # (..., nb)
        a = np.moveaxis(a, -1, 0)
        G = np.where(same, EE_CUSP[0], EE_CUSP[1])
        c, c1, c2 = self._cusp(r, G, self.rcut_ee_cusp)
        return (a * b).sum(0) + c, (a * b1).sum(0) + c1, (a * b2).sum(0) + c2

    def _en(self, r):
        """chi, chi', chi'' for e-n distances r (..., natom)."""
        b, b1, b2 = self._basis(r, self.rcut_en)
        d = self.parameters["en"][self.atom_species].T  # (nb, natom)
        d = d.reshape((d.shape[0],) + (1,) * (r.ndim - 1) + (d.shape[1],))
        c, c1, c2 = self._cusp(r, -self.cusp_charges, self.rcut_cusp)
        return (d * b).sum(0) + c, (d * b1).sum(0) + c1, (d * b2).sum(0) + c2

    # ---------------------------------------------------------------- one electron
    def _electron_terms(self, e, epos, deriv, mask=None):
        """J_e (the part of J that involves electron e) at epos (nw, P, 3), with gradient and Laplacian
        (for the walkers in ``mask`` only, if given)."""
        if self.backend == "numba":
            from rung.qmc._kernels.cpu import jastrow_electron

            configs, *args = self.kernel_arguments(e)
            if mask is not None:
                configs = configs[mask]
            return jastrow_electron(np.ascontiguousarray(epos), configs, *args, deriv)
        return self._electron_terms_numpy(e, epos, deriv, mask)

    def _electron_terms_numpy(self, e, epos, deriv, mask=None):
        configs = self.configs if mask is None else self.configs[mask]
        others = np.delete(configs, e, axis=1)  # (nw, ne-1, 3)
        same = np.delete(self.spin == self.spin[e], e)  # (ne-1,)
        dee = epos[:, :, None, :] - others[:, None, :, :]  # (nw, P, ne-1, 3)
        ree = np.linalg.norm(dee, axis=-1)
        u, u1, u2 = self._ee(ree, np.broadcast_to(same, ree.shape))
        den = epos[:, :, None, :] - self.atom_coords  # (nw, P, natom, 3)
        ren = np.linalg.norm(den, axis=-1)
        chi, chi1, chi2 = self._en(ren)
        val = u.sum(-1) + chi.sum(-1)  # (nw, P)
        if deriv == 0:
            return val, None, None
        # u'(r)/r; its r -> 0 limit is singular for a cusp: taken as 0 exactly at coalescence
        gee = np.where(ree > 0, u1 / np.where(ree > 0, ree, 1.0), 0.0)
        gen = np.where(ren > 0, chi1 / np.where(ren > 0, ren, 1.0), 0.0)
        grad = np.einsum("wpj,wpjx->wpx", gee, dee) + np.einsum("wpa,wpax->wpx", gen, den)
        lap = (u2 + 2.0 * gee).sum(-1) + (chi2 + 2.0 * gen).sum(-1)
        return val, grad, lap

    def kernel_arguments(self, e):
        """Arguments of the numba Jastrow kernels for electron e after ``epos`` (see
        :func:`rung.qmc._kernels.cpu.jastrow_electron`: configs, e, same, ee_poly, ee_cusp, en_poly,
        en_cusp, atoms, the four cutoffs); ``configs`` is this component's own array (kernels that
        accept moves update it in place). The polynomial tables are those of the parameters at the last
        ``recompute`` (built there once, not per electron and call). A
        :class:`rung.qmc._kernels.cpu.jastrow.JastrowArguments`; None for the NumPy backend."""
        if self.backend != "numba":
            return None
        from rung.qmc._kernels.cpu.jastrow import JastrowArguments

        return JastrowArguments(self.configs, int(e), self._same[e], *self._tables, self.atom_coords, self.rcut_ee,
                                self.rcut_en, self.rcut_ee_cusp, self.rcut_cusp)

    def parameter_terms(self, e, epos):
        """d J_e / d p for every parameter (order: ee.ravel(), en.ravel()) at epos (nw, P, 3), with their
        gradients and Laplacians with respect to electron e: (npar, nw, P), (npar, nw, P, 3), (npar, nw, P).
        J is linear in its parameters, so these are sums of basis functions."""
        others = np.delete(self.configs, e, axis=1)
        same = np.delete(self.spin == self.spin[e], e)
        dee = epos[:, :, None, :] - others[:, None, :, :]  # (nw, P, ne-1, 3)
        ree = np.linalg.norm(dee, axis=-1)
        den = epos[:, :, None, :] - self.atom_coords  # (nw, P, natom, 3)
        ren = np.linalg.norm(den, axis=-1)
        vals, grads, laps = [], [], []
        for r, d, L, groups in ((ree, dee, self.rcut_ee, (same, ~same)),
                                (ren, den, self.rcut_en, [self.atom_species == s for s in range(self.parameters["en"].shape[0])])):
            b, b1, b2 = self._basis(r, L)  # (nb, nw, P, n)
            g = np.where(r > 0, b1 / np.where(r > 0, r, 1.0), 0.0)
            for m in groups:
                vals.append(b[..., m].sum(-1))
                grads.append(np.einsum("kwpj,wpjx->kwpx", g[..., m], d[:, :, m]))
                laps.append((b2[..., m] + 2.0 * g[..., m]).sum(-1))
        return np.concatenate(vals), np.concatenate(grads), np.concatenate(laps)

    def recompute(self, configs):
        self.configs = np.array(configs, dtype=np.float64)
        nw = configs.shape[0]
        self._cache = {}  # e -> J_e at the current positions (nw, 1), valid until an electron moves
        # the kernels' pair-function tables: ee_poly (2, ndeg), ee_cusp (2,), en_poly (natom, ndeg), en_cusp (natom,)
        self._tables = (self.parameters["ee"] @ self.bcoef, np.array(EE_CUSP),
                        self.parameters["en"][self.atom_species] @ self.bcoef, -self.cusp_charges)
        if self.backend == "numba":
            from rung.qmc._kernels.cpu import jastrow_total

            self.logval = jastrow_total(self.configs, self.spin, *self._tables, self.atom_coords, self.rcut_ee,
                                        self.rcut_en, self.rcut_ee_cusp, self.rcut_cusp)
            return np.ones(nw), self.logval.copy()
        r = np.linalg.norm(self.configs[:, :, None] - self.configs[:, None], axis=-1)  # (nw, ne, ne)
        iu, ju = np.triu_indices(self.ne, 1)
        same = self.spin[iu] == self.spin[ju]
        val = self._ee(r[:, iu, ju], np.broadcast_to(same, (nw, iu.size)))[0].sum(-1)
        ren = np.linalg.norm(self.configs[:, :, None] - self.atom_coords, axis=-1)  # (nw, ne, natom)
        val = val + self._en(ren)[0].sum((-1, -2))
        self.logval = val
        return np.ones(nw), val.copy()

    def value(self):
        return np.ones(self.configs.shape[0]), self.logval.copy()

    def _current(self, e):
        """J_e at the current positions (nw, 1), cached until any electron moves."""
        if e not in self._cache:
            self._cache[e] = self._electron_terms(e, self.configs[:, e][:, None], 0)[0]
        return self._cache[e]

    def current(self, e, walkers=None):
        """J_e at the current positions, (nw,) float64, or (m,) at ``walkers`` (m,) int (evaluated there
        when not cached, without filling the cache)."""
        if walkers is None or e in self._cache:
            j = self._current(e)[:, 0]
            return j if walkers is None else j[walkers]
        return self._electron_terms(e, self.configs[walkers, e][:, None], 0, walkers)[0][:, 0]

    def _delta(self, e, epos, mask=None):
        single = epos.ndim == 2
        ep = epos[:, None] if single else epos
        new = self._electron_terms(e, ep, 0, mask)[0]
        old = self._current(e)
        d = new - (old if mask is None else old[mask])
        return d[:, 0] if single else d

    def testvalue(self, e, epos, mask=None):
        """exp(J' - J) for moving electron e to epos (nw, 3) or (nw, npts, 3) (masked walkers only)."""
        return np.exp(self._delta(e, epos, mask))

    def gradient_value(self, e, epos):
        new, grad, _ = self._electron_terms(e, epos[:, None], 1)
        if e not in self._cache and np.array_equal(epos, self.configs[:, e]):
            self._cache[e] = new
        delta = new[:, 0] - self._current(e)[:, 0]
        return grad[:, 0].T, np.exp(delta), delta

    def gradient_laplacian(self, e, epos):
        """(grad J (3, nw), lap exp(J) / exp(J) (nw,)) at epos."""
        _, grad, lap = self._electron_terms(e, epos[:, None], 2)
        g = grad[:, 0]
        return g.T, lap[:, 0] + np.einsum("wx,wx->w", g, g)

    def gradient_laplacian_all(self):
        """grad J (nwalkers, nelec, 3) and lap exp(J)/exp(J) (nwalkers, nelec) at the current positions."""
        nw, ne, _ = self.configs.shape
        grad, lap = np.zeros((nw, ne, 3)), np.zeros((nw, ne))
        for e in range(ne):
            val, g, l = self._electron_terms(e, self.configs[:, e][:, None], 2)
            if getattr(self, "_cache", None) is not None:  # J_e at the current positions, for the ECP ratios
                self._cache.setdefault(e, val)
            g = g[:, 0]
            grad[:, e], lap[:, e] = g, l[:, 0] + np.einsum("wx,wx->w", g, g)
        return grad, lap

    def accept(self, e, epos, mask, saved=None):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        # J' - J at the moved walkers: saved (gradient_value's, every walker) or evaluated there only
        self.logval[mask] += saved[mask] if saved is not None else self._delta(e, epos[mask], mask)
        self.configs[mask, e] = epos[mask]
        self._cache = {}

    def resample(self, idx):
        self.configs = self.configs[idx]
        self.logval = self.logval[idx]
        self._cache = {e: v[idx] for e, v in self._cache.items()}

    def pgradient(self):
        """d log psi / d parameter: {"ee": (nw, 2, nb), "en": (nw, nspecies, nb)}."""
        nw = self.configs.shape[0]
        r = np.linalg.norm(self.configs[:, :, None] - self.configs[:, None], axis=-1)
        iu, ju = np.triu_indices(self.ne, 1)
        same = self.spin[iu] == self.spin[ju]
        b = self._basis(r[:, iu, ju], self.rcut_ee)[0]  # (nb, nw, npair)
        ee = np.stack([b[:, :, same].sum(-1).T, b[:, :, ~same].sum(-1).T], axis=1)  # (nw, 2, nb)
        ren = np.linalg.norm(self.configs[:, :, None] - self.atom_coords, axis=-1)  # (nw, ne, natom)
        bn = self._basis(ren, self.rcut_en)[0].sum(2)  # (nb, nw, natom)
        nsp = self.parameters["en"].shape[0]
        en = np.zeros((nw, nsp, self.bcoef.shape[0]))
        for s in range(nsp):
            en[:, s] = bn[:, :, self.atom_species == s].sum(-1).T
        return {"ee": ee, "en": en}
