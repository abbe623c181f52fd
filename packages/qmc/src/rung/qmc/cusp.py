"""Electron-nucleus cusp correction of Gaussian orbitals (all-electron atoms).

Gaussian orbitals have zero slope at a nucleus, so the local energy diverges as -Z/r there. Following
Ma, Towler, Drummond and Needs (J. Chem. Phys. 122, 224322 (2005)), inside a sphere of radius r_c
around each all-electron nucleus A the s-part phi of each orbital psi = phi + eta (phi: the
contribution of A's s shells) is replaced by

    phit(r) = sgn exp(p(r)),  p(r) = a0 + a1 r + a2 r^2 + a3 r^3 + a4 r^4,  sgn = sign phi(0)

with a0 = ln|phit(0)|, a1 = -Z (phit(0) + eta(0)) / phit(0) (Kato's cusp of the whole orbital,
psi'(0)/psi(0) = -Z), and a2..a4 from matching phi, phi', phi'' at r_c, so the corrected orbital is
continuous with continuous first and second derivatives. The value at the nucleus phit(0) is chosen,
as in Ma et al., to make the orbital's local energy inside r_c as flat as possible (the Gaussian's
own phi(0) is off, and keeping it gives a deep local-energy well at the nucleus). Orbitals with no s
weight on A (|phi(0)| tiny) or whose s part changes sign inside r_c are left alone. The value,
gradient and Laplacian of phi come from the same AO evaluation as the orbital, so the correction is
exact to round-off; phit and its radial derivatives are analytic.
"""

from __future__ import annotations

import numpy as np


def _coefficients(Z, rc, phit0, eta0, f, A):
    """(5,) a0..a4 of p(r) for the corrected s part of value phit0 at the nucleus: a1 from Kato's
    cusp of the whole orbital (phit0 + eta0), a2..a4 from matching f = (phi, phi', phi'')(rc)."""
    a0 = np.log(abs(phit0))
    a1 = -Z * (phit0 + eta0) / phit0
    P1 = f[1] / f[0]
    rhs = [np.log(abs(f[0])) - a0 - a1 * rc, P1 - a1, f[2] / f[0] - P1**2]
    return np.array([a0, a1, *np.linalg.solve(A, rhs)])


def local_energy_curve(alpha, sgn, eta0, Z, r):
    """Effective one-electron local energy -1/2 lap(phit) / (phit + eta0) - Z / r of the corrected
    orbital at radii r (n,) > 0 (eta, the rest of the orbital, taken as its value at the nucleus)."""
    a = alpha
    p = a[0] + r * (a[1] + r * (a[2] + r * (a[3] + r * a[4])))
    p1 = a[1] + r * (2 * a[2] + r * (3 * a[3] + r * 4 * a[4]))
    p2 = 2 * a[2] + r * (6 * a[3] + r * 12 * a[4])
    t = sgn * np.exp(p)
    return -0.5 * t * (p2 + p1 * p1 + 2.0 * p1 / r) / (t + eta0) - Z / r


def _best_coefficients(Z, rc, phi0, eta0, f, A):
    """Coefficients whose value at the nucleus, phit(0), makes the local energy inside r_c flattest:
    phit(0) = s phi(0) with s on a grid over [1/2, 2] minimising max_r |E_loc(r) - E_loc(r_c)|
    (Ma et al.'s choice of phit(0), with the constant E_loc(r_c) as the ideal curve). Keeping
    phit(0) = phi(0) instead leaves the Gaussian's error at the nucleus to the polynomial, whose
    local energy then dips by Z^2-sized amounts (He/cc-pVTZ: -16.9 Ha at the nucleus, -3.7 Ha at r_c)."""
    r = np.linspace(rc / 50, rc, 50)
    best, best_dev = None, np.inf
    for s in np.exp(np.linspace(np.log(0.5), np.log(2.0), 141)):
        if abs(s * phi0 + eta0) < 1e-3 * abs(phi0):
            continue
        alpha = _coefficients(Z, rc, s * phi0, eta0, f, A)
        e = local_energy_curve(alpha, np.sign(phi0), eta0, Z, r)
        dev = np.max(np.abs(e - e[-1]))
        if np.isfinite(dev) and dev < best_dev:
            best, best_dev = alpha, dev
    return best


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
            ok = (np.abs(phi0) > 1e-8 * max(1.0, np.abs(psi0).max(initial=0.0))) & np.all(vals * np.sign(phi0) > 0, axis=0)
            alpha = np.zeros((5, C.shape[1]))
            f = radial(rc)
            A = np.array([[rc**2, rc**3, rc**4], [2 * rc, 3 * rc**2, 4 * rc**3], [2.0, 6 * rc, 12 * rc**2]])
            for k in np.nonzero(ok)[0]:
                alpha[:, k] = _best_coefficients(Z, rc, phi0[k], psi0[k] - phi0[k], f[:, k], A)
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
