"""numba kernels of the analytic force derivatives (:mod:`rung.qmc.force_derivs`).

``det_terms`` does, for one spin and every walker, what the NumPy path of
:meth:`rung.qmc.force_derivs.AnalyticDerivatives.derivatives` does with PySCF's third-derivative AOs
and einsums (its oracle, :func:`rung.qmc.force_derivs.det_terms_numpy`): per electron j and cartesian AO
mu (centred on atom I)

    t_a = B0[mu, j] (1/2 d_a lap chi_mu + sum_x (d_x J)_j d_a d_x chi_mu) + CX[mu, j] d_a chi_mu
    de[I, a] += t_a,   ge[j, a] -= t_a,   dl[I, a] -= B0[mu, j] d_a chi_mu

without storing the 20 derivative components. A cartesian AO is chi = P(x) g(s), P = x^lx y^ly z^lz its
monomial, s = r^2 and g(s) = sum_p c_p exp(-a_p s) the contracted radial part, whose s-derivatives
g_k = sum_p (-a_p)^k c_p exp(-a_p s) are the only sums over primitives (their exponentials from one NumPy
call, screened as in :func:`rung.qmc._kernels.cpu.eval_cart`). With d_a s = 2 x_a and x . grad P = l P:

    d_a chi       = P_a g + 2 x_a P g_1
    d_a d_b chi   = P_ab g + 2 (x_b P_a + x_a P_b + delta_ab P) g_1 + 4 x_a x_b P g_2
    d_a lap chi   = (lap P)_a g + [2 x_a lap P + (4l + 6) P_a] g_1 + [(8l + 20) x_a P + 4 s P_a] g_2 + 8 s x_a P g_3

the monomial's derivatives being products of the one-dimensional d^k u^m / du^k (``_mono``).
"""

from __future__ import annotations

import numba
import numpy as np

from .aos import _primitive_arguments
from .ecp import _legendre01, _spline01


@numba.njit(cache=True, inline="always")
def _mono(u, m, out, row):
    """out[row, k] = d^k u^m / du^k at u for k = 0..3."""
    for k in range(4):
        out[row, k] = 0.0
    # u^(m-k) times the falling factorial m (m-1) ... (m-k+1), zero where k > m
    f = 1.0
    for k in range(min(m, 3) + 1):
        v = f
        for _ in range(m - k):
            v *= u
        out[row, k] = v
        f *= m - k


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
    ex = _primitive_arguments(np.ascontiguousarray(pos.reshape(-1, 3)), sh_center, sh_pstart, sh_minexp, exps, screen)
    np.negative(ex, out=ex)
    np.exp(ex, out=ex)  # exp(-a r^2) (NumPy's SIMD exp); screened primitives are skipped in the kernel
    return _det_terms(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, sh_atom, exps, coefs, ex, b0, cx, jg, natom,
                      screen)


