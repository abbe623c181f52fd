"""Nonlocal ECP, one electron (numba, CPU); the generic ``testvalue`` path of
:meth:`rung.qmc.ecp.ECP.nonlocal_electron` is the oracle.

One numba pass per electron (``ecp_nonlocal``): for every walker the randomly rotated quadrature
points around every ECP atom, and for the (walker, atom) pairs in range the projector weights and the
ratios psi(r')/psi(r) at the points. Determinant ratio D'/D = sum_mu chi_mu(r') b_mu with b = C A[:, i]
(cartesian AO coefficients times the inverse Slater column: the AO-to-orbital product is done once per
walker, not once per point), the AOs taken centre by centre: one displacement per point and centre,
the contracted radial part of each shell from its quintic-spline table (:class:`rung.qmc.orbitals.
RadialSplines`, no exponentials), shells centred on the ECP atom itself with one radial value per pair
(every point lies at the electron's distance r), and centres / shells whose smallest exponent times
the squared distance to the sphere exceeds the screen skipped for the whole pair. Jastrow ratio
exp(J_e(r') - J_e(r)) with the points innermost.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .jastrow import _jastrow_points


@numba.njit(cache=True, inline="always")
def _legendre(l, x):
    """Legendre polynomial P_l(x) by the three-term recurrence."""
    if l == 0:
        return 1.0
    p0 = 1.0
    p1 = x
    for n in range(1, l):
        p0, p1 = p1, ((2 * n + 1) * x * p1 - n * p0) / (n + 1)
    return p1


@numba.njit(cache=True, inline="always")
def _spline(tab, start, nint, inv_h, r):
    """The quintic-spline table rows start .. start + nint - 1 (step 1/inv_h, Bohr) at r; 0 beyond the table
    (row start + nint is zero: a select, not a branch, so that loops over points vectorise)."""
    u = min(r * inv_h, nint)
    i = int(u)
    t = u - i
    k = start + i
    return ((((tab[k, 5] * t + tab[k, 4]) * t + tab[k, 3]) * t + tab[k, 2]) * t + tab[k, 1]) * t + tab[k, 0]


@numba.njit(cache=True, inline="always")
def _spline01(tab, start, nint, inv_h, r):
    """R(r) and R'(r) from the quintic-spline table rows start .. start + nint - 1 (step 1/inv_h, Bohr); 0 beyond
    the table (row start + nint is zero, as in :func:`_spline`)."""
    u = min(r * inv_h, nint)
    i = int(u)
    t = u - i
    k = start + i
    v = ((((tab[k, 5] * t + tab[k, 4]) * t + tab[k, 3]) * t + tab[k, 2]) * t + tab[k, 1]) * t + tab[k, 0]
    d = (((5.0 * tab[k, 5] * t + 4.0 * tab[k, 4]) * t + 3.0 * tab[k, 3]) * t + 2.0 * tab[k, 2]) * t + tab[k, 1]
    return v, d * inv_h


@numba.njit(cache=True, inline="always")
def _legendre01(l, x):
    """P_l(x) and P_l'(x) by (n+1) P_{n+1} = (2n+1) x P_n - n P_{n-1}, P'_{n+1} = P'_{n-1} + (2n+1) P_n."""
    if l == 0:
        return 1.0, 0.0
    p0, p1, d0, d1 = 1.0, x, 0.0, 1.0
    for m in range(1, l):
        p0, p1, d0, d1 = p1, ((2 * m + 1) * x * p1 - m * p0) / (m + 1), d1, d0 + (2 * m + 1) * p1
    return p1, d1


