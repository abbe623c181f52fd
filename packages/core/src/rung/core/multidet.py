"""The ``/MultiDet`` multideterminant file: the one writer, reader and validation (QMCPACK's layout).

A CI expansion ``psi = sum_k c_k |D_k>`` over ``nstate`` spatial orbitals, as QMCPACK reads it in
``SlaterDetBuilder::readDetListH5`` (QMCPACK/qmcpack, ``src/QMCWaveFunctions/Fermion/SlaterDetBuilder.cpp``)
and as Quantum Package's ``save_for_qmcpack`` and QMCPACK's ``PyscfToQmcpack.py`` (``make_multidet``,
QMCPACK/qmcpack ``src/QMCTools/PyscfToQmcpack.py``) write it::

    /MultiDet/NbDet          ()  int64         number of determinants (QMCPACK: must equal <detlist size=...>)
    /MultiDet/nstate         ()  int64         orbitals spanned by the strings (QMCPACK: <detlist nstates=...>)
    /MultiDet/Nbits          ()  int64         64-bit words per string, ceil(nstate / 64)
    /MultiDet/nexcitedstate  ()  int64         states stored: Coeff, Coeff_1, ... Coeff_{n-1} (read by convert4qmc)
    /MultiDet/Coeff          (NbDet,) float64  CI coefficients of the ground state; Coeff_<k> of state k
    /MultiDet/CI_Alpha       (NbDet, Nbits) uint64 little-endian, alpha occupation strings
    /MultiDet/CI_Beta        (NbDet, Nbits) uint64 little-endian, beta occupation strings

Field by field against the references (read for this module; cited, not copied):

- ``CI_Alpha``/``CI_Beta`` must be **unsigned** 64-bit: ``readDetListH5`` checks
  ``is_dataset_of_type<uint64_t>`` (``H5Tequal`` with the native ``uint64``, i.e. ``<u8`` on x86/ARM) and aborts
  on int64 ("QMCPACK expects the HDF5 CI vectors to be stored as unsigned 64 bit integers"). Rung wrote
  int64 before schema 2; :func:`read_multidet` still reads such files.
- Bit order: ``readDetListH5`` turns word ``k`` into ``std::bitset<64>`` and takes bit ``i`` (least significant
  first) as orbital ``64 k + i``; ``QMCGaussianParserBase::createMultiDeterminantSetFromH5``
  (``src/QMCTools/QMCGaussianParserBase.cpp``) writes the same. Quantum Package's file for C2 in QMCPACK's
  tests (``tests/molecules/C2_pp/C2.h5``: 4 alpha electrons, first string 15 = 0b1111) agrees.
- QMCPACK's H5 path assumes no core in the strings ("H5 code path implicitly assumes NC0 = NC1 = ... = 0"):
  frozen-core orbitals are written as occupied bits, and ``nstate`` counts them.
- Scalars: QMCPACK reads them with ``H5Dread(..., H5S_ALL, ...)`` into one value, so a rank-0 dataset (what
  QMCPACK's own ``hdf_archive`` writes) and a (1,) int32 dataset (what Quantum Package and PySCF's
  converter write) both work; this module writes rank-0 int64 and reads either.
- ``nexcitedstate``: not read by QMCPACK itself but by ``convert4qmc`` (``LCAOHDFParser::parse``,
  ``src/QMCTools/LCAOHDFParser.cpp``, an unconditional ``hin.read``: a file without it cannot be converted).
  Quantum Package writes the number of states (``tests/molecules/C4_ae/C4_AE_Mol_QP.h5``: 2, with ``Coeff``
  and ``Coeff_1``); the ``<detlist ext_level="k">`` attribute selects ``Coeff_k``
  (``SlaterDetBuilder::readCoeffs``).
- Coefficient sign: QMCPACK evaluates ``sum_k c_k det[phi_up,k] det[phi_dn,k]``, each determinant's orbitals
  in ascending order. That is the second-quantized ``a+_{a1} a+_{a2} ... a+_{b1} a+_{b2} ... |0>`` (all alpha
  creators before the beta ones, each spin ascending): the convention of PySCF's FCI vectors, which
  ``PyscfToQmcpack.make_multidet`` writes unchanged, and of Quantum Package (alpha string then beta string).
- Ordering: any; rung writes the largest ``|c|`` of the ground state first (QMCPACK's ``cutoff`` is a
  threshold, not a prefix, so the order only matters to readers that truncate).

Rung adds the attributes ``/MultiDet.complete`` (bool; False while the run that wrote it is unfinished,
:mod:`rung.sci.cipsi`), ``sign_convention`` and ``schema_version``; QMCPACK ignores attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from rung.core.errors import InputError

SCHEMA_VERSION = 2  # 1: strings as int64 (QMCPACK refuses them), no nexcitedstate
SIGN_CONVENTION = "alpha creators before beta, each ascending orbital order"


@dataclass(frozen=True)
class MultiDet:
    """A multideterminant expansion over ``nstate`` spatial orbitals.

    alpha, beta : (ndet, nbits) uint64, occupation strings over all orbitals (frozen core included),
        bit ``i`` of word ``k`` = orbital ``64 k + i``
    coef : (ndet,) float64, ground-state CI coefficients (dimensionless)
    nstate : orbitals spanned (frozen core + active)
    complete : whether the run that wrote it had finished (None: the file does not say)
    excited : (nexc, ndet) float64, coefficients of the states above the ground state (``Coeff_1`` ...)
    """

    alpha: np.ndarray
    beta: np.ndarray
    coef: np.ndarray
    nstate: int
    complete: bool | None = None
    excited: np.ndarray | None = None

    @property
    def ndet(self) -> int:
        return self.coef.shape[0]

    @property
    def nelec(self) -> tuple[int, int]:
        """(alpha, beta) electrons per determinant (those of the first; :func:`validate` checks the rest)."""
        return popcount(self.alpha[:1]).item(), popcount(self.beta[:1]).item()

    def occupations(self, i: int) -> tuple[list[int], list[int]]:
        """Occupied orbitals (alpha, beta) of determinant ``i``, 0-based ascending."""
        out = []
        for s in (self.alpha[i], self.beta[i]):
            out.append([64 * k + b for k in range(s.shape[0]) for b in range(64) if int(s[k]) >> b & 1])
        return out[0], out[1]


def popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per row of (n, nw) uint64 strings: (n,) int64."""
    bits = np.unpackbits(np.ascontiguousarray(words, dtype="<u8").view(np.uint8), axis=-1)
    return bits.reshape(words.shape[0], -1).sum(axis=1).astype(np.int64)


