"""The AEV's per-term arithmetic, written once for two targets: cutoffs, radial Gaussians, angle factors.

Plain Python functions that import nothing but :mod:`math`: :mod:`rung.nnp._kernels.cpu` compiles them with
``numba.njit(inline="always")`` and :mod:`rung.nnp._kernels.gpu` with ``cuda.jit(device=True)``, each
around its own loops (CPU: one centre atom per iteration; GPU: one thread per entry or per triple). They
call no other function of this module (a compiled function sees this module's plain functions, not their
compiled versions). The equations are those of :mod:`rung.nnp._kernels.reference`; distances in Angstrom.
What stays per target is how the r_avg Gaussians of the angular terms are formed (the CPU splits them into
per-neighbour factors shared by a centre's triples; a GPU thread has one triple).
"""

from __future__ import annotations

import math

# Terms exp(-eta (r - s)^2) with eta (r - s)^2 > SKIP are below 3e-16 and are left out of the radial sums
# (their contribution is under the float64 rounding of the AEV elements they would be added to).
SKIP = 36.0


def cutoff(r, rc):
    """The cosine cutoff 0.5 cos(pi r / rc) + 0.5 (float64) at distance r < rc."""
    return 0.5 * math.cos(math.pi * r / rc) + 0.5


def cutoff_slope(r, rc):
    """The cosine cutoff at r < rc and its derivative d/dr (1/Angstrom), float64."""
    arg = math.pi * r / rc
    return 0.5 * math.cos(arg) + 0.5, -0.5 * math.pi / rc * math.sin(arg)


def radial_gauss(r, shf, eta):
    """t = r - shf and exp(-eta t^2), the latter 0.0 where eta t^2 >= SKIP (a term left out)."""
    t = r - shf
    q = eta * t * t
    return t, (math.exp(-q) if q < SKIP else 0.0)


def radial_slope(t, eta, fc, dfc):
    """d/dr [exp(-eta t^2) fc(r)] / exp(-eta t^2), t = r - shf: -2 eta t fc + dfc."""
    return -2.0 * eta * t * fc + dfc


def cos_angle(x1, y1, z1, x2, y2, z2, r1, r2):
    """0.95 cos(theta) of the angle between two entry vectors (x, y, z) of lengths r1, r2."""
    return 0.95 * (x1 * x2 + y1 * y2 + z1 * z2) / (r1 * r2)


def angle_factors(c, cosZ, sinZ, zeta, nsq, xb, f1):
    """f1[z] = xb[z]**zeta, xb[z] = (1 + c cos ShfZ_z + sqrt(1 - c^2) sin ShfZ_z) / 2, for c = 0.95 cos(theta);
    returns sqrt(1 - c^2).

    cosZ, sinZ : (nZ,) float64, cos and sin of ShfZ; zeta : float64; nsq : int, log2(zeta) when zeta is a
    power of two (ANI's 32: nsq squarings of the row), else -1 (``x ** zeta``); xb, f1 : (>= nZ,) float64,
    out (xb may be f1 itself where :func:`angle_slopes` does not follow).
    """
    nZ = cosZ.size
    s = math.sqrt(1.0 - c * c)
    for z in range(nZ):
        xb[z] = 0.5 * (1.0 + c * cosZ[z] + s * sinZ[z])
        f1[z] = xb[z]
    if nsq >= 0:
        for _ in range(nsq):
            for z in range(nZ):
                f1[z] *= f1[z]
    else:
        for z in range(nZ):
            f1[z] = f1[z] ** zeta
    return s


def angle_slopes(c, s, cosZ, sinZ, zeta, xb, f1, df1):
    """df1[z] = d f1[z] / dc given s, xb and f1 from :func:`angle_factors` (same c, cosZ, sinZ, zeta);
    df1 : (>= nZ,) float64, out."""
    cs = c / s
    for z in range(cosZ.size):
        xm = f1[z] / xb[z] if xb[z] > 1e-30 else 0.0  # x**(zeta - 1)
        df1[z] = zeta * xm * 0.5 * (cosZ[z] - sinZ[z] * cs)


def pair_slopes(A, dcos, dravg, c, r1, r2, fc1, fc2, dfc1, dfc2):
    """The coefficients k1, k2 of the two entry vectors in dE/d(vec[e1]), dE/d(vec[e2]) of one triple.

    A : the triple's angular terms contracted with dE/dG, without the cutoffs; dcos, dravg : dE/dc and
    dE/d(r_avg) (cutoffs included); c : 0.95 cos(theta); r1, r2 : lengths; fc1, fc2, dfc1, dfc2 : their
    cutoffs and slopes. The full derivatives add h v2 and h v1, h = 0.95 dcos / (r1 r2).
    """
    k1 = (2.0 * A * dfc1 * fc2 + 0.5 * dravg) / r1 - dcos * c / (r1 * r1)
    k2 = (2.0 * A * fc1 * dfc2 + 0.5 * dravg) / r2 - dcos * c / (r2 * r2)
    return k1, k2
