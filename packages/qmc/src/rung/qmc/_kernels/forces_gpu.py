"""numba.cuda kernels of the analytic force derivatives (imported lazily; only ``backend="cupy"`` of
:class:`rung.qmc.force_derivs.AnalyticDerivatives` touches them).

Same maths, arguments and outputs as the numba CPU kernels :func:`rung.qmc._kernels.cpu.forces.det_terms` and
:func:`rung.qmc._kernels.cpu.forces.electron_terms` (their docstrings give the formulas; they are the test
oracle), laid out for a GPU without atomics, in two passes:

1. one thread per (walker, electron) pair. It owns that electron's row of grad E_L (``ge[w, j]``,
   accumulated in registers over every shell / atom / other electron and written once) and its rows
   ``(w, j, :, :)`` of per-electron partials of d E_L / dR and d ln psi / dR, (nw, n, natom, 3) each,
   which it zeroes and then adds to (one write per shell or atom);
2. one thread per (walker, atom, component) sums the partials over the electrons into ``de`` / ``dl``.

``det_terms`` evaluates the primitive exponentials exp(-a_p r^2) in the kernel (``math.exp``), screened as the
CPU kernel (shells with min_p a_p r^2 > screen and primitives with a_p r^2 > screen are skipped); the
monomial derivatives d^k u^m / du^k (k <= 3) sit in per-thread local tables of the literal size
``4 (LMAX + 1)``, so shells up to l = LMAX.

The walker arrays (positions, B0, C X, gradients, the in-place outputs) are all NumPy arrays (copied to the
device, the results copied back: NumPy in, NumPy out, and the in-place outputs of ``electron_terms`` updated
in place) or all device arrays (CuPy, numba; everything stays on the device, new outputs as numba device
arrays); mixing the two raises. The tables (shells, atoms, Jastrow, ECP channels) may be device arrays
whatever the walker arrays are: their owner copies them once
(:attr:`rung.qmc.force_derivs.AnalyticDerivatives.device_tables`) and a call then copies only walker data;
NumPy tables are copied for the call. Runs under the numba CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``). This module imports only math, NumPy and numba.cuda (``tools/ptx_check.py``
loads it standalone from its file).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

LMAX = 6  # highest shell angular momentum of the det_terms kernel
NMONO = 4 * (LMAX + 1)  # its monomial tables' length: a module constant (cuda.local.array needs a literal size)
THREADS = 128


# ---------------------------------------------------------------------------------------------- device functions
@cuda.jit(device=True, inline=True)  # inlined in the kernel's IR (and compiled with it by compile_ptx, no device needed)
def _mono(u, m, out):
    """out[4 m + k] = d^k u^m / du^k at u for k = 0..3 (zero where k > m)."""
    for k in range(4):
        out[4 * m + k] = 0.0
    f = 1.0  # the falling factorial m (m-1) ... (m-k+1)
    for k in range(min(m, 3) + 1):
        v = f
        for _ in range(m - k):
            v *= u
        out[4 * m + k] = v
        f *= m - k


@cuda.jit(device=True, inline=True)  # inlined in the kernel's IR (and compiled with it by compile_ptx, no device needed)
def _radial0123(poly, row, L, G, Lc, r):
    """f, f', f'', f''' at r > 0 of a Jastrow pair function: sum_m poly[row, m] (r/L)^m (0 beyond L) plus the
    cusp term -G Lc (1 - r/Lc)^3 / 3 (0 beyond Lc); as :func:`rung.qmc._kernels.cpu.forces._radial0123`."""
    y = r / L
    v = 0.0
    d1 = 0.0
    d2 = 0.0
    d3 = 0.0
    if y < 1.0:
        for m in range(poly.shape[1] - 1, -1, -1):
            d3 = d3 * y + 3.0 * d2
            d2 = d2 * y + 2.0 * d1
            d1 = d1 * y + v
            v = v * y + poly[row, m]
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


@cuda.jit(device=True, inline=True)  # inlined in the kernel's IR (and compiled with it by compile_ptx, no device needed)
def _channel_d(t0, t1, t_pow, t_a, t_c, r):
    """v'(r) of an ECP channel v(r) = sum_t c_t r^pow_t exp(-a_t r^2), terms t0 .. t1 - 1 (r > 0)."""
    dv = 0.0
    for t in range(t0, t1):
        p = float(t_pow[t])
        ex = t_c[t] * math.exp(-t_a[t] * r * r)
        dv += ex * (p * math.pow(r, p - 1.0) - 2.0 * t_a[t] * math.pow(r, p + 1.0))
    return dv


