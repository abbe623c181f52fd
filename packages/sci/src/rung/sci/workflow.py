"""Running CIPSI on the conformations of a rung.core dataset.

For each pending conformation the Hamiltonian comes from the DFT rung's FCIDUMP when there is one
(molecule attribute ``dft_fcidump_files``, or ``<dataset>.<molecule>.<index>.fcidump``), else from a
PySCF RHF in ``basis``/``ecp`` on the dataset geometry. The wavefunction goes to
``<dataset without .h5>.<molecule>.<index>.sci.h5`` (``.<prefix>sci.h5`` with a ``--property-prefix``, so
that the two calculations keep their own files; ``/MultiDet`` plus, when the orbitals were made
here, ``/orbitals`` in the layout of the DFT orbitals contract), and the energies into the dataset
through :class:`rung.core.dataset.ResultWriter` as ``sci_*`` properties (Hartree).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from rung.sci import __version__
from rung.sci.cipsi import CIPSIConfig, CIPSIResult, kernel
from rung.sci.fcidump import Hamiltonian, from_scf, read_fcidump

UNITS = {
    "variational_energy": "hartree", "pt2_energy": "hartree", "pt2_energy_error": "hartree",
    "total_energy": "hartree", "extrapolated_energy": "hartree", "n_det": "dimensionless",
    "s2": "dimensionless",
}


def build_mol(dataset, molecule: str, index: int, basis: str, ecp: str | None):
    """PySCF molecule of one conformation, after the checks every rung runs: not failed at the DFT rung
    (:func:`rung.core.dataset.check_not_failed`), a possible geometry, charge and spin
    (:func:`rung.core.dataset.check_conformation`)."""
    from pyscf import gto

    from rung.core.dataset import check_conformation, check_not_failed, read_hdf5

    (m,) = read_hdf5(dataset, [molecule])
    check_not_failed(dataset, molecule, index, "dft")
    check_conformation(m.atomic_numbers, m.conformations[index], m.charge, m.multiplicity)
    mol = gto.Mole()
    mol.atom = [(int(z), tuple(x)) for z, x in zip(m.atomic_numbers, m.conformations[index])]
    mol.unit = "Bohr"
    mol.basis = basis
    if ecp:
        mol.ecp = ecp
    mol.charge = m.charge
    mol.spin = m.multiplicity - 1
    mol.verbose = 0
    return mol.build()


def _dft_fcidump(dataset: Path, molecule: str, index: int) -> Path | None:
    with h5py.File(dataset, "r") as f:
        names = f[molecule].attrs.get("dft_fcidump_files")
    if names is not None and len(names) > index:
        name = names[index]
        name = name.decode() if isinstance(name, bytes) else str(name)
        if name:
            return dataset.parent / name
    p = dataset.with_name(f"{dataset.stem}.{molecule}.{index}.fcidump")
    return p if p.exists() else None


def hamiltonian_for(dataset, molecule: str, index: int = 0, *, basis: str = "ccecp-cc-pvdz",
                    ecp: str | None = "ccecp", frozen_core: int = 0, log: Callable | None = None):
    """(Hamiltonian, source description, orbitals dict or None) for one conformation; ``log``: a callable
    taking one line (None: logger ``rung.sci`` at INFO)."""
    log = log or logging.getLogger("rung.sci").info
    dataset = Path(dataset)
    mol = build_mol(dataset, molecule, index, basis, ecp)
    path = _dft_fcidump(dataset, molecule, index)
    if path is not None and path.exists():
        ham = read_fcidump(path)
        ncore = (mol.nelectron - sum(ham.nelec)) // 2
        ham = Hamiltonian(ham.h1, ham.eri, ham.ecore, ham.nelec, ham.orbsym, max(0, ncore))
        return ham, f"FCIDUMP {path.name}", None
    from pyscf import scf

    mf = scf.RHF(mol) if mol.spin == 0 else scf.ROHF(mol)
    mf.conv_tol = 1e-10
    mf.kernel()
    if not mf.converged:
        raise RuntimeError(f"{molecule}[{index}]: RHF did not converge")
    ham = from_scf(mf, ncore=frozen_core)
    orbitals = dict(mo_coeff=mf.mo_coeff, mo_occ=mf.mo_occ, mo_energy=mf.mo_energy, mol=mol.dumps(), xc="hf",
                    e_tot=float(mf.e_tot), basis=basis, ecp=ecp or "")
    log(f"{molecule}[{index}]: RHF/{basis} E = {mf.e_tot:.8f} Ha ({mol.nao} orbitals)")
    return ham, f"RHF/{basis}", orbitals


def write_orbitals(path, orbitals: dict) -> None:
    """Add ``/orbitals`` (DFT-orbitals contract layout) to a wavefunction file."""
    with h5py.File(path, "a") as f:
        if "orbitals" in f:
            del f["orbitals"]
        g = f.create_group("orbitals")
        for k in ("mo_coeff", "mo_occ", "mo_energy"):
            g.create_dataset(k, data=np.asarray(orbitals[k])).attrs["units"] = "hartree" if k == "mo_energy" else "dimensionless"
        for k in ("mol", "xc", "e_tot", "basis", "ecp"):
            g.attrs[k] = orbitals[k]


def result_values(res: CIPSIResult) -> dict:
    return {
        "variational_energy": float(res.e_var[0]), "pt2_energy": res.e_pt2, "pt2_energy_error": res.pt2_error,
        "total_energy": res.e_var_pt2, "extrapolated_energy": res.e_extrapolated, "n_det": int(res.n_det),
        "s2": float(res.s2[0]),
    }


def run_dataset(dataset, config: CIPSIConfig = CIPSIConfig(), *, basis: str = "ccecp-cc-pvdz",
                ecp: str | None = "ccecp", frozen_core: int = 0, backend: str = "auto",
                wavefunction_path: Callable | None = None, log: Callable | None = None, rung: str = "sci") -> dict:
    """CIPSI on every pending conformation of ``dataset``; returns ``{(molecule, index): CIPSIResult}``.

    Failures are recorded in the dataset (``sci_status`` = failed, ``sci_error``) and the run goes on.
    ``rung``: the datasets' prefix (``sci``, or ``<--property-prefix>sci``). The basis, ECP, frozen core and
    CIPSI settings are recorded in the dataset (``<rung>_settings``) before the first conformation, and a
    dataset whose values were computed with others is refused (:func:`rung.core.dataset.check_settings`).
    ``log``: a callable taking one line (None: logger ``rung.sci`` at INFO).
    """
    log = log or logging.getLogger("rung.sci").info
    from dataclasses import asdict

    from rung.core.dataset import ResultWriter, check_foreign, check_settings

    dataset = Path(dataset)
    check_foreign(dataset, rung)  # another code's sci_* values are never overwritten
    cipsi = {k: v for k, v in asdict(config).items() if k not in ("max_entries", "blas_threads")}  # not numbers
    if not cipsi["min_last_step"]:  # off, as before the option: the settings that datasets recorded then
        del cipsi["min_last_step"]
    check_settings(dataset, rung, {"basis": basis, "ecp": ecp or "", "frozen_core": frozen_core, **cipsi})
    writer = ResultWriter(dataset, rung, UNITS, metadata={"method": "CIPSI + EN-PT2", "package_version": __version__,
                                                           "basis": basis, "ecp": ecp or ""})
    out = {}
    for molecule, index in writer.pending():
        wf = (wavefunction_path(molecule, index) if wavefunction_path
              else dataset.with_name(f"{dataset.stem}.{molecule}.{index}.{rung}.h5"))
        try:
            ham, source, orbitals = hamiltonian_for(dataset, molecule, index, basis=basis, ecp=ecp,
                                                    frozen_core=frozen_core, log=log)
            log(f"{molecule}[{index}]: {source}, {ham.norb} orbitals, {ham.nelec} electrons -> {wf.name}")
            res = kernel(ham, config, backend=backend, checkpoint=wf, log=log)
            if orbitals is not None:
                write_orbitals(wf, orbitals)
            writer.record(molecule, index, result_values(res))
            out[(molecule, index)] = res
        except Exception as err:  # recorded, and the next conformation runs
            writer.record(molecule, index, error=f"{type(err).__name__}: {err}")
            log(f"{molecule}[{index}] failed: {type(err).__name__}: {err}")
    writer.merge()
    return out


__all__ = ["UNITS", "hamiltonian_for", "run_dataset", "result_values", "write_orbitals", "build_mol"]
