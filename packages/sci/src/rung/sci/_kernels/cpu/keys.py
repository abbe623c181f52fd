"""Determinant keys and key sets: strings ranked in the combinatorial number system, keys of
determinants and back, and the two sets that answer "is this key in the space": a bit set over the
FCI keys (small FCI spaces) and an open-addressing hash table (any size).
"""

import numpy as np
from numba import njit, prange

from .bits import U1, _ctpop, _cttz, flip


def binomial_table(norb: int, nmax: int) -> np.ndarray:
    """``C[n, k]`` for 0 <= n <= norb, 0 <= k <= nmax, int64 (raises if a value overflows int64)."""
    from math import comb

    if comb(norb, min(nmax, norb // 2 if nmax > norb // 2 else nmax)) >= 2**62:
        raise OverflowError(f"C({norb}, {nmax}) does not fit a 64-bit integer")
    c = np.zeros((norb + 1, nmax + 1), np.int64)
    for n in range(norb + 1):
        for k in range(min(n, nmax) + 1):
            c[n, k] = comb(n, k)
    return c


@njit(cache=True)
def rank(s, binom):
    """Combinatorial rank of string ``s`` (int64)."""
    r = 0
    k = 0
    for w in range(s.shape[0]):
        x = s[w]
        while x != 0:
            o = 64 * w + np.int64(_cttz(x))
            k += 1
            r += binom[o, k]
            x &= x - U1
    return r


@njit(cache=True)
def unrank(r, ne, norb, binom, out):
    """Write the string of rank ``r`` with ``ne`` electrons into ``out`` ((nw,) uint64, zeroed here)."""
    for w in range(out.shape[0]):
        out[w] = 0
    o = norb - 1
    for k in range(ne, 0, -1):
        while binom[o, k] > r:
            o -= 1
        r -= binom[o, k]
        flip(out, o)
        o -= 1


@njit(cache=True, parallel=True)
def det_keys(dets, binom_a, binom_b, nstr_b):
    """Keys (n,) int64 of determinants (n, 2, nw)."""
    n = dets.shape[0]
    out = np.empty(n, np.int64)
    for i in prange(n):
        out[i] = rank(dets[i, 0], binom_a) * nstr_b + rank(dets[i, 1], binom_b)
    return out


@njit(cache=True, parallel=True)
def dets_from_keys(keys, na, nb, norb, nw, binom_a, binom_b, nstr_b):
    n = keys.shape[0]
    out = np.empty((n, 2, nw), np.uint64)
    for i in prange(n):
        unrank(keys[i] // nstr_b, na, norb, binom_a, out[i, 0])
        unrank(keys[i] % nstr_b, nb, norb, binom_b, out[i, 1])
    return out


@njit(cache=True)
def _search(sorted_keys, key):
    """Index of ``key`` in ``sorted_keys`` or -1."""
    lo = 0
    hi = sorted_keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if sorted_keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    if lo < sorted_keys.shape[0] and sorted_keys[lo] == key:
        return lo
    return -1


def key_bits(keys, size):
    """Bit set (ceil(size / 64),) uint64 of the int64 ``keys`` (each < ``size``): bit k & 63 of word k >> 6
    (NumPy: a few vector operations, no numba function to load)."""
    keys = np.asarray(keys, np.int64)
    bits = np.zeros((size + 63) >> 6, np.uint64)
    np.bitwise_or.at(bits, keys >> 6, np.left_shift(np.uint64(1), (keys & 63).astype(np.uint64)))
    return bits


def bits_prefix(bits):
    """(nwords + 1,) int64: set bits of ``bits`` before each word, so that the position of a key among the
    sorted keys of the set is ``prefix[k >> 6] + popcount(bits[k >> 6] & (2^(k & 63) - 1))``
    (:func:`bits_index`)."""
    out = np.zeros(bits.shape[0] + 1, np.int64)
    np.cumsum(np.bitwise_count(bits), out=out[1:])
    return out


@njit(cache=True)
def in_bits(bits, key):
    return (bits[key >> 6] >> np.uint64(key & 63)) & U1 != 0


@njit(cache=True)
def bits_index(bits, prefix, key):
    """Position of ``key`` (in the set) among the set's sorted keys (:func:`bits_prefix`)."""
    w = key >> 6
    return prefix[w] + np.int64(_ctpop(bits[w] & ((U1 << np.uint64(key & 63)) - U1)))


HASH_MULT = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True)
def hash_table(keys):
    """Open-addressing table (size a power of two >= 2 n, empty slots -1) of the int64 ``keys``."""
    n = keys.shape[0]
    bits = 1
    while (1 << bits) < 2 * n + 2:
        bits += 1
    table = np.full(1 << bits, -1, np.int64)
    mask = (1 << bits) - 1
    shift = np.uint64(64 - bits)
    for k in keys:
        h = np.int64((np.uint64(k) * HASH_MULT) >> shift)
        while table[h] != -1:
            h = (h + 1) & mask
        table[h] = k
    return table


@njit(cache=True)
def table_shift(table):
    bits = 0
    while (1 << bits) < table.shape[0]:
        bits += 1
    return np.uint64(64 - bits)


@njit(cache=True)
def in_table(table, key, shift):
    mask = table.shape[0] - 1
    h = np.int64((np.uint64(key) * HASH_MULT) >> shift)
    while True:
        t = table[h]
        if t == key:
            return True
        if t == -1:
            return False
        h = (h + 1) & mask