# ---------------------------------------------------------------------------------------------- kernels
@cuda.jit
def _det_kernel(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, sh_atom, exps, coefs, b0, cx, jg, screen,
                ge, de_part, dl_part):
    """Thread (w, j): every shell at electron j of walker w; ge[w, j] written, de_part/dl_part[w, j] filled."""
    i = cuda.grid(1)
    nw = pos.shape[0]
    n = pos.shape[1]
    if i >= nw * n:
        return
    w = i // n
    j = i - w * n
    natom = de_part.shape[2]
    for at in range(natom):
        for a in range(3):
            de_part[w, j, at, a] = 0.0
            dl_part[w, j, at, a] = 0.0
    mx = cuda.local.array(NMONO, np.float64)  # d^k u^m / du^k at [4 m + k] for u = x, y, z
    my = cuda.local.array(NMONO, np.float64)
    mz = cuda.local.array(NMONO, np.float64)
    g0 = jg[w, j, 0]
    g1 = jg[w, j, 1]
    g2 = jg[w, j, 2]
    ge0 = 0.0
    ge1 = 0.0
    ge2 = 0.0
    for ish in range(sh_l.shape[0]):
        x = pos[w, j, 0] - sh_center[ish, 0]
        y = pos[w, j, 1] - sh_center[ish, 1]
        z = pos[w, j, 2] - sh_center[ish, 2]
        s = x * x + y * y + z * z
        if sh_minexp[ish] * s > screen:
            continue
        r0 = 0.0  # g(s) and its s-derivatives
        r1 = 0.0
        r2 = 0.0
        r3 = 0.0
        for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
            a = exps[p]
            if a * s > screen:
                continue
            e = coefs[p] * math.exp(-a * s)
            r0 += e
            e *= -a
            r1 += e
            e *= -a
            r2 += e
            r3 -= a * e
        l = sh_l[ish]
        for m in range(l + 1):
            _mono(x, m, mx)
            _mono(y, m, my)
            _mono(z, m, mz)
        kl = 4.0 * l + 6.0
        kp = 8.0 * l + 20.0
        c = sh_col[ish]
        s0 = 0.0  # this shell's sums of t_a and of B0 d_a chi
        s1 = 0.0
        s2 = 0.0
        q0 = 0.0
        q1 = 0.0
        q2 = 0.0
        for lx in range(l, -1, -1):
            for ly in range(l - lx, -1, -1):
                lz = l - lx - ly
                X0, X1, X2, X3 = mx[4 * lx], mx[4 * lx + 1], mx[4 * lx + 2], mx[4 * lx + 3]
                Y0, Y1, Y2, Y3 = my[4 * ly], my[4 * ly + 1], my[4 * ly + 2], my[4 * ly + 3]
                Z0, Z1, Z2, Z3 = mz[4 * lz], mz[4 * lz + 1], mz[4 * lz + 2], mz[4 * lz + 3]
                P = X0 * Y0 * Z0
                Px, Py, Pz = X1 * Y0 * Z0, X0 * Y1 * Z0, X0 * Y0 * Z1
                Pxx, Pxy, Pxz = X2 * Y0 * Z0, X1 * Y1 * Z0, X1 * Y0 * Z1
                Pyy, Pyz, Pzz = X0 * Y2 * Z0, X0 * Y1 * Z1, X0 * Y0 * Z2
                L = Pxx + Pyy + Pzz
                Lx = X3 * Y0 * Z0 + X1 * Y2 * Z0 + X1 * Y0 * Z2
                Ly = X2 * Y1 * Z0 + X0 * Y3 * Z0 + X0 * Y1 * Z2
                Lz = X2 * Y0 * Z1 + X0 * Y2 * Z1 + X0 * Y0 * Z3
                Pg1 = P * r1
                h4 = 4.0 * P * r2
                dx = Px * r0 + 2.0 * x * Pg1  # gradient
                dy = Py * r0 + 2.0 * y * Pg1
                dz = Pz * r0 + 2.0 * z * Pg1
                hxx = Pxx * r0 + 2.0 * (2.0 * x * Px + P) * r1 + x * x * h4  # Hessian
                hxy = Pxy * r0 + 2.0 * (y * Px + x * Py) * r1 + x * y * h4
                hxz = Pxz * r0 + 2.0 * (z * Px + x * Pz) * r1 + x * z * h4
                hyy = Pyy * r0 + 2.0 * (2.0 * y * Py + P) * r1 + y * y * h4
                hyz = Pyz * r0 + 2.0 * (z * Py + y * Pz) * r1 + y * z * h4
                hzz = Pzz * r0 + 2.0 * (2.0 * z * Pz + P) * r1 + z * z * h4
                c3 = 8.0 * s * P * r3  # gradient of the Laplacian
                lx_ = Lx * r0 + (2.0 * x * L + kl * Px) * r1 + (kp * x * P + 4.0 * s * Px) * r2 + x * c3
                ly_ = Ly * r0 + (2.0 * y * L + kl * Py) * r1 + (kp * y * P + 4.0 * s * Py) * r2 + y * c3
                lz_ = Lz * r0 + (2.0 * z * L + kl * Pz) * r1 + (kp * z * P + 4.0 * s * Pz) * r2 + z * c3
                bb = b0[w, c, j]
                xx = cx[w, c, j]
                s0 += bb * (0.5 * lx_ + g0 * hxx + g1 * hxy + g2 * hxz) + xx * dx
                s1 += bb * (0.5 * ly_ + g0 * hxy + g1 * hyy + g2 * hyz) + xx * dy
                s2 += bb * (0.5 * lz_ + g0 * hxz + g1 * hyz + g2 * hzz) + xx * dz
                q0 += bb * dx
                q1 += bb * dy
                q2 += bb * dz
                c += 1
        at = sh_atom[ish]
        de_part[w, j, at, 0] += s0
        de_part[w, j, at, 1] += s1
        de_part[w, j, at, 2] += s2
        dl_part[w, j, at, 0] -= q0
        dl_part[w, j, at, 1] -= q1
        dl_part[w, j, at, 2] -= q2
        ge0 -= s0
        ge1 -= s1
        ge2 -= s2
    ge[w, j, 0] = ge0
    ge[w, j, 1] = ge1
    ge[w, j, 2] = ge2


