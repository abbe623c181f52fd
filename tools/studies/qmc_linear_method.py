"""Linear-method step rules on ccECP water: the plain step (shift grown until |dp| <= max_step) against the
step chosen by correlated sampling among three shifts (with and without the xi = 1/2 rescaling).

Cases: ``jastrow`` (single RHF determinant + two-body Jastrow), ``ci<N>`` (the N largest determinants
of a CIPSI expansion of water, 1000 determinants over all ccecp-cc-pvdz orbitals, RHF orbitals, made
once with rung.sci in ``--work``; Jastrow + CI coefficients optimised), ``casci<N>`` (the N largest of
a CASCI(8e, 8o), as in the 2026-12-06 22:10 benchmark). For each seed every method runs
in the same process from the same walkers; then an independent VMC at the kept parameters. One JSON
line per (case, seed, method) on stdout: sampled energies per iteration, VMC energy, error and
variance, optimisation CPU seconds and the part spent on the correlated-sampling evaluation.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        .venv/bin/python tools/studies/qmc_linear_method.py --case ci100 --seeds 1 2 3
"""

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from rung.qmc.hamiltonian import Hamiltonian
from rung.qmc.multideterminant import read_multidet
from rung.qmc.optimize import OptimizeConfig, optimize
from rung.qmc.system import initial_configs, load_orbitals, slater_jastrow
from rung.qmc.vmc import VMCConfig, vmc

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr (the qmc tests' geometry)
METHODS = {"plain": {}, "correlated": {"step": "correlated"}, "correlated_xi": {"step": "correlated", "xi": 0.5}}


def cipsi_file(work: Path) -> Path:
    """Water CIPSI to 1000 determinants (RHF/ccecp-cc-pvdz orbitals, all orbitals active), written once."""
    path = work / "water_cipsi1000.sci.h5"
    if path.exists():
        return path
    from pyscf import gto, scf

    from rung.sci.cipsi import CIPSIConfig, kernel
    from rung.sci.fcidump import from_scf
    from rung.sci.workflow import write_orbitals

    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol)
    mf.conv_tol = 1e-10
    mf.kernel()
    tmp = path.with_suffix(".tmp.h5")
    kernel(from_scf(mf), CIPSIConfig(max_det=1000), checkpoint=tmp, log=lambda *a: None)
    write_orbitals(tmp, dict(mo_coeff=mf.mo_coeff, mo_occ=mf.mo_occ, mo_energy=mf.mo_energy, mol=mol.dumps(),
                             xc="hf", e_tot=float(mf.e_tot), basis="ccecp-cc-pvdz", ecp="ccecp"))
    tmp.rename(path)
    return path


def casci(ndet: int):
    """PySCF CASCI(8e, 8o) of water on RHF orbitals, its ``ndet`` largest determinants (the expansion of
    the 2026-12-06 22:10 benchmark, where 100 determinants at 8000 samples per iteration jumped)."""
    from pyscf import fci, gto, mcscf, scf

    from rung.qmc.multideterminant import Expansion
    from rung.qmc.system import _spin_orbitals

    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASCI(mf, 8, 8).run()
    ci = np.asarray(mc.ci)
    strings = fci.cistring.make_strings(range(8), 4)
    flat = np.argsort(-np.abs(ci).ravel(), kind="stable")[:ndet]
    ia, ib = np.unravel_index(flat, ci.shape)

    def occ(s):
        return tuple(list(range(mc.ncore)) + [mc.ncore + i for i in range(8) if int(s) >> i & 1])

    exp = Expansion(ci.ravel()[flat], tuple(occ(strings[i]) for i in ia), tuple(occ(strings[i]) for i in ib),
                    mc.ncore + 8, optimize_ci=True)
    return mol, _spin_orbitals(mc.mo_coeff, mf.mo_occ, mf.e_tot, "RHF"), exp


def build(case: str, work: Path):
    if case.startswith("casci"):
        mol, orb, exp = casci(int(case[5:]))
        return mol, lambda: slater_jastrow(mol, orb, expansion=exp)
    mol, orb = load_orbitals(cipsi_file(work), None, group="orbitals")
    exp = None
    if case.startswith("ci"):
        exp = replace(read_multidet(cipsi_file(work), max_dets=int(case[2:])), optimize_ci=True)
    return mol, lambda: slater_jastrow(mol, orb, expansion=exp)


