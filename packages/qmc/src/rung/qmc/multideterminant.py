"""Multideterminant trial functions psi = sum_k c_k D_up,k D_down,k, read from QMCPACK ``/MultiDet``.

Two components of the protocol in :mod:`rung.qmc.wavefunction`:

- :class:`TableMultiSlater` (the default): the table method, one reference inverse per spin and the
  determinants as minors of T = A0^-1 Phi over the unique spin strings; the cost grows with the
  number of unique strings (~sqrt(N_det) for selected-CI expansions) per move; the contraction over
  the determinants (O(N_det)) runs once per change of the moving spin (twice per sweep), not per move.
- :class:`MultiSlater`: one :class:`~rung.qmc.determinants.SlaterDeterminant` per determinant (own
  inverse and Sherman-Morrison updates), cost linear in N_det with an N^2 prefactor; kept as the
  independent oracle of the table method. With weights ``w_k = c_k D_k / psi``:

    psi'/psi = sum_k w_k (D_k'/D_k),   grad psi'/psi' = sum_k w_k D_k'/D_k grad D_k'/D_k' / (psi'/psi),
    lap psi / psi = sum_k w_k lap D_k / D_k

File layout: :mod:`rung.core.multidet` (QMCPACK's ``/MultiDet``; bit i of word k = orbital 64k + i;
a determinant is alpha creators before beta ones, each in ascending orbital order, so c_k multiplies
D_up D_down directly). The orbitals are those of the FCIDUMP the expansion came from (the DFT rung's orbitals).
The attribute ``/MultiDet.complete`` (sci rung) says whether the run that wrote it had finished.

CI coefficients as variational parameters (``Expansion.optimize_ci``, off by default so that existing
trial functions keep exactly their parameters and numbers): psi is unchanged by a common scale of the c_I,
so the coefficient of the largest determinant (the first with the largest |c|) stays fixed and the others
are the parameters ``"ci"`` (ndet - 1,), in determinant order. With O_I = D_I / psi (D_I = D_up,I D_down,I),
for a move of electron e the per-electron terms :meth:`~TableMultiSlater.parameter_terms` gives are, at R'
(g = grad_e psi / psi, l = lap_e psi / psi, both at R'),

    d_I ln psi(R') = O_I(R'),   d_I grad_e ln psi = grad_e D_I / psi - O_I g,
    d_I lap_e ln psi = lap_e D_I / psi - O_I l - 2 g . (grad_e D_I / psi - O_I g)

which is what :func:`rung.qmc.optimize.energy_and_derivatives` needs for any parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rung.core.errors import InputError
from rung.qmc.determinants import SlaterDeterminant


class SpinStrings(Sequence):
    """One spin's occupations of every determinant in string-index form: the distinct strings once and an
    int32 index per determinant (8 bytes per determinant for both spins, instead of a tuple reference each
    and, where built per determinant, the tuples themselves).

    Reads as the sequence of per-determinant occupations (the compatibility view, built on access:
    ``strings[I]`` is determinant I's tuple of 0-based occupied orbitals, ``len`` the number of
    determinants, equal to a tuple of the same occupations).

    Parameters
    ----------
    unique : tuple of tuples of int — the distinct strings, each ascending (sorted by
        :meth:`from_occupations` and the ``/MultiDet`` reader)
    index : (ndet,) int32 — determinant I has string ``unique[index[I]]``
    """

    __slots__ = ("unique", "index")

    def __init__(self, unique, index):
        self.unique = tuple(unique)
        self.index = np.ascontiguousarray(index, dtype=np.int32)
        i = self.index
        ok = i.ndim == 1 and (not i.size or 0 <= i.min() <= i.max() < len(self.unique))
        if not ok:
            raise InputError(f"string indices must be a 1-d array in [0, {len(self.unique)})")

    @classmethod
    def from_occupations(cls, occ) -> "SpinStrings":
        """From one occupation (sequence of orbitals) per determinant; the distinct strings sorted."""
        occ = [o if type(o) is tuple else tuple(o) for o in occ]
        unique = sorted(set(occ))
        pos = {t: j for j, t in enumerate(unique)}
        return cls(unique, np.fromiter((pos[o] for o in occ), np.int32, len(occ)))

    def __len__(self):
        return self.index.size

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self.unique[j] for j in self.index[i].tolist())
        return self.unique[self.index[i]]

    def __iter__(self):
        return (self.unique[j] for j in self.index.tolist())

    def __eq__(self, other):
        if isinstance(other, SpinStrings):
            return self.unique == other.unique and np.array_equal(self.index, other.index)
        return isinstance(other, Sequence) and not isinstance(other, str) and tuple(self) == tuple(other)

    __hash__ = None

    def __repr__(self):
        return f"SpinStrings({len(self.unique)} unique strings, {len(self)} determinants)"


@dataclass(frozen=True)
class Expansion:
    """coef (ndet,) float64; occ_up, occ_down: per determinant the 0-based occupied orbitals, kept as
    :class:`SpinStrings` (the distinct strings and an int32 index per determinant; a sequence of
    per-determinant occupations given here is converted); nstate; weight: the kept determinants' share of
    the file's sum of c^2 (1.0 untruncated); optimize_ci: a trial function built from it exposes the CI
    coefficients (all but the fixed one, :func:`fixed_determinant`) as the variational parameters ``"ci"``
    (default False: frozen)."""

    coef: np.ndarray
    occ_up: SpinStrings
    occ_down: SpinStrings
    nstate: int
    weight: float = 1.0
    optimize_ci: bool = False

    def __post_init__(self):
        for name in ("occ_up", "occ_down"):
            v = getattr(self, name)
            if not isinstance(v, SpinStrings):
                object.__setattr__(self, name, SpinStrings.from_occupations(v))
        if not len(self.occ_up) == len(self.occ_down) == np.size(self.coef):
            raise InputError(f"{np.size(self.coef)} coefficients for {len(self.occ_up)} alpha and "
                             f"{len(self.occ_down)} beta strings")


def fixed_determinant(coef) -> int:
    """Index of the coefficient kept fixed when the CI coefficients are optimised: the first with the
    largest |c| (psi does not change with a common scale of the coefficients, so one must stay)."""
    return int(np.argmax(np.abs(np.asarray(coef))))


def ci_coefficients(expansion: Expansion, free) -> np.ndarray:
    """The full coefficient vector (ndet,) of ``expansion`` with its free coefficients replaced by
    ``free`` (ndet - 1,) (the ``"ci"`` parameters of a trial function built from it)."""
    coef = np.array(expansion.coef, dtype=np.float64)
    free = np.asarray(free, dtype=np.float64)
    if free.shape != (coef.size - 1,):
        raise InputError(f"{free.size} free CI coefficients given for an expansion of {coef.size} determinants "
                         "(it needs the same determinants: same --max-dets, --min-coef, --weight)")
    coef[np.arange(coef.size) != fixed_determinant(coef)] = free
    return coef


def _ci_terms(x, coef, free):
    """Per-electron CI parameter terms from x (nw, P, 5, ndet): D_I, grad_e D_I, lap_e D_I at R' over a
    common denominator (any scale independent of I). Returns d_I ln psi (nfree, nw, P), d_I grad_e ln psi
    (nfree, nw, P, 3), d_I lap_e ln psi (nfree, nw, P) (module docstring)."""
    rho = x @ coef  # (nw, P, 5): psi', grad psi', lap psi' over the same denominator
    g = rho[..., 1:4] / rho[..., :1]  # (nw, P, 3)
    lap = rho[..., 4] / rho[..., 0]
    xf = x[..., free] / rho[..., :1, None]  # (nw, P, 5, nfree), over psi'
    o = xf[:, :, 0]
    dg = xf[:, :, 1:4] - o[:, :, None] * g[..., None]  # (nw, P, 3, nfree)
    dl = xf[:, :, 4] - o * lap[..., None] - 2.0 * np.einsum("wpx,wpxk->wpk", g, dg)
    return np.moveaxis(o, -1, 0), np.moveaxis(dg, -1, 0), np.moveaxis(dl, -1, 0)


def _bits(words) -> tuple:
    words = np.asarray(words).astype(np.uint64)
    return tuple(64 * k + b for k, w in enumerate(words) for b in range(64) if int(w) >> b & 1)


def _spin_strings(words) -> SpinStrings:
    """SpinStrings from the bit strings (ndet, nwords) of ``/MultiDet``: each distinct string decoded once."""
    uniq, inverse = np.unique(np.asarray(words).astype(np.uint64), axis=0, return_inverse=True)
    occ = [_bits(u) for u in uniq]
    order = sorted(range(len(occ)), key=occ.__getitem__)
    rank = np.empty(len(occ), dtype=np.int32)
    rank[order] = np.arange(len(occ), dtype=np.int32)
    return SpinStrings([occ[j] for j in order], rank[np.ravel(inverse)])


def read_multidet(path, max_dets: int | None = None, min_coef: float = 0.0, weight: float | None = None, *,
                  allow_incomplete: bool = False) -> Expansion:
    """Read a ``/MultiDet`` file (:func:`rung.core.multidet.read_multidet`, the one reader of the
    contract) and truncate it.

    Truncation rule: determinants sorted by |c| (descending, stable); keep those with |c| >= ``min_coef``;
    with ``weight`` (0 < weight <= 1) keep the shortest leading set whose sum of c^2 reaches that
    fraction of the whole expansion's; then at most ``max_dets``. An expansion the sci rung marked
    unfinished (``complete`` False: a killed or still running ``sci run``) is refused unless
    ``allow_incomplete``; files without the mark (other programs') are read.
    """
    from rung.core.multidet import read_multidet as read_contract

    md = read_contract(path)
    if md.complete is False and not allow_incomplete:
        raise InputError(f"{path}: the /MultiDet expansion is from an unfinished sci run (complete = False); "
                         "finish it with sci run, or accept it with --allow-incomplete")
    if weight is not None and not 0 < weight <= 1:
        raise InputError(f"the cumulative weight must be in (0, 1], got {weight}")
    coef = np.asarray(md.coef, dtype=np.float64)
    order = np.argsort(-np.abs(coef), kind="stable")
    order = order[np.abs(coef[order]) >= min_coef]
    if weight is not None and order.size:
        cum = np.cumsum(coef[order] ** 2) / np.sum(coef ** 2)
        order = order[:int(np.searchsorted(cum, weight * (1 - 1e-12))) + 1]
    order = order[:max_dets]
    if not order.size:
        raise InputError(f"{path}: no determinant left after the selection")
    return Expansion(coef[order], _spin_strings(np.asarray(md.alpha)[order]), _spin_strings(np.asarray(md.beta)[order]),
                     int(md.nstate), float(np.sum(coef[order] ** 2) / np.sum(coef ** 2)))


class MultiSlater:
    """sum_k c_k D_up,k D_down,k over one set of orbitals.

    Parameters
    ----------
    dets : list of SlaterDeterminant, one per determinant (built by :func:`build_multislater`)
    coef : (ndet,) float64 CI coefficients; nelec : (nup, ndown)
    optimize_ci : the coefficients but the fixed one (:func:`fixed_determinant`) are the parameters "ci"
    """

    def __init__(self, dets: list, coef, nelec, optimize_ci: bool = False):
        self.dets = dets
        self.coef = np.array(coef, dtype=np.float64)
        self.nelec = tuple(nelec)
        self.free = np.flatnonzero(np.arange(self.coef.size) != fixed_determinant(self.coef))
        self.parameters: dict = {"ci": self.coef[self.free].copy()} if optimize_ci else {}

    def _weights(self):
        sign = np.array([d.sign for d in self.dets])  # (ndet, nw)
        log = np.array([d.logdet for d in self.dets])
        ref = log.max(0)
        terms = self.coef[:, None] * sign * np.exp(log - ref)  # (ndet, nw)
        total = terms.sum(0)
        self.sign_, self.log_ = np.sign(total), ref + np.log(np.abs(total))
        self.w = terms / total  # (ndet, nw)

    def recompute(self, configs):
        if self.parameters:
            self.coef[self.free] = self.parameters["ci"]
        for d in self.dets:
            d.recompute(configs)
        self._weights()
        return self.sign_.copy(), self.log_.copy()

    def value(self):
        return self.sign_.copy(), self.log_.copy()

    def testvalue(self, e, epos, mask=None):
        w = self.w if mask is None else self.w[:, mask]
        r = np.array([d.testvalue(e, epos, mask) for d in self.dets])  # (ndet, nw[, npts])
        return np.einsum("kw,kw...->w...", w, r)

    def gradient_value(self, e, epos):
        out = [d.gradient_value(e, epos) for d in self.dets]
        r = np.array([o[1] for o in out])  # (ndet, nw)
        g = np.array([o[0] for o in out])  # (ndet, 3, nw)
        ratio = np.einsum("kw,kw->w", self.w, r)
        grad = np.einsum("kw,kxw->xw", self.w * r, g) / ratio
        return grad, ratio, [o[2] for o in out]

    def gradient_laplacian(self, e, epos):
        r = np.array([d.testvalue(e, epos) for d in self.dets])
        gl = [d.gradient_laplacian(e, epos) for d in self.dets]
        wr = self.w * r
        ratio = wr.sum(0)
        grad = np.einsum("kw,kxw->xw", wr, np.array([x[0] for x in gl])) / ratio
        lap = np.einsum("kw,kw->w", wr, np.array([x[1] for x in gl])) / ratio
        return grad, lap

    def gradient_laplacian_all(self):
        gl = [d.gradient_laplacian_all() for d in self.dets]
        grad = np.einsum("kw,kwex->wex", self.w, np.array([x[0] for x in gl]))
        lap = np.einsum("kw,kwe->we", self.w, np.array([x[1] for x in gl]))
        return grad, lap

    def accept(self, e, epos, mask, saved=None):
        saved = saved if saved is not None else [None] * len(self.dets)
        for d, s in zip(self.dets, saved):
            d.accept(e, epos, mask, s)
        self._weights()

    def resample(self, idx):
        for d in self.dets:
            d.resample(idx)
        self._weights()

    def _over_psi(self):
        """D_k / psi (ndet, nw) at the current positions."""
        return np.array([d.sign * np.exp(d.logdet - self.log_) for d in self.dets]) * self.sign_

    def pgradient(self):
        """d ln psi / d c_I = D_I / psi: {"ci": (nw, ndet - 1)} when optimised, else {}."""
        if not self.parameters:
            return {}
        return {"ci": self._over_psi()[self.free].T}

    def parameter_terms(self, e, epos):
        """d_I of (ln psi, grad_e ln psi, lap_e ln psi) with electron e at epos (nw, P, 3), every free
        coefficient: (nfree, nw, P), (nfree, nw, P, 3), (nfree, nw, P) (module docstring)."""
        nw, npts = epos.shape[:2]
        x = np.empty((nw, npts, 5, len(self.dets)))
        base = self._over_psi()  # (ndet, nw)
        for k, d in enumerate(self.dets):
            for p in range(npts):
                r = d.testvalue(e, epos[:, p]) * base[k]  # D_k(R') / psi(R)
                g, lap = d.gradient_laplacian(e, epos[:, p])
                x[:, p, 0, k], x[:, p, 1:4, k], x[:, p, 4, k] = r, (g * r).T, lap * r
        return _ci_terms(x, self.coef, self.free)

    def parameter_values(self, e, epos):
        """d_I ln psi with electron e at epos (nw, P, 3): (nfree, nw, P)."""
        return self.parameter_terms(e, epos)[0]


def _string_tables(strings, ref):
    """Excitation tables of ``strings`` (tuples of ascending orbitals) against ``ref``.

    Returns the used orbitals ``used`` (ascending), ``ref_cols`` (n,) the reference's columns in
    ``used``, and per string its degree k (ns,), holes as rows of T and particles as columns of T
    (ns, kmax) int (padded with 0), and the sign (ns,) with D_S / D_ref = sign det T[holes, particles]."""
    used = sorted(set().union(*map(set, strings)) | set(ref))
    col = {o: j for j, o in enumerate(used)}
    ref_cols = np.array([col[o] for o in ref], dtype=np.intp)
    n, rset = len(ref), set(ref)
    excitations = []
    for s in strings:
        sset = set(s)
        excitations.append(([j for j, o in enumerate(ref) if o not in sset], [col[o] for o in s if o not in rset]))
    kmax = max(1, max(len(h) for h, _ in excitations))
    deg = np.array([len(h) for h, _ in excitations], dtype=np.int64)
    holes, parts, sign = np.zeros((len(strings), kmax), np.int64), np.zeros((len(strings), kmax), np.int64), np.ones(len(strings))
    for i, (s, (h, p)) in enumerate(zip(strings, excitations)):
        holes[i, :len(h)], parts[i, :len(p)] = h, p
        if h:  # the sign: det T[:, S] with T[:, ref] = I and T[holes, parts] = I_k (all else zero)
            t = np.zeros((n, len(used)))
            t[np.arange(n), ref_cols] = 1.0
            t[h, p] = 1.0
            sign[i] = np.sign(round(np.linalg.det(t[:, [col[o] for o in s]])))
    return np.array(used, dtype=np.intp), ref_cols, (deg, holes, parts, sign)


class TableMultiSlater:
    """sum_I c_I D_up,a(I) D_down,b(I) by the table method: the work grows with the number of unique
    spin strings, not with the number of determinants times N^2.

    Per spin, with the reference string's Slater matrix A0 (the largest determinant's string), its
    inverse kept by Sherman-Morrison updates, and Phi[i, j] = phi_j(r_i) over every orbital the
    expansion uses, the table T = A0^-1 Phi (n x m; T[:, ref] = I) gives each string S with holes h
    (rows of the reference) and particles p (columns) as

        D_S / D_0 = sign_S det T[h, p]                                  (k x k, k = excitation degree)

    Replacing row i of Phi by a vector d (an electron moved, or a derivative of row i: the determinant
    is linear in each row) gives, with a = A0^-1[:, i], rho = d[ref] . a and w = d - T^T d[ref],

        D_S' / D_0 = sign_S det [[T[h, p], a[h]], [-w[p], rho]]          ((k+1) x (k+1), no division)

    (rho is the reference ratio; after an accepted move T <- T + a w^T / rho). The strings are combined
    through the sparse coefficient matrix C[a, b] (a bilinear form): psi / (D0_up D0_dn) =
    sum_a R_up[a] (C R_dn)[a] = sum_b R_dn[b] (C^T R_up)[b]; the partial contraction of the spin not
    moving (:attr:`Y`, from the determinants' string indices, no matrix kept) is fixed while one spin's
    electrons move, so a move costs O(unique strings) and the contraction is redone only when the
    moving spin changes. psi is linear in the orbital row of any one electron, so summed over the
    strings the ratios of electron e are one dot product, psi(r_e = r')/psi = phi(r') . beta_e with the
    ratio vector beta_e (m,) (:meth:`beta`): the ratio, gradient and Laplacian at any position, the
    nonlocal ECP's quadrature points (through the single determinant's fused kernel, beta C^T in the AO
    basis) and the drift-diffusion sweep (:func:`rung.qmc.vmc.sweep`'s fused path) all take it; the
    bordered minors above serve the per-determinant ratios of the CI parameter derivatives. The
    kernels: :mod:`rung.qmc._kernels.table`. References: Clark et al., J. Chem. Phys. 135, 244105
    (2011); Scemama et al., J. Comput. Chem. 37, 1866 (2016).

    Parameters
    ----------
    basis : AtomicBasis
    mo_coeff : (nao, nmo) float64, the orbitals the expansion's strings index
    expansion : Expansion (with ``optimize_ci`` its coefficients but the fixed one are the parameters "ci")
    nelec : (nup, ndown)
    backend, cusp_atoms : as for :class:`~rung.qmc.orbitals.MolecularOrbitals`
    """

    def __init__(self, basis, mo_coeff, expansion: Expansion, nelec, backend: str = "numba", cusp_atoms=None):
        from rung.qmc.orbitals import MolecularOrbitals

        from rung.qmc._kernels import table

        self.nelec = (int(nelec[0]), int(nelec[1]))
        if expansion.optimize_ci:  # own copy: recompute writes the "ci" parameters into it
            self.coef = np.array(expansion.coef, dtype=np.float64)
        else:  # frozen: the expansion's array, read-only (no copy: 8 bytes per determinant)
            self.coef = np.asarray(expansion.coef, dtype=np.float64).view()
            self.coef.flags.writeable = False
        self.free = np.arange(self.coef.size) != fixed_determinant(self.coef)  # (ndet,) bool: the free c_I
        self.parameters: dict = {"ci": self.coef[self.free].copy()} if expansion.optimize_ci else {}
        self._numba = backend in ("numba", "cupy")  # "cupy": the AOs on the device, the tables on the CPU
        if self._numba:
            self._string_minors, self._replaced_kernel = table.string_minors, table.replaced
            self._ratio_gradient, self._contract_kernel = table.ratio_gradient, table.contract
        else:
            self._string_minors, self._replaced_kernel = table.string_minors_reference, table.replaced_reference
            self._ratio_gradient, self._contract_kernel = table.ratio_gradient_reference, table.contract_reference
        self._beta = {}
        self.orbitals, self.ref, self.tables, self.nstrings = [], [], [], []
        lead = int(np.argmax(np.abs(self.coef)))
        for s, occ in enumerate((expansion.occ_up, expansion.occ_down)):
            used, ref_cols, tables = _string_tables(occ.unique, occ[lead])
            self.orbitals.append(MolecularOrbitals(basis, np.asarray(mo_coeff)[:, used], backend, cusp_atoms))
            self.ref.append(ref_cols)
            self.tables.append(tables)
            self.nstrings.append(len(occ.unique))
        # the determinants' strings (ndet,) int32 per spin, shared with the expansion (no copy, no CSR map)
        self.det_strings = [expansion.occ_up.index, expansion.occ_down.index]

    def _spin(self, e):
        return (0, e) if e < self.nelec[0] else (1, e - self.nelec[0])

    # -- string ratios -------------------------------------------------------------------------
    def _minors(self, s, t):
        """sign det X_S (nw, ns) and sign adj X_S (nw, ns, kmax, kmax) for every string of spin s."""
        return self._string_minors(np.ascontiguousarray(t), *self.tables[s])

    def beta(self, e):
        """The ratio vector of electron e, (nw, m) float64 over the orbitals of its spin (``orbitals[s]``):
        psi(r_e = r') / psi = sum_j phi_j(r') beta[w, j] for any r' (psi is linear in one electron's
        orbital row; :mod:`rung.qmc._kernels.table`). Kept until the state changes."""
        if e not in self._beta:
            s, i = self._spin(e)
            self._beta[e] = self._ratio_vectors(s, np.ascontiguousarray(self.inverse[s][:, None, :, i]))[:, 0]
        return self._beta[e]

    def _ratio_vectors(self, s, a):
        """beta (nw, G, m) of spin s for the columns a (nw, G, n) of A0^-1: numba backend z = g a / q from
        the kept :meth:`_g_of` (an m x n product per electron), NumPy backend string by string
        (:func:`~rung.qmc._kernels.table.ratio_vectors_reference`, its oracle); beta = z + (a - T z) on the
        reference columns."""
        from rung.qmc._kernels import table

        if not self._numba:
            return table.ratio_vectors_reference(a, self.T[s], self.adj[s], self._y_of(s), self.q,
                                                 *self.tables[s][:3], self.ref[s])
        z = np.einsum("wmn,wgn->wgm", self._g_of(s), a) / self.q[:, None, None]
        tz = np.einsum("wjm,wgm->wgj", self.T[s], z)
        z[:, :, self.ref[s]] += a - tz
        return z

    def ratio_vector(self, e):
        """(basis, b) with psi(r_e = r')/psi = sum_mu chi_mu(r') b[w, mu] for the cartesian AOs chi of
        ``basis``: b = beta C_cart^T (nwalkers, ncart) float64 (plain LCAO orbitals only, as
        :meth:`rung.qmc.determinants.SlaterDeterminant.ratio_vector`)."""
        s, _ = self._spin(e)
        orb = self.orbitals[s]
        return orb.basis, np.ascontiguousarray(self.beta(e) @ orb.coef_cart.T)

    def _replaced(self, s, a, d):
        """D_S' / D_0 with one row replaced: a (nw, G, n) columns of A0^-1 (one per group), d (nw, G, R, m)
        the replacement rows -> (nw, G, R, ns) (the reference gets rho)."""
        dref = d[..., self.ref[s]]
        rho = np.einsum("wgrj,wgj->wgr", dref, a)
        w = d - np.einsum("wjm,wgrj->wgrm", self.T[s], dref)
        return self._replaced_kernel(self.R[s], self.adj[s], np.ascontiguousarray(a), w, rho, *self.tables[s][:3])

    def _contract(self, s, r=None):
        """The other spin contracted with the coefficients, Y_s[w, a] = sum_{I: a_I = a} c_I R_other[w, b_I]
        (nw, ns_s): O(N_det), once per change of the moving spin, never per move. r (nw, ns_other) in place
        of R_other contracts any per-string quantity of the other spin the same way (the forces' traces)."""
        o = 1 - s
        r = self.R[o] if r is None else r
        return self._contract_kernel(np.ascontiguousarray(r), self.det_strings[s], self.det_strings[o],
                                     self.coef, self.nstrings[s])

    @property
    def Y(self):
        """[Y_up (nw, ns_up), Y_dn (nw, ns_dn)]: each spin's partial contraction (:meth:`_contract`), so that
        psi / (D0_up D0_dn) = q = R_s . Y_s for either s. Moves of spin s change R_s, so Y of the other spin
        goes stale and is rebuilt here when next read: a sweep (all up electrons, then all down) rebuilds
        each once, not once per accepted move."""
        for s in (0, 1):
            self._y_of(s)
        return self._y

    def _y_of(self, s):
        """Y_s alone (rebuilt if stale), the other spin's left as it is."""
        if self._y[s] is None:
            self._y[s] = self._contract(s)
            self._g[s] = None
        return self._y[s]

    def _g_of(self, s):
        """g_s (nw, m_s, n_s) = sum_S Y_S adj_S scattered onto (particle, hole) (:func:`rung.qmc._kernels.
        table.ratio_gradient`): every ratio vector of spin s is g_s a / q. Rebuilt when Y_s was (a change
        of the moving spin), updated by the accept kernels for the walkers whose spin-s minors changed."""
        y = self._y_of(s)
        if self._g[s] is None:
            self._g[s] = self._ratio_gradient(self.adj[s], y, *self.tables[s][:3], self.orbitals[s].nmo,
                                              self.nelec[s])
        return self._g[s]

    def _update_total(self):
        self._g = [None, None]
        self._y = [self._contract(0), None]
        self.q = np.einsum("wa,wa->w", self.R[0], self._y[0])
        self._set_total()

    def _set_total(self):
        self.sign_ = self.sign0[0] * self.sign0[1] * np.sign(self.q)
        with np.errstate(divide="ignore"):
            self.log_ = self.logdet0[0] + self.logdet0[1] + np.log(np.abs(self.q))

    # -- protocol ------------------------------------------------------------------------------
    def recompute(self, configs):
        if self.parameters and not np.array_equal(self.coef[self.free], self.parameters["ci"]):
            self.coef[self.free] = self.parameters["ci"]
        self.configs = np.array(configs, dtype=np.float64)
        self._beta = {}
        nw = configs.shape[0]
        self.mo, self.inverse, self.T, self.R, self.adj, self.sign0, self.logdet0 = [], [], [], [], [], [], []
        start = 0
        for s in (0, 1):
            n, m = self.nelec[s], self.orbitals[s].nmo
            if n == 0:
                self.mo.append(np.zeros((5, nw, 0, m)))
                self.inverse.append(np.zeros((nw, 0, 0)))
                self.T.append(np.zeros((nw, 0, m)))
                self.R.append(np.ones((nw, self.nstrings[s])))
                self.adj.append(np.zeros((nw, self.nstrings[s], 1, 1)))
                self.sign0.append(np.ones(nw))
                self.logdet0.append(np.zeros(nw))
                continue
            mo = self.orbitals[s](self.configs[:, start:start + n], 2)  # (5, nw, n, m)
            a0 = mo[0][:, :, self.ref[s]]
            sign, logdet = np.linalg.slogdet(a0)
            if np.any(sign == 0):
                raise FloatingPointError("a walker sits on a node of the reference determinant")
            inv = np.linalg.inv(a0)
            t = inv @ mo[0]
            self.mo.append(mo)
            self.inverse.append(inv)
            self.T.append(t)
            det, adj = self._minors(s, t)
            self.R.append(det)
            self.adj.append(adj)
            self.sign0.append(sign)
            self.logdet0.append(logdet)
            start += n
        self._update_total()
        return self.sign_.copy(), self.log_.copy()

    def value(self):
        return self.sign_.copy(), self.log_.copy()

    def testvalue(self, e, epos, mask=None):
        s, _ = self._spin(e)
        d = self.orbitals[s](epos, 0)[0]  # (nw, [npts,] m)
        beta = self.beta(e) if mask is None else self.beta(e)[mask]
        return np.einsum("w...m,wm->w...", d, beta)

    def _rows(self, e, epos):
        """The orbital rows (5, nw, m) at epos (cached at the current position)."""
        s, i = self._spin(e)
        return self.mo[s][:, :, i] if self._is_current(e, epos) else self.orbitals[s](epos, 2)

    def _is_current(self, e, epos):
        return epos.shape == self.configs[:, e].shape and np.array_equal(epos, self.configs[:, e])

    def gradient_value(self, e, epos):
        v = self._rows(e, epos)
        t = np.einsum("xwm,wm->xw", v[:4], self.beta(e))
        return t[1:4] / t[0], t[0], v

    def gradient_laplacian(self, e, epos):
        t = np.einsum("xwm,wm->xw", self._rows(e, epos), self.beta(e))
        return t[1:4] / t[0], t[4] / t[0]

    def ratio_matrix(self, s):
        """The ratio vectors (:meth:`beta`) of every electron of spin s as rows, (nw, n_s, m) float64: G = d ln psi /
        d Phi for that spin's orbital matrix Phi[i, j] = phi_j(r_i). Cached per electron until the state changes."""
        start, n = (0 if s == 0 else self.nelec[0]), self.nelec[s]
        if n and all(start + i in self._beta for i in range(n)):
            return np.stack([self._beta[start + i] for i in range(n)], axis=1)
        a = np.ascontiguousarray(np.swapaxes(self.inverse[s], 1, 2))  # (nw, n, n): a[w, i] = A0^-1[:, i]
        beta = self._ratio_vectors(s, a)  # (nw, n, m)
        self._beta.update({start + i: beta[:, i] for i in range(n)})  # the nonlocal ECP's next
        return beta

    def gradient_laplacian_all(self):
        nw = self.configs.shape[0]
        ne = sum(self.nelec)
        grad, lap = np.zeros((nw, ne, 3)), np.zeros((nw, ne))
        start = 0
        for s in (0, 1):
            n = self.nelec[s]
            if n == 0:
                continue
            beta = self.ratio_matrix(s)  # (nw, n, m)
            t = np.einsum("xwim,wim->wix", self.mo[s][1:5], beta)
            grad[:, start:start + n] = t[..., :3]
            lap[:, start:start + n] = t[..., 3]
            start += n
        return grad, lap

    def accept(self, e, epos, mask, saved=None):
        s, i = self._spin(e)
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        self._beta = {}
        v5 = saved if saved is not None else self.orbitals[s](epos, 2)
        if self._numba:
            from rung.qmc._kernels.table import accept

            accept(mask, i, np.ascontiguousarray(v5), *self._accept_arguments(s))
            self.configs[mask, e] = epos[mask]
            self.moved(s)
            return
        self.mo[s][:, mask, i] = v5[:, mask]
        d = v5[0][mask]  # (nm, m)
        inv, t = self.inverse[s][mask], self.T[s][mask]
        a = inv[:, :, i].copy()
        ref = self.ref[s]
        rho = np.einsum("wj,wj->w", d[:, ref], a)
        w = d - np.einsum("wjm,wj->wm", t, d[:, ref])
        t = t + np.einsum("wj,wm->wjm", a, w) / rho[:, None, None]
        va = np.einsum("wk,wkn->wn", d[:, ref], inv)
        va[:, i] -= 1.0
        self.inverse[s][mask] = inv - np.einsum("wk,wn->wkn", a, va) / rho[:, None, None]
        self.T[s][mask] = t
        self.R[s][mask], self.adj[s][mask] = self._minors(s, t)
        self.sign0[s][mask] *= np.sign(rho)
        self.logdet0[s][mask] += np.log(np.abs(rho))
        self.configs[mask, e] = epos[mask]
        self.q[mask] = np.einsum("wa,wa->w", self.R[s][mask], self._y_of(s)[mask])
        self._g[s] = None
        self.moved(s)

    def moved(self, s):
        """After the accept kernels updated spin s's state and q in place: sign and log|psi|, the ratio
        vectors dropped, the other spin's partial contraction marked stale (:attr:`Y`)."""
        self._beta = {}
        self._y[1 - s] = self._g[1 - s] = None
        self._set_total()

    def _accept_arguments(self, s):
        """The state arguments of :func:`rung.qmc._kernels.table.accept` after (mask, i, v5) for spin s
        (arrays updated in place; Y_s and g_s rebuilt first if stale)."""
        g = self._g_of(s)
        return (self.mo[s], self.inverse[s], self.T[s], self.R[s], self.adj[s], self.sign0[s], self.logdet0[s],
                self._y[s], self.q, g, self.ref[s], *self.tables[s])

    def resample(self, idx):
        self.configs = self.configs[idx]
        self._beta = {}
        self.mo = [m[:, idx] for m in self.mo]
        for name in ("inverse", "T", "R", "adj", "sign0", "logdet0"):
            setattr(self, name, [x[idx] for x in getattr(self, name)])
        self._y = [None if y is None else y[idx] for y in self._y]  # rows of walkers: no new contraction
        self._g = [None if g is None else g[idx] for g in self._g]
        self.q = self.q[idx]
        self._set_total()

    def _det_ratios(self, s, r):
        """D_I / (D0_up D0_dn) (..., ndet) from the string ratios r (nw, ..., ns) of spin s (the other
        spin's from the current state)."""
        other = self.R[1 - s][:, self.det_strings[1 - s]]  # (nw, ndet)
        return r[..., self.det_strings[s]] * other.reshape(other.shape[:1] + (1,) * (r.ndim - 2) + other.shape[1:])

    def pgradient(self):
        """d ln psi / d c_I = D_I / psi: {"ci": (nw, ndet - 1)} when optimised, else {}."""
        if not self.parameters:
            return {}
        return {"ci": self._det_ratios(0, self.R[0])[:, self.free] / self.q[:, None]}

    def parameter_terms(self, e, epos):
        """d_I of (ln psi, grad_e ln psi, lap_e ln psi) with electron e at epos (nw, P, 3), every free
        coefficient: (nfree, nw, P), (nfree, nw, P, 3), (nfree, nw, P) (module docstring). The value,
        gradient and Laplacian rows at epos replace row e of each string's matrix (:meth:`_replaced`)."""
        s, i = self._spin(e)
        nw, npts = epos.shape[:2]
        v = self.orbitals[s](epos, 2)  # (5, nw, P, m)
        d = np.moveaxis(v, 0, 2).reshape(nw, 1, npts * 5, -1)
        r = self._replaced(s, self.inverse[s][:, None, :, i], d).reshape(nw, npts, 5, -1)  # (nw, P, 5, ns)
        return _ci_terms(self._det_ratios(s, r), self.coef, self.free)

    def parameter_values(self, e, epos):
        """d_I ln psi with electron e at epos (nw, P, 3) (the first of :meth:`parameter_terms`, from the
        value rows only: the nonlocal ECP quadrature points need no more): (nfree, nw, P)."""
        s, i = self._spin(e)
        d = self.orbitals[s](epos, 0)[0]  # (nw, P, m)
        x = self._det_ratios(s, self._replaced(s, self.inverse[s][:, None, :, i], d[:, None])[:, 0])  # (nw, P, ndet)
        return np.moveaxis(x[..., self.free] / (x @ self.coef)[..., None], -1, 0)


def build_multislater(basis, mo_coeff, expansion: Expansion, nelec, backend: str = "numba",
                      cusp_atoms=None, method: str = "table"):
    """Multideterminant component over orbitals mo_coeff (nao, nmo) (restricted) for an expansion.

    ``method`` "table" (default): :class:`TableMultiSlater`, cost with the unique spin strings;
    "per-determinant": :class:`MultiSlater`, one Slater determinant and inverse per determinant (the
    independent oracle of the table method in the tests)."""
    from rung.qmc.orbitals import MolecularOrbitals

    mo_coeff = np.asarray(mo_coeff)
    if expansion.nstate > mo_coeff.shape[1]:
        raise InputError(f"the expansion uses {expansion.nstate} orbitals, only {mo_coeff.shape[1]} are given")
    for s, strings in enumerate((expansion.occ_up, expansion.occ_down)):
        for occ in strings.unique:
            if len(occ) != nelec[s]:
                raise InputError(f"a determinant occupies {len(occ)} {('alpha', 'beta')[s]} orbitals, the molecule has "
                                 f"{nelec} electrons")
    if method == "table":
        return TableMultiSlater(basis, mo_coeff, expansion, nelec, backend, cusp_atoms)
    if method != "per-determinant":
        raise ValueError(f"method must be 'table' or 'per-determinant', got {method!r}")
    dets = []
    for up, dn in zip(expansion.occ_up, expansion.occ_down):
        mos = (MolecularOrbitals(basis, mo_coeff[:, list(up)], backend, cusp_atoms),
               MolecularOrbitals(basis, mo_coeff[:, list(dn)], backend, cusp_atoms))
        dets.append(SlaterDeterminant(mos, nelec))
    return MultiSlater(dets, expansion.coef, nelec, expansion.optimize_ci)
