"""The DFT step of the ladder demo (tools/ladder.py): ωB97M-D3BJ/ccecp-cc-pVDZ on the dataset's water.

Runs :func:`rung.dft_gpu.run.run` on the ladder dataset in place (input and output are the same
rung.core dataset, so a rerun resumes and computes nothing), with the paper's grid strategy (energy
on grid 3, forces on grid 4) and J/K through the engine, and writes the orbitals
(``<workdir>/water.orbitals.h5``, the QMC trial wavefunction) and the FCIDUMP
(``<workdir>/water.water.0.fcidump``, the sCI Hamiltonian) for the rungs above.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONFIG = dict(xc="wb97m-d3bj", basis="ccecp-cc-pvdz", ecp="ccecp", save_orbitals=True, save_fcidump=True)


def step(workdir: Path, dataset: Path, molecule: str) -> str:
    """Compute conformation 0 of ``molecule`` in ``dataset``; return one summary line."""
    from rung.core.dataset import read_property
    from rung.dft_gpu.run import run
    from rung.dft_gpu.scf import DFTConfig

    summary = run(dataset, dataset, DFTConfig(**CONFIG), progress=False)
    status, _ = read_property(dataset, molecule, "dft_status")
    if status[0] != 1:
        errors, _ = read_property(dataset, molecule, "dft_error")
        reason = errors[0].decode() if isinstance(errors[0], bytes) else str(errors[0])
        return f"DFT FAILED for {molecule}[0]: {reason}"
    energy, _ = read_property(dataset, molecule, "dft_total_energy")
    grad, _ = read_property(dataset, molecule, "dft_total_gradient")
    backend, _ = read_property(dataset, molecule, "dft_jk_backend")
    jk = backend[0].decode() if isinstance(backend[0], bytes) else str(backend[0])
    gmax = float(np.abs(grad[0]).max())
    note = "computed" if summary.computed else "from the dataset"
    return (f"E(wB97M-D3BJ/ccECP/cc-pVDZ) = {energy[0]:.8f} Ha, max |dE/dR| = {gmax:.2e} Ha/Bohr "
            f"(grid 3/4, J/K {jk}, {note}); orbitals + FCIDUMP written")
