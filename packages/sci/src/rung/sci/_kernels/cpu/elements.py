"""Slater-Condon matrix elements (Hartree, core energy excluded) and determinant diagonals: per
determinant, and from per-string energies for the external determinants met by a PT2 pass.
"""

import numpy as np
from numba import njit, prange

from .bits import double_holes_particles, excitation_degree, flip, occupied, phase, single_holes_particles
from .keys import unrank


@njit(cache=True)
def coulomb_exchange(eri):
    """J[i, j] = (ii|jj) and K[i, j] = (ij|ji), (norb, norb) float64 Hartree: the diagonal's only integrals."""
    n = eri.shape[0]
    j = np.empty((n, n))
    k = np.empty((n, n))
    for a in range(n):
        for b in range(n):
            j[a, b] = eri[a, a, b, b]
            k[a, b] = eri[a, b, b, a]
    return j, k


@njit(cache=True)
def diagonal_jk(d, h1, jmat, kmat, occa, occb):
    """<D|H|D> without the core energy from the J and K tables (cache-friendly)."""
    na = occupied(d[0], occa)
    nb = occupied(d[1], occb)
    e = 0.0
    for x in range(na):
        i = occa[x]
        e += h1[i, i]
        for y in range(x + 1, na):
            j = occa[y]
            e += jmat[i, j] - kmat[i, j]
        for y in range(nb):
            e += jmat[i, occb[y]]
    for x in range(nb):
        i = occb[x]
        e += h1[i, i]
        for y in range(x + 1, nb):
            j = occb[y]
            e += jmat[i, j] - kmat[i, j]
    return e


@njit(cache=True)
def diagonal(d, h1, eri, occa, occb):
    """<D|H|D> without the core energy. occa, occb: scratch int64 arrays of length >= norb."""
    jmat, kmat = coulomb_exchange(eri)
    return diagonal_jk(d, h1, jmat, kmat, occa, occb)


@njit(cache=True)
def single_element(s_same, s_other, h, p, h1, eri, occ):
    """Element of a single excitation h -> p in string ``s_same`` (sign included); ``s_other`` the other spin."""
    v = h1[h, p]
    n = occupied(s_same, occ)
    for x in range(n):
        j = occ[x]
        v += eri[h, p, j, j] - eri[h, j, j, p]
    n = occupied(s_other, occ)
    for x in range(n):
        j = occ[x]
        v += eri[h, p, j, j]
    return phase(s_same, h, p) * v


@njit(cache=True)
def same_spin_double_element(s, h1_, h2_, p1, p2, eri):
    """Element of the same-spin double excitation (h1 h2 -> p1 p2) of string ``s``, sign included."""
    t = s.copy()
    sg = phase(t, h1_, p1)
    flip(t, h1_)
    flip(t, p1)
    sg *= phase(t, h2_, p2)
    return sg * (eri[h1_, p1, h2_, p2] - eri[h1_, p2, h2_, p1])


@njit(cache=True)
def matrix_element(d1, d2, h1, eri, occ1, occ2):
    """<d1|H|d2> (Hartree, core energy excluded) for two determinants; occ1, occ2: int64 scratch (norb,)."""
    da, db = excitation_degree(d1, d2)
    if da + db > 2:
        return 0.0
    if da + db == 0:
        return diagonal(d1, h1, eri, occ1, occ2)
    if da == 1 and db == 0:
        h, p = single_holes_particles(d2[0], d1[0])
        return single_element(d2[0], d2[1], h, p, h1, eri, occ1)
    if db == 1 and da == 0:
        h, p = single_holes_particles(d2[1], d1[1])
        return single_element(d2[1], d2[0], h, p, h1, eri, occ1)
    if da == 2:
        a, b, c, e = double_holes_particles(d2[0], d1[0])
        return same_spin_double_element(d2[0], a, b, c, e, eri)
    if db == 2:
        a, b, c, e = double_holes_particles(d2[1], d1[1])
        return same_spin_double_element(d2[1], a, b, c, e, eri)
    ha, pa = single_holes_particles(d2[0], d1[0])
    hb, pb = single_holes_particles(d2[1], d1[1])
    return phase(d2[0], ha, pa) * phase(d2[1], hb, pb) * eri[ha, pa, hb, pb]


