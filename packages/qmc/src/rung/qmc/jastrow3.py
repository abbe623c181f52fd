"""Three-body (electron-electron-nucleus) Jastrow term.

    J3 = sum_A sum_{i != j} sum_{k <= l, m} c_{Z_A, klm} b_k(r_iA / L) b_l(r_jA / L) b_m(r_ij / L)

over ordered electron pairs, with the cutoff basis of :mod:`rung.qmc.jastrow` (flat at r = 0, so no
cusp changes; zero beyond L). The terms that involve electron e are

    J3_e = sum_A sum_{j != e} sum_klm c_klm [b_k(r_eA) b_l(r_jA) + b_l(r_eA) b_k(r_jA)] b_m(r_ej)

and J3 = 1/2 sum_e J3_e. Gradients and Laplacians with respect to r_e follow from the product rule
(grad b(r) = b'(r) r_hat, lap b = b'' + 2 b'/r). Parameters per species: ``eeN`` (nspecies, nterms),
terms (k, l, m) with k <= l. NumPy implementation, batched over walkers and points.
Reference: N. D. Drummond, M. D. Towler, R. J. Needs, Phys. Rev. B 70, 235119 (2004), f-term.
"""

from __future__ import annotations

import numpy as np

from rung.qmc._kernels.reference import jastrow_basis
from rung.qmc.jastrow import Jastrow, basis_coefficients