def validate(md: MultiDet, where: str = "/MultiDet") -> None:
    """Raise :class:`~rung.core.errors.InputError` naming ``where`` when ``md`` is inconsistent."""
    n = md.coef.shape[0]
    nbits = max(1, (md.nstate + 63) // 64)
    if n < 1:
        raise InputError(f"{where}: no determinant")
    for name, s in (("CI_Alpha", md.alpha), ("CI_Beta", md.beta)):
        if s.shape != (n, nbits):
            raise InputError(f"{where}: {name} has shape {s.shape}, expected ({n}, {nbits}) for {md.nstate} orbitals")
        spill = md.nstate - 64 * (nbits - 1)  # orbitals held in the last word
        if spill < 64 and np.any(s[:, -1] >> np.uint64(spill)):
            raise InputError(f"{where}: {name} sets orbitals beyond nstate = {md.nstate}")
        if np.any(popcount(s) != popcount(s[:1])[0]):
            raise InputError(f"{where}: {name} strings hold different electron counts")
    if not np.all(np.isfinite(md.coef)):
        raise InputError(f"{where}: Coeff is not finite")
    if md.excited is not None and (md.excited.ndim != 2 or md.excited.shape[1] != n):
        raise InputError(f"{where}: excited-state coefficients have shape {md.excited.shape}, expected (k, {n})")


def write_multidet(path, md: MultiDet, *, group: h5py.Group | None = None, attrs: dict | None = None) -> None:
    """Write ``md`` as ``/MultiDet`` of an open HDF5 ``group`` (a file root), or of a new file ``path``."""
    validate(md)

    def _write(root):
        if "MultiDet" in root:
            del root["MultiDet"]
        g = root.create_group("MultiDet")
        nstates = 1 + (0 if md.excited is None else md.excited.shape[0])
        for name, value in (("NbDet", md.ndet), ("nstate", md.nstate), ("Nbits", md.alpha.shape[1]),
                            ("nexcitedstate", nstates)):
            g.create_dataset(name, data=np.int64(value))
        g.create_dataset("Coeff", data=np.asarray(md.coef, np.float64)).attrs["units"] = "dimensionless"
        for k in range(1, nstates):
            g.create_dataset(f"Coeff_{k}", data=np.asarray(md.excited[k - 1], np.float64)).attrs["units"] = "dimensionless"
        g.create_dataset("CI_Alpha", data=np.asarray(md.alpha, "<u8")).attrs["units"] = "dimensionless"
        g.create_dataset("CI_Beta", data=np.asarray(md.beta, "<u8")).attrs["units"] = "dimensionless"
        g.attrs["sign_convention"] = SIGN_CONVENTION
        g.attrs["schema_version"] = SCHEMA_VERSION
        if md.complete is not None:
            g.attrs["complete"] = bool(md.complete)
        for k, v in (attrs or {}).items():
            g.attrs[k] = v

    if group is not None:
        _write(group)
    else:
        with h5py.File(path, "w") as f:
            _write(f)


def _scalar(g, name) -> int:
    return int(np.asarray(g[name][()]).reshape(-1)[0])  # rank 0 (QMCPACK, rung) or (1,) (QP, PySCF converter)


def _strings(g, name, n, nbits, path) -> np.ndarray:
    d = g[name]
    if d.dtype.kind not in "iu" or d.dtype.itemsize != 8:
        raise InputError(f"{path}: /MultiDet/{name} is {d.dtype}, not 64-bit integer words")
    return np.asarray(d[()]).astype(d.dtype.newbyteorder("=")).view(np.uint64).reshape(n, nbits)


def read_multidet(path) -> MultiDet:
    """Read and validate ``/MultiDet`` from an HDF5 file (rung's, Quantum Package's, QMCPACK's converters').

    Raises :class:`~rung.core.errors.InputError` naming the file when it is missing, not HDF5,
    truncated, holds no ``/MultiDet`` group, or one that is inconsistent (:func:`validate`).
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
            n, nbits = _scalar(g, "NbDet"), _scalar(g, "Nbits")
            a, b = _strings(g, "CI_Alpha", n, nbits, path), _strings(g, "CI_Beta", n, nbits, path)
            c = np.asarray(g["Coeff"][()], dtype=np.float64).reshape(n)
            nstates = _scalar(g, "nexcitedstate") if "nexcitedstate" in g else 1
            exc = [np.asarray(g[f"Coeff_{k}"][()], np.float64).reshape(n) for k in range(1, nstates)
                   if f"Coeff_{k}" in g]
            complete = g.attrs.get("complete")
            md = MultiDet(a, b, c, _scalar(g, "nstate"), None if complete is None else bool(complete),
                          np.array(exc) if exc else None)
    except InputError:
        raise
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"{path}: not a readable /MultiDet file (corrupt or truncated?): {err}") from err
    validate(md, f"{path}: /MultiDet")
    return md


__all__ = ["MultiDet", "SCHEMA_VERSION", "popcount", "read_multidet", "validate", "write_multidet"]
