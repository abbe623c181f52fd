"""Slater determinants (spin up and down) with Sherman-Morrison one-electron updates.

Component of the trial wave function ``psi = D_up D_down exp(J)`` (protocol in
:mod:`rung.qmc.wavefunction`). Electrons ``0..nup-1`` are spin up, the rest spin down. For spin ``s``
the Slater matrix is ``M[i, k] = phi_k(r_i)`` (electron row, orbital column) and the component keeps
``A = M^{-1}`` per walker. Moving electron ``i`` to ``r'`` replaces row ``i`` by ``v = phi(r')``:

    ratio = D'/D = v . A[:, i]
    A' = A - A[:, i] (v A - e_i)^T / ratio                 (Sherman-Morrison)
    grad_i D/D = sum_k grad phi_k(r_i) A[k, i],  lap_i D/D = sum_k lap phi_k(r_i) A[k, i]

The orbital values, gradients and Laplacians at the current positions are cached (they change only
when their electron moves), so the drift at the old position and the kinetic energy cost no orbital
evaluation.

Round-off from repeated updates is bounded by ``recompute`` (full LU), which the drivers call at the
start of every block. Reference: W. M. C. Foulkes et al., Rev. Mod. Phys. 73, 33 (2001), sec. VI.
"""

from __future__ import annotations

import numpy as np

from rung.qmc.orbitals import MolecularOrbitals


