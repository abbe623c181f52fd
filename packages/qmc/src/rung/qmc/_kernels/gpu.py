"""numba.cuda kernel for the AO evaluation (imported lazily; only ``backend="cupy"`` touches it).

Same algorithm and shell table as :func:`rung.qmc._kernels.cpu.eval_cart` (its oracle is
:mod:`rung.qmc._kernels.reference`): one thread per (position, shell) pair, so the flattened
walkers x electrons x centres dimension of the multi-centre batching maps onto the grid; every thread
writes its own output columns (no atomics). Inputs may be NumPy arrays (copied to the device and the
result copied back) or device arrays (CuPy, numba; the result stays on the device). Runs under the
numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) for testing on machines without a GPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

LMAX = 6  # local power tables hold x^-2 .. x^LMAX
NPOW = LMAX + 3  # their length: a module constant, since cuda.local.array needs a literal size (LMAX + 3 is not one)


@cuda.jit
def _eval_cart_kernel(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, deriv, screen, out):
    i = cuda.grid(1)
    npos = pos.shape[0]
    nsh = sh_l.shape[0]
    if i >= npos * nsh:
        return
    ip = i // nsh
    ish = i - ip * nsh
    x = pos[ip, 0] - sh_center[ish, 0]
    y = pos[ip, 1] - sh_center[ish, 1]
    z = pos[ip, 2] - sh_center[ish, 2]
    s = x * x + y * y + z * z
    if sh_minexp[ish] * s > screen:
        return  # the output is zero-initialised
    f = 0.0
    f1 = 0.0
    f2 = 0.0
    for p in range(sh_pstart[ish], sh_pstart[ish + 1]):
        a = exps[p]
        if a * s <= screen:
            e = coefs[p] * math.exp(-a * s)
            f += e
            f1 -= a * e
            f2 += a * a * e
    l = sh_l[ish]
    xp = cuda.local.array(NPOW, np.float64)
    yp = cuda.local.array(NPOW, np.float64)
    zp = cuda.local.array(NPOW, np.float64)
    xp[0] = 0.0
    xp[1] = 0.0
    yp[0] = 0.0
    yp[1] = 0.0
    zp[0] = 0.0
    zp[1] = 0.0
    xp[2] = 1.0
    yp[2] = 1.0
    zp[2] = 1.0
    for n in range(1, l + 1):
        xp[n + 2] = xp[n + 1] * x
        yp[n + 2] = yp[n + 1] * y
        zp[n + 2] = zp[n + 1] * z
    col = sh_col[ish]
    g0 = 2.0 * f1
    lapr = 6.0 * f1 + 4.0 * s * f2 + 4.0 * f1 * l
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


def eval_cart(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, ncart, deriv, screen,
              threads_per_block: int = 128):
    """Cartesian AOs (nout, npos, ncart) float64 at pos (npos, 3) Bohr; see the CPU kernel for arguments."""
    if isinstance(sh_l, np.ndarray) and int(np.max(sh_l)) > LMAX:  # device tables are checked where copied
        raise ValueError(f"the CUDA AO kernel handles l <= {LMAX}")
    on_host = isinstance(pos, np.ndarray)
    args = [cuda.to_device(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
            for a in (pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs)]
    nout = (1, 4, 5)[deriv]
    out = cuda.to_device(np.zeros((nout, pos.shape[0], ncart)))
    n = pos.shape[0] * sh_l.shape[0]
    blocks = max(1, (n + threads_per_block - 1) // threads_per_block)
    _eval_cart_kernel[blocks, threads_per_block](*args, deriv, screen, out)
    return out.copy_to_host() if on_host else out
