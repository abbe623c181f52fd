"""numba.cuda kernel of the nonlocal ECP force terms (imported lazily; only ``backend="cupy"`` touches it).

Same arguments, outputs and sums as :func:`rung.qmc._kernels.cpu.forces.nonlocal_terms` (its oracle in the
tests; the equations are in :mod:`rung.qmc.force_derivs`): for one spin, every (walker, electron, ECP atom)
triple within the ECP's range, the projector w_q sum_l (2l+1) v_l(r) P_l(cos) at the rotated quadrature
points, the Jastrow ratio there, the cartesian AOs (value and gradient, spline radial parts) contracted with
B0 = C_cart A, and their R and r_e derivatives.

One thread per (walker, electron) pair, looping over the ECP atoms. Not one per triple: the thread's
row ``vm_ao[w, e]`` (V_NL chi_mu) is a sum over the ECP atoms, and an electron is within range of one ECP
atom (rarely two) so triple threads would mostly return at once while the sum over atoms would need an
(ncart,) partial per triple. Inside a thread the quadrature points are the innermost loop, as on the CPU,
in local arrays of the literal size ``MAXQ``; the Jastrow pair functions f'(r)/r at the points are
recomputed in the last pass instead of stored ((natom + ne) x nq per thread would not be a literal size).

Each thread writes only its own outputs: ``vm_ao[w, e, :]`` (added to in place) and the partials
``de_part[w, e]`` (natom, 3) and ``ge_part[w, e]`` (ne, 3) (its contributions to every atom and, for
grad E_L, every electron; zeroed by the thread). A second kernel, one thread per output element, adds the
partials' sums over electrons into ``de`` and ``ge``: no atomics. The walker arrays (rot, j0, b0, configs,
jg, de, ge, vm_ao) are all NumPy arrays (copied to the device, ``de``, ``ge``, ``vm_ao`` copied back in place)
or all device arrays (CuPy, numba; updated on the device). The tables (quadrature, ECP channels, centres,
shells, splines, atoms, Jastrow) may be device arrays whatever the walker arrays are: their owner copies
them once (:attr:`rung.qmc.force_derivs.AnalyticDerivatives.device_tables`), NumPy tables are copied for the
call. Runs under the numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) for testing without a GPU.
This file imports only math, NumPy and numba.cuda (``tools/ptx_check.py`` loads it standalone).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

MAXQ = 12  # quadrature points per rule at most, the forces' icosahedron: cuda.local.array needs a literal size
# (the thread's 22 (MAXQ,) local arrays: a 2112-byte stack frame, ptxas sm_80/sm_90, 244 registers, no spills)


@cuda.jit(device=True, inline=True)
def _pair01(poly, row, L, G, Lc, r):
    """f(r) and f'(r) at r > 0 of a Jastrow pair function, the cutoff polynomial sum_m poly[row, m] (r/L)^m
    (0 beyond L) plus the cusp term -G Lc (1 - r/Lc)^3 / 3 (0 beyond Lc)."""
    y = r / L
    v = 0.0
    d1 = 0.0
    if y < 1.0:
        for m in range(poly.shape[1] - 1, -1, -1):
            d1 = d1 * y + v
            v = v * y + poly[row, m]
        d1 /= L
    if r < Lc:
        t = 1.0 - r / Lc
        v -= G * Lc * t * t * t / 3.0
        d1 += G * t * t
    return v, d1


@cuda.jit(device=True, inline=True)
def _spline01(tab, start, nint, inv_h, r):
    """R(r) and R'(r) from the quintic-spline table rows start .. start + nint - 1 (step 1/inv_h, Bohr); 0
    beyond the table (row start + nint is zero)."""
    u = min(r * inv_h, nint)
    i = int(u)
    t = u - i
    k = start + i
    v = ((((tab[k, 5] * t + tab[k, 4]) * t + tab[k, 3]) * t + tab[k, 2]) * t + tab[k, 1]) * t + tab[k, 0]
    d = (((5.0 * tab[k, 5] * t + 4.0 * tab[k, 4]) * t + 3.0 * tab[k, 3]) * t + 2.0 * tab[k, 2]) * t + tab[k, 1]
    return v, d * inv_h


@cuda.jit(device=True, inline=True)
def _legendre01(l, x):
    """P_l(x) and P_l'(x) by (n+1) P_{n+1} = (2n+1) x P_n - n P_{n-1}, P'_{n+1} = P'_{n-1} + (2n+1) P_n."""
    if l == 0:
        return 1.0, 0.0
    p0 = 1.0
    p1 = x
    d0 = 0.0
    d1 = 1.0
    for m in range(1, l):
        p2 = ((2 * m + 1) * x * p1 - m * p0) / (m + 1)
        d2 = d0 + (2 * m + 1) * p1
        p0 = p1
        p1 = p2
        d0 = d1
        d1 = d2
    return p1, d1


