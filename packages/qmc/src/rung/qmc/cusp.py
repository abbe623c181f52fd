"""Electron-nucleus cusp correction of Gaussian orbitals (all-electron atoms).

Gaussian orbitals have zero slope at a nucleus, so the local energy diverges as -Z/r there. Following
Ma, Towler, Drummond and Needs (J. Chem. Phys. 122, 224322 (2005)), inside a sphere of radius r_c
around each all-electron nucleus A the s-part phi of each orbital psi = phi + eta (phi: the
contribution of A's s shells) is replaced by

    phit(r) = sgn exp(p(r)),  p(r) = a0 + a1 r + a2 r^2 + a3 r^3 + a4 r^4,  sgn = sign phi(0)

with a0 = ln|phi(0)| (same value at the nucleus), a1 = -Z (phi(0) + eta(0)) / phi(0) (Kato's cusp of
the whole orbital, psi'(0)/psi(0) = -Z), and a2..a4 from matching phi, phi', phi'' at r_c, so the
corrected orbital is continuous with continuous first and second derivatives. Orbitals with no s
weight on A (|phi(0)| tiny) or whose s part changes sign inside r_c are left alone. The value,
gradient and Laplacian of phi come from the same AO evaluation as the orbital, so the correction is
exact to round-off; phit and its radial derivatives are analytic.
"""

from __future__ import annotations

import numpy as np


class CuspCorrection:
    """Per all-electron atom: s columns, radial tables, and per-orbital polynomial coefficients.

    Parameters
    ----------
    basis : AtomicBasis; coef_cart : (ncart, nmo) float64 orbital coefficients over cartesian AOs;
    atoms : list of (atom index, Z); rc_factor : r_c = rc_factor / Z, Bohr
    """

    def __init__(self, basis, coef_cart, atoms, rc_factor: float = 0.5, evaluate=None):
        self.items = []
        for ia, Z in atoms:
            Z = float(Z)
            cols, shells = [], []
            for sp in basis.species:
                if ia in sp["atoms"]:
                    j = sp["atoms"].index(ia)
                    center, off = sp["centers"][j], sp["offsets"][j]
                    for l, exps, coefs, loc in sp["shells"]:
                        if l == 0:
                            cols.append(off + loc)
                            shells.append((exps, coefs))
            if not cols:
                continue
            rc = rc_factor / Z
            C = coef_cart[cols]  # (ns, nmo)

            def radial(r, C=C, shells=shells):
                v = np.zeros((3, C.shape[1]))
                for (exps, coefs), c in zip(shells, C):
                    e = coefs * np.exp(-exps * r * r)
                    v[0] += c * e.sum()
                    v[1] += c * (-2.0 * exps * r * e).sum()
                    v[2] += c * ((4.0 * exps**2 * r * r - 2.0 * exps) * e).sum()
                return v

            phi0 = radial(0.0)[0]
            psi0 = evaluate(center[None])[0, 0]  # (nmo,) orbitals at the nucleus
            grid = np.linspace(0.0, rc, 50)
            vals = np.array([radial(r)[0] for r in grid])  # (50, nmo)
            ok = (np.abs(phi0) > 1e-8 * max(1.0, np.abs(psi0).max())) & np.all(vals * np.sign(phi0) > 0, axis=0)
            alpha = np.zeros((5, C.shape[1]))
            f = radial(rc)
            A = np.array([[rc**2, rc**3, rc**4], [2 * rc, 3 * rc**2, 4 * rc**3], [2.0, 6 * rc, 12 * rc**2]])
            for k in np.nonzero(ok)[0]:
                a0 = np.log(abs(phi0[k]))
                a1 = -Z * psi0[k] / phi0[k]
                P0 = np.log(abs(f[0, k]))
                P1 = f[1, k] / f[0, k]
                P2 = f[2, k] / f[0, k] - P1**2
                a234 = np.linalg.solve(A, [P0 - a0 - a1 * rc, P1 - a1, P2])
                alpha[:, k] = [a0, a1, *a234]
            self.items.append((center.copy(), rc, np.array(cols), np.sign(phi0) * ok, alpha, C))

    def apply(self, pos, cart, out):
        """Correct orbitals out (nout, npos, nmo) at pos (npos, 3), given the cartesian AOs cart
        (nout, npos, ncart) they were made from. In place; returns out."""
        nout = out.shape[0]
        for center, rc, cols, sgn, alpha, C in self.items:
            d = pos - center
            r = np.linalg.norm(d, axis=-1)
            inside = np.nonzero(r < rc)[0]
            if inside.size == 0:
                continue
            ri = r[inside][:, None]  # (m, 1)
            p = alpha[0] + ri * (alpha[1] + ri * (alpha[2] + ri * (alpha[3] + ri * alpha[4])))
            p1 = alpha[1] + ri * (2 * alpha[2] + ri * (3 * alpha[3] + ri * 4 * alpha[4]))
            p2 = 2 * alpha[2] + ri * (6 * alpha[3] + ri * 12 * alpha[4])
            use = sgn != 0  # (nmo,)
            t = np.where(use, sgn * np.exp(np.where(use, p, 0.0)), 0.0)  # (m, nmo)
            phi = cart[:, inside][:, :, cols] @ C  # (nout, m, nmo): s part from the AOs
            out[0, inside] += np.where(use, t - phi[0], 0.0)
            if nout >= 4:
                rhat = d[inside] / np.where(ri > 0, ri, 1.0)
                t1 = t * p1
                for x in range(3):
                    out[1 + x, inside] += np.where(use, t1 * rhat[:, x:x + 1] - phi[1 + x], 0.0)
            if nout >= 5:
                t2 = t * (p2 + p1 * p1)
                lap = t2 + 2.0 * np.where(ri > 0, t1 / np.where(ri > 0, ri, 1.0), 0.0)
                out[4, inside] += np.where(use, lap - phi[4], 0.0)
        return out
