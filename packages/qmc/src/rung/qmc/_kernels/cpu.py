"""numba kernels (CPU) for the hot loops; :mod:`rung.qmc._kernels.reference` is their oracle.

``eval_cart``: the cartesian Gaussian AOs of all shells of all centres at a batch of positions (see
the reference module for the conventions and the derivative formulas). The shell table is flattened
over centres grouped by species, so one call covers every centre and every position. It runs in three
passes: the primitive exponents ``a_p |r - A|^2`` for every position and primitive (screened ones set to
infinity), their exponentials in one NumPy call (NumPy's SIMD ``exp``: the exponentials are most of
the cost of an AO evaluation, and numba's scalar libm ``exp`` does not vectorise), then the
contraction with the cartesian polynomials.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _primitive_arguments(pos, sh_center, sh_pstart, sh_minexp, exps, screen):
    """a_p |r - A_p|^2 (npos, nprim) float64 for every position and primitive; 0 where a_p r^2 > screen
    (the contraction skips those; a finite filler keeps NumPy's ``exp`` on its fast path)."""
    npos = pos.shape[0]
    nsh = sh_center.shape[0]
    arg = np.empty((npos, exps.shape[0]))
    for ip in range(npos):
        for ish in range(nsh):
            x = pos[ip, 0] - sh_center[ish, 0]
            y = pos[ip, 1] - sh_center[ish, 1]
            z = pos[ip, 2] - sh_center[ish, 2]
            s = x * x + y * y + z * z
            if sh_minexp[ish] * s > screen:
                for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                    arg[ip, p] = 0.0
                continue
            for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                t = exps[p] * s
                arg[ip, p] = t if t <= screen else 0.0
    return arg


def eval_cart(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ncart, deriv, screen):
    """Cartesian AOs at positions.

    Parameters
    ----------
    pos : (npos, 3) float64, Bohr
    sh_center : (nsh, 3) float64, Bohr — centre of each shell (shells of one species are contiguous)
    sh_l : (nsh,) int64; sh_pstart : (nsh+1,) int64 primitive ranges; sh_col : (nsh,) int64 first column;
    sh_minexp : (nsh,) float64 smallest exponent of each shell
    exps, coefs : (nprim,) float64 — exponents (Bohr^-2) and normalised contraction coefficients
    ncart : int; deriv : 0, 1, 2; screen : float, primitives with a*r^2 > screen are skipped

    Returns
    -------
    out : (nout, npos, ncart) float64, nout = 1, 4, 5 (value, gradient, Laplacian)
    """
    ex = _primitive_arguments(pos, sh_center, sh_pstart, sh_minexp, exps, screen)
    np.negative(ex, out=ex)
    np.exp(ex, out=ex)  # exp(-a r^2); 1 where screened (skipped)
    return _contract(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ex, ncart, deriv, screen)


@numba.njit(cache=True)
def _contract(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ex, ncart, deriv, screen):
    """eval_cart's contraction pass; ex (npos, nprim) float64 holds exp(-a_p r^2) (where a_p r^2 <= screen)."""
    nout = 1 if deriv == 0 else (4 if deriv == 1 else 5)
    npos = pos.shape[0]
    nsh = sh_l.shape[0]
    out = np.zeros((nout, npos, ncart))
    lmax = 0
    for ish in range(nsh):
        lmax = max(lmax, sh_l[ish])
    # powers x^(n-2) stored at index n so that x^-1, x^-2 (times a zero prefactor) read as 0
    xp = np.zeros(lmax + 3)
    yp = np.zeros(lmax + 3)
    zp = np.zeros(lmax + 3)
    for ip in range(npos):
        for ish in range(nsh):
            x = pos[ip, 0] - sh_center[ish, 0]
            y = pos[ip, 1] - sh_center[ish, 1]
            z = pos[ip, 2] - sh_center[ish, 2]
            s = x * x + y * y + z * z
            if sh_minexp[ish] * s > screen:
                continue  # every primitive of the shell is negligible here
            f = 0.0
            f1 = 0.0
            f2 = 0.0
            if deriv == 0:
                for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                    if exps[p] * s <= screen:
                        f += coefs[p] * ex[ip, p]
            else:
                for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
                    a = exps[p]
                    if a * s > screen:
                        continue
                    e = coefs[p] * ex[ip, p]
                    f += e
                    f1 -= a * e
                    f2 += a * a * e
            l = sh_l[ish]
            col = sh_col[ish]
            g0 = 2.0 * f1
            lapr = 6.0 * f1 + 4.0 * s * f2 + 4.0 * f1 * l
            # s and p shells written out (most shells; the same arithmetic as the general loop below)
            if l == 0:
                out[0, ip, col] = f
                if deriv >= 1:
                    out[1, ip, col] = x * g0
                    out[2, ip, col] = y * g0
                    out[3, ip, col] = z * g0
                    if deriv >= 2:
                        out[4, ip, col] = lapr
                continue
            if l == 1:
                out[0, ip, col] = x * f
                out[0, ip, col + 1] = y * f
                out[0, ip, col + 2] = z * f
                if deriv >= 1:
                    gx = g0 * x
                    gy = g0 * y
                    gz = g0 * z
                    out[1, ip, col] = f + x * gx
                    out[2, ip, col] = y * gx
                    out[3, ip, col] = z * gx
                    out[1, ip, col + 1] = x * gy
                    out[2, ip, col + 1] = f + y * gy
                    out[3, ip, col + 1] = z * gy
                    out[1, ip, col + 2] = x * gz
                    out[2, ip, col + 2] = y * gz
                    out[3, ip, col + 2] = f + z * gz
                    if deriv >= 2:
                        out[4, ip, col] = x * lapr
                        out[4, ip, col + 1] = y * lapr
                        out[4, ip, col + 2] = z * lapr
                continue
            xp[2] = 1.0
            yp[2] = 1.0
            zp[2] = 1.0
            for n in range(1, l + 1):
                xp[n + 2] = xp[n + 1] * x
                yp[n + 2] = yp[n + 1] * y
                zp[n + 2] = zp[n + 1] * z
            for lx in range(l, -1, -1):
                for ly in range(l - lx, -1, -1):
                    lz = l - lx - ly
                    px = xp[lx + 2]
                    py = yp[ly + 2]
                    pz = zp[lz + 2]
                    P = px * py * pz
                    out[0, ip, col] = P * f
                    if deriv >= 1:
                        dPx = lx * xp[lx + 1] * py * pz
                        dPy = ly * px * yp[ly + 1] * pz
                        dPz = lz * px * py * zp[lz + 1]
                        g = g0 * P
                        out[1, ip, col] = dPx * f + x * g
                        out[2, ip, col] = dPy * f + y * g
                        out[3, ip, col] = dPz * f + z * g
                        if deriv >= 2:
                            lapP = (lx * (lx - 1) * xp[lx] * py * pz + ly * (ly - 1) * px * yp[ly] * pz
                                    + lz * (lz - 1) * px * py * zp[lz])
                            out[4, ip, col] = f * lapP + P * lapr
                    col += 1
    return out


@numba.njit(cache=True)
def _jastrow_one_point(epos, configs, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en, L_eecusp,
                       L_encusp, val, grad, lap):
    """:func:`jastrow_electron` with one position per walker and deriv >= 1, the walkers innermost so that
    the loops vectorise: the same sums in the same order (j ascending, then atoms) for each walker.
    epos (nw, 3); val (nw,), grad (nw, 3), lap (nw,) are zeroed outputs."""
    nw = epos.shape[0]
    nd = ee_poly.shape[1]
    rv = np.empty(nw)
    yv = np.empty(nw)
    v = np.empty(nw)
    d1 = np.empty(nw)
    d2 = np.empty(nw)
    dx = np.empty((3, nw))
    for k in range(configs.shape[1] + atoms.shape[0]):
        if k == e:
            continue
        atom = k >= configs.shape[1]
        if atom:
            a = k - configs.shape[1]
            L, Lc, G = L_en, L_encusp, en_cusp[a]
            poly = en_poly[a]
            for w in range(nw):
                for c in range(3):
                    dx[c, w] = epos[w, c] - atoms[a, c]
        else:
            t = 0 if same[k] else 1
            L, Lc, G = L_ee, L_eecusp, ee_cusp[t]
            poly = ee_poly[t]
            for w in range(nw):
                for c in range(3):
                    dx[c, w] = epos[w, c] - configs[w, k, c]
        for w in range(nw):
            rv[w] = np.sqrt(dx[0, w] * dx[0, w] + dx[1, w] * dx[1, w] + dx[2, w] * dx[2, w])
            yv[w] = rv[w] / L
            v[w] = 0.0
            d1[w] = 0.0
            d2[w] = 0.0
        for m in range(nd - 1, -1, -1):
            cm = poly[m]
            for w in range(nw):
                d2[w] = d2[w] * yv[w] + 2.0 * d1[w]
                d1[w] = d1[w] * yv[w] + v[w]
                v[w] = v[w] * yv[w] + cm
        for w in range(nw):
            r = rv[w]
            inside = yv[w] < 1.0
            u = v[w] if inside else 0.0
            u1 = d1[w] / L if inside else 0.0
            u2 = d2[w] / (L * L) if inside else 0.0
            tc = 1.0 - r / Lc
            cin = r < Lc
            c0 = -G * Lc * tc * tc * tc / 3.0 if cin else 0.0
            c1 = G * tc * tc if cin else 0.0
            c2 = -2.0 * G * tc / Lc if cin else 0.0
            val[w] += u + c0
            g = (u1 + c1) / r if r > 0 else 0.0
            grad[w, 0] += g * dx[0, w]
            grad[w, 1] += g * dx[1, w]
            grad[w, 2] += g * dx[2, w]
            lap[w] += u2 + c2 + 2.0 * g


@numba.njit(cache=True, inline="always")
def _jastrow_points(px, py, pz, jv, yv, rv, vv, configs, w, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee,
                    L_en, L_eecusp, L_encusp):
    """J_e of walker w with electron e at each of the points (px, py, pz) (npt,) into jv (npt,): the same
    sums as :func:`_jastrow_one_point` (values only), with the points innermost (branch-free, so the loops
    vectorise). yv, rv, vv (npt,) are scratch."""
    npt = px.shape[0]
    nd = ee_poly.shape[1]
    ne = configs.shape[1]
    for q in range(npt):
        jv[q] = 0.0
    a = t = 0
    for k in range(ne + atoms.shape[0]):  # the other electrons, then the atoms
        if k == e:
            continue
        atom = k >= ne
        if atom:
            a = k - ne
            cx, cy, cz = atoms[a, 0], atoms[a, 1], atoms[a, 2]
            L, Lc, G = L_en, L_encusp, en_cusp[a]
        else:
            cx, cy, cz = configs[w, k, 0], configs[w, k, 1], configs[w, k, 2]
            t = 0 if same[k] else 1
            L, Lc, G = L_ee, L_eecusp, ee_cusp[t]
        for q in range(npt):
            d0, d1_, d2_ = px[q] - cx, py[q] - cy, pz[q] - cz
            rv[q] = np.sqrt(d0 * d0 + d1_ * d1_ + d2_ * d2_)
            yv[q] = rv[q] / L
            vv[q] = 0.0
        for m in range(nd - 1, -1, -1):
            c = en_poly[a, m] if atom else ee_poly[t, m]  # (no array view per centre: this runs per pair)
            for q in range(npt):
                vv[q] = vv[q] * yv[q] + c
        for q in range(npt):
            tc = 1.0 - rv[q] / Lc
            cusp = -G * Lc * tc * tc * tc / 3.0 if rv[q] < Lc else 0.0
            jv[q] += (vv[q] if yv[q] < 1.0 else 0.0) + cusp


@numba.njit(cache=True)
def jastrow_electron(epos, configs, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en,
                     L_eecusp, L_encusp, deriv):
    """The part of J that involves electron e, at positions epos, with gradient and Laplacian.

    epos (nw, P, 3) Bohr; configs (nw, ne, 3) Bohr; same (ne,) bool, spin of each electron equals e's;
    ee_poly (2, ndeg) [parallel, antiparallel] and en_poly (natom, ndeg): the variational part
    sum_k a_k b_k(y) collapsed into one polynomial in y per pair type (it is linear in the a_k);
    ee_cusp (2,); en_cusp (natom,) cusp slopes (-Z or 0); atoms (natom, 3) Bohr. Returns val (nw, P),
    grad (nw, P, 3), lap (nw, P) (grad and lap zero for deriv = 0). Formulas as
    :meth:`rung.qmc.jastrow.Jastrow._electron_terms_numpy` (its NumPy oracle).

    With derivatives (moves, drift, kinetic energy: P = 1) the walkers are innermost
    (:func:`_jastrow_one_point`, once per point); values only (ratios, e.g. the ECP quadrature) the points
    are innermost (:func:`_jastrow_points`, once per walker).
    """
    nw, npt = epos.shape[0], epos.shape[1]
    val = np.zeros((nw, npt))
    grad = np.zeros((nw, npt, 3))
    lap = np.zeros((nw, npt))
    if deriv > 0:
        for p in range(npt):
            _jastrow_one_point(epos[:, p, :], configs, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en,
                               L_eecusp, L_encusp, val[:, p], grad[:, p, :], lap[:, p])
        return val, grad, lap
    scratch = np.empty((3, npt))
    for w in range(nw):
        _jastrow_points(epos[w, :, 0], epos[w, :, 1], epos[w, :, 2], val[w], scratch[0], scratch[1], scratch[2],
                        configs, w, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en, L_eecusp, L_encusp)
    return val, grad, lap


@numba.njit(cache=True)
def jastrow_total(configs, spin, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en, L_eecusp, L_encusp):
    """J = sum_{i<j} u(r_ij) + sum_{i,A} chi_A(r_iA) per walker, (nw,) float64 (the full recomputation).

    configs (nw, ne, 3) Bohr; spin (ne,) int64 (0 up, 1 down); the other arguments as in
    :func:`jastrow_electron`. Oracle: the NumPy expressions of :meth:`rung.qmc.jastrow.Jastrow.recompute`
    (backend "numpy").
    """
    nw, ne = configs.shape[0], configs.shape[1]
    nd = ee_poly.shape[1]
    out = np.zeros(nw)
    t = 0
    for w in range(nw):
        acc = 0.0
        for i in range(ne):
            x0, x1, x2 = configs[w, i, 0], configs[w, i, 1], configs[w, i, 2]
            for k in range(i + 1, ne + atoms.shape[0]):  # the later electrons, then the atoms
                if k < ne:
                    d0, d1, d2 = x0 - configs[w, k, 0], x1 - configs[w, k, 1], x2 - configs[w, k, 2]
                    t = 0 if spin[k] == spin[i] else 1
                    L, Lc, G = L_ee, L_eecusp, ee_cusp[t]
                else:
                    a = k - ne
                    d0, d1, d2 = x0 - atoms[a, 0], x1 - atoms[a, 1], x2 - atoms[a, 2]
                    L, Lc, G = L_en, L_encusp, en_cusp[a]
                r = np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
                y = r / L
                v = 0.0
                if y < 1.0:
                    for m in range(nd - 1, -1, -1):
                        v = v * y + (ee_poly[t, m] if k < ne else en_poly[k - ne, m])
                if r < Lc:
                    tc = 1.0 - r / Lc
                    v += -G * Lc * tc * tc * tc / 3.0
                acc += v
        out[w] = acc
    return out


# --------------------------------------------------------------------------- nonlocal ECP, one electron
# One numba pass per electron (``ecp_nonlocal``): for every walker the randomly rotated quadrature
# points around every ECP atom, and for the (walker, atom) pairs in range the projector weights and the
# ratios psi(r')/psi(r) at the points. Determinant ratio D'/D = sum_mu chi_mu(r') b_mu with b = C A[:, i]
# (cartesian AO coefficients times the inverse Slater column: the AO-to-orbital product is done once per
# walker, not once per point), the AOs taken centre by centre: one displacement per point and centre,
# the contracted radial part of each shell from its quintic-spline table (:class:`rung.qmc.orbitals.
# RadialSplines`, no exponentials), shells centred on the ECP atom itself with one radial value per pair
# (every point lies at the electron's distance r), and centres / shells whose smallest exponent times
# the squared distance to the sphere exceeds the screen skipped for the whole pair. Jastrow ratio
# exp(J_e(r') - J_e(r)) with the points innermost.


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


@numba.njit(cache=True)
def ecp_nonlocal(x, quat, dirs, weights, atom_R, atom_rc, ch_atom, ch_l, ch_tstart, t_pow, t_a, t_c, cen_R, cen_shstart,
                 cen_minexp, cen_ecp, sh_l, sh_col, sh_minexp, spl_tab, sh_tstart, sh_nint, sh_inv_h, screen, bvec, use_j,
                 configs, e, same, ee_poly, ee_cusp, en_poly, en_cusp, j_atoms, L_ee, L_en, L_eecusp, L_encusp, j_old):
    """V_NL psi / psi contributions of one electron e at every quadrature point (see the section comment).

    Parameters
    ----------
    x : (nw, 3) float64, Bohr — the electron in every walker
    quat : (nw, 4) float64 — unnormalised Gaussian quaternions (w, x, y, z), one random rotation per walker
    dirs : (nq, 3) float64 unit vectors; weights : (nq,) float64 summing to one
    atom_R : (na, 3) float64, Bohr; atom_rc : (na,) float64, Bohr — ECP atoms with nonlocal channels, range
    ch_atom, ch_l : (nch,) int64 — atom and angular momentum of each channel; ch_tstart : (nch+1,) int64
    t_pow, t_a, t_c : (nterm,) — radial terms c r^pow exp(-a r^2) (Hartree, Bohr)
    cen_R : (ncen, 3) float64, Bohr — AO centres; cen_shstart : (ncen+1,) int64 — their shells (consecutive);
        cen_minexp : (ncen,) float64, Bohr^-2 — smallest exponent on the centre; cen_ecp : (ncen,) int64 —
        the ECP atom (index into atom_R) at the centre, -1 if none
    sh_l, sh_col : (nsh,) int64; sh_minexp : (nsh,) float64 — the AO shell table (:func:`eval_cart`)
    spl_tab, sh_tstart, sh_nint, sh_inv_h : the radial spline tables (:class:`rung.qmc.orbitals.RadialSplines`)
    screen : float; bvec : (nw, ncart) float64 = A[:, i]^T C_cart^T (inverse Slater column of e times the
        cartesian orbital coefficients of e's spin)
    use_j and the rest: the Jastrow factor (configs (nw, ne, 3) Bohr and the arguments of
        :func:`jastrow_electron`), j_old (nw,) float64 J_e at the current positions

    Returns
    -------
    terms : (nw, na*nq) float64, Hartree — w_q sum_l (2l+1) v_l(r) P_l(cos) psi(r'_q)/psi(r); 0 out of range
    points : (nw, na*nq, 3) float64, Bohr — R_a + r_a rot q for every walker and atom
    """
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


# --------------------------------------------------------------------------- drift-diffusion sweep, one electron
# ``sweep_propose`` and ``sweep_accept`` replace the ~40 NumPy calls per electron of
# :func:`rung.qmc.vmc.sweep` for psi = D_up D_down exp(J) (its generic path is their oracle). Between them
# the caller evaluates the orbitals (value, gradient, Laplacian) at the proposed positions (one AO pass,
# one GEMM). The determinant keeps A = M^-1 (orbital k, electron n) and the orbitals of every electron
# at its current position; a move of electron i (row i of M) with orbital values v is accepted by
# Sherman-Morrison in place: A' = A - A[:, i] (v A - e_i)^T / (v . A[:, i]).


@numba.njit(cache=True, inline="always")
def _limited(gx, gy, gz, tau):
    """Umrigar-limited drift factor (:func:`rung.qmc.vmc.limit_drift`, a = 1)."""
    av2t = (gx * gx + gy * gy + gz * gz) * tau
    if av2t > 1e-12:
        return (np.sqrt(1.0 + 2.0 * av2t) - 1.0) / av2t
    return 1.0


@numba.njit(cache=True, inline="always")
def _orbital_dot(mo, inv_i, w):
    """sum_k mo[c, w, k] inv_i[w, k] for c = 0..3: the determinant ratio of a one-electron move and the
    ratio times grad log D, walker w; mo (5, nw, norb) orbitals (value, gradient, ...) at the position,
    inv_i (nw, norb) the electron's column of A = M^-1."""
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    t3 = 0.0
    for k in range(inv_i.shape[1]):
        a = inv_i[w, k]
        t0 += mo[0, w, k] * a
        t1 += mo[1, w, k] * a
        t2 += mo[2, w, k] * a
        t3 += mo[3, w, k] * a
    return t0, t1, t2, t3


@numba.njit(cache=True)
def sweep_propose(x, mo_i, inv_i, step, tau, use_j, configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms,
                  L_ee, L_en, L_eecusp, L_encusp):
    """Drift at the current position and the proposed move of one electron, every walker.

    Parameters
    ----------
    x : (nw, 3) float64, Bohr — current position; mo_i : (5, nw, norb) float64 — cached orbitals (value,
        gradient, Laplacian) of the electron; inv_i : (nw, norb) float64 — its column of A = M^-1
    step : (nw, 3) float64, Bohr — sqrt(tau) x standard normal; tau : float, a.u.
    use_j and the rest: the Jastrow (arguments of :func:`jastrow_electron`; configs_j (nw, ne, 3) Bohr)

    Returns
    -------
    new : (nw, 3) Bohr — x + tau vbar(x) + step; vbar : (nw, 3) Bohr^-1 — limited drift at x;
    j_cur : (nw,) — J_e at x (0 without a Jastrow)
    """
    nw = x.shape[0]
    new = np.empty((nw, 3))
    vbar = np.empty((nw, 3))
    j_cur = np.zeros(nw)
    jg = np.zeros((nw, 1, 3))
    if use_j:
        jv, jg, _ = jastrow_electron(x.reshape(nw, 1, 3), configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp,
                                     atoms, L_ee, L_en, L_eecusp, L_encusp, 1)
        for w in range(nw):
            j_cur[w] = jv[w, 0]
    for w in range(nw):
        t0, t1, t2, t3 = _orbital_dot(mo_i, inv_i, w)
        gx = t1 / t0 + jg[w, 0, 0]
        gy = t2 / t0 + jg[w, 0, 1]
        gz = t3 / t0 + jg[w, 0, 2]
        f = _limited(gx, gy, gz, tau)
        vbar[w, 0] = gx * f
        vbar[w, 1] = gy * f
        vbar[w, 2] = gz * f
        for c in range(3):
            new[w, c] = x[w, c] + tau * vbar[w, c] + step[w, c]
    return new, vbar, j_cur


@numba.njit(cache=True)
def sweep_accept(i, new, vbar_old, mo_new, inv, mo_cache, sign, logdet, det_configs, configs, u, tau, fixed_node,
                 use_j, j_cur, j_logval, configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp, atoms, L_ee, L_en,
                 L_eecusp, L_encusp):
    """Metropolis-Hastings test of the proposed moves of electron e (row i of its spin's determinant) and,
    for the accepted walkers, every state update in place.

    Parameters
    ----------
    new : (nw, 3) Bohr; vbar_old : (nw, 3) — from :func:`sweep_propose`; mo_new : (5, nw, norb) orbitals at new
    inv : (nw, norb, n) A = M^-1 of the spin; mo_cache : (5, nw, n, norb) cached orbitals; sign, logdet : (nw,)
        of the whole determinant product; det_configs, configs, configs_j : (nw, ne, 3) the determinant's,
        the driver's and the Jastrow's copies of the walkers (e is moved in all three)
    u : (nw,) uniform random numbers; fixed_node: reject moves that change the sign of psi
    j_cur : (nw,) J_e at the current positions; j_logval : (nw,) J

    Returns
    -------
    ok : (nw,) bool accepted; d2 : (nw,) proposed squared displacements, Bohr^2
    """
    nw = new.shape[0]
    norb = inv.shape[1]
    n = inv.shape[2]
    ok = np.zeros(nw, np.bool_)
    d2 = np.empty(nw)
    jv = np.zeros((nw, 1))
    jg = np.zeros((nw, 1, 3))
    if use_j:
        jv, jg, _ = jastrow_electron(new.reshape(nw, 1, 3), configs_j, e, same, ee_poly, ee_cusp, en_poly, en_cusp,
                                     atoms, L_ee, L_en, L_eecusp, L_encusp, 1)
    vA = np.empty(n)
    col = np.empty(norb)
    inv_i = inv[:, :, i]
    for w in range(nw):
        t0, t1, t2, t3 = _orbital_dot(mo_new, inv_i, w)
        delta = jv[w, 0] - j_cur[w] if use_j else 0.0
        ratio = t0 * np.exp(delta)
        gx = t1 / t0 + jg[w, 0, 0]
        gy = t2 / t0 + jg[w, 0, 1]
        gz = t3 / t0 + jg[w, 0, 2]
        f = _limited(gx, gy, gz, tau)
        x = det_configs[w, e]
        fwd = 0.0
        bwd = 0.0
        dd = 0.0
        for c in range(3):
            g = gx if c == 0 else (gy if c == 1 else gz)
            a = new[w, c] - x[c] - tau * vbar_old[w, c]
            b = x[c] - new[w, c] - tau * (g * f)
            fwd += a * a
            bwd += b * b
            dd += (new[w, c] - x[c]) ** 2
        d2[w] = dd
        prob = ratio * ratio * np.exp((fwd - bwd) / (2.0 * tau))
        acc = u[w] < prob
        if fixed_node and not ratio > 0:
            acc = False
        if not acc:
            continue
        ok[w] = True
        # Sherman-Morrison: A' = A - A[:, i] (v A - e_i)^T / ratio_D
        for m in range(n):
            s = 0.0
            for k in range(norb):
                s += mo_new[0, w, k] * inv[w, k, m]
            vA[m] = s
        rd = vA[i]
        vA[i] -= 1.0
        for k in range(norb):
            col[k] = inv[w, k, i]
        for k in range(norb):
            ck = col[k] / rd
            for m in range(n):
                inv[w, k, m] -= ck * vA[m]
        for q in range(5):
            for k in range(norb):
                mo_cache[q, w, i, k] = mo_new[q, w, k]
        if rd < 0:
            sign[w] = -sign[w]
        logdet[w] += np.log(np.abs(rd))
        if use_j:
            j_logval[w] += delta
        for c in range(3):
            det_configs[w, e, c] = new[w, c]
            configs[w, e, c] = new[w, c]
            if use_j:
                configs_j[w, e, c] = new[w, c]
    return ok, d2


# --------------------------------------------------------------------------- potential energy
@numba.njit(cache=True)
def potential_terms(configs, atom_coords, charges, loc_R, loc_tstart, t_pow, t_a, t_c):
    """Electron-electron, electron-nucleus and local-ECP energies per walker (Hartree).

    configs (nw, ne, 3) Bohr; atom_coords (natom, 3) Bohr; charges (natom,) effective charges;
    loc_R (nloc, 3) Bohr, the ECP atoms, with local channels v(r) = sum_t c_t r^pow_t exp(-a_t r^2)
    (terms loc_tstart[k] .. loc_tstart[k+1] - 1). Returns ee, en, ecp_local, each (nw,) float64.
    Oracle: the NumPy expressions of :meth:`rung.qmc.hamiltonian.Hamiltonian.potential` (backend "numpy").
    """
    nw, ne = configs.shape[0], configs.shape[1]
    ee = np.zeros(nw)
    en = np.zeros(nw)
    loc = np.zeros(nw)
    for w in range(nw):
        acc = 0.0
        for i in range(ne):
            for j in range(i + 1, ne):
                d0 = configs[w, i, 0] - configs[w, j, 0]
                d1 = configs[w, i, 1] - configs[w, j, 1]
                d2 = configs[w, i, 2] - configs[w, j, 2]
                acc += 1.0 / np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        ee[w] = acc
        acc = 0.0
        for i in range(ne):
            for a in range(atom_coords.shape[0]):
                d0 = configs[w, i, 0] - atom_coords[a, 0]
                d1 = configs[w, i, 1] - atom_coords[a, 1]
                d2 = configs[w, i, 2] - atom_coords[a, 2]
                acc -= charges[a] / np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        en[w] = acc
        acc = 0.0
        for i in range(ne):
            for k in range(loc_R.shape[0]):
                d0 = configs[w, i, 0] - loc_R[k, 0]
                d1 = configs[w, i, 1] - loc_R[k, 1]
                d2 = configs[w, i, 2] - loc_R[k, 2]
                s = d0 * d0 + d1 * d1 + d2 * d2
                r = np.sqrt(s)
                for t in range(loc_tstart[k], loc_tstart[k + 1]):
                    p = t_pow[t]
                    rp = 1.0 if p == 0 else (1.0 / r if p == -1 else (1.0 / s if p == -2 else r**p))
                    acc += t_c[t] * rp * np.exp(-t_a[t] * s)
        loc[w] = acc
    return ee, en, loc