def replay(case: str, seed: int, upto: int, work: Path, walkers: int = 400):
    """The plain rule's run (``optimize``'s defaults and random stream, 10 iterations) replayed up to the
    step after iteration ``upto``; there the three candidates (shifts a, 10a, 100a) are also judged
    by correlated sampling on 5 extra sweeps (a separate random stream), and the plain step is then
    sampled as the run did. Prints the candidates' reweighted energy differences and the sampled
    energy after the plain step."""
    from rung.qmc.optimize import (_evaluate, _flat, _set, candidate_steps, choose_step, energy_and_derivatives,
                                   linear_method_step, reweighted_energies)
    from rung.qmc.vmc import sweep

    mol, make = build(case, work)
    ham = Hamiltonian.from_mol(mol)
    wf, cfg = make(), OptimizeConfig(seed=seed)
    configs = initial_configs(mol, walkers, np.random.default_rng(seed))
    rng = np.random.default_rng(seed)
    nsteps = max(cfg.nsteps, 2, -(-cfg.min_samples // walkers))
    wf.recompute(configs)
    for _ in range(cfg.nequil):
        sweep(wf, configs, cfg.tau, rng)
    for it in range(upto + 2):
        wf.recompute(configs)
        samples = []
        for _ in range(nsteps):
            sweep(wf, configs, cfg.tau, rng)
            samples.append(energy_and_derivatives(wf, ham, configs, rng))
        E, O, dE = (np.concatenate(x) for x in zip(*samples))
        print(f"iteration {it}: sampled E = {E.mean():.4f}", flush=True)
        if it == upto + 1:
            break
        if it == upto:
            dps, shifts = candidate_steps(E, O, dE, cfg.shift, cfg.max_step)
            other, stored = np.random.default_rng(999), []
            saved = configs.copy()
            for _ in range(5):
                sweep(wf, configs, cfg.tau, other)
                stored.append(configs.copy())
            p0 = _flat(wf)
            l0, e0 = _evaluate(wf, ham, stored, 7)
            cand = []
            for dp in dps:
                _set(wf, p0 + dp)
                cand.append(_evaluate(wf, ham, stored, 7))
            _set(wf, p0)
            diffs, errs, ess = reweighted_energies(l0, e0, np.stack([c[0] for c in cand]),
                                                   np.stack([c[1] for c in cand]))
            print("shifts", shifts, "max|dp|", [float(np.abs(d).max()) for d in dps], "diffs", diffs, "errors", errs,
                  "ess", ess, "chosen", choose_step(diffs, errs, ess), flush=True)
            configs[...] = saved
            wf.recompute(configs)
            dp = dps[0]  # the first candidate is the plain step
        else:
            dp = linear_method_step(E, O, dE, cfg.shift, cfg.max_step)[0]
        _set(wf, _flat(wf) + dp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="ci100")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--niter", type=int, default=10)
    ap.add_argument("--walkers", type=int, default=400)
    ap.add_argument("--vmc-blocks", type=int, default=100)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--replay", type=int, default=None, help="replay the plain run of the first seed up to the "
                    "step after this iteration and judge that step by correlated sampling")
    a = ap.parse_args()
    if a.replay is not None:
        return replay(a.case, a.seeds[0], a.replay, a.work, a.walkers)
    mol, make = build(a.case, a.work)
    ham = Hamiltonian.from_mol(mol)
    for seed in a.seeds:
        for name in a.methods:
            wf = make()
            trace = []
            c0 = time.process_time()
            hist, configs = optimize(wf, ham, initial_configs(mol, a.walkers, np.random.default_rng(seed)),
                                     OptimizeConfig(niter=a.niter, seed=seed, **METHODS[name]), trace=trace)
            c_opt = time.process_time() - c0
            res = vmc(wf, ham, configs, VMCConfig(nwalkers=a.walkers, nblocks=a.vmc_blocks, nsteps=10, nequil=10,
                                                  seed=100 + seed), rng=np.random.default_rng(100 + seed))
            print(json.dumps({
                "case": a.case, "seed": seed, "method": name, "npar": int(hist[0][2].size),
                "sampled": [round(h[0], 5) for h in hist], "sampled_err": [round(h[1], 5) for h in hist],
                "vmc": res.energy, "vmc_err": res.error, "variance": res.variance, "opt_cpu_s": c_opt,
                "eval_cpu_s": sum(t.get("cpu_s", 0.0) for t in trace),
                "chosen": [t.get("chosen") for t in trace], "shifts": [t.get("shifts", t.get("shift")) for t in trace],
                "diffs": [None if "diffs" not in t else [round(float(x), 5) for x in t["diffs"]] for t in trace],
            }), flush=True)


if __name__ == "__main__":
    main()
