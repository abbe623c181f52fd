"""Hamiltonians for selected CI: FCIDUMP files and PySCF SCF objects.

The FCIDUMP format (Knowles and Handy, Comput. Phys. Commun. 54, 75 (1989)) is a Fortran namelist
header ``&FCI NORB=..,NELEC=..,MS2=..,ORBSYM=..,ISYM=.. &END`` followed by lines ``value i j k l``:
two-electron integrals ``(ij|kl)`` (chemists' notation, 1-based orbitals, any one of the 8
permutationally equivalent index orders), one-electron integrals ``h_ij`` (``k = l = 0``), and the core
energy (all indices 0; nuclear repulsion plus frozen core). Orbital energies (``i j = 0``, ``k = l =
0``, only ``i > 0``) are ignored. Symmetry labels are Molpro's D2h-subgroup irreps 1..8; an integral
between orbitals of different symmetry must vanish (irreps multiply as ``(a - 1) XOR (b - 1)``).
PySCF writes 0-based labels by default (``pyscf.tools.fcidump`` with ``molpro_orbsym=False``: its own
irrep ids 0..7, which multiply as XOR too); a file with a label 0 is read as such and its labels kept
shifted by one (1..8), so ``Hamiltonian.orbsym`` is always 1-based.

Everything in Hartree. The parser is our own (PySCF's reader stops silently at a short line and
raises bare ``IndexError`` on a malformed one); errors name the file, line and problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rung.core.errors import InputError

SYMMETRY_TOL = 1e-8  # Hartree: larger symmetry-forbidden integrals mean the ORBSYM labels are wrong


class FCIDUMPError(InputError):
    """An FCIDUMP file or Hamiltonian that cannot be used (the message says what and where)."""


@dataclass(frozen=True)
class Hamiltonian:
    """An active-space Hamiltonian.

    Parameters
    ----------
    h1 : (norb, norb) float64, Hartree
        One-electron integrals (frozen-core potential included).
    eri : (norb, norb, norb, norb) float64, Hartree
        Two-electron integrals ``(pq|rs)``, chemists' notation, full 8-fold symmetric array.
    ecore : float, Hartree
        Nuclear repulsion plus frozen-core energy.
    nelec : (int, int)
        Active alpha and beta electrons.
    orbsym : (norb,) int or None
        Molpro irrep labels 1..8.
    ncore : int
        Frozen doubly occupied orbitals below the active space (for the QMCPACK export only).
    """

    h1: np.ndarray
    eri: np.ndarray
    ecore: float
    nelec: tuple
    orbsym: np.ndarray | None = None
    ncore: int = 0

    def __post_init__(self):
        h1 = np.ascontiguousarray(self.h1, dtype=np.float64)
        eri = np.ascontiguousarray(self.eri, dtype=np.float64)
        n = h1.shape[0]
        if h1.shape != (n, n) or eri.shape != (n, n, n, n):
            raise FCIDUMPError(f"h1 must be (norb, norb) and eri (norb,)*4, got {h1.shape} and {eri.shape}")
        na, nb = (int(x) for x in self.nelec)
        if na < 0 or nb < 0:
            raise FCIDUMPError(f"negative electron count {self.nelec}")
        if na > n or nb > n:
            raise FCIDUMPError(
                f"more electrons than spin orbitals: {na} alpha and {nb} beta electrons in {n} orbitals"
            )
        if not np.allclose(h1, h1.T, atol=1e-10):
            raise FCIDUMPError("h1 is not symmetric")
        object.__setattr__(self, "h1", h1)
        object.__setattr__(self, "eri", eri)
        object.__setattr__(self, "nelec", (na, nb))
        object.__setattr__(self, "ecore", float(self.ecore))
        if self.orbsym is not None:
            object.__setattr__(self, "orbsym", np.asarray(self.orbsym, dtype=np.int64))

    @property
    def norb(self) -> int:
        return self.h1.shape[0]

    def fingerprint(self) -> str:
        """A short hash of the integrals and electron count (checkpoints refuse other Hamiltonians)."""
        import hashlib

        m = hashlib.sha1()
        for a in (self.h1, self.eri, np.array([self.ecore]), np.array(self.nelec)):
            m.update(np.round(np.ascontiguousarray(a, dtype=np.float64), 10).tobytes())
        return m.hexdigest()[:16]


def _header(text: str, path) -> tuple[dict, int]:
    m = re.search(r"(&END|/)", text, flags=re.IGNORECASE)
    if not m or not re.match(r"\s*&FCI", text, flags=re.IGNORECASE):
        raise FCIDUMPError(f"{path}: not an FCIDUMP file (no '&FCI ... &END' header)")
    head = text[: m.start()]
    head = re.sub(r"^\s*&FCI", "", head, flags=re.IGNORECASE)
    fields = {}
    keys = list(re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", head))
    for a, b in zip(keys, keys[1:] + [None]):
        fields[a.group(1).upper()] = head[a.end(): b.start() if b is not None else len(head)].strip().strip(",")
    out = {}
    for key in ("NORB", "NELEC"):
        if key not in fields:
            raise FCIDUMPError(f"{path}: header lacks {key}")
    for key in ("NORB", "NELEC", "MS2", "ISYM"):
        if key in fields:
            try:
                out[key] = int(fields[key].strip().strip(",").strip())
            except ValueError:
                raise FCIDUMPError(f"{path}: header {key}={fields[key].strip()!r} is not an integer") from None
    if "ORBSYM" in fields:
        try:
            out["ORBSYM"] = [int(x) for x in re.split(r"[,\s]+", fields["ORBSYM"].strip()) if x]
        except ValueError:
            raise FCIDUMPError(f"{path}: ORBSYM={fields['ORBSYM'].strip()!r} is not a list of integers") from None
    nlines_header = text[: m.end()].count("\n") + 1
    return out, nlines_header


def read_fcidump(path, *, ncore: int = 0) -> Hamiltonian:
    """Read an FCIDUMP file into a :class:`Hamiltonian`, checking it on the way.

    Raises :class:`FCIDUMPError` for a missing/garbled header, a line that is not ``value i j k l``,
    an orbital index outside 1..NORB, a file that ends before the core-energy line (truncated), ORBSYM
    of the wrong length or labels outside 1..8, a non-vanishing integral between orbitals of
    different symmetry, and more electrons than spin orbitals.
    """
    path = Path(path)
    if not path.exists():
        raise FCIDUMPError(f"{path}: no such file")
    text = path.read_text(errors="replace")
    hdr, start = _header(text, path)
    norb, nelec = hdr["NORB"], hdr["NELEC"]
    ms2 = hdr.get("MS2", nelec % 2)
    if norb < 1:
        raise FCIDUMPError(f"{path}: NORB={norb} must be positive")
    if nelec < 0 or nelec > 2 * norb:
        raise FCIDUMPError(f"{path}: NELEC={nelec} electrons do not fit {2 * norb} spin orbitals (NORB={norb})")
    if abs(ms2) > nelec or (nelec - ms2) % 2:
        raise FCIDUMPError(f"{path}: MS2={ms2} is impossible with NELEC={nelec}")
    na, nb = (nelec + ms2) // 2, (nelec - ms2) // 2
    if na > norb:
        raise FCIDUMPError(f"{path}: {na} alpha electrons do not fit {norb} orbitals (NELEC={nelec}, MS2={ms2})")
    orbsym = hdr.get("ORBSYM")
    if orbsym is not None:
        if len(orbsym) != norb:
            raise FCIDUMPError(f"{path}: ORBSYM has {len(orbsym)} labels for NORB={norb} orbitals")
        # A label 0 marks PySCF's default (tools.fcidump with molpro_orbsym=False): its 0-based irrep ids
        # 0..7 multiply as XOR like Molpro's 1..8 shifted by one, so they are kept shifted by one.
        zero_based = 0 in orbsym
        lo, hi = (0, 7) if zero_based else (1, 8)
        bad = [s for s in orbsym if not lo <= s <= hi]
        if bad:
            raise FCIDUMPError(f"{path}: ORBSYM label {bad[0]} outside the D2h irreps "
                               + ("0..7 (0-based, as PySCF writes them)" if zero_based else "1..8"))
        orbsym = np.array(orbsym) + (1 if zero_based else 0)

    lines = text.splitlines()
    body = lines[start - 1:] if not re.search(r"(&END|/)\s*$", lines[start - 1], flags=re.IGNORECASE) else lines[start:]
    first_body_line = len(lines) - len(body) + 1
    vals, idx = [], []
    for k, line in enumerate(body):
        tok = line.split()
        if not tok:
            continue
        if len(tok) != 5:
            raise FCIDUMPError(
                f"{path}:{first_body_line + k}: expected 'value i j k l', got {line.strip()!r} (truncated or malformed file)"
            )
        try:
            vals.append(float(tok[0].replace("D", "E").replace("d", "e")))
            idx.append([int(t) for t in tok[1:]])
        except ValueError:
            raise FCIDUMPError(f"{path}:{first_body_line + k}: cannot parse {line.strip()!r}") from None
    if not vals:
        raise FCIDUMPError(f"{path}: no integrals after the header (truncated file)")
    v = np.array(vals)
    ix = np.array(idx, dtype=np.int64)
    if ix.min() < 0 or ix.max() > norb:
        row = int(np.argwhere((ix < 0) | (ix > norb))[0, 0])
        raise FCIDUMPError(f"{path}: integral {ix[row].tolist()} has an orbital index outside 1..{norb}")
    core = np.all(ix == 0, axis=1)
    if not core[-1]:
        raise FCIDUMPError(f"{path}: the last line is not the core energy 'value 0 0 0 0' (truncated file?)")
    h1 = np.zeros((norb, norb))
    eri = np.zeros((norb,) * 4)
    two = ix[:, 2] > 0
    one = (ix[:, 0] > 0) & (ix[:, 1] > 0) & (ix[:, 2] == 0) & (ix[:, 3] == 0)
    i, j, k, l = (ix[two, c] - 1 for c in range(4))
    for a, b, c, d in ((i, j, k, l), (j, i, k, l), (i, j, l, k), (j, i, l, k),
                       (k, l, i, j), (l, k, i, j), (k, l, j, i), (l, k, j, i)):
        eri[a, b, c, d] = v[two]
    i, j = ix[one, 0] - 1, ix[one, 1] - 1
    h1[i, j] = v[one]
    h1[j, i] = v[one]
    ecore = float(v[core][-1])
    if orbsym is not None:
        s = orbsym - 1
        bad1 = (s[:, None] != s[None, :]) & (np.abs(h1) > SYMMETRY_TOL)
        if bad1.any():
            p, q = np.argwhere(bad1)[0]
            raise FCIDUMPError(
                f"{path}: inconsistent symmetry labels: h({p + 1},{q + 1}) = {h1[p, q]:.3e} but ORBSYM gives "
                f"irreps {orbsym[p]} and {orbsym[q]}"
            )
        prod = s[:, None, None, None] ^ s[None, :, None, None] ^ s[None, None, :, None] ^ s[None, None, None, :]
        bad2 = (prod != 0) & (np.abs(eri) > SYMMETRY_TOL)
        if bad2.any():
            p, q, r, t = np.argwhere(bad2)[0]
            raise FCIDUMPError(
                f"{path}: inconsistent symmetry labels: ({p + 1}{q + 1}|{r + 1}{t + 1}) = {eri[p, q, r, t]:.3e} "
                f"is symmetry-forbidden for ORBSYM irreps {orbsym[[p, q, r, t]].tolist()}"
            )
    return Hamiltonian(h1, eri, ecore, (na, nb), orbsym, ncore)


def from_scf(mf, ncore: int = 0, ncas: int | None = None) -> Hamiltonian:
    """Active-space Hamiltonian from a converged PySCF RHF/RKS/ROHF object (MO basis of ``mf.mo_coeff``).

    ncore : frozen doubly occupied orbitals; ncas : active orbitals (default: all the rest).
    """
    from pyscf import ao2mo, mcscf

    mol = mf.mol
    nmo = mf.mo_coeff.shape[1]
    ncas = nmo - ncore if ncas is None else int(ncas)
    nelec_total = mol.nelectron - 2 * ncore
    if nelec_total < 0 or ncore + ncas > nmo:
        raise FCIDUMPError(f"ncore={ncore}, ncas={ncas} do not fit {nmo} orbitals and {mol.nelectron} electrons")
    na = (nelec_total + mol.spin) // 2
    nb = nelec_total - na
    cas = mcscf.CASCI(mf, ncas, (na, nb), ncore=ncore)
    h1, ecore = cas.get_h1eff()
    eri = ao2mo.restore(1, cas.get_h2eff(), ncas)
    return Hamiltonian(h1, eri, ecore, (na, nb), None, ncore)


def write_fcidump(ham: Hamiltonian, path, tol: float = 1e-15) -> Path:
    """Write ``ham`` as an FCIDUMP (through PySCF's writer)."""
    from pyscf import ao2mo
    from pyscf.tools import fcidump

    orbsym = None if ham.orbsym is None else [int(s) for s in ham.orbsym]
    fcidump.from_integrals(str(path), ham.h1, ao2mo.restore(8, ham.eri, ham.norb), ham.norb, ham.nelec,
                           nuc=ham.ecore, ms=ham.nelec[0] - ham.nelec[1], orbsym=orbsym, tol=tol)
    return Path(path)


__all__ = ["FCIDUMPError", "Hamiltonian", "read_fcidump", "from_scf", "write_fcidump"]
