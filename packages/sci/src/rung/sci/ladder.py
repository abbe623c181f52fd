"""Ladder step: a short CIPSI on the water molecule, wavefunction for the QMC rung.

Uses the DFT rung's FCIDUMP when it wrote one, else an RHF ccecp-cc-pVDZ (ecp="ccecp") Hamiltonian
made here; writes ``<workdir>/water.sci.h5`` (QMCPACK ``/MultiDet``, plus ``/orbitals`` when the
orbitals were made here) and the ``sci_*`` energies into the dataset.
"""

from __future__ import annotations

from pathlib import Path

LADDER_CONFIG = dict(max_det=2000, pt2_threshold=1e-6, growth=3.0)


def step(workdir: Path, dataset: Path, molecule: str) -> str:
    from rung.core.dataset import read_property
    from rung.sci.cipsi import CIPSIConfig
    from rung.sci.workflow import run_dataset

    workdir = Path(workdir)
    wf = workdir / f"{molecule}.sci.h5"
    run_dataset(dataset, CIPSIConfig(**LADDER_CONFIG), wavefunction_path=lambda m, i: wf if (m, i) == (molecule, 0)
                else Path(dataset).with_name(f"{Path(dataset).stem}.{m}.{i}.sci.h5"), log=lambda s: None)
    if int(read_property(dataset, molecule, "sci_status")[0][0]) != 1:
        raise RuntimeError(f"sci failed on {molecule}: {read_property(dataset, molecule, 'sci_error')[0][0]}")
    vals = {k: read_property(dataset, molecule, f"sci_{k}")[0][0]
            for k in ("variational_energy", "pt2_energy", "pt2_energy_error", "total_energy", "n_det")}
    from rung.sci.cipsi import load

    err = vals["pt2_energy_error"]
    pm = (f" ± {err:.1e}" if err > 0 else "") + f" ({load(wf)[0].pt2_kind} PT2)"
    return (f"E_var = {vals['variational_energy']:.6f} Ha, E_var+PT2 = {vals['total_energy']:.6f} Ha{pm}, "
            f"n_det = {int(vals['n_det'])}")