class SlaterDeterminant:
    """Up/down Slater determinant of occupied orbitals.

    Parameters
    ----------
    orbitals : (MolecularOrbitals, MolecularOrbitals) for spin up and down; their ``nmo`` must equal
        the number of electrons of that spin (pass only the occupied columns)
    nelec : (nup, ndown)
    """

    def __init__(self, orbitals: tuple[MolecularOrbitals, MolecularOrbitals], nelec: tuple[int, int]):
        self.orbitals = orbitals
        self.nelec = (int(nelec[0]), int(nelec[1]))
        for s in (0, 1):
            if orbitals[s].nmo != self.nelec[s]:
                raise ValueError(f"spin {s}: {orbitals[s].nmo} orbitals for {self.nelec[s]} electrons")
        self.parameters: dict = {}

    def _spin(self, e):
        return (0, e) if e < self.nelec[0] else (1, e - self.nelec[0])

    def recompute(self, configs):
        """Full recomputation; configs (nwalkers, nelec, 3) Bohr. Returns (sign, log|D|), each (nwalkers,)."""
        self.configs = np.array(configs, dtype=np.float64)
        nw = configs.shape[0]
        self.inverse, self.sign, self.logdet = [], np.ones(nw), np.zeros(nw)
        # orbital values, gradients and Laplacians at the current electron positions (they change only
        # when that electron moves): the drift at the old position and the kinetic energy reuse them
        self.mo = [np.zeros((5, nw, 0, 0)), np.zeros((5, nw, 0, 0))]
        start = 0
        for s in (0, 1):
            n = self.nelec[s]
            if n == 0:
                self.inverse.append(np.zeros((nw, 0, 0)))
                continue
            mo = self.orbitals[s](self.configs[:, start:start + n], 2)  # (5, nw, n, n): value, grad, lap
            self.mo[s] = mo
            m = mo[0]
            sign, logdet = np.linalg.slogdet(m)
            if np.any(sign == 0):
                raise FloatingPointError("a walker sits on a node of the determinant (singular Slater matrix)")
            self.sign *= sign
            self.logdet += logdet
            self.inverse.append(np.linalg.inv(m))
            start += n
        return self.sign.copy(), self.logdet.copy()

    def value(self):
        return self.sign.copy(), self.logdet.copy()

    def testvalue(self, e, epos, mask=None):
        """D'/D for moving electron e to epos (nwalkers, 3) or (nwalkers, npts, 3) -> (nwalkers[, npts]).

        With ``mask`` ((nwalkers,) bool, or walker indices, repeats allowed) epos holds only those walkers
        and so does the result."""
        s, i = self._spin(e)
        v = self.orbitals[s](epos, 0)[0]  # (nw, [npts,] norb)
        col = self.inverse[s][:, :, i] if mask is None else self.inverse[s][mask][:, :, i]  # (nw, norb)
        if v.ndim == 3:
            return np.einsum("wpk,wk->wp", v, col)
        return np.einsum("wk,wk->w", v, col)

    def ratio_vector(self, e):
        """(basis, b) with D'/D = sum_mu chi_mu(r') b[w, mu] for moving electron e to r', where chi are the
        cartesian AOs of ``basis`` and b = A[:, i]^T C_cart^T (nwalkers, ncart) float64 (plain LCAO
        orbitals only: cusp-corrected ones are not linear in the AOs)."""
        s, i = self._spin(e)
        orb = self.orbitals[s]
        return orb.basis, np.ascontiguousarray(self.inverse[s][:, :, i] @ orb.coef_cart.T)

    def _is_current(self, e, epos):
        return epos.shape == self.configs[:, e].shape and np.array_equal(epos, self.configs[:, e])

    def gradient_value(self, e, epos):
        """(grad D/D (3, nwalkers) at epos, ratio (nwalkers,), saved orbital data for accept)."""
        s, i = self._spin(e)
        if self._is_current(e, epos):
            v = self.mo[s][:, :, i]  # (5, nw, norb), cached
        else:
            v = self.orbitals[s](epos, 2)  # (5, nw, norb); the Laplacian is kept for the cache
        t = np.einsum("xwk,wk->xw", v[:4], self.inverse[s][:, :, i])
        return t[1:] / t[0], t[0], v

    def gradient_laplacian(self, e, epos):
        """(grad D/D (3, nwalkers), lap D/D (nwalkers,)) at epos for electron e."""
        s, i = self._spin(e)
        v = self.mo[s][:, :, i] if self._is_current(e, epos) else self.orbitals[s](epos, 2)  # (5, nw, norb)
        t = np.einsum("xwk,wk->xw", v, self.inverse[s][:, :, i])
        return t[1:4] / t[0], t[4] / t[0]

    def gradient_laplacian_all(self):
        """grad D/D (nwalkers, nelec, 3) and lap D/D (nwalkers, nelec) for every electron at its current
        position: one orbital evaluation per spin for all walkers x electrons."""
        nw = self.configs.shape[0]
        ne = sum(self.nelec)
        grad, lap = np.zeros((nw, ne, 3)), np.zeros((nw, ne))
        start = 0
        for s in (0, 1):
            n = self.nelec[s]
            if n == 0:
                continue
            t = np.einsum("xwik,wki->xwi", self.mo[s], self.inverse[s])  # row i with column i of A
            grad[:, start:start + n] = np.moveaxis(t[1:4] / t[0], 0, -1)
            lap[:, start:start + n] = t[4] / t[0]
            start += n
        return grad, lap

    def accept(self, e, epos, mask, saved=None):
        """Move electron e to epos (nwalkers, 3) where mask (nwalkers,) bool is set (Sherman-Morrison)."""
        s, i = self._spin(e)
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        # (5, m, norb) at the moved walkers: saved (gradient_value's, every walker) or evaluated there only
        v5 = saved[:, mask] if saved is not None else self.orbitals[s](epos[mask], 2)
        self.mo[s][:, mask, i] = v5
        a = self.inverse[s][mask]  # (m, norb, n)
        vm = v5[0]
        vA = np.einsum("wk,wkn->wn", vm, a)  # (m, n)
        ratio = vA[:, i].copy()
        vA[:, i] -= 1.0
        self.inverse[s][mask] = a - np.einsum("wk,wn->wkn", a[:, :, i], vA) / ratio[:, None, None]
        self.sign[mask] *= np.sign(ratio)
        self.logdet[mask] += np.log(np.abs(ratio))
        self.configs[mask, e] = epos[mask]

    def resample(self, idx):
        """Keep walkers idx (nwalkers,) int (copies allowed): branching / population control."""
        self.configs = self.configs[idx]
        self.inverse = [a[idx] for a in self.inverse]
        self.mo = [m[:, idx] for m in self.mo]
        self.sign, self.logdet = self.sign[idx], self.logdet[idx]

    def pgradient(self):
        return {}
