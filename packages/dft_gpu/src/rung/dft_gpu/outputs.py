"""Files the DFT farm writes beside the dataset for the rungs above (the cross-rung file contract).

Orbitals: ``<dataset without .h5>.orbitals.h5`` with groups ``/<molecule>/<index>/`` holding
``mo_coeff`` (nao, nmo) [or (2, nao, nmo) unrestricted] float64, ``mo_occ`` and ``mo_energy``
(nmo,) [or (2, nmo)] float64 (Hartree), attributes ``mol`` (PySCF ``mol.dumps()``, Bohr), ``xc``,
``e_tot`` (Hartree), ``basis``, ``ecp``. The dataset's molecule group gets ``dft_orbitals_file``.
Crash safety: a worker writes each conformation's orbitals to its own part file
(``<dataset without .h5>.orbitals.parts/<molecule>.<index>.h5``, via a temporary name and
``os.replace``) *before* the conformation is journalled; the rank that merges the journals folds the
parts into the orbitals file atomically (:func:`rung.core.dataset.atomic_update`), then deletes them.

FCIDUMP: ``<dataset without .h5>.<molecule>.<index>.fcidump`` (PySCF ``tools.fcidump`` format) for
every conformation. The spatial orbitals are the RKS/RHF orbitals of a closed shell, and for an open
shell (UKS/UHF) the alpha orbitals (orthonormal, PySCF's energy order), with ``MS2 = 2S``: the
reference determinant puts the alpha electrons in the lowest ``n_alpha`` and the beta electrons in the
lowest ``n_beta`` of those orbitals (a restricted open-shell determinant in the UKS alpha basis; the
spin-orbital integrals are exact either way, and the sCI rung works in any orthonormal basis). With
``ncore`` frozen doubly occupied orbitals (density ``P_c = 2 C_c C_c^T``) and active orbitals ``C_a``,

    h_pq = [C_a^T (h + J[P_c] - K[P_c]/2) C_a]_pq,      (pq|rs) over C_a (exact, not density-fitted),
    E_core = E_nuc + tr[P_c (h + (J[P_c] - K[P_c]/2)/2)],

so ``E_core + <Phi|H_active|Phi>`` is the full Hartree-Fock (UHF for an open shell) energy expression
of the determinant Phi.
The molecule group gets ``dft_fcidump_files`` (file names, index-aligned, "" where none).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ORBITALS_SCHEMA = "rung.dft_orbitals"


def _base(out_path) -> str:
    s = str(out_path)
    return s[:-3] if s.endswith(".h5") else s


def orbitals_path(out_path) -> Path:
    """``<dataset without .h5>.orbitals.h5``."""
    return Path(_base(out_path) + ".orbitals.h5")


def fcidump_path(out_path, molecule: str, index: int) -> Path:
    """``<dataset without .h5>.<molecule>.<index>.fcidump``."""
    return Path(f"{_base(out_path)}.{molecule}.{int(index)}.fcidump")


def _parts_dir(out_path) -> Path:
    return Path(_base(out_path) + ".orbitals.parts")


def _replace_durably(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)


def write_orbital_part(out_path, molecule: str, index: int, mol, orbitals: dict, config) -> Path:
    """Write one conformation's orbitals to its part file (atomically). Returns the part's path."""
    import h5py

    d = _parts_dir(out_path)
    d.mkdir(exist_ok=True)
    final = d / f"{molecule}.{int(index)}.h5"
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        for key in ("mo_coeff", "mo_occ", "mo_energy"):
            ds = f.create_dataset(key, data=np.asarray(orbitals[key], dtype=np.float64))
            ds.attrs["units"] = "hartree" if key == "mo_energy" else "dimensionless"
        f.attrs["mol"] = mol.dumps()
        f.attrs["xc"] = config.xc
        f.attrs["e_tot"] = float(orbitals["e_tot"])
        f.attrs["basis"] = config.basis
        f.attrs["ecp"] = config.ecp or ""
    _replace_durably(tmp, final)
    return final


def merge_orbital_parts(out_path) -> int:
    """Fold every part file into the orbitals file (atomically), then delete the parts; returns the count."""
    import h5py

    from rung.core.dataset import atomic_update

    d = _parts_dir(out_path)
    parts = sorted(d.glob("*.h5")) if d.exists() else []
    if not parts:
        return 0

    def update(f):
        f.attrs["schema"] = ORBITALS_SCHEMA
        f.attrs["schema_version"] = 1
        for part in parts:
            molecule, index = part.stem.rsplit(".", 1)
            g = f.require_group(molecule)
            if index in g:
                del g[index]
            with h5py.File(part, "r") as src:
                dst = g.create_group(index)
                for key in src:
                    src.copy(src[key], dst, name=key)
                for k, v in src.attrs.items():
                    dst.attrs[k] = v

    atomic_update(orbitals_path(out_path), update)
    for part in parts:
        part.unlink()
    try:
        d.rmdir()
    except OSError:  # a worker's temporary file is still there
        pass
    return len(parts)


def fcidump_integrals(mol, mo_coeff, ncore: int = 0, norb: int | None = None):
    """Active-space integrals of a closed-shell determinant (module docstring).

    Parameters
    ----------
    mol : pyscf.gto.Mole
    mo_coeff : (nao, nmo) float64 restricted orbitals, or (2, nao, nmo) unrestricted (alpha, beta;
        the alpha set is used), in the AO basis
    ncore : frozen doubly occupied orbitals; norb : active orbitals (None: all after the core)

    Returns
    -------
    h1 : (norb, norb) float64 Hartree;  h2 : (norb*(norb+1)/2, same) float64 Hartree (4-fold packed);
    e_core : float Hartree;  nelec : int, active electrons (MS2 is ``mol.spin``)
    """
    from pyscf import ao2mo, scf

    mo_coeff = np.asarray(mo_coeff, dtype=np.float64)
    if mo_coeff.ndim == 3 and mo_coeff.shape[0] == 2:
        mo_coeff = mo_coeff[0]  # open shell: the alpha orbitals span the active space
    if mo_coeff.ndim != 2:
        raise ValueError(f"FCIDUMP needs orbitals (nao, nmo) or (2, nao, nmo), got shape {mo_coeff.shape}")
    if mol.spin != 0 and ncore > (mol.nelectron - mol.spin) // 2:
        raise ValueError(f"ncore={ncore} freezes more orbitals than the {(mol.nelectron - mol.spin) // 2} "
                         "doubly occupied ones of this open shell")
    nmo = mo_coeff.shape[1]
    norb = nmo - ncore if norb is None else norb
    nelec = mol.nelectron - 2 * ncore
    n_alpha = (nelec + mol.spin) // 2
    if ncore < 0 or norb < 1 or ncore + norb > nmo or nelec < 0 or n_alpha > norb:
        raise ValueError(f"active space ncore={ncore}, norb={norb} does not fit {nmo} orbitals and "
                         f"{mol.nelectron} electrons (spin {mol.spin})")
    hcore = scf.hf.get_hcore(mol)  # (nao, nao): kinetic + nuclear + ECP
    e_core = float(mol.energy_nuc())
    if ncore:
        c_core = mo_coeff[:, :ncore]
        dm_core = 2 * c_core @ c_core.T
        vj, vk = scf.hf.get_jk(mol, dm_core)
        veff = vj - 0.5 * vk
        e_core += float(np.einsum("ij,ji->", dm_core, hcore + 0.5 * veff))
        hcore = hcore + veff
    c_act = mo_coeff[:, ncore:ncore + norb]
    h1 = c_act.T @ hcore @ c_act
    h2 = ao2mo.full(mol, c_act, compact=True)
    return h1, h2, e_core, nelec


def write_fcidump(out_path, molecule: str, index: int, mol, mo_coeff, config) -> Path:
    """Write the FCIDUMP of one conformation (atomically; ``MS2 = mol.spin``). Returns its path.

    ``mo_coeff``: (nao, nmo) restricted or (2, nao, nmo) unrestricted orbitals (see the module docstring)."""
    from pyscf.tools import fcidump

    h1, h2, e_core, nelec = fcidump_integrals(mol, mo_coeff, config.fcidump_ncore, config.fcidump_norb)
    final = fcidump_path(out_path, molecule, index)
    tmp = final.with_name(final.name + f".tmp{os.getpid()}")
    fcidump.from_integrals(str(tmp), h1, h2, h1.shape[0], nelec, nuc=e_core, ms=mol.spin)
    _replace_durably(tmp, final)
    return final


def _text_list(values) -> list:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def set_references(out_path, *, orbitals: bool, fcidump: bool) -> None:
    """Point each molecule group of the dataset at its orbitals file and FCIDUMP files (atomically)."""
    import h5py

    from rung.core.dataset import atomic_update

    if not (orbitals or fcidump):
        return
    want: dict = {}
    with h5py.File(out_path, "r") as f:
        for name, g in f.items():
            attrs = {}
            if orbitals:
                attrs["dft_orbitals_file"] = orbitals_path(out_path).name
            if fcidump:
                n = g["conformations"].shape[0]
                attrs["dft_fcidump_files"] = [p.name if p.exists() else ""
                                              for p in (fcidump_path(out_path, name, i) for i in range(n))]
            have = {k: _text_list(g.attrs[k]) if k == "dft_fcidump_files" else _text_list([g.attrs[k]])[0]
                    for k in attrs if k in g.attrs}
            if have != attrs:
                want[name] = attrs
    if not want:
        return

    def update(f):
        for name, attrs in want.items():
            for k, v in attrs.items():
                f[name].attrs[k] = np.array(v, dtype=h5py.string_dtype()) if isinstance(v, list) else v

    atomic_update(Path(out_path), update)


__all__ = ["orbitals_path", "fcidump_path", "write_orbital_part", "merge_orbital_parts", "fcidump_integrals",
           "write_fcidump", "set_references"]