@cuda.jit
def _electron_kernel(configs, gt, coords, charges, spin, with_ge, use_j, ee_poly, ee_g, L_ee, L_eec, en_poly, en_g,
                     L_en, L_enc, loc_atom, loc_tstart, t_pow, t_a, t_c, ge, dl_part, de_part):
    """Thread (w, i): electron i of walker w against every atom, ECP and (with_ge) other electron; ge[w, i]
    added to, dl_part/de_part[w, i] written."""
    k = cuda.grid(1)
    nw = configs.shape[0]
    ne = configs.shape[1]
    if k >= nw * ne:
        return
    w = k // ne
    i = k - w * ne
    natom = coords.shape[0]
    x0 = configs[w, i, 0]
    x1 = configs[w, i, 1]
    x2 = configs[w, i, 2]
    g0 = gt[w, i, 0]
    g1 = gt[w, i, 1]
    g2 = gt[w, i, 2]
    ge0 = 0.0
    ge1 = 0.0
    ge2 = 0.0
    for a in range(natom):
        d0 = x0 - coords[a, 0]
        d1 = x1 - coords[a, 1]
        d2 = x2 - coords[a, 2]
        r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        h0 = d0 / r
        h1 = d1 / r
        h2 = d2 / r
        z = charges[a] / (r * r * r)  # -Z/r: d/dR_a = -Z d/r^3 = -grad_i
        t0 = -z * d0
        t1 = -z * d1
        t2 = -z * d2
        l0 = 0.0
        l1 = 0.0
        l2 = 0.0
        if use_j:
            _, f1, f2, f3 = _radial0123(en_poly, a, L_en, en_g[a], L_enc, r)
            l0 = -f1 * h0
            l1 = -f1 * h1
            l2 = -f1 * h2
            rg = h0 * g0 + h1 * g1 + h2 * g2
            cr = (f2 - f1 / r) * rg + 0.5 * (f3 + 2.0 * f2 / r - 2.0 * f1 / (r * r))
            cg = f1 / r
            t0 += cr * h0 + cg * g0
            t1 += cr * h1 + cg * g1
            t2 += cr * h2 + cg * g2
        dl_part[w, i, a, 0] = l0
        dl_part[w, i, a, 1] = l1
        dl_part[w, i, a, 2] = l2
        de_part[w, i, a, 0] = t0
        de_part[w, i, a, 1] = t1
        de_part[w, i, a, 2] = t2
        ge0 -= t0
        ge1 -= t1
        ge2 -= t2
    for kk in range(loc_atom.shape[0]):  # after every atom's row is written: the local ccECP channels
        a = loc_atom[kk]
        d0 = x0 - coords[a, 0]
        d1 = x1 - coords[a, 1]
        d2 = x2 - coords[a, 2]
        r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        dv = _channel_d(loc_tstart[kk], loc_tstart[kk + 1], t_pow, t_a, t_c, r) / r
        de_part[w, i, a, 0] -= dv * d0
        de_part[w, i, a, 1] -= dv * d1
        de_part[w, i, a, 2] -= dv * d2
        ge0 += dv * d0
        ge1 += dv * d1
        ge2 += dv * d2
    if with_ge:
        for j in range(ne):
            if j == i:
                continue
            d0 = x0 - configs[w, j, 0]
            d1 = x1 - configs[w, j, 1]
            d2 = x2 - configs[w, j, 2]
            r = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
            z = 1.0 / (r * r * r)
            t0 = z * d0  # 1 / r_ij
            t1 = z * d1
            t2 = z * d2
            if use_j:
                s = 0 if spin[j] == spin[i] else 1
                _, u1, u2, u3 = _radial0123(ee_poly, s, L_ee, ee_g[s], L_eec, r)
                h0 = d0 / r
                h1 = d1 / r
                h2 = d2 / r
                e0 = g0 - gt[w, j, 0]
                e1 = g1 - gt[w, j, 1]
                e2 = g2 - gt[w, j, 2]
                cr = (u2 - u1 / r) * (h0 * e0 + h1 * e1 + h2 * e2) + u3 + 2.0 * u2 / r - 2.0 * u1 / (r * r)
                cg = u1 / r
                t0 += cr * h0 + cg * e0
                t1 += cr * h1 + cg * e1
                t2 += cr * h2 + cg * e2
            ge0 -= t0
            ge1 -= t1
            ge2 -= t2
    ge[w, i, 0] += ge0
    ge[w, i, 1] += ge1
    ge[w, i, 2] += ge2


