"""QMC forces: error bar per CPU-second against correlated-sampling finite differences, and memory per walker.

A statistical study, not a timing case (``cases`` yields nothing): run it as

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python -m tools.bench.suites.qmc_force_efficiency [--memory]

**Efficiency** (issue #14: "force error bar per CPU-hour on water against correlated-sampling finite
differences of the energy (3 N_atom displaced runs) at equal statistics: >= N_atom x better"). Both
estimators run on the same VMC samples (same seed, same walkers, forces at every step):

- ours: the ZVZB estimator with the analytic all-atom derivatives (``ForceConfig(method="analytic")``);
- the peer: correlated sampling, the energy reweighted to every displaced geometry R +- h e_{I,x} on the
  same samples (space warp on, so the reweighting stays finite; ``method="fd"``, 6 N_atom displaced wave
  functions and local energies per sample). To first order in h this is the same estimator, so its error
  bar is the same; the peer pays 6 N_atom displaced evaluations per sample.

Efficiency = 1 / (sigma^2 T) with T the process CPU time of the whole run (sampling included) and sigma
the reblocked error of each force component; the table gives the median over components of the ratio.
A forward-difference peer (3 N_atom + 1 evaluations, an O(h) bias) would cost about half the central
one's displaced evaluations; the table gives that estimate too, from the measured cost per displaced
evaluation.

**Memory** (``--memory``): peak RSS of a fresh process running VMC with forces on (and off) at two walker
counts; the slope is the memory per walker (water 8, benzene 30, hexadecane 98 valence electrons).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np


def cases(quick: bool):
    return iter(())  # a statistical study: see the module docstring


def _system(name):
    from tools.bench.suites import qmc as Q

    if name == "water":
        return Q._water()
    if name == "benzene":
        return Q._benzene()
    return Q._alkane(16)


def _run(mol, mf, nw, nblocks, nsteps, method, seed=0):
    """(result, CPU seconds) of a VMC run with forces by ``method`` ("analytic", "fd", or None: none)."""
    from rung.qmc.forces import ForceConfig, NuclearDerivatives, displaced_builder
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
    from rung.qmc.vmc import VMCConfig, vmc

    orb = _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "bench")
    wf = slater_jastrow(mol, orb)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(seed)
    configs = initial_configs(mol, nw, rng)
    forces = None
    if method is not None:
        forces = NuclearDerivatives(displaced_builder(mol, orb, parameters=wf.parameters), mol.atom_coords(),
                                    ForceConfig(method=method))
    c0 = time.process_time()
    r = vmc(wf, ham, configs, VMCConfig(nwalkers=nw, nblocks=nblocks, nsteps=nsteps, nequil=20), rng=rng,
            forces=forces)
    return r, time.process_time() - c0


def efficiency(name="water", nw=100, nblocks=40, nsteps=10):
    """One table row: CPU seconds, median error bar and efficiency ratio of ZVZB-analytic vs correlated-sampling FD."""
    mol, mf = _system(name)
    natom = mol.natm
    for method in (None, "analytic", "fd"):  # warm-up: numba kernels loaded or compiled
        _run(mol, mf, nw, 1, 2, method)
    base, t0 = _run(mol, mf, nw, nblocks, nsteps, None)
    an, ta = _run(mol, mf, nw, nblocks, nsteps, "analytic")
    fd, tf = _run(mol, mf, nw, nblocks, nsteps, "fd")
    assert np.allclose(an.energy, fd.energy) and np.allclose(an.energy, base.energy)  # the same samples
    sa, sf = an.forces_error.ravel(), fd.forces_error.ravel()
    ratio = np.median(sf**2 * tf / (sa**2 * ta))
    # forward differences: 3N + 1 instead of 6N displaced evaluations per sample
    per_eval = (tf - t0) / (6 * natom)
    t_fwd = t0 + (3 * natom + 1) * per_eval
    ratio_fwd = np.median(sf**2 * t_fwd / (sa**2 * ta))
    dev = np.max(np.abs(an.forces - fd.forces) / np.hypot(an.forces_error, fd.forces_error))
    return dict(molecule=name, natom=natom, walkers=nw, samples=nblocks * nsteps, cpu_energy_only=t0, cpu_analytic=ta,
                cpu_fd=tf, sigma_analytic=float(np.median(sa)), sigma_fd=float(np.median(sf)),
                sigma_ratio=float(np.median(sf / sa)), efficiency_ratio=float(ratio),
                efficiency_ratio_forward=float(ratio_fwd), max_dev_sigma=float(dev))


_MEMORY = """
import resource, sys, numpy as np
sys.path.insert(0, ".")
from tools.bench.suites.qmc_force_efficiency import _system, _run
mol, mf = _system(sys.argv[1])
_run(mol, mf, int(sys.argv[2]), 1, 2, None if sys.argv[3] == "none" else "analytic")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def memory(name, walkers=(20, 100)):
    """Peak RSS (MiB) per walker with forces on and off: slope between two walker counts, fresh processes."""
    out = {}
    for method in ("none", "analytic"):
        rss = [int(subprocess.run([sys.executable, "-c", _MEMORY, name, str(nw), method], check=True,
                                  capture_output=True, text=True).stdout.split()[-1]) / 1024 for nw in walkers]
        out[method] = ((rss[1] - rss[0]) / (walkers[1] - walkers[0]), rss)
    return out


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--memory" in argv:
        print("| molecule | walkers | peak RSS, energy only (MiB) | peak RSS, forces (MiB) | "
              "per walker, energy only (MiB) | per walker, forces (MiB) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for name in ("water", "benzene", "hexadecane"):
            m = memory(name)
            print(f"| {name} | 20 / 100 | {m['none'][1][0]:.0f} / {m['none'][1][1]:.0f} | "
                  f"{m['analytic'][1][0]:.0f} / {m['analytic'][1][1]:.0f} | {m['none'][0]:.2f} | {m['analytic'][0]:.2f} |",
                  flush=True)
        return
    print("| molecule | walkers x samples | CPU-s energy only | CPU-s ZVZB analytic | CPU-s correlated-sampling FD | "
          "median sigma analytic / FD (Ha/Bohr) | efficiency analytic / FD (central) | (forward, estimated) | "
          "max |F_an - F_fd| / sigma |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, nw, nb in (("water", 100, 40), ("benzene", 20, 20)):
        r = efficiency(name, nw, nb)
        print(f"| {name} ({r['natom']} atoms) | {nw} x {r['samples']} | {r['cpu_energy_only']:.1f} | {r['cpu_analytic']:.1f} | "
              f"{r['cpu_fd']:.1f} | {r['sigma_analytic']:.4f} / {r['sigma_fd']:.4f} | {r['efficiency_ratio']:.1f} | "
              f"{r['efficiency_ratio_forward']:.1f} | {r['max_dev_sigma']:.2f} |", flush=True)
        print(json.dumps(r), file=sys.stderr)


if __name__ == "__main__":
    main()
