"""Determinant spaces: bit strings, keys, spin completion.

``dets`` arrays are ``(n, 2, nw)`` uint64 (alpha row, beta row; bit ``i`` of word ``k`` = orbital
``64 k + i``; ``nw = ceil(norb / 64)``). A space is kept sorted by its int64 keys (see
``_kernels/cpu/keys.py``), which makes membership a bisection. Keys need ``C(norb, n_alpha) * C(norb,
n_beta) < 2**63`` (e.g. 100 orbitals with 8 + 8 electrons); larger problems raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import numpy as np

from rung.sci._kernels import cpu


@dataclass(frozen=True)
class Layout:
    """Sizes and ranking tables of a determinant space (norb orbitals, na alpha, nb beta electrons)."""

    norb: int
    na: int
    nb: int

    def __post_init__(self):
        total = comb(self.norb, self.na) * comb(self.norb, self.nb)
        if total >= 2**63:
            raise OverflowError(
                f"the determinant space of {self.na}+{self.nb} electrons in {self.norb} orbitals has {total:.3e} "
                "determinants, beyond 64-bit keys"
            )
        object.__setattr__(self, "binom_a", cpu.binomial_table(self.norb, max(self.na, 1)))
        object.__setattr__(self, "binom_b", cpu.binomial_table(self.norb, max(self.nb, 1)))

    @property
    def nw(self) -> int:
        return max(1, (self.norb + 63) // 64)

    @property
    def nstr_b(self) -> int:
        return comb(self.norb, self.nb)

    @property
    def fci_size(self) -> int:
        return comb(self.norb, self.na) * comb(self.norb, self.nb)

    def keys(self, dets: np.ndarray) -> np.ndarray:
        """(n,) int64 keys of ``dets`` (n, 2, nw) uint64."""
        return cpu.det_keys(np.ascontiguousarray(dets, dtype=np.uint64), self.binom_a, self.binom_b, self.nstr_b)

    def from_keys(self, keys: np.ndarray) -> np.ndarray:
        return cpu.dets_from_keys(np.asarray(keys, np.int64), self.na, self.nb, self.norb, self.nw,
                                  self.binom_a, self.binom_b, self.nstr_b)

    def from_occupations(self, occ_a, occ_b) -> np.ndarray:
        """dets (n, 2, nw) from lists of occupied orbital lists (0-based)."""
        out = np.zeros((len(occ_a), 2, self.nw), np.uint64)
        for i, (oa, ob) in enumerate(zip(occ_a, occ_b)):
            for s, occ in enumerate((oa, ob)):
                for p in occ:
                    out[i, s, p // 64] |= np.uint64(1) << np.uint64(p % 64)
        return out

    def occupations(self, dets: np.ndarray) -> tuple[list, list]:
        """Occupied orbital lists of each determinant (alpha, beta)."""
        out = ([], [])
        for d in dets:
            for s in range(2):
                out[s].append([64 * k + b for k in range(self.nw) for b in range(64) if int(d[s, k]) >> b & 1])
        return out

    def aufbau(self, spin: float | None = None) -> np.ndarray:
        """Lowest-orbital determinant with ``2 spin`` open shells (default ``|na - nb|``), (1, 2, nw).

        The open shells sit just above the doubly occupied orbitals, alpha first; a reference with
        enough open shells lets CIPSI reach states of higher spin (and their spatial symmetry).
        """
        nopen = abs(self.na - self.nb) if spin is None else int(round(2 * spin))
        ndouble = (self.na + self.nb - nopen) // 2
        if ndouble < 0 or ndouble + nopen > self.norb or ndouble > min(self.na, self.nb):
            raise ValueError(f"spin {spin} impossible with {self.na}+{self.nb} electrons in {self.norb} orbitals")
        na_open = self.na - ndouble
        opens = list(range(ndouble, ndouble + nopen))
        return self.from_occupations([list(range(ndouble)) + opens[:na_open]], [list(range(ndouble)) + opens[na_open:]])

    def sort_unique(self, dets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dets, keys) sorted by key without duplicates."""
        keys = self.keys(dets)
        keys, first = np.unique(keys, return_index=True)
        return np.ascontiguousarray(dets[first]), keys

    def spin_complete(self, dets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add every determinant with the same spatial occupation and Ms; return sorted (dets, keys).

        The result is closed under S^2, so the eigenvectors of H in it are S^2 eigenfunctions.
        """
        dets = np.ascontiguousarray(dets, dtype=np.uint64)
        return self.sort_unique(cpu.spin_partners(dets, self.norb))

    def grow(self, dets: np.ndarray, keys: np.ndarray, new_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The spin-complete space ``dets`` (n, 2, nw) uint64 with sorted ``keys`` (n,) int64, plus the
        determinants of ``new_keys`` (m,) int64 and their spin partners: sorted (dets, keys), equal to
        ``spin_complete`` of the union. Only the new determinants' partners are generated (those of the
        space are in it already) and merged into the sorted keys (no sort of the whole space)."""
        if keys.size == 0:
            return self.spin_complete(self.from_keys(new_keys))
        pk = np.unique(self.keys(cpu.spin_partners(self.from_keys(new_keys), self.norb)))
        at = np.searchsorted(keys, pk)
        fresh = keys[np.minimum(at, keys.size - 1)] != pk
        pk, at = pk[fresh], at[fresh]
        return (np.ascontiguousarray(np.insert(dets, at, self.from_keys(pk), axis=0)), np.insert(keys, at, pk))


__all__ = ["Layout"]