class ThreeBodyJastrow:
    """Component of the protocol in :mod:`rung.qmc.wavefunction`.

    atom_coords (natom, 3) Bohr; atom_species (natom,) int; nelec (nup, ndown); nbasis per distance;
    rcut Bohr.
    """

    def __init__(self, atom_coords, atom_species, nelec, nbasis=3, rcut=5.0, parameters=None):
        self.atom_coords = np.asarray(atom_coords, dtype=np.float64)
        self.atom_species = np.asarray(atom_species, dtype=np.int64)
        self.ne = int(sum(nelec))
        self.bcoef = basis_coefficients(nbasis)
        self.rcut = float(rcut)
        self.terms = [(k, l, m) for k in range(nbasis) for l in range(k, nbasis) for m in range(nbasis)]
        nspecies = int(self.atom_species.max()) + 1
        self.parameters = {"eeN": np.zeros((nspecies, len(self.terms)))}
        if parameters is not None:
            self.parameters["eeN"][...] = parameters["eeN"]

    def _basis(self, r):
        v, d1, d2 = jastrow_basis(r / self.rcut, self.bcoef)
        return v, d1 / self.rcut, d2 / self.rcut**2

    def _pieces(self, e, epos, configs, deriv):
        """Per (k, l, m, atom) the value (and gradient, Laplacian) of the electron-e terms, summed over j:
        (nt, nw, P, natom), (nt, nw, P, natom, 3), (nt, nw, P, natom)."""
        others = np.delete(configs, e, axis=1)  # (nw, ne-1, 3)
        deA = epos[:, :, None, :] - self.atom_coords  # (nw, P, natom, 3)
        reA = np.linalg.norm(deA, axis=-1)
        rjA = np.linalg.norm(others[:, :, None, :] - self.atom_coords, axis=-1)  # (nw, ne-1, natom)
        dej = epos[:, :, None, :] - others[:, None, :, :]  # (nw, P, ne-1, 3)
        rej = np.linalg.norm(dej, axis=-1)
        Be, Be1, Be2 = self._basis(reA)  # (nb, nw, P, natom)
        Bj = self._basis(rjA)[0]  # (nb, nw, ne-1, natom)
        Bm, Bm1, Bm2 = self._basis(rej)  # (nb, nw, P, ne-1)
        k, l, m = (np.array(x) for x in zip(*self.terms))
        # contract the other electrons once for every (l, m): M[l,m,w,p,a] = sum_j Bj_l[w,j,a] Bm_m[w,p,j];
        # then S_klm = Be_k M_lm + Be_l M_km
        M = np.einsum("lwja,mwpj->lmwpa", Bj, Bm, optimize=True)
        val = Be[k] * M[l, m] + Be[l] * M[k, m]
        if deriv == 0:
            return val, None, None
        ueA = deA / np.where(reA > 0, reA, 1.0)[..., None]
        uej = dej / np.where(rej > 0, rej, 1.0)[..., None]
        gBe = Be1[..., None] * ueA  # (nb, nw, P, natom, 3)
        gBm = Bm1[..., None] * uej  # (nb, nw, P, ne-1, 3)
        lBe = Be2 + 2.0 * np.where(reA > 0, Be1 / np.where(reA > 0, reA, 1.0), 0.0)
        lBm = Bm2 + 2.0 * np.where(rej > 0, Bm1 / np.where(rej > 0, rej, 1.0), 0.0)
        G = np.einsum("lwja,mwpjx->lmwpax", Bj, gBm, optimize=True)  # sum_j Bj_l grad Bm_m
        L = np.einsum("lwja,mwpj->lmwpa", Bj, lBm, optimize=True)  # sum_j Bj_l lap Bm_m
        grad = (gBe[k] * M[l, m][..., None] + gBe[l] * M[k, m][..., None]
                + Be[k][..., None] * G[l, m] + Be[l][..., None] * G[k, m])
        lap = (lBe[k] * M[l, m] + lBe[l] * M[k, m]
               + 2.0 * np.einsum("twpax,twpax->twpa", gBe[k], G[l, m]) + 2.0 * np.einsum("twpax,twpax->twpa", gBe[l], G[k, m])
               + Be[k] * L[l, m] + Be[l] * L[k, m])
        return val, grad, lap

    def _coef(self):
        return self.parameters["eeN"][self.atom_species].T  # (nt, natom)

    def _electron_terms(self, e, epos, deriv, mask=None):
        configs = self.configs if mask is None else self.configs[mask]
        val, grad, lap = self._pieces(e, epos, configs, deriv)
        c = self._coef()
        v = np.einsum("ta,twpa->wp", c, val)
        if deriv == 0:
            return v, None, None
        return v, np.einsum("ta,twpax->wpx", c, grad), np.einsum("ta,twpa->wp", c, lap)

    def parameter_terms(self, e, epos):
        """d J3_e / d c (npar, nw, P) with gradients (npar, nw, P, 3) and Laplacians (npar, nw, P)."""
        val, grad, lap = self._pieces(e, epos, self.configs, 2)
        nsp = self.parameters["eeN"].shape[0]
        out = []
        for x in (val, grad, lap):
            per = [x[:, :, :, self.atom_species == s].sum(3) for s in range(nsp)]  # each (nt, nw, P[, 3])
            out.append(np.concatenate(per, axis=0))  # species-major, like parameters["eeN"].ravel()
        return tuple(out)

    def recompute(self, configs):
        self.configs = np.array(configs, dtype=np.float64)
        nw = configs.shape[0]
        val = np.zeros(nw)
        for e in range(self.ne):
            val += 0.5 * self._electron_terms(e, self.configs[:, e][:, None], 0)[0][:, 0]
        self.logval = val
        return np.ones(nw), val.copy()

    def value(self):
        return np.ones(self.configs.shape[0]), self.logval.copy()

    def _delta(self, e, epos, mask=None):
        single = epos.ndim == 2
        ep = epos[:, None] if single else epos
        cur = self.configs[:, e] if mask is None else self.configs[mask, e]
        d = self._electron_terms(e, ep, 0, mask)[0] - self._electron_terms(e, cur[:, None], 0, mask)[0]
        return d[:, 0] if single else d

    def testvalue(self, e, epos, mask=None):
        return np.exp(self._delta(e, epos, mask))

    def gradient_value(self, e, epos):
        new, grad, _ = self._electron_terms(e, epos[:, None], 1)
        old = self._electron_terms(e, self.configs[:, e][:, None], 0)[0]
        delta = new[:, 0] - old[:, 0]
        return grad[:, 0].T, np.exp(delta), delta

    # Both need only ``_electron_terms`` and ``configs``: shared with the one/two-body Jastrow.
    gradient_laplacian = Jastrow.gradient_laplacian
    gradient_laplacian_all = Jastrow.gradient_laplacian_all

    def accept(self, e, epos, mask, saved=None):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        d = saved if saved is not None else self._delta(e, epos)
        self.logval[mask] += d[mask]
        self.configs[mask, e] = epos[mask]

    def resample(self, idx):
        self.configs = self.configs[idx]
        self.logval = self.logval[idx]

    def pgradient(self):
        nw = self.configs.shape[0]
        tot = 0.0
        for e in range(self.ne):
            tot = tot + 0.5 * self.parameter_terms(e, self.configs[:, e][:, None])[0][:, :, 0]
        return {"eeN": tot.T.reshape(nw, *self.parameters["eeN"].shape)}
