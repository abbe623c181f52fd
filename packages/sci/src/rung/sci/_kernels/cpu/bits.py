"""Bit operations on strings: population counts, occupied and empty orbitals, excitation degrees, holes
and particles, and the fermionic sign of a single excitation (conventions: the package docstring).
"""

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

U1 = np.uint64(1)


@intrinsic
def _ctpop(typingctx, x):
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _cttz(typingctx, x):
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        import llvmlite.ir as ir

        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@njit(cache=True)
def popcount(x):
    return np.int64(_ctpop(np.uint64(x)))


@njit(cache=True)
def occupied(s, out):
    """Write the occupied orbitals of string ``s`` ascending into ``out``; return how many."""
    n = 0
    for k in range(s.shape[0]):
        w = s[k]
        while w != 0:
            t = np.int64(_cttz(w))
            out[n] = 64 * k + t
            n += 1
            w &= w - U1
    return n


@njit(cache=True)
def virtual(s, norb, out):
    """Write the empty orbitals (< norb) of string ``s`` ascending into ``out``; return how many."""
    n = 0
    for p in range(norb):
        if (s[p >> 6] >> np.uint64(p & 63)) & U1 == 0:
            out[n] = p
            n += 1
    return n


@njit(cache=True)
def is_set(s, p):
    return (s[p >> 6] >> np.uint64(p & 63)) & U1 != 0


@njit(cache=True)
def flip(s, p):
    s[p >> 6] ^= U1 << np.uint64(p & 63)


@njit(cache=True)
def string_degree(s, t):
    """Excitation degree between two strings of equal electron count."""
    n = 0
    for k in range(s.shape[0]):
        n += popcount(s[k] ^ t[k])
    return n >> 1


@njit(cache=True)
def excitation_degree(d1, d2):
    """(alpha degree, beta degree) between two determinants ((2, nw) uint64 each)."""
    return string_degree(d1[0], d2[0]), string_degree(d1[1], d2[1])


@njit(cache=True)
def count_between(s, a, b):
    """Occupied orbitals of ``s`` strictly between ``min(a, b)`` and ``max(a, b)``."""
    lo = min(a, b)
    hi = max(a, b)
    n = 0
    for k in range(s.shape[0]):
        w = s[k]
        first = 64 * k
        if first + 63 <= lo or first >= hi:
            continue
        # mask bits (lo, hi) within this word
        m = ~np.uint64(0)
        if lo >= first:
            sh = lo - first + 1
            m = np.uint64(0) if sh >= 64 else (m << np.uint64(sh))
        if hi < first + 64:
            sh = hi - first
            m &= (U1 << np.uint64(sh)) - U1
        n += popcount(w & m)
    return n


@njit(cache=True)
def phase(s, h, p):
    """Sign (+1/-1) of ``a+_p a_h`` acting on string ``s`` (``h`` occupied, ``p`` empty or ``p == h``)."""
    return -1.0 if count_between(s, h, p) & 1 else 1.0


@njit(cache=True)
def single_holes_particles(s, t):
    """Hole (in s, not t) and particle (in t, not s) of two strings one excitation apart."""
    h = -1
    p = -1
    for k in range(s.shape[0]):
        x = s[k] & ~t[k]
        y = t[k] & ~s[k]
        if x != 0:
            h = 64 * k + np.int64(_cttz(x))
        if y != 0:
            p = 64 * k + np.int64(_cttz(y))
    return h, p


@njit(cache=True)
def double_holes_particles(s, t):
    """(h1, h2, p1, p2), ascending pairs, of two strings two excitations apart."""
    hs = np.empty(2, np.int64)
    ps = np.empty(2, np.int64)
    nh = 0
    npp = 0
    for k in range(s.shape[0]):
        x = s[k] & ~t[k]
        y = t[k] & ~s[k]
        while x != 0:
            hs[nh] = 64 * k + np.int64(_cttz(x))
            nh += 1
            x &= x - U1
        while y != 0:
            ps[npp] = 64 * k + np.int64(_cttz(y))
            npp += 1
            y &= y - U1
    return hs[0], hs[1], ps[0], ps[1]
