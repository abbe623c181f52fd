"""numba kernel of the analytic force derivatives: the determinant's (electron, AO) contraction.

``det_terms`` does, for one spin and every walker, what the NumPy path of
:meth:`rung.qmc.force_derivs.AnalyticDerivatives.derivatives` does with PySCF's third-derivative AOs
and einsums (its oracle, :func:`rung.qmc.force_derivs.det_terms_numpy`): per electron j and cartesian AO
mu (centred on atom I)

    t_a = B0[mu, j] (1/2 d_a lap chi_mu + sum_x (d_x J)_j d_a d_x chi_mu) + CX[mu, j] d_a chi_mu
    de[I, a] += t_a,   ge[j, a] -= t_a,   dl[I, a] -= B0[mu, j] d_a chi_mu

without storing the 20 derivative components. Each primitive x^lx y^ly z^lz exp(-a r^2) is a product
of three one-dimensional factors u^m exp(-a u^2), whose n-th derivatives are P_n(u) exp(-a u^2) with

    P_0 = u^m,  P_1 = m u^(m-1) - 2a u^(m+1),  P_2 = m(m-1) u^(m-2) - 2a(2m+1) u^m + 4a^2 u^(m+2),
    P_3 = m(m-1)(m-2) u^(m-3) - 6a m^2 u^(m-1) + 12a^2 (m+1) u^(m+1) - 8a^3 u^(m+3),

so the gradient, Hessian and gradient of the Laplacian are sums of products of these factors times
c_p exp(-a r^2) (primitives screened as in :func:`rung.qmc._kernels.cpu.eval_cart`).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _pw(u, n):
    """u^n for n >= 0, 0 for n < 0 (the terms with a negative power have a zero prefactor)."""
    if n < 0:
        return 0.0
    v = 1.0
    for _ in range(n):
        v *= u
    return v


@numba.njit(cache=True, inline="always")
def _factors(u, a, m, out, k):
    """out[k, 0..3] = P_0..P_3 of u^m exp(-a u^2) at u (see the module docstring)."""
    out[k, 0] = _pw(u, m)
    out[k, 1] = m * _pw(u, m - 1) - 2.0 * a * _pw(u, m + 1)
    out[k, 2] = m * (m - 1) * _pw(u, m - 2) - 2.0 * a * (2 * m + 1) * _pw(u, m) + 4.0 * a * a * _pw(u, m + 2)
    out[k, 3] = (m * (m - 1) * (m - 2) * _pw(u, m - 3) - 6.0 * a * m * m * _pw(u, m - 1)
                 + 12.0 * a * a * (m + 1) * _pw(u, m + 1) - 8.0 * a * a * a * _pw(u, m + 3))


@numba.njit(cache=True)
def det_terms(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, sh_atom, exps, coefs, b0, cx, jg, natom, screen):
    """Determinant parts of d E_L / dR, grad E_L and d ln|D| / dR for one spin.

    Parameters
    ----------
    pos : (nw, n, 3) float64, Bohr — the electrons of this spin
    sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs : the cartesian shell table
        (:class:`rung.qmc.orbitals.AtomicBasis`); sh_atom : (nsh,) int64 atom of each shell
    b0, cx : (nw, ncart, n) float64 — C_cart A and C_cart A Op A (cartesian AO rows)
    jg : (nw, n, 3) float64, Bohr^-1 — grad J at the electrons
    natom : int; screen : float (primitives with a r^2 > screen are skipped)

    Returns
    -------
    de : (nw, natom, 3) Hartree/Bohr; ge : (nw, n, 3) Hartree/Bohr; dl : (nw, natom, 3) Bohr^-1
    """
    nw, n = pos.shape[0], pos.shape[1]
    nsh = sh_l.shape[0]
    de = np.zeros((nw, natom, 3))
    ge = np.zeros((nw, n, 3))
    dl = np.zeros((nw, natom, 3))
    lmax = 0
    for ish in range(nsh):
        lmax = max(lmax, sh_l[ish])
    fx = np.empty((lmax + 1, 4))
    fy = np.empty((lmax + 1, 4))
    fz = np.empty((lmax + 1, 4))
    ncomp = (lmax + 1) * (lmax + 2) // 2
    d = np.empty((ncomp, 12))  # per cartesian component: gradient (3), Hessian xx xy xz yy yz zz, grad lap (3)
    for w in range(nw):
        for j in range(n):
            g0, g1, g2 = jg[w, j, 0], jg[w, j, 1], jg[w, j, 2]
            for ish in range(nsh):
                x = pos[w, j, 0] - sh_center[ish, 0]
                y = pos[w, j, 1] - sh_center[ish, 1]
                z = pos[w, j, 2] - sh_center[ish, 2]
                s = x * x + y * y + z * z
                if sh_minexp[ish] * s > screen:
                    continue
                l = sh_l[ish]
                nc = (l + 1) * (l + 2) // 2
                for c in range(nc):
                    for k in range(12):
                        d[c, k] = 0.0
                for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                    a = exps[p]
                    if a * s > screen:
                        continue
                    e = coefs[p] * np.exp(-a * s)
                    for m in range(l + 1):
                        _factors(x, a, m, fx, m)
                        _factors(y, a, m, fy, m)
                        _factors(z, a, m, fz, m)
                    c = 0
                    for lx in range(l, -1, -1):
                        for ly in range(l - lx, -1, -1):
                            lz = l - lx - ly
                            X0, X1, X2, X3 = fx[lx, 0], fx[lx, 1], fx[lx, 2], fx[lx, 3]
                            Y0, Y1, Y2, Y3 = fy[ly, 0], fy[ly, 1], fy[ly, 2], fy[ly, 3]
                            Z0, Z1, Z2, Z3 = fz[lz, 0], fz[lz, 1], fz[lz, 2], fz[lz, 3]
                            d[c, 0] += e * X1 * Y0 * Z0
                            d[c, 1] += e * X0 * Y1 * Z0
                            d[c, 2] += e * X0 * Y0 * Z1
                            d[c, 3] += e * X2 * Y0 * Z0
                            d[c, 4] += e * X1 * Y1 * Z0
                            d[c, 5] += e * X1 * Y0 * Z1
                            d[c, 6] += e * X0 * Y2 * Z0
                            d[c, 7] += e * X0 * Y1 * Z1
                            d[c, 8] += e * X0 * Y0 * Z2
                            d[c, 9] += e * (X3 * Y0 * Z0 + X1 * Y2 * Z0 + X1 * Y0 * Z2)
                            d[c, 10] += e * (X2 * Y1 * Z0 + X0 * Y3 * Z0 + X0 * Y1 * Z2)
                            d[c, 11] += e * (X2 * Y0 * Z1 + X0 * Y2 * Z1 + X0 * Y0 * Z3)
                            c += 1
                at = sh_atom[ish]
                col = sh_col[ish]
                for c in range(nc):
                    bb = b0[w, col + c, j]
                    xx = cx[w, col + c, j]
                    t0 = bb * (0.5 * d[c, 9] + g0 * d[c, 3] + g1 * d[c, 4] + g2 * d[c, 5]) + xx * d[c, 0]
                    t1 = bb * (0.5 * d[c, 10] + g0 * d[c, 4] + g1 * d[c, 6] + g2 * d[c, 7]) + xx * d[c, 1]
                    t2 = bb * (0.5 * d[c, 11] + g0 * d[c, 5] + g1 * d[c, 7] + g2 * d[c, 8]) + xx * d[c, 2]
                    de[w, at, 0] += t0
                    de[w, at, 1] += t1
                    de[w, at, 2] += t2
                    ge[w, j, 0] -= t0
                    ge[w, j, 1] -= t1
                    ge[w, j, 2] -= t2
                    dl[w, at, 0] -= bb * d[c, 0]
                    dl[w, at, 1] -= bb * d[c, 1]
                    dl[w, at, 2] -= bb * d[c, 2]
    return de, ge, dl