@numba.njit(cache=True)
def _det_terms(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, sh_atom, exps, coefs, ex, b0, cx, jg, natom, screen):
    """:func:`det_terms` with the primitive exponentials ex (nw * n, nprim) = exp(-a_p |r - A|^2) given."""
    nw, n = pos.shape[0], pos.shape[1]
    nsh = sh_l.shape[0]
    de = np.zeros((nw, natom, 3))
    ge = np.zeros((nw, n, 3))
    dl = np.zeros((nw, natom, 3))
    lmax = 0
    for ish in range(nsh):
        lmax = max(lmax, sh_l[ish])
    mx = np.empty((lmax + 1, 4))  # d^k u^m / du^k for u = x, y, z, m = 0..l
    my = np.empty((lmax + 1, 4))
    mz = np.empty((lmax + 1, 4))
    for w in range(nw):
        for j in range(n):
            g0, g1, g2 = jg[w, j, 0], jg[w, j, 1], jg[w, j, 2]
            ip = w * n + j
            for ish in range(nsh):
                x = pos[w, j, 0] - sh_center[ish, 0]
                y = pos[w, j, 1] - sh_center[ish, 1]
                z = pos[w, j, 2] - sh_center[ish, 2]
                s = x * x + y * y + z * z
                if sh_minexp[ish] * s > screen:
                    continue
                r0 = 0.0  # g and its s-derivatives
                r1 = 0.0
                r2 = 0.0
                r3 = 0.0
                for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                    a = exps[p]
                    if a * s > screen:
                        continue
                    e = coefs[p] * ex[ip, p]
                    r0 += e
                    e *= -a
                    r1 += e
                    e *= -a
                    r2 += e
                    r3 -= a * e
                l = sh_l[ish]
                for m in range(l + 1):
                    _mono(x, m, mx, m)
                    _mono(y, m, my, m)
                    _mono(z, m, mz, m)
                kl = 4.0 * l + 6.0
                kp = 8.0 * l + 20.0
                at = sh_atom[ish]
                c = sh_col[ish]
                for lx in range(l, -1, -1):
                    for ly in range(l - lx, -1, -1):
                        lz = l - lx - ly
                        X0, X1, X2, X3 = mx[lx, 0], mx[lx, 1], mx[lx, 2], mx[lx, 3]
                        Y0, Y1, Y2, Y3 = my[ly, 0], my[ly, 1], my[ly, 2], my[ly, 3]
                        Z0, Z1, Z2, Z3 = mz[lz, 0], mz[lz, 1], mz[lz, 2], mz[lz, 3]
                        P = X0 * Y0 * Z0
                        Px, Py, Pz = X1 * Y0 * Z0, X0 * Y1 * Z0, X0 * Y0 * Z1
                        Pxx, Pxy, Pxz = X2 * Y0 * Z0, X1 * Y1 * Z0, X1 * Y0 * Z1
                        Pyy, Pyz, Pzz = X0 * Y2 * Z0, X0 * Y1 * Z1, X0 * Y0 * Z2
                        L = Pxx + Pyy + Pzz
                        Lx = X3 * Y0 * Z0 + X1 * Y2 * Z0 + X1 * Y0 * Z2
                        Ly = X2 * Y1 * Z0 + X0 * Y3 * Z0 + X0 * Y1 * Z2
                        Lz = X2 * Y0 * Z1 + X0 * Y2 * Z1 + X0 * Y0 * Z3
                        Pg1 = P * r1
                        q2 = 4.0 * P * r2
                        # gradient
                        dx = Px * r0 + 2.0 * x * Pg1
                        dy = Py * r0 + 2.0 * y * Pg1
                        dz = Pz * r0 + 2.0 * z * Pg1
                        # Hessian
                        hxx = Pxx * r0 + 2.0 * (2.0 * x * Px + P) * r1 + x * x * q2
                        hxy = Pxy * r0 + 2.0 * (y * Px + x * Py) * r1 + x * y * q2
                        hxz = Pxz * r0 + 2.0 * (z * Px + x * Pz) * r1 + x * z * q2
                        hyy = Pyy * r0 + 2.0 * (2.0 * y * Py + P) * r1 + y * y * q2
                        hyz = Pyz * r0 + 2.0 * (z * Py + y * Pz) * r1 + y * z * q2
                        hzz = Pzz * r0 + 2.0 * (2.0 * z * Pz + P) * r1 + z * z * q2
                        # gradient of the Laplacian
                        c3 = 8.0 * s * P * r3
                        lx_ = Lx * r0 + (2.0 * x * L + kl * Px) * r1 + (kp * x * P + 4.0 * s * Px) * r2 + x * c3
                        ly_ = Ly * r0 + (2.0 * y * L + kl * Py) * r1 + (kp * y * P + 4.0 * s * Py) * r2 + y * c3
                        lz_ = Lz * r0 + (2.0 * z * L + kl * Pz) * r1 + (kp * z * P + 4.0 * s * Pz) * r2 + z * c3
                        bb = b0[w, c, j]
                        xx = cx[w, c, j]
                        t0 = bb * (0.5 * lx_ + g0 * hxx + g1 * hxy + g2 * hxz) + xx * dx
                        t1 = bb * (0.5 * ly_ + g0 * hxy + g1 * hyy + g2 * hyz) + xx * dy
                        t2 = bb * (0.5 * lz_ + g0 * hxz + g1 * hyz + g2 * hzz) + xx * dz
                        de[w, at, 0] += t0
                        de[w, at, 1] += t1
                        de[w, at, 2] += t2
                        ge[w, j, 0] -= t0
                        ge[w, j, 1] -= t1
                        ge[w, j, 2] -= t2
                        dl[w, at, 0] -= bb * dx
                        dl[w, at, 1] -= bb * dy
                        dl[w, at, 2] -= bb * dz
                        c += 1
    return de, ge, dl


@numba.njit(cache=True, inline="always")
def _radial0123(poly, L, G, Lc, r):
    """f, f', f'', f''' at r > 0 of a Jastrow pair function: the cutoff polynomial sum_m poly[m] (r/L)^m (0 beyond
    L) plus the cusp term -G Lc (1 - r/Lc)^3 / 3 (0 beyond Lc)."""
    y = r / L
    v = 0.0
    d1 = 0.0
    d2 = 0.0
    d3 = 0.0
    if y < 1.0:
        for m in range(poly.shape[0] - 1, -1, -1):
            d3 = d3 * y + 3.0 * d2
            d2 = d2 * y + 2.0 * d1
            d1 = d1 * y + v
            v = v * y + poly[m]
        d1 /= L
        d2 /= L * L
        d3 /= L * L * L
    if r < Lc:
        t = 1.0 - r / Lc
        v -= G * Lc * t * t * t / 3.0
        d1 += G * t * t
        d2 -= 2.0 * G * t / Lc
        d3 += 2.0 * G / (Lc * Lc)
    return v, d1, d2, d3


