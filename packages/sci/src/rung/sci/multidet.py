"""QMCPACK ``/MultiDet`` wavefunction files: writer and reader.

Layout (as QMCPACK's multideterminant reader expects)::

    /MultiDet/NbDet      ()  int       number of determinants
    /MultiDet/nstate     ()  int       number of orbitals (frozen core + active)
    /MultiDet/Nbits      ()  int       number of 64-bit words per spin string
    /MultiDet/Coeff      (NbDet,)  float64   CI coefficients, largest |c| first
    /MultiDet/CI_Alpha   (NbDet, Nbits) int64  alpha strings, bit i of word k = orbital 64 k + i
    /MultiDet/CI_Beta    (NbDet, Nbits) int64  beta strings (frozen-core orbitals set in both)

Completeness: the sci rung sets the attribute ``/MultiDet.complete`` (bool): False while a run is
unfinished (a killed ``sci run`` leaves its last iteration's expansion), True once it has stopped by its
own criteria. The next rung refuses an incomplete expansion unless forced; files of other programs
carry no such attribute (``MultiDet.complete`` is then None: unknown).

Sign convention: a determinant is ``a+_{a1} a+_{a2} ... a+_{b1} a+_{b2} ... |0>``, every alpha creation
operator before the beta ones, each spin in ascending orbital order (the relative signs of PySCF's FCI
vectors and of Quantum Package). The words are the uint64 bit patterns stored as int64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from rung.core.errors import InputError


@dataclass(frozen=True)
class MultiDet:
    """A multideterminant expansion over ``nstate`` orbitals.

    alpha, beta : (ndet, nbits) uint64 strings over all orbitals (core included); coef : (ndet,) float64;
    complete : whether the run that wrote it had finished (None: the file does not say).
    """

    alpha: np.ndarray
    beta: np.ndarray
    coef: np.ndarray
    nstate: int
    complete: bool | None = None

    @property
    def ndet(self) -> int:
        return self.coef.shape[0]

    def occupations(self, i: int) -> tuple[list[int], list[int]]:
        """Occupied orbitals (alpha, beta) of determinant ``i``, 0-based ascending."""
        out = []
        for s in (self.alpha[i], self.beta[i]):
            out.append([64 * k + b for k in range(s.shape[0]) for b in range(64) if int(s[k]) >> b & 1])
        return out[0], out[1]


def _shift_left(words: np.ndarray, shift: int) -> np.ndarray:
    """Multi-word left shift of (n, nw) uint64 strings into (n, nw_out) words."""
    n, nw = words.shape
    nw_out = (nw * 64 + shift + 63) // 64
    out = np.zeros((n, nw_out), np.uint64)
    q, r = divmod(shift, 64)
    for k in range(nw):
        out[:, k + q] |= words[:, k] << np.uint64(r)
        if r and k + q + 1 < nw_out:
            out[:, k + q + 1] |= words[:, k] >> np.uint64(64 - r)
    return out


def from_active(dets: np.ndarray, coef: np.ndarray, ncore: int, nstate: int) -> MultiDet:
    """Build a :class:`MultiDet` from active-space determinants (n, 2, nw) by adding ``ncore`` core orbitals."""
    nbits = max(1, (nstate + 63) // 64)
    out = []
    core = np.zeros(nbits, np.uint64)
    for p in range(ncore):
        core[p // 64] |= np.uint64(1) << np.uint64(p % 64)
    for s in range(2):
        w = _shift_left(np.ascontiguousarray(dets[:, s, :]), ncore)
        if w.shape[1] < nbits:
            w = np.concatenate([w, np.zeros((w.shape[0], nbits - w.shape[1]), np.uint64)], axis=1)
        if np.any(w[:, nbits:]):
            raise ValueError(f"determinants use orbitals beyond nstate={nstate}")
        out.append(w[:, :nbits] | core[None, :])
    order = np.argsort(-np.abs(coef), kind="stable")
    return MultiDet(out[0][order], out[1][order], np.asarray(coef, np.float64)[order], int(nstate))


def write_multidet(path, md: MultiDet, *, group: h5py.Group | None = None, attrs: dict | None = None) -> None:
    """Write ``md`` under ``/MultiDet`` of an open HDF5 ``group`` (file root) or a new file ``path``."""

    def _write(root):
        if "MultiDet" in root:
            del root["MultiDet"]
        g = root.create_group("MultiDet")
        g.create_dataset("NbDet", data=np.int64(md.ndet))
        g.create_dataset("nstate", data=np.int64(md.nstate))
        g.create_dataset("Nbits", data=np.int64(md.alpha.shape[1]))
        g.create_dataset("Coeff", data=md.coef).attrs["units"] = "dimensionless"
        g.create_dataset("CI_Alpha", data=md.alpha.view(np.int64)).attrs["units"] = "dimensionless"
        g.create_dataset("CI_Beta", data=md.beta.view(np.int64)).attrs["units"] = "dimensionless"
        g.attrs["sign_convention"] = "alpha creators before beta, each ascending orbital order"
        for k, v in (attrs or {}).items():
            g.attrs[k] = v

    if group is not None:
        _write(group)
    else:
        with h5py.File(path, "w") as f:
            _write(f)


def read_multidet(path) -> MultiDet:
    """Read ``/MultiDet`` from an HDF5 file (ours or QMCPACK's converters').

    Raises :class:`~rung.core.errors.InputError` naming the file when it is missing, not HDF5,
    truncated, or holds no complete ``/MultiDet`` group.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if "MultiDet" not in f:
                raise InputError(f"{path}: no /MultiDet group (not a multideterminant wavefunction file)")
            g = f["MultiDet"]
            for name in ("NbDet", "nstate", "Nbits", "Coeff", "CI_Alpha", "CI_Beta"):
                if name not in g:
                    raise InputError(f"{path}: /MultiDet lacks {name}")
            n = int(g["NbDet"][()])
            nbits = int(g["Nbits"][()])
            a = np.asarray(g["CI_Alpha"][()], dtype=np.int64).view(np.uint64).reshape(n, nbits)
            b = np.asarray(g["CI_Beta"][()], dtype=np.int64).view(np.uint64).reshape(n, nbits)
            c = np.asarray(g["Coeff"][()], dtype=np.float64).reshape(n)
            complete = g.attrs.get("complete")
            return MultiDet(a, b, c, int(g["nstate"][()]), None if complete is None else bool(complete))
    except InputError:
        raise
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable /MultiDet file (corrupt or truncated?): {err}") from err


__all__ = ["MultiDet", "from_active", "read_multidet", "write_multidet"]