@njit(cache=True, parallel=True)
def diagonals(dets, h1, eri):
    """<D|H|D> for every determinant (n, 2, nw); (n,) float64 Hartree, core energy excluded."""
    n = dets.shape[0]
    norb = h1.shape[0]
    jmat, kmat = coulomb_exchange(eri)
    out = np.empty(n, np.float64)
    for i in prange(n):
        occa = np.empty(norb, np.int64)
        occb = np.empty(norb, np.int64)
        out[i] = diagonal_jk(dets[i], h1, jmat, kmat, occa, occb)
    return out


@njit(cache=True)
def _string_energy(occ, n, h1, jmat, kmat):
    e = 0.0
    for x in range(n):
        i = occ[x]
        e += h1[i, i]
        for y in range(x + 1, n):
            e += jmat[i, occ[y]] - kmat[i, occ[y]]
    return e


@njit(cache=True)
def _string_energies(occa, occb, na, nb, h1, eri):
    """Tables for determinant diagonals from the occupied-orbital tables ``occa`` (nstr_a, >= na), ``occb``
    (nstr_b, >= nb) int64 of na, nb electrons (:func:`string_tables`): the same-spin energies ea (nstr_a,),
    eb (nstr_b,) of every string and ja (nstr_a, norb), ja[r, q] = sum over the alpha string r's orbitals
    i of (ii|qq), Hartree."""
    jmat, kmat = coulomb_exchange(eri)
    norb = h1.shape[0]
    ea = np.empty(occa.shape[0])
    eb = np.empty(occb.shape[0])
    ja = np.zeros((occa.shape[0], norb))
    for r in range(occa.shape[0]):
        ea[r] = _string_energy(occa[r], na, h1, jmat, kmat)
        for x in range(na):
            i = occa[r, x]
            for q in range(norb):
                ja[r, q] += jmat[i, q]
    for r in range(occb.shape[0]):
        eb[r] = _string_energy(occb[r], nb, h1, jmat, kmat)
    return ea, eb, ja


@njit(cache=True, inline="always")
def _key_diagonal(key, nstr_b, occb, nb, ea, eb, ja):
    """<D|H|D> (Hartree, core excluded) of the determinant ``key``: the same-spin energies of its strings
    plus the opposite-spin Coulomb terms (:func:`_string_energies`); no unranking, nb lookups."""
    ia = key // nstr_b
    ib = key % nstr_b
    e = ea[ia] + eb[ib]
    for y in range(nb):
        e += ja[ia, occb[ib, y]]
    return e


@njit(cache=True, parallel=True)
def diagonals_sorted_keys(keys, na, nb, norb, binom_a, binom_b, nstr_b, h1, eri):
    """<D|H|D> (Hartree, core excluded) of the determinants with sorted ``keys`` (m,) int64, without
    building them: the alpha rank changes only between runs of equal keys, so each alpha string is
    unranked once per run, and every beta string present once (a table of ``nstr_b`` entries);
    then ``E = E_a + E_b + sum_q Ja[q]`` over the beta orbitals q, with ``Ja[q] = sum_{i in a} (ii|qq)``."""
    jmat, kmat = coulomb_exchange(eri)
    m = keys.shape[0]
    nw = max(1, (norb + 63) // 64)
    present = np.zeros(nstr_b, np.bool_)
    for k in range(m):
        present[keys[k] % nstr_b] = True
    eb = np.zeros(nstr_b)
    occb = np.zeros((nstr_b, max(nb, 1)), np.int16)
    for r in prange(nstr_b):
        if present[r]:
            s = np.zeros(nw, np.uint64)
            o = np.empty(norb, np.int64)
            unrank(r, nb, norb, binom_b, s)
            occupied(s, o)
            eb[r] = _string_energy(o, nb, h1, jmat, kmat)
            for y in range(nb):
                occb[r, y] = o[y]
    out = np.empty(m)
    nparts = 64
    for part in prange(nparts):
        lo = part * m // nparts
        hi = (part + 1) * m // nparts
        s = np.zeros(nw, np.uint64)
        o = np.empty(norb, np.int64)
        ja = np.zeros(norb)
        ea = 0.0
        cur = -1
        for k in range(lo, hi):
            ra = keys[k] // nstr_b
            if ra != cur:
                cur = ra
                unrank(ra, na, norb, binom_a, s)
                occupied(s, o)
                ea = _string_energy(o, na, h1, jmat, kmat)
                for q in range(norb):
                    v = 0.0
                    for x in range(na):
                        v += jmat[o[x], q]
                    ja[q] = v
            rb = keys[k] % nstr_b
            e = ea + eb[rb]
            for y in range(nb):
                e += ja[occb[rb, y]]
            out[k] = e
    return out