@numba.njit(cache=True, inline="always")
def _channel01(t0, t1, t_pow, t_a, t_c, r):
    """v(r) and v'(r) of an ECP channel v(r) = sum_t c_t r^pow_t exp(-a_t r^2), terms t0 .. t1 - 1."""
    v = 0.0
    dv = 0.0
    for t in range(t0, t1):
        p = t_pow[t]
        ex = t_c[t] * np.exp(-t_a[t] * r * r)
        v += ex * r**p
        dv += ex * (p * r ** (p - 1) - 2.0 * t_a[t] * r ** (p + 1))
    return v, dv


@numba.njit(cache=True, inline="always")
def _pair_points(px, py, pz, cx, cy, cz, poly, L, G, Lc, f0, f1, d0, d1, d2, rv, yv):
    """A Jastrow pair function between the points (px, py, pz) (nq,) and the centre (cx, cy, cz): f0 = f(r),
    f1 = f'(r) / r, and the displacements d0, d1, d2 = p - centre (all (nq,), written); points innermost and
    branch-free (the loops vectorise). rv, yv (nq,) scratch. f as in :func:`_radial0123`."""
    nq = px.shape[0]
    inv_l = 1.0 / L
    inv_lc = 1.0 / Lc
    for k in range(nq):
        d0[k] = px[k] - cx
        d1[k] = py[k] - cy
        d2[k] = pz[k] - cz
        r = np.sqrt(d0[k] * d0[k] + d1[k] * d1[k] + d2[k] * d2[k])
        yv[k] = r * inv_l
        rv[k] = r
        f0[k] = 0.0
        f1[k] = 0.0
    for m in range(poly.shape[0] - 1, -1, -1):
        c = poly[m]
        for k in range(nq):
            f1[k] = f1[k] * yv[k] + f0[k]
            f0[k] = f0[k] * yv[k] + c
    g3 = G * Lc / 3.0
    for k in range(nq):
        inside = yv[k] < 1.0
        t = max(1.0 - rv[k] * inv_lc, 0.0)  # the cusp term, zero beyond Lc
        f0[k] = (f0[k] if inside else 0.0) - g3 * t * t * t
        f1[k] = ((f1[k] * inv_l if inside else 0.0) + G * t * t) / rv[k]