@cuda.jit(device=True, inline=True)
def _channel01(t0, t1, t_pow, t_a, t_c, r):
    """v(r) and v'(r) of an ECP channel v(r) = sum_t c_t r^pow_t exp(-a_t r^2), terms t0 .. t1 - 1."""
    v = 0.0
    dv = 0.0
    for t in range(t0, t1):
        p = t_pow[t]
        ex = t_c[t] * math.exp(-t_a[t] * r * r)
        v += ex * r**p
        dv += ex * (p * r ** (p - 1) - 2.0 * t_a[t] * r ** (p + 1))
    return v, dv


@cuda.jit(device=True, inline=True)
def _ipow(x, m):
    """x^m for an integer m >= 0 by repeated products (x^m = 1 for m <= 0: the monomials' derivatives multiply
    x^(m-1) by m)."""
    v = 1.0
    for _ in range(m):
        v *= x
    return v


@cuda.jit
def _nonlocal_kernel(rot, dirs, weights, start, n, atom_R, atom_rc, atom_mol, ch_atom, ch_l, ch_tstart, t_pow, t_a,
                     t_c, j0, cen_R, cen_shstart, cen_minexp, cen_atom, sh_l, sh_col, sh_minexp, spl_tab, sh_tstart,
                     sh_nint, sh_inv_h, screen, b0, configs, jg, coords, spin, with_ge, use_j, ee_poly, ee_g, L_ee,
                     L_eec, en_poly, en_g, L_en, L_enc, de_part, ge_part, vm_ao):
    i = cuda.grid(1)
    nw = configs.shape[0]
    if i >= nw * n:
        return
    wi = i // n
    ei = i - wi * n
    gi = start + ei
    nq = dirs.shape[0]
    na = atom_R.shape[0]
    natom = coords.shape[0]
    ne = configs.shape[1]
    ncen = cen_R.shape[0]
    for I in range(natom):
        for x in range(3):
            de_part[wi, ei, I, x] = 0.0
    if with_ge:
        for j in range(ne):
            for x in range(3):
                ge_part[wi, ei, j, x] = 0.0
    qv = cuda.local.array((MAXQ, 3), np.float64)  # rotated directions
    px = cuda.local.array(MAXQ, np.float64)  # the points
    py = cuda.local.array(MAXQ, np.float64)
    pz = cuda.local.array(MAXQ, np.float64)
    # projector and its r, cos derivatives (times the weights), then times the Jastrow ratio (u = cc rjk)
    u = cuda.local.array(MAXQ, np.float64)
    ccr = cuda.local.array(MAXQ, np.float64)
    ccc = cuda.local.array(MAXQ, np.float64)
    gj0 = cuda.local.array(MAXQ, np.float64)  # grad J at the points
    gj1 = cuda.local.array(MAXQ, np.float64)
    gj2 = cuda.local.array(MAXQ, np.float64)
    rd = cuda.local.array(MAXQ, np.float64)  # determinant ratio sum_mu chi_mu(p) B0[mu, e] and its gradient
    g0 = cuda.local.array(MAXQ, np.float64)
    g1 = cuda.local.array(MAXQ, np.float64)
    g2 = cuda.local.array(MAXQ, np.float64)
    cs0 = cuda.local.array(MAXQ, np.float64)  # the gradient's part from one centre
    cs1 = cuda.local.array(MAXQ, np.float64)
    cs2 = cuda.local.array(MAXQ, np.float64)
    fq = cuda.local.array(MAXQ, np.float64)  # R(r) and R'(r) / r of one shell at the points
    f1q = cuda.local.array(MAXQ, np.float64)
    ttv = cuda.local.array(MAXQ, np.float64)  # the terms of V_NL psi / psi
    x0 = configs[wi, gi, 0]
    x1 = configs[wi, gi, 1]
    x2 = configs[wi, gi, 2]
    for ia in range(na):
        A = atom_mol[ia]
        h0 = x0 - atom_R[ia, 0]
        h1 = x1 - atom_R[ia, 1]
        h2 = x2 - atom_R[ia, 2]
        r = math.sqrt(h0 * h0 + h1 * h1 + h2 * h2)
        if not r < atom_rc[ia]:
            continue
        h0 /= r
        h1 /= r
        h2 /= r
        for k in range(nq):
            for x in range(3):
                qv[k, x] = rot[wi, gi, x, 0] * dirs[k, 0] + rot[wi, gi, x, 1] * dirs[k, 1] + rot[wi, gi, x, 2] * dirs[k, 2]
            px[k] = atom_R[ia, 0] + r * qv[k, 0]
            py[k] = atom_R[ia, 1] + r * qv[k, 1]
            pz[k] = atom_R[ia, 2] + r * qv[k, 2]
            u[k] = 0.0
            ccr[k] = 0.0
            ccc[k] = 0.0
        for ch in range(ch_atom.shape[0]):
            if ch_atom[ch] != ia:
                continue
            v, dv = _channel01(ch_tstart[ch], ch_tstart[ch + 1], t_pow, t_a, t_c, r)
            l = ch_l[ch]
            for k in range(nq):
                pl, dpl = _legendre01(l, qv[k, 0] * h0 + qv[k, 1] * h1 + qv[k, 2] * h2)
                u[k] += (2 * l + 1) * v * pl
                ccr[k] += (2 * l + 1) * dv * pl
                ccc[k] += (2 * l + 1) * v * dpl
        # Jastrow J_e and its gradient at each point, pair by pair
        for k in range(nq):
            u[k] *= weights[k]
            ccr[k] *= weights[k]
            ccc[k] *= weights[k]
            jp = 0.0
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            if use_j:
                for j in range(ne):
                    if j == gi:
                        continue
                    s = 0 if spin[j] == spin[gi] else 1
                    e0 = px[k] - configs[wi, j, 0]
                    e1 = py[k] - configs[wi, j, 1]
                    e2 = pz[k] - configs[wi, j, 2]
                    rp = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
                    f, fd = _pair01(ee_poly, s, L_ee, ee_g[s], L_eec, rp)
                    jp += f
                    a0 += fd / rp * e0
                    a1 += fd / rp * e1
                    a2 += fd / rp * e2
                for I in range(natom):
                    e0 = px[k] - coords[I, 0]
                    e1 = py[k] - coords[I, 1]
                    e2 = pz[k] - coords[I, 2]
                    rp = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
                    f, fd = _pair01(en_poly, I, L_en, en_g[I], L_enc, rp)
                    jp += f
                    a0 += fd / rp * e0
                    a1 += fd / rp * e1
                    a2 += fd / rp * e2
                rjk = math.exp(jp - j0[wi, gi])
                u[k] *= rjk
                ccr[k] *= rjk
                ccc[k] *= rjk
            gj0[k] = a0
            gj1[k] = a1
            gj2[k] = a2
            rd[k] = 0.0
            g0[k] = 0.0
            g1[k] = 0.0
            g2[k] = 0.0
        # the AOs at the points centre by centre: determinant ratio, its gradient, V_NL chi_mu, d/dR of the centre
        for ic in range(ncen):
            on = cen_atom[ic] == A
            if on:
                dmin2 = r * r  # every point at distance r from this centre
            else:
                c0 = cen_R[ic, 0] - coords[A, 0]
                c1 = cen_R[ic, 1] - coords[A, 1]
                c2 = cen_R[ic, 2] - coords[A, 2]
                dmin = math.sqrt(c0 * c0 + c1 * c1 + c2 * c2) - r  # closest approach of the sphere
                dmin2 = dmin * dmin if dmin > 0.0 else 0.0
            if cen_minexp[ic] * dmin2 > screen:
                continue
            for k in range(nq):
                cs0[k] = 0.0
                cs1[k] = 0.0
                cs2[k] = 0.0
            for ish in range(cen_shstart[ic], cen_shstart[ic + 1]):
                if sh_minexp[ish] * dmin2 > screen:
                    continue
                if on:
                    fv, fd = _spline01(spl_tab, sh_tstart[ish], sh_nint[ish], sh_inv_h[ish], r)
                    fd = fd / r if r > 0.0 else 0.0
                    for k in range(nq):
                        fq[k] = fv
                        f1q[k] = fd
                else:
                    for k in range(nq):
                        d0 = px[k] - cen_R[ic, 0]
                        d1 = py[k] - cen_R[ic, 1]
                        d2 = pz[k] - cen_R[ic, 2]
                        rv = math.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
                        fv, fd = _spline01(spl_tab, sh_tstart[ish], sh_nint[ish], sh_inv_h[ish], rv)
                        fq[k] = fv
                        f1q[k] = fd / rv if rv > 0.0 else 0.0  # R'(r) / r (R'(0) = 0)
                l = sh_l[ish]
                col = sh_col[ish]
                for lx in range(l, -1, -1):
                    for ly in range(l - lx, -1, -1):
                        lz = l - lx - ly
                        bm = b0[wi, col, ei]
                        vsum = 0.0
                        for k in range(nq):
                            d0 = px[k] - cen_R[ic, 0]
                            d1 = py[k] - cen_R[ic, 1]
                            d2 = pz[k] - cen_R[ic, 2]
                            mx = _ipow(d0, lx)
                            my = _ipow(d1, ly)
                            mz = _ipow(d2, lz)
                            P = mx * my * mz
                            v = P * fq[k]
                            gP = P * f1q[k]
                            rd[k] += v * bm
                            cs0[k] += (lx * _ipow(d0, lx - 1) * my * mz * fq[k] + d0 * gP) * bm
                            cs1[k] += (ly * mx * _ipow(d1, ly - 1) * mz * fq[k] + d1 * gP) * bm
                            cs2[k] += (lz * mx * my * _ipow(d2, lz - 1) * fq[k] + d2 * gP) * bm
                            vsum += u[k] * v
                        vm_ao[wi, ei, col] += vsum
                        col += 1
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
            de_part[wi, ei, I, 0] -= a0
            de_part[wi, ei, I, 1] -= a1
            de_part[wi, ei, I, 2] -= a2
        # projector, point and Jastrow-ratio derivatives: the ECP atom A and (grad E_L) this electron
        tsum = 0.0
        for k in range(nq):
            tt = u[k] * rd[k]
            ttv[k] = tt
            tsum += tt
            qx = qv[k, 0]
            qy = qv[k, 1]
            qz = qv[k, 2]
            cos = qx * h0 + qy * h1 + qz * h2
            a1 = ccr[k] * rd[k]
            a2 = ccc[k] * rd[k] / r
            dc0 = -a1 * h0 - a2 * (qx - cos * h0)
            dc1 = -a1 * h1 - a2 * (qy - cos * h1)
            dc2 = -a1 * h2 - a2 * (qz - cos * h2)
            p0 = tt * gj0[k] + u[k] * g0[k]
            p1 = tt * gj1[k] + u[k] * g1[k]
            p2 = tt * gj2[k] + u[k] * g2[k]
            qg = qx * p0 + qy * p1 + qz * p2
            de_part[wi, ei, A, 0] += dc0 + p0 - h0 * qg
            de_part[wi, ei, A, 1] += dc1 + p1 - h1 * qg
            de_part[wi, ei, A, 2] += dc2 + p2 - h2 * qg
            if with_ge:
                ge_part[wi, ei, gi, 0] += -dc0 + qg * h0
                ge_part[wi, ei, gi, 1] += -dc1 + qg * h1
                ge_part[wi, ei, gi, 2] += -dc2 + qg * h2
        if with_ge:
            ge_part[wi, ei, gi, 0] -= tsum * jg[wi, gi, 0]
            ge_part[wi, ei, gi, 1] -= tsum * jg[wi, gi, 1]
            ge_part[wi, ei, gi, 2] -= tsum * jg[wi, gi, 2]
        if not use_j:
            continue
        # the one-body Jastrow at the points (atoms I) and at the electron, f'(r)/r recomputed
        for I in range(natom):
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for k in range(nq):
                e0 = px[k] - coords[I, 0]
                e1 = py[k] - coords[I, 1]
                e2 = pz[k] - coords[I, 2]
                rp = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
                f = ttv[k] * _pair01(en_poly, I, L_en, en_g[I], L_enc, rp)[1] / rp
                a0 += f * e0
                a1 += f * e1
                a2 += f * e2
            e0 = x0 - coords[I, 0]
            e1 = x1 - coords[I, 1]
            e2 = x2 - coords[I, 2]
            rp = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
            f = tsum * _pair01(en_poly, I, L_en, en_g[I], L_enc, rp)[1] / rp
            de_part[wi, ei, I, 0] += f * e0 - a0
            de_part[wi, ei, I, 1] += f * e1 - a1
            de_part[wi, ei, I, 2] += f * e2 - a2
        if not with_ge:
            continue
        # grad E_L: the two-body Jastrow of the other electrons j, at the points and at this electron
        for j in range(ne):
            if j == gi:
                continue
            s = 0 if spin[j] == spin[gi] else 1
            a0 = 0.0
            a1 = 0.0
            a2 = 0.0
            for k in range(nq):
                e0 = px[k] - configs[wi, j, 0]
                e1 = py[k] - configs[wi, j, 1]
                e2 = pz[k] - configs[wi, j, 2]
                rp = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
                f = ttv[k] * _pair01(ee_poly, s, L_ee, ee_g[s], L_eec, rp)[1] / rp
                a0 += f * e0
                a1 += f * e1
                a2 += f * e2
            e0 = x0 - configs[wi, j, 0]
            e1 = x1 - configs[wi, j, 1]
            e2 = x2 - configs[wi, j, 2]
            rp = math.sqrt(e0 * e0 + e1 * e1 + e2 * e2)
            f = tsum * _pair01(ee_poly, s, L_ee, ee_g[s], L_eec, rp)[1] / rp
            ge_part[wi, ei, j, 0] += f * e0 - a0
            ge_part[wi, ei, j, 1] += f * e1 - a1
            ge_part[wi, ei, j, 2] += f * e2 - a2


