"""Ladder step: VMC and a short DMC on the ladder's water (ccECP, ccecp-cc-pvdz).

Uses the DFT rung's saved orbitals when present (contracts.md), else a PySCF Hartree-Fock on the
dataset geometry; Slater-Jastrow trial function, Jastrow optimised by a short linear-method run;
results go into the dataset as ``qmc_*`` properties, forces included (ZVZB with space warp, VMC and
DMC hybrid), compared with the DFT rung's gradient. The DMC projects for 15 a.u. of imaginary time
(3 of them equilibration), about ten seconds here: a shorter run (1.6 a.u.) gave error bars that its
few blocks underestimated (a value 3 sigma below the published fixed-node energy).
"""

from __future__ import annotations

from pathlib import Path

NWALKERS = 100
FORCE_EVERY = 2  # forces on every other step: each costs 6 N_atom local energies (rung.qmc.forces)


def step(workdir: Path, dataset: Path, molecule: str) -> str:
    import h5py
    import numpy as np

    from rung.qmc.dmc import DMCConfig
    from rung.qmc.forces import ForceConfig
    from rung.qmc.optimize import OptimizeConfig
    from rung.qmc.run import QMCConfig, kernel, record, trial_from_dataset
    from rung.qmc.stats import format_value
    from rung.qmc.vmc import VMCConfig

    mol, orb = trial_from_dataset(dataset, molecule, 0, basis="ccecp-cc-pvdz", ecp="ccecp")
    cfg = QMCConfig(VMCConfig(nwalkers=NWALKERS, nblocks=10, nsteps=10, nequil=20, seed=1),
                    DMCConfig(tau=0.01, nblocks=30, nsteps=50, nequil_blocks=6, seed=1),
                    OptimizeConfig(niter=4, nsteps=15, seed=1), forces=ForceConfig(every=FORCE_EVERY))
    res = kernel(mol, orb, cfg, trace=Path(workdir) / f"{molecule}.qmc-dmc-trace.h5")
    record(dataset, molecule, 0, res, mol, orb, cfg)
    v, d = res.vmc, res.dmc
    line = (f"E(VMC) = {format_value(v.energy, v.error)} Ha, E(DMC) = {format_value(d.energy, d.error)} Ha, "
            f"{NWALKERS} walkers, tau {cfg.dmc.tau}, orbitals: {orb.source}")
    with h5py.File(dataset, "r") as f:
        g = f[molecule]
        ref = -g["dft_total_gradient"][0] if "dft_total_gradient" in g else None
    if ref is not None:  # largest |F_QMC - F_DFT| over components, with that component's error bar
        diff = np.abs(d.forces - ref)
        k = np.unravel_index(np.argmax(diff), diff.shape)
        line += (f"; DMC forces: max |F_QMC - F_DFT| = {format_value(diff[k], d.forces_error[k])} Ha/Bohr "
                 f"(atom {k[0]}, {'xyz'[k[1]]}), largest error bar {d.forces_error.max():.3f}")
    return line
