"""The one/two-body Jastrow factor J_e of one electron and the total J (numba, CPU); the NumPy expressions
of :class:`rung.qmc.jastrow.Jastrow` (backend "numpy") are the oracle."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np


class JastrowArguments(NamedTuple):
    """The Jastrow factor of one electron e for the kernels that take it whole (:func:`rung.qmc._kernels.cpu.ecp.
    ecp_nonlocal`; the others take its fields in this order): :meth:`rung.qmc.jastrow.Jastrow.kernel_arguments`.

    configs : (nw, ne, 3) float64, Bohr; e : int; same : (ne,) bool, spin of each electron equals e's;
    ee_poly (2, ndeg), ee_cusp (2,), en_poly (natom, ndeg), en_cusp (natom,), atoms (natom, 3) Bohr: as in
    :func:`jastrow_electron`; L_ee, L_en, L_eecusp, L_encusp : float, Bohr — the cutoffs
    """

    configs: np.ndarray
    e: int
    same: np.ndarray
    ee_poly: np.ndarray
    ee_cusp: np.ndarray
    en_poly: np.ndarray
    en_cusp: np.ndarray
    atoms: np.ndarray
    L_ee: float
    L_en: float
    L_eecusp: float
    L_encusp: float


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
