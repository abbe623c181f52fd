"""The Hamiltonian and S^2 in a variational space, built sparsely through alpha/beta string lookups.

Determinants are grouped by their alpha string (as Quantum Package 2 and Dice do): the unique alpha
strings are sorted and each is linked to the unique alpha strings one or two excitations away. For a
determinant I = (a, b), its partners J > I are found

* in the group of ``a`` itself (beta string one or two excitations away),
* in the groups of the alpha strings one excitation away (beta string at most one away),
* in the groups of the alpha strings two excitations away, by bisection for the same beta string,

so pairs of determinants are never tested wholesale. The off-diagonal part is stored with every pair
once (CSR U) and ``H x = diag * x + U x + U^T x``: a full build of a key-sorted space stores the strict
upper triangle; a grown space (``previous``) keeps the old rows and gives each new determinant's row
its pairs with the old determinants too, lower indices included, so the merge is a row-wise copy.
Energies in Hartree (core energy not included).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import get_num_threads

from rung.sci._kernels import cpu
from rung.sci.determinants import Layout

PARALLEL_MATVEC_NNZ = 20_000  # below this, H x stays serial: microseconds either way, no parallel region


@dataclass(frozen=True)
class SparseH:
    """H in a space: ``diag`` (n,) float64 Hartree, ``upper`` scipy CSR (n, n) holding every off-diagonal
    pair once (the strict upper triangle after a full build of a key-sorted space; see the module
    docstring)."""

    diag: np.ndarray
    upper: sp.csr_matrix

    @property
    def n(self) -> int:
        return self.diag.shape[0]

    def matvec(self, x: np.ndarray) -> np.ndarray:
        """H x for x (n,) or (n, k) float64. With several numba threads and at least
        ``PARALLEL_MATVEC_NNZ`` nonzeros in U, :func:`cpu.symmetric_matvec` (U and U^T in one pass, rows
        split over the threads); else SciPy's serial CSR products (as fast on one thread)."""
        u = self.upper
        nthreads = get_num_threads()
        if nthreads > 1 and u.nnz >= PARALLEL_MATVEC_NNZ:
            xt = np.ascontiguousarray(np.asarray(x, np.float64).reshape(x.shape[0], -1).T)
            return cpu.symmetric_matvec(self.diag, u.indptr, u.indices, u.data, xt, nthreads).reshape(x.shape)
        d = self.diag if x.ndim == 1 else self.diag[:, None]
        return d * x + u @ x + u.T @ x

    def nbytes(self) -> int:
        u = self.upper
        return self.diag.nbytes + u.data.nbytes + u.indices.nbytes + u.indptr.nbytes

    def dense(self) -> np.ndarray:
        u = self.upper.toarray()
        return u + u.T + np.diag(self.diag)


def build(dets: np.ndarray, h1: np.ndarray, eri: np.ndarray, previous: tuple | None = None, orbsym=None) -> SparseH:
    """Sparse H (core energy excluded) in the space ``dets`` (n, 2, nw) uint64; h1, eri in Hartree.

    previous : optional (old_keys (m,) int64 sorted, old :class:`SparseH`) of a subspace (the last CIPSI
        iteration's): its block is reused and only the pairs involving a new determinant are computed.
    orbsym : (norb,) Molpro irrep labels or None: on small FCI spaces, alpha-beta partners are sought only
        among symmetry-allowed excitations (see ``pt2._blocked_tables``).
    """
    dets = np.ascontiguousarray(dets, dtype=np.uint64)
    n = dets.shape[0]
    if n >= 2**31:
        raise OverflowError("more than 2^31 determinants (column indices are int32)")
    if previous is not None and n > 0:
        inc = _build_incremental(dets, h1, eri, *previous, orbsym=orbsym)
        if inc is not None:
            return inc
    fast = _build_tables(dets, h1, eri, orbsym)
    if fast is not None:
        return fast
    every = np.arange(n, dtype=np.int64)
    ptr, cols, vals, diag = cpu.upper_rows_groups(dets, *_groups(dets), h1, eri, every, np.empty(0, np.uint8), True)
    upper = sp.csr_matrix((vals, cols, ptr), shape=(n, n))
    return SparseH(diag, upper)


def _groups(dets):
    """Alpha-string groups of ``dets`` for :func:`cpu.upper_rows_groups` (ia, ib, grp_ptr, grp_det, grp_ib, ca_*)."""
    ua, ia = np.unique(dets[:, 0, :], axis=0, return_inverse=True)
    ub, ib = np.unique(dets[:, 1, :], axis=0, return_inverse=True)
    ia = ia.reshape(-1).astype(np.int64)
    ib = ib.reshape(-1).astype(np.int64)
    order = np.lexsort((ib, ia))  # by alpha string, then beta
    grp_ptr = np.zeros(ua.shape[0] + 1, np.int64)
    np.add.at(grp_ptr, ia + 1, 1)
    grp_ptr = np.cumsum(grp_ptr)
    ca_ptr, ca_idx, ca_deg = cpu.string_connections(np.ascontiguousarray(ua))
    return ia, ib, grp_ptr, order.astype(np.int64), ib[order], ca_ptr, ca_idx, ca_deg


def _layout(dets, h1):
    na = sum(int(w).bit_count() for w in dets[0, 0])
    nb = sum(int(w).bit_count() for w in dets[0, 1])
    return Layout(h1.shape[0], na, nb)


