"""The arithmetic of one (position, shell) pair of the cartesian Gaussian AOs, written once for two targets.

Plain Python functions that import nothing but :mod:`math`: :mod:`rung.qmc._kernels.cpu.aos` compiles them
with ``numba.njit(inline="always")`` and :mod:`rung.qmc._kernels.gpu` with ``cuda.jit(device=True)``, each
around its own loops (CPU: every position and shell in one call; GPU: one thread per pair). They call no
other function of this module (a compiled function sees this module's plain functions, not their compiled
versions). The conventions and derivative formulas are those of :mod:`rung.qmc._kernels.reference`.
"""

from __future__ import annotations


def offset(pos, ip, sh_center, ish):
    """r - A of position ip from the centre of shell ish, and |r - A|^2 (float64, Bohr, Bohr^2)."""
    x = pos[ip, 0] - sh_center[ish, 0]
    y = pos[ip, 1] - sh_center[ish, 1]
    z = pos[ip, 2] - sh_center[ish, 2]
    return x, y, z, x * x + y * y + z * z


def cart_block(out, ip, col, l, x, y, z, s, f, f1, f2, deriv, xp, yp, zp):
    """Write the cartesian AOs of one shell at one position: out[:, ip, col:col + (l+1)(l+2)/2].

    Parameters
    ----------
    out : (nout, npos, ncart) float64, nout = 1, 4, 5 (value, gradient, Laplacian) as ``deriv`` = 0, 1, 2
    ip, col, l : int, the position, the shell's first column, its angular momentum
    x, y, z, s : float64, r - A (Bohr) and |r - A|^2
    f, f1, f2 : float64, the radial sums sum_p c_p e_p, -sum_p a_p c_p e_p and sum_p a_p^2 c_p e_p,
        e_p = exp(-a_p s) (f1, f2 unused when deriv = 0)
    deriv : int
    xp, yp, zp : (>= l + 3,) float64 scratch with xp[0] = xp[1] = 0 (likewise yp, zp): x^(n-2) is
        stored at index n, so that x^-1, x^-2 (times a zero prefactor) read as 0 (only for l >= 2)
    """
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
        return
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
        return
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
