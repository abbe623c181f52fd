"""Multideterminant trial functions psi = sum_k c_k D_up,k D_down,k, read from QMCPACK ``/MultiDet``.

Component of the protocol in :mod:`rung.qmc.wavefunction`, built from one
:class:`~rung.qmc.determinants.SlaterDeterminant` per determinant (each with its own inverse and
Sherman-Morrison updates). With weights ``w_k = c_k D_k / psi``:

    psi'/psi = sum_k w_k (D_k'/D_k),   grad psi'/psi' = sum_k w_k D_k'/D_k grad D_k'/D_k' / (psi'/psi),
    lap psi / psi = sum_k w_k lap D_k / D_k

The cost grows linearly with the number of determinants (no table method); meant for the short
expansions a selected-CI run hands to QMC.

File layout (written by the sci rung, contracts.md): ``/MultiDet/{NbDet, nstate, Nbits, Coeff,
CI_Alpha, CI_Beta}``, strings as int64 words, bit i of word k = orbital 64k + i; a determinant is
alpha creators before beta ones, each in ascending orbital order, so c_k multiplies D_up D_down
directly. The orbitals are those of the FCIDUMP the expansion came from (the DFT rung's orbitals).
The attribute ``/MultiDet.complete`` (sci rung) says whether the run that wrote it had finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rung.qmc.determinants import SlaterDeterminant


@dataclass(frozen=True)
class Expansion:
    """coef (ndet,) float64; occ_up, occ_down: per determinant the 0-based occupied orbitals; nstate."""

    coef: np.ndarray
    occ_up: tuple
    occ_down: tuple
    nstate: int


def _bits(words) -> list:
    return [64 * k + b for k, w in enumerate(np.asarray(words).astype(np.uint64)) for b in range(64) if int(w) >> b & 1]


def read_multidet(path, max_dets: int | None = None, min_coef: float = 0.0, *,
                  allow_incomplete: bool = False) -> Expansion:
    """Read a QMCPACK ``/MultiDet`` file; keep the largest ``max_dets`` with |c| >= ``min_coef``.

    An expansion the sci rung marked unfinished (``/MultiDet.complete`` False: a killed or still
    running ``sci run``) is refused unless ``allow_incomplete``; files without the mark (other
    programs') are read.
    """
    import h5py

    from rung.qmc.system import InputError

    try:
        with h5py.File(path, "r") as f:
            g = f["MultiDet"]
            coef = np.asarray(g["Coeff"][()], dtype=np.float64)
            a, b = g["CI_Alpha"][()], g["CI_Beta"][()]
            nstate = int(g["nstate"][()])
            complete = g.attrs.get("complete")
    except (OSError, KeyError) as err:
        raise InputError(f"{path}: not a readable /MultiDet file: {err}") from err
    if complete is not None and not bool(complete) and not allow_incomplete:
        raise InputError(f"{path}: the /MultiDet expansion is from an unfinished sci run (complete = False); "
                         "finish it with sci run, or accept it with --allow-incomplete")
    order = np.argsort(-np.abs(coef), kind="stable")
    order = [i for i in order if abs(coef[i]) >= min_coef][:max_dets]
    if not order:
        raise InputError(f"{path}: no determinant left after the selection")
    return Expansion(coef[order], tuple(tuple(_bits(a[i])) for i in order), tuple(tuple(_bits(b[i])) for i in order),
                     nstate)


class MultiSlater:
    """sum_k c_k D_up,k D_down,k over one set of orbitals.

    Parameters
    ----------
    dets : list of SlaterDeterminant, one per determinant (built by :func:`build_multislater`)
    coef : (ndet,) float64 CI coefficients; nelec : (nup, ndown)
    """

    def __init__(self, dets: list, coef, nelec):
        self.dets = dets
        self.coef = np.asarray(coef, dtype=np.float64)
        self.nelec = tuple(nelec)
        self.parameters: dict = {}

    def _weights(self):
        sign = np.array([d.sign for d in self.dets])  # (ndet, nw)
        log = np.array([d.logdet for d in self.dets])
        ref = log.max(0)
        terms = self.coef[:, None] * sign * np.exp(log - ref)  # (ndet, nw)
        total = terms.sum(0)
        self.sign_, self.log_ = np.sign(total), ref + np.log(np.abs(total))
        self.w = terms / total  # (ndet, nw)

    def recompute(self, configs):
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

    def pgradient(self):
        return {}


def build_multislater(basis, mo_coeff, expansion: Expansion, nelec, backend: str = "numba",
                      cusp_atoms=None) -> MultiSlater:
    """MultiSlater over orbitals mo_coeff (nao, nmo) (restricted) for an expansion."""
    from rung.qmc.orbitals import MolecularOrbitals
    from rung.qmc.system import InputError

    mo_coeff = np.asarray(mo_coeff)
    if expansion.nstate > mo_coeff.shape[1]:
        raise InputError(f"the expansion uses {expansion.nstate} orbitals, only {mo_coeff.shape[1]} are given")
    dets = []
    for up, dn in zip(expansion.occ_up, expansion.occ_down):
        if (len(up), len(dn)) != tuple(nelec):
            raise InputError(f"a determinant occupies ({len(up)}, {len(dn)}) orbitals, the molecule has {nelec} electrons")
        mos = (MolecularOrbitals(basis, mo_coeff[:, list(up)], backend, cusp_atoms),
               MolecularOrbitals(basis, mo_coeff[:, list(dn)], backend, cusp_atoms))
        dets.append(SlaterDeterminant(mos, nelec))
    return MultiSlater(dets, expansion.coef, nelec)
