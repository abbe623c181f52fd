"""GPU kernels (numba.cuda) and the CuPy driver; imported only when the "cupy" backend is chosen.

Same contract and equations as :mod:`rung.nnp._kernels.reference`. One CUDA thread per centre atom
computes its radial and angular AEV terms (forward) or the dE/d(vec[e]) of its own entries
(backward), so neither kernel needs atomics; the scatter to forces and virials uses atomic adds.
The species MLPs run as CuPy GEMMs (:class:`rung.nnp.mlp.PackedNetworks` with ``xp=cupy``).
The neighbour search stays on the CPU (rung.core cell lists); entries are copied to the device.

The kernels are tested under numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) with tiny inputs;
real-device tests are marked ``gpu``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

MAX_SHF = 16  # local scratch size for ShfZ / ShfA


@cuda.jit(device=True, inline=True)
def _ipow(x, n):
    res = 1.0
    b = x
    while n:
        if n & 1:
            res *= b
        b *= b
        n >>= 1
    return res


@cuda.jit
def aev_forward_kernel(species, start, nbr, vec, dist, ang_start, ang, Rcr, Rca, etaR, shfR, izeta, cosZ, sinZ,
                       etaA, shfA, pidx, out):
    i = cuda.grid(1)
    if i >= species.size:
        return
    nR, nZ, nA = shfR.size, cosZ.size, shfA.size
    radlen = pidx.shape[0] * nR
    for e in range(start[i], start[i + 1]):
        r = dist[e]
        fc = 0.5 * math.cos(math.pi * r / Rcr) + 0.5
        base = species[nbr[e]] * nR
        for k in range(nR):
            t = r - shfR[k]
            out[i, base + k] += 0.25 * math.exp(-etaR * t * t) * fc
    f1 = cuda.local.array(MAX_SHF, np.float64)
    f2 = cuda.local.array(MAX_SHF, np.float64)
    a0, a1 = ang_start[i], ang_start[i + 1]
    for u in range(a0, a1):
        e1 = ang[u]
        r1 = dist[e1]
        fc1 = 0.5 * math.cos(math.pi * r1 / Rca) + 0.5
        for w in range(u + 1, a1):
            e2 = ang[w]
            r2 = dist[e2]
            fcp = 2.0 * fc1 * (0.5 * math.cos(math.pi * r2 / Rca) + 0.5)
            c = 0.95 * (vec[e1, 0] * vec[e2, 0] + vec[e1, 1] * vec[e2, 1] + vec[e1, 2] * vec[e2, 2]) / (r1 * r2)
            s = math.sqrt(1.0 - c * c)
            for z in range(nZ):
                f1[z] = _ipow(0.5 * (1.0 + c * cosZ[z] + s * sinZ[z]), izeta)
            ravg = 0.5 * (r1 + r2)
            for a in range(nA):
                t = ravg - shfA[a]
                f2[a] = math.exp(-etaA * t * t) * fcp
            base = radlen + pidx[species[nbr[e1]], species[nbr[e2]]] * nA * nZ
            for a in range(nA):
                for z in range(nZ):
                    out[i, base + a * nZ + z] += f2[a] * f1[z]


@cuda.jit
def aev_backward_kernel(species, start, nbr, vec, dist, ang_start, ang, Rcr, Rca, etaR, shfR, izeta, cosZ, sinZ,
                        etaA, shfA, pidx, dG, g):
    i = cuda.grid(1)
    if i >= species.size:
        return
    nR, nZ, nA = shfR.size, cosZ.size, shfA.size
    radlen = pidx.shape[0] * nR
    zeta = float(izeta)
    for e in range(start[i], start[i + 1]):
        r = dist[e]
        arg = math.pi * r / Rcr
        fc = 0.5 * math.cos(arg) + 0.5
        dfc = -0.5 * math.pi / Rcr * math.sin(arg)
        base = species[nbr[e]] * nR
        acc = 0.0
        for k in range(nR):
            t = r - shfR[k]
            acc += dG[i, base + k] * 0.25 * math.exp(-etaR * t * t) * (-2.0 * etaR * t * fc + dfc)
        acc /= r
        for q in range(3):
            g[e, q] += acc * vec[e, q]
    f1 = cuda.local.array(MAX_SHF, np.float64)
    df1 = cuda.local.array(MAX_SHF, np.float64)
    a0, a1 = ang_start[i], ang_start[i + 1]
    for u in range(a0, a1):
        e1 = ang[u]
        r1 = dist[e1]
        arg1 = math.pi * r1 / Rca
        fc1 = 0.5 * math.cos(arg1) + 0.5
        dfc1 = -0.5 * math.pi / Rca * math.sin(arg1)
        for w in range(u + 1, a1):
            e2 = ang[w]
            r2 = dist[e2]
            arg2 = math.pi * r2 / Rca
            fc2 = 0.5 * math.cos(arg2) + 0.5
            dfc2 = -0.5 * math.pi / Rca * math.sin(arg2)
            c = 0.95 * (vec[e1, 0] * vec[e2, 0] + vec[e1, 1] * vec[e2, 1] + vec[e1, 2] * vec[e2, 2]) / (r1 * r2)
            s = math.sqrt(1.0 - c * c)
            for z in range(nZ):
                x = 0.5 * (1.0 + c * cosZ[z] + s * sinZ[z])
                xm = _ipow(x, izeta - 1)
                f1[z] = xm * x
                df1[z] = zeta * xm * 0.5 * (cosZ[z] - sinZ[z] * c / s)
            ravg = 0.5 * (r1 + r2)
            base = radlen + pidx[species[nbr[e1]], species[nbr[e2]]] * nA * nZ
            A = 0.0
            Bc = 0.0
            Br = 0.0
            for a in range(nA):
                t = ravg - shfA[a]
                f2 = math.exp(-etaA * t * t)
                df2 = -2.0 * etaA * t * f2
                M = 0.0
                N = 0.0
                for z in range(nZ):
                    lam = dG[i, base + a * nZ + z]
                    M += lam * f1[z]
                    N += lam * df1[z]
                A += M * f2
                Br += M * df2
                Bc += N * f2
            fcp = fc1 * fc2
            dcos = 2.0 * fcp * Bc
            dravg = 2.0 * fcp * Br
            k1 = (2.0 * A * dfc1 * fc2 + 0.5 * dravg) / r1 - dcos * c / (r1 * r1)
            k2 = (2.0 * A * fc1 * dfc2 + 0.5 * dravg) / r2 - dcos * c / (r2 * r2)
            inv12 = 0.95 / (r1 * r2)
            for q in range(3):
                g[e1, q] += k1 * vec[e1, q] + dcos * inv12 * vec[e2, q]
                g[e2, q] += k2 * vec[e2, q] + dcos * inv12 * vec[e1, q]


@cuda.jit
def scatter_kernel(centre, nbr, vec, g, batch, f, w):
    e = cuda.grid(1)
    if e >= nbr.size:
        return
    i, j = centre[e], nbr[e]
    b = batch[i]
    for q in range(3):
        cuda.atomic.add(f, (i, q), g[e, q])
        cuda.atomic.add(f, (j, q), -g[e, q])
        for k in range(3):
            cuda.atomic.add(w, (b, q, k), -g[e, q] * vec[e, k])


def kernel_constants(p):
    """Constants for the kernels; integral Zeta only (ANI's 32), at most MAX_SHF shifts."""
    from rung.nnp._kernels.cpu import _consts

    Rcr, Rca, etaR, shfR, zeta, _, cosZ, sinZ, etaA, shfA, pidx = _consts(p)
    izeta = int(zeta) if zeta == int(zeta) and zeta >= 1 else -1
    if izeta < 1:
        raise NotImplementedError(f"the GPU kernels need an integral Zeta, got {zeta}")
    if max(cosZ.size, shfA.size) > MAX_SHF:
        raise NotImplementedError(f"the GPU kernels allow at most {MAX_SHF} ShfZ/ShfA values")
    return Rcr, Rca, etaR, shfR, izeta, cosZ, sinZ, etaA, shfA, pidx


def _launch(kernel, n, *args, threads=128):
    blocks = max(1, (n + threads - 1) // threads)
    kernel[blocks, threads](*args)


def aev_forward(species, start, nbr, vec, dist, ang_start, ang, p, out):
    """Launch the forward kernel; arrays are device arrays (or host arrays under the simulator)."""
    _launch(aev_forward_kernel, species.shape[0], species, start, nbr, vec, dist, ang_start, ang,
            *kernel_constants_device(p, species), out)


def aev_backward(species, start, nbr, vec, dist, ang_start, ang, p, dG, g):
    _launch(aev_backward_kernel, species.shape[0], species, start, nbr, vec, dist, ang_start, ang,
            *kernel_constants_device(p, species), dG, g)


def scatter(centre, nbr, vec, g, batch, f, w):
    _launch(scatter_kernel, nbr.shape[0], centre, nbr, vec, g, batch, f, w)


def kernel_constants_device(p, like):
    """Kernel constants with the arrays on the device of ``like`` (host arrays stay on the host)."""
    consts = kernel_constants(p)
    if isinstance(like, np.ndarray):
        return consts
    import cupy

    return tuple(cupy.asarray(c) if isinstance(c, np.ndarray) else c for c in consts)


class GPUEngine:
    """AEVs, MLPs and the backward pass on a CUDA device (CuPy arrays, numba.cuda kernels)."""

    def __init__(self, model, dtype, xp=None):
        from rung.core.backend import select
        from rung.nnp.mlp import PackedNetworks

        # xp: CuPy (default; raises BackendUnavailable without CuPy and a device), or NumPy for
        # running this pipeline under numba's CUDA simulator in the tests
        cp = select("gpu") if xp is None else xp

        self.cp, self.model, self.dtype = cp, model, dtype
        self.nets = PackedNetworks(model, dtype, xp=cp)
        kernel_constants(model.aev)  # fail early on unsupported constants

    def run(self, species, ent, batch, n_batch, need_grad):
        """Network outputs (M, n_atoms) float64, forces (n_atoms, 3) and virials (n_batch, 3, 3) float64
        (None without ``need_grad``), all returned on the host."""
        from rung.core.backend import to_host

        cp, p = self.cp, self.model.aev
        d = {k: cp.asarray(getattr(ent, k)) for k in ("start", "centre", "nbr", "vec", "dist", "ang_start", "ang")}
        sp = cp.asarray(species)
        G = cp.zeros((species.size, p.length), np.float64)
        aev_forward(sp, d["start"], d["nbr"], d["vec"], d["dist"], d["ang_start"], d["ang"], p, G)
        out, dG = self.nets(sp, G.astype(self.dtype), grad=need_grad)
        if not need_grad:
            return to_host(out), None, None
        g = cp.zeros((ent.nbr.size, 3), np.float64)
        aev_backward(sp, d["start"], d["nbr"], d["vec"], d["dist"], d["ang_start"], d["ang"], p,
                     dG.astype(np.float64), g)
        f = cp.zeros((species.size, 3), np.float64)
        w = cp.zeros((n_batch, 3, 3), np.float64)
        scatter(d["centre"], d["nbr"], d["vec"], g, cp.asarray(batch), f, w)
        return to_host(out), to_host(f), to_host(w)