@cuda.jit
def _sum_electrons(part, add, out):
    """Thread (w, I, a): out[w, I, a] (+)= sum_j part[w, j, I, a] (added to when ``add``, else written)."""
    k = cuda.grid(1)
    nw = part.shape[0]
    n = part.shape[1]
    natom = part.shape[2]
    if k >= nw * natom * 3:
        return
    w = k // (natom * 3)
    rest = k - w * natom * 3
    at = rest // 3
    a = rest - at * 3
    v = 0.0
    for j in range(n):
        v += part[w, j, at, a]
    if add:
        out[w, at, a] += v
    else:
        out[w, at, a] = v


# ---------------------------------------------------------------------------------------------- host wrappers
def _on_host(walker) -> bool:
    """True when every walker array is a NumPy array, False when none is; mixing host and device arrays raises."""
    host = [isinstance(a, np.ndarray) for a in walker]
    if any(host) and not all(host):
        raise ValueError("forces_gpu: the walker arrays mix NumPy and device arrays; pass all of one kind")
    return all(host)


def _dev(a):
    return cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a


def _blocks(n: int) -> int:
    return max(1, (n + THREADS - 1) // THREADS)


def det_terms(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, sh_atom, exps, coefs, b0, cx, jg, natom, screen):
    """Determinant parts of d E_L / dR, grad E_L and d ln|D| / dR for one spin, on the GPU.

    Arguments and outputs as :func:`rung.qmc._kernels.cpu.forces.det_terms`: pos (nw, n, 3) Bohr; the cartesian
    shell table (sh_l up to ``LMAX``: checked here for a NumPy sh_l, by its owner for device copies) and
    sh_atom (nsh,) int64; b0, cx (nw, ncart, n); jg (nw, n, 3) Bohr^-1; natom int; screen float.

    Returns
    -------
    de : (nw, natom, 3) float64, Hartree/Bohr; ge : (nw, n, 3) float64, Hartree/Bohr;
    dl : (nw, natom, 3) float64, Bohr^-1 — NumPy arrays for NumPy inputs, else numba device arrays
    """
    arrays = (pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, sh_atom, exps, coefs, b0, cx, jg)
    on_host = _on_host((pos, b0, cx, jg))
    if isinstance(sh_l, np.ndarray) and int(sh_l.max()) > LMAX:
        raise ValueError(f"the CUDA force kernel handles shells up to l = {LMAX}, got l = {int(sh_l.max())}")
    nw, n = pos.shape[0], pos.shape[1]
    ge = cuda.device_array((nw, n, 3))
    de_part = cuda.device_array((nw, n, natom, 3))  # zeroed by the threads that own them
    dl_part = cuda.device_array((nw, n, natom, 3))
    _det_kernel[_blocks(nw * n), THREADS](*(_dev(a) for a in arrays), float(screen), ge, de_part, dl_part)
    de = cuda.device_array((nw, natom, 3))
    dl = cuda.device_array((nw, natom, 3))
    _sum_electrons[_blocks(nw * natom * 3), THREADS](de_part, False, de)
    _sum_electrons[_blocks(nw * natom * 3), THREADS](dl_part, False, dl)
    if on_host:
        return de.copy_to_host(), ge.copy_to_host(), dl.copy_to_host()
    return de, ge, dl


def electron_terms(configs, gt, coords, charges, spin, with_ge, use_j, ee_poly, ee_g, L_ee, L_eec, en_poly, en_g, L_en,
                   L_enc, loc_atom, loc_tstart, t_pow, t_a, t_c, dl, de, ge):
    """The Jastrow, -Z/r, 1/r_jk and local-ECP terms of the derivatives, added in place, on the GPU.

    Arguments as :func:`rung.qmc._kernels.cpu.forces.electron_terms`: configs (nw, ne, 3) Bohr; gt (nw, ne, 3)
    Bohr^-1; coords (natom, 3) Bohr; charges (natom,); spin (ne,) int64; with_ge, use_j bool; the Jastrow pair
    functions and local ccECP channels; dl (Bohr^-1), de (Hartree/Bohr) (nw, natom, 3) and ge (nw, ne, 3)
    Hartree/Bohr float64 added to in place (NumPy arrays are copied to the device and back).
    """
    on_host = _on_host((configs, gt, dl, de, ge))
    nw, ne = configs.shape[0], configs.shape[1]
    natom = coords.shape[0]
    d_dl, d_de, d_ge = _dev(dl), _dev(de), _dev(ge)
    dl_part = cuda.device_array((nw, ne, natom, 3))  # written by the threads that own them
    de_part = cuda.device_array((nw, ne, natom, 3))
    _electron_kernel[_blocks(nw * ne), THREADS](
        _dev(configs), _dev(gt), _dev(coords), _dev(charges), _dev(spin), bool(with_ge), bool(use_j), _dev(ee_poly),
        _dev(ee_g), float(L_ee), float(L_eec), _dev(en_poly), _dev(en_g), float(L_en), float(L_enc), _dev(loc_atom),
        _dev(loc_tstart), _dev(t_pow), _dev(t_a), _dev(t_c), d_ge, dl_part, de_part)
    _sum_electrons[_blocks(nw * natom * 3), THREADS](dl_part, True, d_dl)
    _sum_electrons[_blocks(nw * natom * 3), THREADS](de_part, True, d_de)
    if on_host:
        d_dl.copy_to_host(dl)
        d_de.copy_to_host(de)
        d_ge.copy_to_host(ge)