@numba.njit(cache=True)
def _shell_dot_high(l, dx, dy, dz, fq, b, w, col, det):
    """det[q] += fq[q] sum_c P_c(d_q) b[w, col + c] for every point q: the cartesian components of a shell of
    angular momentum l >= 3 (PySCF order) at the displacements d_q = (dx, dy, dz)[q] from its centre, Bohr
    (l = 0, 1, 2 are written out in :func:`ecp_nonlocal`; a separate, not inlined, function keeps these
    loops out of that kernel's hot loop)."""
    for q in range(dx.shape[0]):
        acc = 0.0
        c = col
        for lx in range(l, -1, -1):
            for ly in range(l - lx, -1, -1):
                m = 1.0
                for _ in range(lx):
                    m *= dx[q]
                for _ in range(ly):
                    m *= dy[q]
                for _ in range(l - lx - ly):
                    m *= dz[q]
                acc += m * b[w, c]
                c += 1
        det[q] += fq[q] * acc


class Channels(NamedTuple):
    """The nonlocal ECP channels of a molecule, flat (built once per ECP: :meth:`rung.qmc.ecp.ECP._packed`).

    atom_R : (na, 3) float64, Bohr; atom_rc : (na,) float64, Bohr — ECP atoms with nonlocal channels, range
    ch_atom, ch_l : (nch,) int64 — atom and angular momentum of each channel; ch_tstart : (nch+1,) int64
    t_pow : (nterm,) float64 (integer powers); t_a : (nterm,) float64, Bohr^-2; t_c : (nterm,) float64, Hartree Bohr^-pow —
        radial terms c r^pow exp(-a r^2), those of channel ch at ch_tstart[ch] .. ch_tstart[ch+1] - 1
    """

    atom_R: np.ndarray
    atom_rc: np.ndarray
    ch_atom: np.ndarray
    ch_l: np.ndarray
    ch_tstart: np.ndarray
    t_pow: np.ndarray
    t_a: np.ndarray
    t_c: np.ndarray


class Centres(NamedTuple):
    """The AO basis centre by centre, with the radial spline tables (:meth:`rung.qmc.ecp.ECP._centres`).

    cen_R : (ncen, 3) float64, Bohr — AO centres; cen_shstart : (ncen+1,) int64 — their shells (consecutive);
    cen_minexp : (ncen,) float64, Bohr^-2 — smallest exponent on the centre; cen_ecp : (ncen,) int64 — the
        ECP atom (index into :attr:`Channels.atom_R`) at the centre, -1 if none
    sh_l, sh_col : (nsh,) int64; sh_minexp : (nsh,) float64, Bohr^-2 — the AO shell table
        (:func:`rung.qmc._kernels.cpu.aos.eval_cart`)
    spl_tab : (nrow, 6) float64; sh_tstart, sh_nint : (nsh,) int64; sh_inv_h : (nsh,) float64, Bohr^-1 — the
        radial spline tables (:class:`rung.qmc.orbitals.RadialSplines`)
    """

    cen_R: np.ndarray
    cen_shstart: np.ndarray
    cen_minexp: np.ndarray
    cen_ecp: np.ndarray
    sh_l: np.ndarray
    sh_col: np.ndarray
    sh_minexp: np.ndarray
    spl_tab: np.ndarray
    sh_tstart: np.ndarray
    sh_nint: np.ndarray
    sh_inv_h: np.ndarray


