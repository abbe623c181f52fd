"""Plain-Python/NumPy oracle for the determinant kernels (slow; tests only).

Independent of the bit tricks in ``cpu``: a determinant is the ascending list of its spin
orbitals (alpha orbital p -> p, beta orbital p -> norb + p, so every alpha creator stands before every
beta one), operators are applied one at a time by counting the spin orbitals they pass, and matrix
elements come from the second-quantized Hamiltonian

    H = sum_{pq,s} h_pq a+_ps a_qs + 1/2 sum_{pqrs,s,t} (pq|rs) a+_ps a+_rt a_st a_qs

applied term by term (no Slater-Condon shortcuts).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np


def to_ints(det) -> tuple[int, int]:
    """(alpha, beta) Python ints of a determinant ((2, nw) uint64)."""
    det = np.asarray(det, dtype=np.uint64)
    return tuple(sum(int(w) << (64 * k) for k, w in enumerate(det[s])) for s in range(2))


def from_ints(a: int, b: int, nw: int) -> np.ndarray:
    mask = (1 << 64) - 1
    return np.array([[(x >> (64 * k)) & mask for k in range(nw)] for x in (a, b)], dtype=np.uint64)


def spin_orbitals(det, norb: int) -> list[int]:
    a, b = to_ints(det)
    return [p for p in range(norb) if a >> p & 1] + [norb + p for p in range(norb) if b >> p & 1]


def apply(ops, occ: list[int]):
    """Apply ``ops`` (right-most first: list of (dagger: bool, spin orbital)) to the ordered list ``occ``.

    Returns (new list, sign), sign 0 when the state is annihilated.
    """
    occ = list(occ)
    sign = 1
    for dagger, p in reversed(ops):
        if dagger:
            if p in occ:
                return occ, 0
            k = sum(1 for q in occ if q < p)
            occ.insert(k, p)
        else:
            if p not in occ:
                return occ, 0
            k = occ.index(p)
            occ.pop(k)
        sign *= -1 if k % 2 else 1
    return occ, sign


def excitation_degree(d1, d2) -> tuple[int, int]:
    a1, b1 = to_ints(d1)
    a2, b2 = to_ints(d2)
    return bin(a1 ^ a2).count("1") // 2, bin(b1 ^ b2).count("1") // 2


def phase(string: int, h: int, p: int) -> int:
    """Sign of a+_p a_h on one spin string (Python int)."""
    occ = [q for q in range(string.bit_length()) if string >> q & 1]
    _, s = apply([(True, p), (False, h)], occ)
    return s


def matrix_element(d1, d2, h1, eri) -> float:
    """<d1|H|d2>, Hartree, by applying every Hamiltonian term to d2."""
    norb = h1.shape[0]
    bra = spin_orbitals(d1, norb)
    ket = spin_orbitals(d2, norb)
    m = 2 * norb
    sp = lambda x: divmod(x, norb)  # noqa: E731  (spin, spatial)
    e = 0.0
    for q in ket:
        for p in range(m):
            if sp(p)[0] != sp(q)[0]:
                continue
            new, s = apply([(True, p), (False, q)], ket)
            if s and new == bra:
                e += s * h1[sp(p)[1], sp(q)[1]]
    for q in ket:
        for s_ in ket:
            for p in range(m):
                if sp(p)[0] != sp(q)[0]:
                    continue
                for r in range(m):
                    if sp(r)[0] != sp(s_)[0]:
                        continue
                    new, sg = apply([(True, p), (True, r), (False, s_), (False, q)], ket)
                    if sg and new == bra:
                        e += 0.5 * sg * eri[sp(p)[1], sp(q)[1], sp(r)[1], sp(s_)[1]]
    return e


def rank(string: int, norb: int, nelec: int) -> int:
    """Position of ``string`` among all strings with ``nelec`` electrons in colex order."""
    combos = sorted(combinations(range(norb), nelec), key=lambda c: tuple(reversed(c)))
    return combos.index(tuple(q for q in range(norb) if string >> q & 1))


def hamiltonian(dets, h1, eri) -> np.ndarray:
    """Dense H (n, n) in the space ``dets`` (n, 2, nw), Hartree, core energy excluded."""
    n = len(dets)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            out[i, j] = out[j, i] = matrix_element(dets[i], dets[j], h1, eri)
    return out


def s2(dets, norb: int) -> np.ndarray:
    """Dense S^2 (n, n) in the space ``dets`` from S^2 = sum over spin-orbital operators.

    S^2 = S_z^2 + (S+S- + S-S+)/2 with S+ = sum_p a+_pa a_pb.
    """
    occs = [spin_orbitals(d, norb) for d in dets]
    index = {tuple(o): k for k, o in enumerate(occs)}
    n = len(dets)
    out = np.zeros((n, n))
    for j, ket in enumerate(occs):
        na = sum(1 for q in ket if q < norb)
        sz = (na - (len(ket) - na)) / 2
        out[j, j] += sz * sz
        for p in range(norb):
            for q in range(norb):
                # S+S-: a+_pa a_pb a+_qb a_qa ; S-S+: a+_pb a_pa a+_qa a_qb
                for ops in ([(True, p), (False, norb + p), (True, norb + q), (False, q)],
                            [(True, norb + p), (False, p), (True, q), (False, norb + q)]):
                    new, s = apply(ops, ket)
                    if s and tuple(new) in index:
                        out[index[tuple(new)], j] += 0.5 * s
    return out