@cuda.jit
def _add_sum_kernel(part, out):
    """out[w, i, x] += sum_e part[w, e, i, x]: one thread per element of out."""
    t = cuda.grid(1)
    nw = out.shape[0]
    ni = out.shape[1]
    if t >= nw * ni * 3:
        return
    w = t // (ni * 3)
    i = (t // 3) % ni
    x = t % 3
    acc = 0.0
    for e in range(part.shape[1]):
        acc += part[w, e, i, x]
    out[w, i, x] += acc


def nonlocal_terms(rot, dirs, weights, start, n, atom_R, atom_rc, atom_mol, ch_atom, ch_l, ch_tstart, t_pow, t_a, t_c,
                   j0, cen_R, cen_shstart, cen_minexp, cen_atom,
                   sh_l, sh_col, sh_minexp, spl_tab, sh_tstart, sh_nint, sh_inv_h, screen, b0, configs, jg, coords, spin,
                   with_ge, use_j, ee_poly, ee_g, L_ee, L_eec, en_poly, en_g, L_en, L_enc, de, ge, vm_ao,
                   threads_per_block: int = 64):
    """Nonlocal ECP terms of the analytic derivatives on the GPU, one spin; arguments, units and outputs as
    :func:`rung.qmc._kernels.cpu.forces.nonlocal_terms`: ``de`` (nw, natom, 3) Hartree/Bohr, ``ge``
    (nw, ne, 3) Hartree/Bohr (only with ``with_ge``) and ``vm_ao`` (nw, n, ncart) Hartree, all float64,
    added to in place (NumPy arrays: through a device copy; device arrays: on the device).
    ``threads_per_block`` : the launch's block size (one thread per walker and electron of this spin)."""
    if dirs.shape[0] > MAXQ:
        raise ValueError(f"the CUDA nonlocal force kernel handles quadrature rules of <= {MAXQ} points")
    arrays = (rot, dirs, weights, atom_R, atom_rc, atom_mol, ch_atom, ch_l, ch_tstart, t_pow, t_a, t_c, j0, cen_R,
              cen_shstart, cen_minexp, cen_atom, sh_l, sh_col, sh_minexp, spl_tab, sh_tstart, sh_nint, sh_inv_h, b0,
              configs, jg, coords, spin, ee_poly, ee_g, en_poly, en_g, de, vm_ao) + ((ge,) if with_ge else ())
    walker = (rot, j0, b0, configs, jg, de, vm_ao) + ((ge,) if with_ge else ())
    if len({isinstance(a, np.ndarray) for a in walker}) > 1:
        raise ValueError("forces_ecp_gpu: the walker arrays mix NumPy and device arrays; pass all of one kind")
    nw, ne, natom = configs.shape[0], configs.shape[1], coords.shape[0]
    if nw * n == 0:
        return
    dev = [cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a for a in arrays]
    de_part = cuda.device_array((nw, n, natom, 3), dtype=np.float64)  # each thread's own contributions
    ge_part = cuda.device_array((nw, n, ne, 3) if with_ge else (1, 1, 1, 3), dtype=np.float64)
    (rot, dirs, weights, atom_R, atom_rc, atom_mol, ch_atom, ch_l, ch_tstart, t_pow, t_a, t_c, j0, cen_R, cen_shstart,
     cen_minexp, cen_atom, sh_l, sh_col, sh_minexp, spl_tab, sh_tstart, sh_nint, sh_inv_h, b0, configs, jg, coords,
     spin, ee_poly, ee_g, en_poly, en_g) = dev[:33]
    blocks = (nw * n + threads_per_block - 1) // threads_per_block
    _nonlocal_kernel[blocks, threads_per_block](
        rot, dirs, weights, int(start), int(n), atom_R, atom_rc, atom_mol, ch_atom, ch_l, ch_tstart, t_pow, t_a, t_c,
        j0, cen_R, cen_shstart, cen_minexp, cen_atom, sh_l, sh_col, sh_minexp, spl_tab, sh_tstart, sh_nint, sh_inv_h,
        float(screen), b0, configs, jg, coords, spin, bool(with_ge), bool(use_j), ee_poly, ee_g, float(L_ee),
        float(L_eec), en_poly, en_g, float(L_en), float(L_enc), de_part, ge_part, dev[34])
    for part, out in zip((de_part, ge_part), dev[33::2]):  # the partials' sums over electrons into de (and ge)
        m = out.shape[0] * out.shape[1] * 3
        _add_sum_kernel[(m + 127) // 128, 128](part, out)
    for a, d in zip(arrays[33:], dev[33:]):
        if isinstance(a, np.ndarray):
            a[...] = d.copy_to_host()