@numba.njit(cache=True)
def ecp_nonlocal(x, quat, dirs, weights, channels, centres, screen, bvec, use_j, jastrow, j_old):
    """V_NL psi / psi contributions of one electron e at every quadrature point (see the module docstring).

    Parameters
    ----------
    x : (nw, 3) float64, Bohr — the electron in every walker
    quat : (nw, 4) float64 — unnormalised Gaussian quaternions (w, x, y, z), one random rotation per walker
    dirs : (nq, 3) float64 unit vectors; weights : (nq,) float64 summing to one
    channels : :class:`Channels` — the nonlocal ECP channels
    centres : :class:`Centres` — the AO centres, shells and radial spline tables
    screen : float; bvec : (nw, ncart) float64 = A[:, i]^T C_cart^T (inverse Slater column of e times the
        cartesian orbital coefficients of e's spin)
    use_j : bool; jastrow : :class:`rung.qmc._kernels.cpu.jastrow.JastrowArguments` — the Jastrow factor of
        electron e (read only if use_j); j_old : (nw,) float64 J_e at the current positions

    Returns
    -------
    terms : (nw, na*nq) float64, Hartree — w_q sum_l (2l+1) v_l(r) P_l(cos) psi(r'_q)/psi(r); 0 out of range
    points : (nw, na*nq, 3) float64, Bohr — R_a + r_a rot q for every walker and atom
    """
    atom_R, atom_rc, ch_atom, ch_l, ch_tstart, t_pow, t_a, t_c = channels
    cen_R, cen_shstart, cen_minexp, cen_ecp, sh_l, sh_col, sh_minexp, spl_tab, sh_tstart, sh_nint, sh_inv_h = centres
    configs, e, same, ee_poly, ee_cusp, en_poly, en_cusp, j_atoms, L_ee, L_en, L_eecusp, L_encusp = jastrow
    nw = x.shape[0]
    na = atom_R.shape[0]
    nq = dirs.shape[0]
    ncen = cen_R.shape[0]
    points = np.empty((nw, na * nq, 3))
    terms = np.zeros((nw, na * nq))
    qd = np.empty((nq, 3))
    rot = np.empty((3, 3))
    coef = np.empty(nq)
    det = np.empty(nq)
    fq = np.empty(nq)
    dx = np.empty(nq)
    dy = np.empty(nq)
    dz = np.empty(nq)
    px = np.empty(nq)
    py = np.empty(nq)
    pz = np.empty(nq)
    rq = np.empty(nq)
    jv = np.zeros(nq)
    s0 = np.empty(nq)
    s1 = np.empty(nq)
    s2 = np.empty(nq)
    for w in range(nw):
        qn = np.sqrt(quat[w, 0] ** 2 + quat[w, 1] ** 2 + quat[w, 2] ** 2 + quat[w, 3] ** 2)
        qw, qx, qy, qz = quat[w, 0] / qn, quat[w, 1] / qn, quat[w, 2] / qn, quat[w, 3] / qn
        rot[0, 0] = 1 - 2 * (qy * qy + qz * qz)
        rot[0, 1] = 2 * (qx * qy - qz * qw)
        rot[0, 2] = 2 * (qx * qz + qy * qw)
        rot[1, 0] = 2 * (qx * qy + qz * qw)
        rot[1, 1] = 1 - 2 * (qx * qx + qz * qz)
        rot[1, 2] = 2 * (qy * qz - qx * qw)
        rot[2, 0] = 2 * (qx * qz - qy * qw)
        rot[2, 1] = 2 * (qy * qz + qx * qw)
        rot[2, 2] = 1 - 2 * (qx * qx + qy * qy)
        for q in range(nq):
            for i in range(3):
                qd[q, i] = rot[i, 0] * dirs[q, 0] + rot[i, 1] * dirs[q, 1] + rot[i, 2] * dirs[q, 2]
        for a in range(na):
            h0 = x[w, 0] - atom_R[a, 0]
            h1 = x[w, 1] - atom_R[a, 1]
            h2 = x[w, 2] - atom_R[a, 2]
            r = np.sqrt(h0 * h0 + h1 * h1 + h2 * h2)
            for q in range(nq):
                px[q] = atom_R[a, 0] + r * qd[q, 0]
                py[q] = atom_R[a, 1] + r * qd[q, 1]
                pz[q] = atom_R[a, 2] + r * qd[q, 2]
                points[w, a * nq + q, 0] = px[q]
                points[w, a * nq + q, 1] = py[q]
                points[w, a * nq + q, 2] = pz[q]
            if not r < atom_rc[a]:
                continue
            # projector weights w_q sum_l (2l+1) v_l(r) P_l(rhat . q)
            inv = 1.0 / r if r > 0 else 1.0
            h0 *= inv
            h1 *= inv
            h2 *= inv
            for q in range(nq):
                coef[q] = 0.0
            for ch in range(ch_atom.shape[0]):
                if ch_atom[ch] != a:
                    continue
                v = 0.0
                for t in range(ch_tstart[ch], ch_tstart[ch + 1]):
                    v += t_c[t] * r ** t_pow[t] * np.exp(-t_a[t] * r * r)
                l = ch_l[ch]
                for q in range(nq):
                    coef[q] += (2 * l + 1) * v * _legendre(l, qd[q, 0] * h0 + qd[q, 1] * h1 + qd[q, 2] * h2)
            # determinant ratio, centre by centre
            for q in range(nq):
                det[q] = 0.0
            for c in range(ncen):
                on = cen_ecp[c] == a
                if on:
                    dmin2 = r * r  # every point at distance r from this centre
                else:
                    d0 = cen_R[c, 0] - atom_R[a, 0]
                    d1 = cen_R[c, 1] - atom_R[a, 1]
                    d2 = cen_R[c, 2] - atom_R[a, 2]
                    dmin = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2) - r  # closest approach of the sphere
                    dmin2 = dmin * dmin if dmin > 0.0 else 0.0
                if cen_minexp[c] * dmin2 > screen:
                    continue
                for q in range(nq):
                    dx[q] = px[q] - cen_R[c, 0]
                    dy[q] = py[q] - cen_R[c, 1]
                    dz[q] = pz[q] - cen_R[c, 2]
                if not on:
                    for q in range(nq):
                        rq[q] = np.sqrt(dx[q] * dx[q] + dy[q] * dy[q] + dz[q] * dz[q])
                for ish in range(cen_shstart[c], cen_shstart[c + 1]):
                    if sh_minexp[ish] * dmin2 > screen:
                        continue
                    t0, nt, ih = sh_tstart[ish], sh_nint[ish], sh_inv_h[ish]
                    if on:
                        f = _spline(spl_tab, t0, nt, ih, r)
                        for q in range(nq):
                            fq[q] = f
                    else:
                        for q in range(nq):
                            fq[q] = _spline(spl_tab, t0, nt, ih, rq[q])
                    l = sh_l[ish]
                    col = sh_col[ish]
                    if l == 0:
                        b0 = bvec[w, col]
                        for q in range(nq):
                            det[q] += fq[q] * b0
                    elif l == 1:
                        b0, b1, b2 = bvec[w, col], bvec[w, col + 1], bvec[w, col + 2]
                        for q in range(nq):
                            det[q] += fq[q] * (dx[q] * b0 + dy[q] * b1 + dz[q] * b2)
                    elif l == 2:  # xx, xy, xz, yy, yz, zz
                        b0, b1, b2 = bvec[w, col], bvec[w, col + 1], bvec[w, col + 2]
                        b3, b4, b5 = bvec[w, col + 3], bvec[w, col + 4], bvec[w, col + 5]
                        for q in range(nq):
                            x0, y0, z0 = dx[q], dy[q], dz[q]
                            det[q] += fq[q] * (x0 * (x0 * b0 + y0 * b1 + z0 * b2) + y0 * (y0 * b3 + z0 * b4) + z0 * z0 * b5)
                    else:
                        _shell_dot_high(l, dx, dy, dz, fq, bvec, w, col, det)
            if use_j:
                _jastrow_points(px, py, pz, jv, s0, s1, s2, configs, w, e, same,
                                ee_poly, ee_cusp, en_poly, en_cusp, j_atoms, L_ee, L_en, L_eecusp, L_encusp)
            for q in range(nq):
                ratio = det[q]
                if use_j:
                    ratio *= np.exp(jv[q] - j_old[w])
                terms[w, a * nq + q] = weights[q] * coef[q] * ratio
    return terms, points