def _build_incremental(dets, h1, eri, old_keys, old, orbsym=None):
    """H of a grown space from the old block plus the rows of the new determinants; None if ``old_keys`` is
    not a subspace of ``dets``."""
    from rung.sci import pt2

    layout = _layout(dets, h1)
    keys = layout.keys(dets)
    n = keys.size
    if old_keys.size == 0 or old.n != old_keys.size or np.any(np.diff(keys) <= 0):
        return None
    pos = np.searchsorted(keys, old_keys)
    if np.any(pos >= n) or np.any(keys[np.minimum(pos, n - 1)] != old_keys):
        return None
    is_new = np.ones(n, np.uint8)
    is_new[pos] = 0
    rows = np.flatnonzero(is_new).astype(np.int64)
    tables = pt2._string_tables(layout, h1, eri) if layout.fci_size <= pt2.DENSE_KEYS else None
    if tables is not None:
        bits = cpu.key_bits(keys, layout.fci_size)
        ta, tb, sym = pt2._blocked_tables(layout, tables, h1, eri, orbsym)
        nptr, ncols, nvals, ndiag = cpu.upper_rows_tables(dets, keys, bits, cpu.bits_prefix(bits),
                                                          cpu.key_bits(old_keys, layout.fci_size), layout.nstr_b,
                                                          ta, tb, h1, eri, rows, sym)
    else:  # (the merge below leaves columns unsorted anyway)
        nptr, ncols, nvals, ndiag = cpu.upper_rows_groups(dets, *_groups(dets), h1, eri, rows, is_new, False)
    # a new row holds its pairs with every old determinant and with the new ones above it, an old row
    # its old pairs: every pair once, and each output row is one input row
    u = old.upper
    ptr, cols, vals = cpu.merge_rows(n, u.indptr.astype(np.int64), u.indices, u.data, pos.astype(np.int64), rows,
                                     nptr, ncols, nvals)
    diag = np.empty(n)
    diag[pos] = old.diag
    diag[rows] = ndiag
    return SparseH(diag, sp.csr_matrix((vals, cols, ptr), shape=(n, n)))


def _build_tables(dets, h1, eri, orbsym=None):
    """H from the per-string excitation tables (small FCI spaces, see ``pt2``); None where not applicable."""
    from rung.sci import pt2

    n = dets.shape[0]
    if n == 0:
        return None
    layout = _layout(dets, h1)
    if layout.fci_size > pt2.DENSE_KEYS:
        return None
    tables = pt2._string_tables(layout, h1, eri)
    if tables is None:
        return None
    keys = layout.keys(dets)
    order = None
    if np.any(np.diff(keys) <= 0):  # positions come from the key bit set: rows are built in key order
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        if np.any(np.diff(keys) == 0):
            return None  # repeated determinants: not a space
        dets = np.ascontiguousarray(dets[order])
    bits = cpu.key_bits(keys, layout.fci_size)
    ta, tb, sym = pt2._blocked_tables(layout, tables, h1, eri, orbsym)
    ptr, cols, vals, diag = cpu.upper_rows_tables(dets, keys, bits, cpu.bits_prefix(bits), np.empty(0, np.uint64),
                                                  layout.nstr_b, ta, tb, h1, eri, np.arange(n, dtype=np.int64), sym)
    if order is None:
        return SparseH(diag, sp.csr_matrix((vals, cols, ptr), shape=(n, n)))
    back = np.empty(n)  # the caller's order (every pair still once, not necessarily above the diagonal)
    back[order] = diag
    upper = sp.csr_matrix((vals, (np.repeat(order, np.diff(ptr)), order[cols])), shape=(n, n))
    return SparseH(back, upper)


class SpinSquared:
    """S^2 (dimensionless) in the space of sorted ``keys`` (n,) of ``dets`` (n, 2, nw) uint64, partners outside
    the space dropped: ``s2 @ x`` for x (n,) or (n, k) float64 without storing the matrix (one pass over
    the determinants), ``matrix()`` the CSR of :func:`s2_operator` (built once, on demand)."""

    def __init__(self, layout: Layout, dets: np.ndarray, keys: np.ndarray):
        self.layout, self.dets, self.keys = layout, np.ascontiguousarray(dets), keys
        self._csr = None

    def __matmul__(self, x: np.ndarray) -> np.ndarray:
        if self._csr is not None:
            return self._csr @ x
        lay = self.layout
        x2 = np.ascontiguousarray(np.asarray(x, np.float64).reshape(x.shape[0], -1))
        y = cpu.s2_matvec(self.dets, self.keys, lay.binom_a, lay.binom_b, lay.nstr_b, lay.norb,
                          0.5 * (lay.na - lay.nb), x2)
        return y.reshape(x.shape)

    def matrix(self) -> sp.csr_matrix:
        if self._csr is None:
            self._csr = s2_operator(self.layout, self.dets, self.keys)
        return self._csr


def s2_operator(layout: Layout, dets: np.ndarray, keys: np.ndarray) -> sp.csr_matrix:
    """S^2 (dimensionless) in the space of sorted ``keys`` (partners outside the space dropped)."""
    sz = 0.5 * (layout.na - layout.nb)
    ptr, cols, vals = cpu.s2_matrix(np.ascontiguousarray(dets), keys, layout.binom_a, layout.binom_b,
                                    layout.nstr_b, layout.norb, sz)
    n = dets.shape[0]
    return sp.csr_matrix((vals, cols, ptr), shape=(n, n))


__all__ = ["SparseH", "SpinSquared", "build", "s2_operator"]
