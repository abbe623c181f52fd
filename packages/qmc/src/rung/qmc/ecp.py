"""ccECP pseudopotentials (PySCF's tables) in real space: local part and nonlocal projectors.

PySCF stores each channel as ``[l, [terms r^0, terms r^1, ...]]`` with terms ``[exponent, coefficient]``
meaning ``v_l(r) = sum_n sum_(a, c) c r^(n-2) exp(-a r^2)``; ``l = -1`` is the local channel. The
nuclear attraction ``-Z_eff / r`` (Z_eff = Z - core electrons) is not part of it (see
:mod:`rung.qmc.hamiltonian`). The nonlocal operator on electron i near atom A,

    V_NL psi / psi = sum_l v_l(r) (2l + 1) / (4 pi) int dOmega' P_l(cos theta') psi(r'_i) / psi(r_i),

is integrated with the 12-point icosahedral rule (exact to degree 5), rotated randomly per walker at
every evaluation (unbiased), for the walkers whose electron lies within the range of a projector
(|v_l| >= 1e-10 Ha; beyond it the term is dropped). The ratios psi(r')/psi(r) at all quadrature points
of one electron near all ECP atoms come from one batched ``testvalue`` call (generic path) or, for a
plain Slater(-Jastrow) trial function, from one numba kernel (:func:`rung.qmc._kernels.cpu.ecp_nonlocal`,
the same points and random rotations; AO radial parts from :class:`rung.qmc.orbitals.RadialSplines`).
Reference: L. Mitas, E. L. Shirley, D. M. Ceperley, J. Chem. Phys. 95, 3467 (1991);
ccECPs: M. C. Bennett et al., J. Chem. Phys. 147, 224106 (2017).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import eval_legendre


def icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """12 unit vectors (12, 3) and weights (12,) summing to one (fresh arrays; see ``_ICOSAHEDRON``)."""
    g = (1.0 + np.sqrt(5.0)) / 2.0
    v = []
    for a in (-1.0, 1.0):
        for b in (-g, g):
            v += [(0.0, a, b), (a, b, 0.0), (b, 0.0, a)]
    v = np.array(v)
    return v / np.linalg.norm(v, axis=1, keepdims=True), np.full(12, 1.0 / 12.0)


_ICOSAHEDRON = icosahedron()  # the default rule, built once (read only)
for _a in _ICOSAHEDRON:
    _a.flags.writeable = False


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3, 3) uniformly distributed rotation matrices (from normalised Gaussian quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    m = np.empty((n, 3, 3))
    m[:, 0, 0] = 1 - 2 * (y * y + z * z)
    m[:, 0, 1] = 2 * (x * y - z * w)
    m[:, 0, 2] = 2 * (x * z + y * w)
    m[:, 1, 0] = 2 * (x * y + z * w)
    m[:, 1, 1] = 1 - 2 * (x * x + z * z)
    m[:, 1, 2] = 2 * (y * z - x * w)
    m[:, 2, 0] = 2 * (x * z - y * w)
    m[:, 2, 1] = 2 * (y * z + x * w)
    m[:, 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def _channel(terms) -> list:
    out = []
    for n, group in enumerate(terms):
        for a, c in group:
            out.append((n - 2, float(a), float(c)))
    return out


def _flatten(channels):
    """Channels [(power, exponent, coefficient), ...] as flat arrays for the numba kernels: term ranges
    (nch+1,) int64 (channel k owns terms start[k] .. start[k+1] - 1), powers, exponents (Bohr^-2) and
    coefficients (Hartree), (nterm,) float64 each."""
    start, terms = [0], []
    for ch in channels:
        terms.extend(ch)
        start.append(len(terms))
    p, a, c = np.array(terms, dtype=np.float64).reshape(-1, 3).T
    return np.array(start, dtype=np.int64), np.ascontiguousarray(p), np.ascontiguousarray(a), np.ascontiguousarray(c)


def _radial(channel, r):
    v = np.zeros_like(r)
    for p, a, c in channel:
        v = v + c * r**p * np.exp(-a * r * r)
    return v


@dataclass(frozen=True)
class ECP:
    """Real-space ccECP of a molecule: ``atoms`` [(index, coords (3,) Bohr, local channel, {l: channel})]."""

    atoms: tuple

    def __post_init__(self):
        object.__setattr__(self, "_cut", self.cutoffs())

    @classmethod
    def from_mol(cls, mol) -> "ECP":
        atoms = []
        for ia in range(mol.natm):
            sym = mol.atom_symbol(ia)
            key = sym if sym in mol._ecp else mol.atom_pure_symbol(ia)
            if key not in mol._ecp:
                continue
            local, nonlocal_ = [], {}
            for l, terms in mol._ecp[key][1]:
                if l < 0:
                    local = _channel(terms)
                else:
                    nonlocal_[int(l)] = _channel(terms)
            atoms.append((ia, mol.atom_coord(ia).copy(), tuple(local), nonlocal_))
        return cls(tuple(atoms))

    @property
    def has_nonlocal(self) -> bool:
        return any(nl for *_, nl in self.atoms)

    def local(self, configs) -> np.ndarray:
        """Local ECP energy summed over electrons and atoms: (nwalkers,) Hartree; configs (nw, ne, 3) Bohr."""
        v = np.zeros(configs.shape[0])
        for _, R, local, _ in self.atoms:
            r = np.linalg.norm(configs - R, axis=-1)  # (nw, ne)
            v += _radial(local, r).sum(-1)
        return v

    def local_tables(self):
        """The local channels as flat arrays: ECP atom positions (nloc, 3) Bohr, term ranges (nloc+1,) int64,
        powers (int64), exponents (Bohr^-2), coefficients (Hartree) (nterm,) each; built once."""
        if "_local_tables" not in self.__dict__:
            start, p, a, c = _flatten([local for _, _, local, _ in self.atoms])
            R = np.array([coords for _, coords, _, _ in self.atoms], dtype=np.float64).reshape(-1, 3)
            tab = (R, start, p.astype(np.int64), a, c)
            object.__setattr__(self, "_local_tables", tab)
        return self._local_tables

    def cutoffs(self, tol: float = 1e-10) -> list:
        """Per ECP atom: radius (Bohr) beyond which every nonlocal |v_l(r)| < tol (0 without channels)."""
        r = np.linspace(1e-3, 20.0, 4000)
        out = []
        for _, _, _, nl in self.atoms:
            v = np.max([np.abs(_radial(ch, r)) for ch in nl.values()], axis=0) if nl else np.zeros_like(r)
            big = np.nonzero(v >= tol)[0]
            out.append(float(r[min(big[-1] + 1, r.size - 1)]) if big.size else 0.0)
        return out

    def nonlocal_electron(self, wf, e, configs, rng, grid=None, walkers=None):
        """Nonlocal terms of electron e, all walkers (or ``walkers``), all ECP atoms in one batched ratio call.

        ``walkers`` : (m,) int, distinct walker indices: evaluate these walkers only (rows of ``configs``
        and of ``wf``'s state), drawing m random rotations (those the full call would give them, were
        the generator's draws for them the same).

        Returns
        -------
        terms : (nwalkers or m, npts) float64, Hartree — contribution of each quadrature point to V_NL
            psi/psi (their sum is the nonlocal energy of electron e)
        points : (nwalkers or m, npts, 3) float64, Bohr — the quadrature points (for T-moves)
        """
        nl_atoms = [(R, nl, rc) for (_, R, _, nl), rc in zip(self.atoms, self._cut) if nl]
        x = configs[:, e] if walkers is None else configs[walkers, e]  # (nw, 3)
        nw = x.shape[0]
        if not nl_atoms:
            return np.zeros((nw, 0)), np.zeros((nw, 0, 3))
        if grid is None:
            fused = _fused_inputs(wf, e, walkers)
            if fused is not None:
                return self._nonlocal_fused(fused, x, rng)
        dirs, weights = grid if grid is not None else _ICOSAHEDRON
        rot = random_rotations(rng, nw)  # (nw, 3, 3)
        # rotated directions qd[w, q, i] = sum_j rot[w, i, j] dirs[q, j]  (nw, nq, 3), summed over j in order
        qd = rot[:, None, :, 0] * dirs[:, None, 0] + rot[:, None, :, 1] * dirs[:, None, 1]
        qd += rot[:, None, :, 2] * dirs[:, None, 2]
        nq = dirs.shape[0]
        pts, near_pts, coef, pair_w, pair_a = [], [], [], [], []
        for a, (R, nl, rc) in enumerate(nl_atoms):
            d = x - R
            r = np.linalg.norm(d, axis=-1)  # (nw,)
            p = R + r[:, None, None] * qd  # (nw, nq, 3)
            pts.append(p)
            near = np.nonzero(r < rc)[0]  # walkers whose electron e is inside this projector's range
            if near.size == 0:
                continue
            rn = r[near]
            rhat = d[near] / np.where(rn > 0, rn, 1.0)[:, None]
            cos = np.einsum("wqi,wi->wq", qd[near], rhat)
            c = np.zeros((near.size, nq))
            for l, ch in nl.items():
                c += (2 * l + 1) * _radial(ch, rn)[:, None] * eval_legendre(l, cos)
            coef.append(c * weights)
            near_pts.append(p[near])
            pair_w.append(near)
            pair_a.append(a)
        points = np.concatenate(pts, axis=1)  # (nw, natom*nq, 3)
        terms = np.zeros(points.shape[:2])
        if pair_w:  # one batched ratio call over all (walker, atom) pairs in range
            rows = np.concatenate(pair_w)  # walker of each pair, in wf's numbering below
            ratio = wf.testvalue(e, np.concatenate(near_pts), rows if walkers is None else walkers[rows])  # (npair, nq)
            vals = np.concatenate(coef) * ratio
            t3 = terms.reshape(nw, len(nl_atoms), nq)  # a view: atom a owns columns a*nq .. (a+1)*nq - 1
            start = 0
            for near, a in zip(pair_w, pair_a):
                t3[near, a] = vals[start:start + near.size]
                start += near.size
        return terms, points

    def _packed(self):
        """The nonlocal channels as flat arrays, a :class:`rung.qmc._kernels.cpu.ecp.Channels` (built once)."""
        if "_pack" not in self.__dict__:
            from rung.qmc._kernels.cpu.ecp import Channels

            nl_atoms = [(R, nl, rc) for (_, R, _, nl), rc in zip(self.atoms, self._cut) if nl]
            chans = [(a, l, ch) for a, (_, nl, _) in enumerate(nl_atoms) for l, ch in nl.items()]
            tstart, tp, ta, tc = _flatten([ch for *_, ch in chans])
            pack = Channels(atom_R=np.array([R for R, _, _ in nl_atoms], dtype=np.float64).reshape(-1, 3),
                            atom_rc=np.array([rc for *_, rc in nl_atoms], dtype=np.float64),
                            ch_atom=np.array([a for a, _, _ in chans], dtype=np.int64),
                            ch_l=np.array([l for _, l, _ in chans], dtype=np.int64),
                            ch_tstart=tstart, t_pow=tp, t_a=ta, t_c=tc)
            object.__setattr__(self, "_pack", pack)
        return self._pack

    def _centres(self, basis):
        """AO centres of ``basis`` for :func:`rung.qmc._kernels.cpu.ecp.ecp_nonlocal`, a
        :class:`rung.qmc._kernels.cpu.ecp.Centres`: positions (ncen, 3) Bohr, shell ranges (ncen+1,) int64
        (a centre's shells are consecutive in the table), smallest exponent (ncen,) Bohr^-2, and the
        nonlocal ECP atom at each centre (ncen,) int64, -1 if none (its shells' radial parts are shared by
        that atom's quadrature points), then the shell table and its radial splines; kept for the last
        basis asked about."""
        from rung.qmc._kernels.cpu.ecp import Centres

        cached = self.__dict__.get("_cen")
        if cached is None or cached[0] is not basis:
            new = np.ones(basis.sh_l.size, dtype=bool)
            new[1:] = np.any(basis.sh_center[1:] != basis.sh_center[:-1], axis=1)
            start = np.append(np.nonzero(new)[0], basis.sh_l.size).astype(np.int64)
            R = np.ascontiguousarray(basis.sh_center[start[:-1]])
            minexp = np.minimum.reduceat(basis.sh_minexp, start[:-1])
            on = np.all(R[:, None, :] == self._packed().atom_R[None], axis=-1)  # (ncen, na)
            ecp_at = np.where(on.any(1), on.argmax(1), -1).astype(np.int64)
            spl = basis.radial_splines
            cached = (basis, Centres(R, start, minexp, ecp_at, basis.sh_l, basis.sh_col, basis.sh_minexp, spl.tab,
                                     spl.sh_start, spl.sh_nint, spl.sh_inv_h))
            object.__setattr__(self, "_cen", cached)
        return cached[1]

    def _nonlocal_fused(self, fused, x, rng):
        """``nonlocal_electron`` for a Slater determinant or a table-method multi-Slater expansion (x one/two-body
        Jastrow), in one numba pass.

        Same quantities and the same random numbers as the generic path (one Gaussian quaternion per
        walker); the ratios come from :func:`rung.qmc._kernels.cpu.ecp.ecp_nonlocal` (AO radial parts from
        quintic splines, within 1e-13 of the exact ones) instead of ``wf.testvalue``.
        """
        from rung.qmc._kernels.cpu import ecp_nonlocal
        from rung.qmc.jastrow import no_jastrow_arguments
        from rung.qmc.orbitals import SCREEN

        basis, bvec, jas = fused
        quat = rng.normal(size=(x.shape[0], 4))
        dirs, weights = _ICOSAHEDRON
        use_j = jas is not None
        jargs, j_old = jas if use_j else (no_jastrow_arguments(np.zeros((x.shape[0], 1, 3)), 0), np.zeros(x.shape[0]))
        return ecp_nonlocal(np.ascontiguousarray(x), quat, dirs, weights, self._packed(), self._centres(basis), SCREEN,
                            bvec, use_j, jargs, j_old)

    def nonlocal_(self, wf, configs, rng, keep=None) -> np.ndarray:
        """Nonlocal ECP energy, (nwalkers,) Hartree, summed over electrons; with ``keep`` (a list) each
        electron's (terms, points) of :meth:`nonlocal_electron` are appended to it (the T-moves' input)."""
        v = np.zeros(configs.shape[0])
        if self.has_nonlocal:
            for e in range(configs.shape[1]):
                terms, points = self.nonlocal_electron(wf, e, configs, rng)
                v += terms.sum(-1)
                if keep is not None:
                    keep.append((terms, points))
        return v


def _fused_inputs(wf, e, walkers=None):
    """(basis, b (nw, ncart), (Jastrow kernel arguments, J_e (nw,)) or None) when ``wf`` is a plain
    Slater(-Jastrow) product or a table-method multi-Slater(-Jastrow) one
    (:func:`rung.qmc.wavefunction.ratio_vector_parts`); None otherwise (the generic ``testvalue`` path
    serves every other wave function). With ``walkers`` (m,) int: those walkers' rows only."""
    from rung.qmc.wavefunction import ratio_vector_parts

    parts = ratio_vector_parts(wf)
    if parts is None:
        return None
    det, jas = parts
    basis, b = det.ratio_vector(e)
    if walkers is not None:
        b = np.ascontiguousarray(b[walkers])
    jargs = None
    if jas is not None:
        args = jas.kernel_arguments(e)
        if walkers is not None:
            args = args._replace(configs=np.ascontiguousarray(args.configs[walkers]))
        jargs = (args, np.ascontiguousarray(jas.current(e, walkers)))
    return basis, b, jargs
