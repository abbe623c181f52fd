"""numba.cuda kernel for the AO evaluation (imported lazily; only ``backend="cupy"`` touches it).

Same algorithm and shell table as :func:`rung.qmc._kernels.cpu.eval_cart` (its oracle is
:mod:`rung.qmc._kernels.reference`), the same per-pair arithmetic (:mod:`rung.qmc._kernels.aos_body`,
compiled here as device functions) except the radial sums (``math.exp`` per primitive in the thread;
the CPU takes its exponentials in one NumPy call): one thread per (position, shell) pair, so the flattened
walkers x electrons x centres dimension of the multi-centre batching maps onto the grid; every thread
writes its own output columns (no atomics). Inputs may be NumPy arrays (copied to the device and the
result copied back) or device arrays (CuPy, numba; the result stays on the device). Runs under the
numba CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) for testing on machines without a GPU.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from rung.qmc._kernels import aos_body

LMAX = 6  # local power tables hold x^-2 .. x^LMAX
NPOW = LMAX + 3  # their length: a module constant, since cuda.local.array needs a literal size (LMAX + 3 is not one)


_offset = cuda.jit(device=True, inline="always")(aos_body.offset)
_cart_block = cuda.jit(device=True, inline="always")(aos_body.cart_block)


@cuda.jit
def _eval_cart_kernel(pos, sh_center, sh_l, sh_pstart, sh_col, sh_minexp, exps, coefs, deriv, screen, out):
    i = cuda.grid(1)
    npos = pos.shape[0]
    nsh = sh_l.shape[0]
    if i >= npos * nsh:
        return
    ip = i // nsh
    ish = i - ip * nsh
    x, y, z, s = _offset(pos, ip, sh_center, ish)
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
    xp = cuda.local.array(NPOW, np.float64)
    yp = cuda.local.array(NPOW, np.float64)
    zp = cuda.local.array(NPOW, np.float64)
    for n in range(2):
        xp[n] = 0.0
        yp[n] = 0.0
        zp[n] = 0.0
    _cart_block(out, ip, sh_col[ish], sh_l[ish], x, y, z, s, f, f1, f2, deriv, xp, yp, zp)


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