@numba.njit(cache=True)
def nonlocal_terms(rot, dirs, weights, start, n, atom_R, atom_rc, atom_mol, ch_atom, ch_l, ch_tstart, t_pow, t_a, t_c,
                   j0, cen_R, cen_shstart, cen_minexp, cen_atom,
                   sh_l, sh_col, sh_minexp, spl_tab, sh_tstart, sh_nint, sh_inv_h, screen, b0, configs, jg, coords, spin,
                   with_ge, use_j, ee_poly, ee_g, L_ee, L_eec, en_poly, en_g, L_en, L_enc, de, ge, vm_ao):
    """Nonlocal ECP terms of the analytic derivatives, one spin, all (walker, electron, ECP atom) triples
    in range, the projector and quadrature included (the NumPy path of :meth:`rung.qmc.force_derivs.AnalyticDerivatives._nonlocal` is the oracle).

    Laid out as the energy's kernel (:func:`rung.qmc._kernels.cpu.ecp_nonlocal`): per triple the quadrature
    points innermost; the Jastrow at the points pair by pair; the cartesian AOs (value and gradient) at the
    points centre by centre and contracted with B0 = C_cart A at once, their radial parts R(r) and R'(r)
    from the quintic-spline tables (:class:`rung.qmc.orbitals.RadialSplines`, within 1e-13 of the exact R;
    no exponentials), one radial value per triple for the shells on the ECP atom (every point lies at the
    electron's distance r), centres and shells whose smallest exponent times the squared distance to the
    triple's sphere exceeds ``screen`` skipped for all its points (where their tables end anyway).

    Parameters
    ----------
    rot : (nw, ne, 3, 3) quadrature rotation of each walker and electron; dirs : (nq, 3), weights : (nq,) the rule
    start, n : the electrons of this spin are start .. start + n - 1
    atom_R (na, 3) Bohr, atom_rc (na,) Bohr, atom_mol (na,) int64: the ECP atoms with nonlocal channels, their
        ranges and molecule atoms; ch_atom, ch_l, ch_tstart, t_pow, t_a, t_c: their channels
        (:class:`rung.qmc._kernels.cpu.ecp.Channels`), v_l(r) = sum_t c_t r^pow_t exp(-a_t r^2)
    j0 : (nw, ne) J_e at the electrons (the Jastrow ratio at a point is exp(J_e(r') - J_e(r_e)))
    cen_R (ncen, 3) Bohr, cen_shstart (ncen+1,) int64, cen_minexp (ncen,) Bohr^-2, cen_atom (ncen,) int64: the
        AO centres (a centre's shells consecutive), their smallest exponents and molecule atoms
    sh_l, sh_col, sh_minexp : the cartesian shell table (:class:`rung.qmc.orbitals.AtomicBasis`);
        spl_tab, sh_tstart, sh_nint, sh_inv_h : its radial spline tables; screen : float
    b0 : (nw, ncart, n) C_cart A
    configs : (nw, ne, 3) Bohr; jg : (nw, ne, 3) grad J; coords : (natom, 3) Bohr; spin : (ne,) int64
    with_ge : bool — whether grad E_L is wanted (the space warp); without it ``ge`` is not touched
    use_j, ee_poly (2, ndeg), ee_g (2,), L_ee, L_eec, en_poly (natom, ndeg), en_g (natom,), L_en, L_enc:
        the Jastrow pair functions (cutoff polynomials in r/L and cusp slopes, see :func:`_radial0123`)
    de : (nw, natom, 3), ge : (nw, ne, 3) — d E_L / dR and grad E_L, added to in place
    vm_ao : (nw, n, ncart) — sum over points of the projector times the Jastrow ratio times the AO values,
        added to in place (the caller turns it into V_NL phi with the orbital coefficients)
    """
    nw = configs.shape[0]
    nq = dirs.shape[0]
    na = atom_R.shape[0]
    qv = np.empty((nq, 3))
    cc, ccr, ccc = np.empty(nq), np.empty(nq), np.empty(nq)
    natom = coords.shape[0]
    ne = configs.shape[1]
    ncen = cen_R.shape[0]
    lmax = 0
    for ish in range(sh_l.shape[0]):
        lmax = max(lmax, sh_l[ish])
    px, py, pz = np.empty(nq), np.empty(nq), np.empty(nq)
    rjk = np.empty(nq)  # Jastrow ratio at the points
    ttv = np.empty(nq)  # the terms of V_NL psi / psi
    vt = np.empty(((lmax + 1) * (lmax + 2) // 2, nq))  # u chi_mu at the points, one shell
    u, rd, g0, g1, g2 = np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq)
    jp, gj0, gj1, gj2 = np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq)
    f0, f1, d0, d1, d2, rv, yv = (np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq),
                                  np.empty(nq), np.empty(nq))
    fa = np.zeros((natom, nq))  # f'(r)/r of the pair functions at each point: atoms, electrons
    fe = np.zeros((ne, nq))
    dx, dy, dz, fq, f1q = np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq), np.empty(nq)
    cs0, cs1, cs2 = np.empty(nq), np.empty(nq), np.empty(nq)
    xp = np.ones((lmax + 2, nq))  # x^(n-1) at row n, row 0 = 0 (x^-1 times a zero prefactor)
    yp = np.ones((lmax + 2, nq))
    zp = np.ones((lmax + 2, nq))
    for k in range(nq):
        xp[0, k] = 0.0
        yp[0, k] = 0.0
        zp[0, k] = 0.0
    for wi in range(nw):
        for ei in range(n):
            gi = start + ei
            for ia in range(na):
                A = atom_mol[ia]
                h0 = configs[wi, gi, 0] - atom_R[ia, 0]
                h1 = configs[wi, gi, 1] - atom_R[ia, 1]
                h2 = configs[wi, gi, 2] - atom_R[ia, 2]
                r = np.sqrt(h0 * h0 + h1 * h1 + h2 * h2)
                if not r < atom_rc[ia]:
                    continue
                h0, h1, h2 = h0 / r, h1 / r, h2 / r
                # rotated directions, points, projector w_q sum_l (2l+1) v_l(r) P_l(cos) and its r, cos derivatives
                for k in range(nq):
                    for x in range(3):
                        qv[k, x] = (rot[wi, gi, x, 0] * dirs[k, 0] + rot[wi, gi, x, 1] * dirs[k, 1]
                                    + rot[wi, gi, x, 2] * dirs[k, 2])
                    px[k] = atom_R[ia, 0] + r * qv[k, 0]
                    py[k] = atom_R[ia, 1] + r * qv[k, 1]
                    pz[k] = atom_R[ia, 2] + r * qv[k, 2]
                    cc[k] = 0.0
                    ccr[k] = 0.0
                    ccc[k] = 0.0
                for ch in range(ch_atom.shape[0]):
                    if ch_atom[ch] != ia:
                        continue
                    v, dv = _channel01(ch_tstart[ch], ch_tstart[ch + 1], t_pow, t_a, t_c, r)
                    l = ch_l[ch]
                    for k in range(nq):
                        pl, dpl = _legendre01(l, qv[k, 0] * h0 + qv[k, 1] * h1 + qv[k, 2] * h2)
                        cc[k] += (2 * l + 1) * v * pl
                        ccr[k] += (2 * l + 1) * dv * pl
                        ccc[k] += (2 * l + 1) * v * dpl
                for k in range(nq):
                    cc[k] *= weights[k]
                    ccr[k] *= weights[k]
                    ccc[k] *= weights[k]
                for k in range(nq):
                    jp[k] = 0.0
                    gj0[k] = 0.0
                    gj1[k] = 0.0
                    gj2[k] = 0.0
                # Jastrow J_e at the points, its gradient, and each pair's f'/r for the derivative terms below
                if use_j:
                    for j in range(ne):
                        if j == gi:
                            for k in range(nq):
                                fe[j, k] = 0.0
                            continue
                        s = 0 if spin[j] == spin[gi] else 1
                        _pair_points(px, py, pz, configs[wi, j, 0], configs[wi, j, 1], configs[wi, j, 2], ee_poly[s], L_ee,
                                     ee_g[s], L_eec, f0, f1, d0, d1, d2, rv, yv)
                        if with_ge:
                            for k in range(nq):
                                fe[j, k] = f1[k]
                        for k in range(nq):
                            jp[k] += f0[k]
                            gj0[k] += f1[k] * d0[k]
                            gj1[k] += f1[k] * d1[k]
                            gj2[k] += f1[k] * d2[k]
                    for I in range(natom):
                        _pair_points(px, py, pz, coords[I, 0], coords[I, 1], coords[I, 2], en_poly[I], L_en, en_g[I], L_enc,
                                     f0, f1, d0, d1, d2, rv, yv)
                        for k in range(nq):
                            jp[k] += f0[k]
                            fa[I, k] = f1[k]
                            gj0[k] += f1[k] * d0[k]
                            gj1[k] += f1[k] * d1[k]
                            gj2[k] += f1[k] * d2[k]
                    for k in range(nq):
                        rjk[k] = np.exp(jp[k] - j0[wi, gi])
                        u[k] = cc[k] * rjk[k]
                else:
                    for k in range(nq):
                        rjk[k] = 1.0
                        u[k] = cc[k]
                # determinant ratio sum_mu chi_mu(p) B0[mu, e] and its gradient, centre by centre; per atom the AOs
                # on it (u-weighted, summed over the points); V_NL chi_mu
                for k in range(nq):
                    rd[k] = 0.0
                    g0[k] = 0.0
                    g1[k] = 0.0
                    g2[k] = 0.0
                for ic in range(ncen):
                    on = cen_atom[ic] == A
                    if on:
                        dmin2 = r * r  # every point at distance r from this centre
                    else:
                        dmin = np.sqrt((cen_R[ic, 0] - coords[A, 0]) ** 2 + (cen_R[ic, 1] - coords[A, 1]) ** 2
                                       + (cen_R[ic, 2] - coords[A, 2]) ** 2) - r  # closest approach of the sphere
                        dmin2 = dmin * dmin if dmin > 0.0 else 0.0
                    if cen_minexp[ic] * dmin2 > screen:
                        continue
                    for k in range(nq):
                        dx[k] = px[k] - cen_R[ic, 0]
                        dy[k] = py[k] - cen_R[ic, 1]
                        dz[k] = pz[k] - cen_R[ic, 2]
                        rv[k] = r if on else np.sqrt(dx[k] * dx[k] + dy[k] * dy[k] + dz[k] * dz[k])
                        cs0[k] = 0.0
                        cs1[k] = 0.0
                        cs2[k] = 0.0
                    for m in range(1, lmax + 1):
                        for k in range(nq):
                            xp[m + 1, k] = xp[m, k] * dx[k]
                            yp[m + 1, k] = yp[m, k] * dy[k]
                            zp[m + 1, k] = zp[m, k] * dz[k]
                    for ish in range(cen_shstart[ic], cen_shstart[ic + 1]):
                        if sh_minexp[ish] * dmin2 > screen:
                            continue
                        t0, nt, ih = sh_tstart[ish], sh_nint[ish], sh_inv_h[ish]
                        if on:
                            fv, fd = _spline01(spl_tab, t0, nt, ih, r)
                            fd = fd / r if r > 0.0 else 0.0
                            for k in range(nq):
                                fq[k] = fv
                                f1q[k] = fd
                        else:
                            for k in range(nq):
                                fv, fd = _spline01(spl_tab, t0, nt, ih, rv[k])
                                fq[k] = fv
                                f1q[k] = fd / rv[k] if rv[k] > 0.0 else 0.0  # R'(r) / r (R'(0) = 0)
                        l = sh_l[ish]
                        col = sh_col[ish]
                        if l == 0:  # s, p and d shells written out (most shells), the same sums as the general loop
                            bm = b0[wi, col, ei]
                            for k in range(nq):
                                gP = f1q[k] * bm
                                rd[k] += fq[k] * bm
                                cs0[k] += dx[k] * gP
                                cs1[k] += dy[k] * gP
                                cs2[k] += dz[k] * gP
                                vt[0, k] = u[k] * fq[k]
                        elif l == 1:
                            bx, by, bz = b0[wi, col, ei], b0[wi, col + 1, ei], b0[wi, col + 2, ei]
                            for k in range(nq):
                                bs = dx[k] * bx + dy[k] * by + dz[k] * bz
                                gP = f1q[k] * bs
                                rd[k] += fq[k] * bs
                                cs0[k] += fq[k] * bx + dx[k] * gP
                                cs1[k] += fq[k] * by + dy[k] * gP
                                cs2[k] += fq[k] * bz + dz[k] * gP
                                uf = u[k] * fq[k]
                                vt[0, k] = uf * dx[k]
                                vt[1, k] = uf * dy[k]
                                vt[2, k] = uf * dz[k]
                        elif l == 2:  # xx, xy, xz, yy, yz, zz
                            bxx, bxy, bxz = b0[wi, col, ei], b0[wi, col + 1, ei], b0[wi, col + 2, ei]
                            byy, byz, bzz = b0[wi, col + 3, ei], b0[wi, col + 4, ei], b0[wi, col + 5, ei]
                            for k in range(nq):
                                x, y, z = dx[k], dy[k], dz[k]
                                bs = x * (x * bxx + y * bxy + z * bxz) + y * (y * byy + z * byz) + z * z * bzz
                                gP = f1q[k] * bs
                                rd[k] += fq[k] * bs
                                cs0[k] += fq[k] * (2.0 * x * bxx + y * bxy + z * bxz) + x * gP
                                cs1[k] += fq[k] * (x * bxy + 2.0 * y * byy + z * byz) + y * gP
                                cs2[k] += fq[k] * (x * bxz + y * byz + 2.0 * z * bzz) + z * gP
                                uf = u[k] * fq[k]
                                vt[0, k] = uf * x * x
                                vt[1, k] = uf * x * y
                                vt[2, k] = uf * x * z
                                vt[3, k] = uf * y * y
                                vt[4, k] = uf * y * z
                                vt[5, k] = uf * z * z
                        else:
                            c = 0
                            for lx in range(l, -1, -1):
                                for ly in range(l - lx, -1, -1):
                                    lz = l - lx - ly
                                    bm = b0[wi, col + c, ei]
                                    for k in range(nq):
                                        P = xp[lx + 1, k] * yp[ly + 1, k] * zp[lz + 1, k]
                                        v = P * fq[k]
                                        gP = P * f1q[k]
                                        rd[k] += v * bm
                                        cs0[k] += (lx * xp[lx, k] * yp[ly + 1, k] * zp[lz + 1, k] * fq[k] + dx[k] * gP) * bm
                                        cs1[k] += (ly * xp[lx + 1, k] * yp[ly, k] * zp[lz + 1, k] * fq[k] + dy[k] * gP) * bm
                                        cs2[k] += (lz * xp[lx + 1, k] * yp[ly + 1, k] * zp[lz, k] * fq[k] + dz[k] * gP) * bm
                                        vt[c, k] = u[k] * v
                                    c += 1
                        for c in range((l + 1) * (l + 2) // 2):  # V_NL chi_mu: u-weighted sums over the points
                            vsum = 0.0
                            for k in range(nq):
                                vsum += vt[c, k]
                            vm_ao[wi, ei, col + c] += vsum
                    I = cen_atom[ic]
                    a0 = 0.0
                    a1 = 0.0
                    a2 = 0.0
                    for k in range(nq):
                        g0[k] += cs0[k]
                        g1[k] += cs1[k]
                        g2[k] += cs2[k]
                        a0 += u[k] * cs0[k]
                        a1 += u[k] * cs1[k]
                        a2 += u[k] * cs2[k]
                    de[wi, I, 0] -= a0
                    de[wi, I, 1] -= a1
                    de[wi, I, 2] -= a2
                tsum = 0.0
                for k in range(nq):
                    tt = u[k] * rd[k]
                    ttv[k] = tt
                    tsum += tt
                    qx, qy, qz = qv[k, 0], qv[k, 1], qv[k, 2]
                    cos = qx * h0 + qy * h1 + qz * h2
                    a1 = ccr[k] * rjk[k] * rd[k]
                    a2 = ccc[k] * rjk[k] * rd[k] / r
                    dc0 = -a1 * h0 - a2 * (qx - cos * h0)
                    dc1 = -a1 * h1 - a2 * (qy - cos * h1)
                    dc2 = -a1 * h2 - a2 * (qz - cos * h2)
                    p0 = tt * gj0[k] + u[k] * g0[k]
                    p1 = tt * gj1[k] + u[k] * g1[k]
                    p2 = tt * gj2[k] + u[k] * g2[k]
                    qg = qx * p0 + qy * p1 + qz * p2
                    de[wi, A, 0] += dc0 + p0 - h0 * qg
                    de[wi, A, 1] += dc1 + p1 - h1 * qg
                    de[wi, A, 2] += dc2 + p2 - h2 * qg
                    if with_ge:
                        ge[wi, gi, 0] += -dc0 + qg * h0
                        ge[wi, gi, 1] += -dc1 + qg * h1
                        ge[wi, gi, 2] += -dc2 + qg * h2
                if use_j:
                    # the one-body Jastrow at the points (atoms I) and, for grad E_L, the two-body one (electrons j)
                    for I in range(natom):
                        a0 = 0.0
                        a1 = 0.0
                        a2 = 0.0
                        for k in range(nq):
                            f = ttv[k] * fa[I, k]
                            a0 += f * (px[k] - coords[I, 0])
                            a1 += f * (py[k] - coords[I, 1])
                            a2 += f * (pz[k] - coords[I, 2])
                        de[wi, I, 0] -= a0
                        de[wi, I, 1] -= a1
                        de[wi, I, 2] -= a2
                    if with_ge:
                        for j in range(ne):
                            if j == gi:
                                continue
                            a0 = 0.0
                            a1 = 0.0
                            a2 = 0.0
                            for k in range(nq):
                                f = ttv[k] * fe[j, k]
                                a0 += f * (px[k] - configs[wi, j, 0])
                                a1 += f * (py[k] - configs[wi, j, 1])
                                a2 += f * (pz[k] - configs[wi, j, 2])
                            ge[wi, j, 0] -= a0
                            ge[wi, j, 1] -= a1
                            ge[wi, j, 2] -= a2
                if with_ge:
                    ge[wi, gi, 0] -= tsum * jg[wi, gi, 0]
                    ge[wi, gi, 1] -= tsum * jg[wi, gi, 1]
                    ge[wi, gi, 2] -= tsum * jg[wi, gi, 2]
                if use_j:
                    x0, x1, x2 = configs[wi, gi, 0], configs[wi, gi, 1], configs[wi, gi, 2]
                    for I in range(natom):
                        e0, e1, e2 = x0 - coords[I, 0], x1 - coords[I, 1], x2 - coords[I, 2]
                        rp = np.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
                        f = tsum * _radial0123(en_poly[I], L_en, en_g[I], L_enc, rp)[1] / rp
                        de[wi, I, 0] += f * e0
                        de[wi, I, 1] += f * e1
                        de[wi, I, 2] += f * e2
                    if with_ge:
                        for j in range(ne):
                            if j == gi:
                                continue
                            e0, e1, e2 = x0 - configs[wi, j, 0], x1 - configs[wi, j, 1], x2 - configs[wi, j, 2]
                            rp = np.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
                            s = 0 if spin[j] == spin[gi] else 1
                            f = tsum * _radial0123(ee_poly[s], L_ee, ee_g[s], L_eec, rp)[1] / rp
                            ge[wi, j, 0] += f * e0
                            ge[wi, j, 1] += f * e1
                            ge[wi, j, 2] += f * e2


@numba.njit(cache=True)
def electron_terms(configs, gt, coords, charges, spin, with_ge, use_j, ee_poly, ee_g, L_ee, L_eec, en_poly, en_g, L_en, L_enc,
                   loc_atom, loc_tstart, t_pow, t_a, t_c, dl, de, ge):
    """The terms of the analytic derivatives that are not determinant or nonlocal-ECP terms, added in place:
    the one-body Jastrow in ln psi and in the kinetic energy, the two-body Jastrow's kinetic terms in
    grad E_L, -Z/r, 1/r_jk and the local ccECP part (the NumPy path of
    :meth:`rung.qmc.force_derivs.AnalyticDerivatives.derivatives` is the oracle; formulas there).

    Parameters
    ----------
    configs : (nw, ne, 3) Bohr; gt : (nw, ne, 3) Bohr^-1, grad ln psi; coords : (natom, 3) Bohr;
    charges : (natom,) effective charges; spin : (ne,) int64
    with_ge : bool — whether grad E_L is wanted (the space warp); without it the electron pairs are skipped
    use_j, ee_poly, ee_g, L_ee, L_eec, en_poly, en_g, L_en, L_enc : the Jastrow pair functions
        (:func:`nonlocal_terms`)
    loc_atom : (nloc,) int64 molecule atom of each ECP; loc_tstart (nloc+1,) int64, t_pow (int64), t_a (Bohr^-2),
        t_c (Hartree) (nterm,): local channels v(r) = sum_t c_t r^pow_t exp(-a_t r^2)
    dl, de : (nw, natom, 3); ge : (nw, ne, 3) — d ln psi / dR, d E_L / dR, grad E_L, added to
    """
    nw, ne = configs.shape[0], configs.shape[1]
    natom = coords.shape[0]
    for w in range(nw):
        for i in range(ne):
            g0, g1, g2 = gt[w, i, 0], gt[w, i, 1], gt[w, i, 2]
            for a in range(natom):
                d0 = configs[w, i, 0] - coords[a, 0]
                d1 = configs[w, i, 1] - coords[a, 1]
                d2 = configs[w, i, 2] - coords[a, 2]
                r = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
                h0, h1, h2 = d0 / r, d1 / r, d2 / r
                z = charges[a] / (r * r * r)  # -Z/r: d/dR_a = -Z d/r^3 = -grad_i
                t0, t1, t2 = -z * d0, -z * d1, -z * d2
                if use_j:
                    _, f1, f2, f3 = _radial0123(en_poly[a], L_en, en_g[a], L_enc, r)
                    dl[w, a, 0] -= f1 * h0
                    dl[w, a, 1] -= f1 * h1
                    dl[w, a, 2] -= f1 * h2
                    rg = h0 * g0 + h1 * g1 + h2 * g2
                    cr = (f2 - f1 / r) * rg + 0.5 * (f3 + 2.0 * f2 / r - 2.0 * f1 / (r * r))
                    cg = f1 / r
                    t0 += cr * h0 + cg * g0
                    t1 += cr * h1 + cg * g1
                    t2 += cr * h2 + cg * g2
                de[w, a, 0] += t0
                de[w, a, 1] += t1
                de[w, a, 2] += t2
                ge[w, i, 0] -= t0
                ge[w, i, 1] -= t1
                ge[w, i, 2] -= t2
            for k in range(loc_atom.shape[0]):
                a = loc_atom[k]
                d0 = configs[w, i, 0] - coords[a, 0]
                d1 = configs[w, i, 1] - coords[a, 1]
                d2 = configs[w, i, 2] - coords[a, 2]
                r = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
                dv = _channel01(loc_tstart[k], loc_tstart[k + 1], t_pow, t_a, t_c, r)[1] / r
                de[w, a, 0] -= dv * d0
                de[w, a, 1] -= dv * d1
                de[w, a, 2] -= dv * d2
                ge[w, i, 0] += dv * d0
                ge[w, i, 1] += dv * d1
                ge[w, i, 2] += dv * d2
            for j in range(ne if with_ge else 0):
                if j == i:
                    continue
                d0 = configs[w, i, 0] - configs[w, j, 0]
                d1 = configs[w, i, 1] - configs[w, j, 1]
                d2 = configs[w, i, 2] - configs[w, j, 2]
                r = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
                z = 1.0 / (r * r * r)
                t0, t1, t2 = z * d0, z * d1, z * d2  # 1 / r_ij
                if use_j:
                    s = 0 if spin[j] == spin[i] else 1
                    _, u1, u2, u3 = _radial0123(ee_poly[s], L_ee, ee_g[s], L_eec, r)
                    h0, h1, h2 = d0 / r, d1 / r, d2 / r
                    e0 = g0 - gt[w, j, 0]
                    e1 = g1 - gt[w, j, 1]
                    e2 = g2 - gt[w, j, 2]
                    cr = (u2 - u1 / r) * (h0 * e0 + h1 * e1 + h2 * e2) + u3 + 2.0 * u2 / r - 2.0 * u1 / (r * r)
                    cg = u1 / r
                    t0 += cr * h0 + cg * e0
                    t1 += cr * h1 + cg * e1
                    t2 += cr * h2 + cg * e2
                ge[w, i, 0] -= t0
                ge[w, i, 1] -= t1
                ge[w, i, 2] -= t2
