"""rung.qmc benchmarks, ours and the peer side by side in the same process:

- ``qmc.vmc_water``: VMC throughput (walker-sweeps; one sweep = one proposed move of every electron of
  a walker, plus the local energy, i.e. PyQMC's VMC "step") for water, ccECP/ccecp-cc-pvdz, RHF
  Slater determinant x two-body Jastrow, same walkers and time step; peer PyQMC (``pyqmc.api.vmc``,
  its default QWalk-style Jastrow) when installed, else no peer.
- ``qmc.dmc_water``: DMC steps (drift-diffusion sweep, branching, local energy) on the same water
  trial functions; peer ``pyqmc.api.rundmc``.
- ``qmc.vmc_benzene``: the same for benzene (30 valence electrons), full mode only.
- ``qmc.vmc_alkane``: the same for all-trans hexadecane C16H34 (98 valence electrons), full mode only,
  the ~100-electron point of the electron-count scaling (8 -> 30 -> 98). Its orbitals are the natural
  orbitals of PySCF's MINAO guess density, not SCF orbitals: the ccECP integrals of 50 ECP atoms alone
  take more than 5 CPU-minutes here, and the throughput of a sweep does not depend on the orbital
  quality (both codes get the same orbitals).
- ``qmc.vmc_water`` at 25, 100, 400 and 1600 walkers (full mode): scaling with walkers per process.
- ``qmc.forces_water`` (and ``qmc.forces_benzene``, full mode): all 3 N_atom ZVZB force derivatives of
  every walker (:class:`rung.qmc.forces.NuclearDerivatives`, space warp on, analytic path, given the
  sampler's state as a VMC step gives it), against one energy-only VMC step (sweep + local energy) on
  the same walkers as the "peer": peer/ours < 1 is the cost of the forces in energy steps.
  ``..._local_energy``: the same against one local-energy evaluation (the issue's yardstick: <= 4x with
  the warp); ``..._nowarp_local_energy``: without the warp (yardstick <= 3x); ``..._fd``: the
  finite-difference path (``method="fd"``, 6 N_atom re-built trial functions) against the energy step,
  for the before/after in one run.
- ``qmc.aos``: AO values + gradients at walker x electron positions against PySCF ``eval_gto``.
- ``qmc.dmc_time_to_error_water`` (full mode): what a user waits for, the time to a DMC error bar on
  water (tau 0.01, 400 walkers, T-moves), optimisation included: Jastrow optimisation on 200 walkers,
  a short VMC, then DMC in rounds of 500 steps until the reblocked error bar of the whole run reaches
  3 mHa; ours = the default optimisation of ``qmc optimize`` (6 iterations, parameters averaged over
  the converged ones, >= 8000 samples per iteration), "peer" = the previous default (6 iterations of 20
  sweeps, the iteration of lowest sampled energy). Time to 1 mHa ~ t_opt + 9 (t - t_opt) (error ~ 1/sqrt(t)); the
  case prints both.
- Against PyQMC (not a Case: PyQMC's default optimisation alone, 30 line-minimisation iterations on 1000
  configurations, costs ~11 CPU-minutes here): ``python -m tools.bench.suites.qmc {rung|pyqmc} SEED [N]``
  runs one code's default recipe once (:func:`ours_time_to_error`, :func:`pyqmc_time_to_error`) and prints
  its time to 1 mHa decomposed into optimisation, VMC, CPU-s per DMC step, the DMC local-energy variance
  and the statistical inefficiency; run seeds of both codes interleaved (BENCHMARKS.md, 2026-12-07).

Run single-threaded for per-CPU-second numbers: ``OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
.venv/bin/python -m tools.bench --only qmc``.
"""

import numpy as np
from pyscf import gto, scf

from tools.bench import Case

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


BENZENE = """C 0.0000 1.3970 0.0000; C 1.2098 0.6985 0.0000; C 1.2098 -0.6985 0.0000; C 0.0000 -1.3970 0.0000;
C -1.2098 -0.6985 0.0000; C -1.2098 0.6985 0.0000; H 0.0000 2.4810 0.0000; H 2.1486 1.2405 0.0000;
H 2.1486 -1.2405 0.0000; H 0.0000 -2.4810 0.0000; H -2.1486 -1.2405 0.0000; H -2.1486 1.2405 0.0000"""  # Angstrom


def _water():
    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run(verbose=0)
    return mol, mf


def _benzene():
    mol = gto.M(atom=BENZENE, basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).density_fit().run(verbose=0)
    return mol, mf


def alkane(n: int) -> list:
    """All-trans CnH2n+2, [(symbol, (x, y, z) Angstrom)]: zigzag carbon chain in the xy plane (C-C 1.54,
    C-H 1.09 Angstrom, tetrahedral angles), CH2 hydrogens above and below the plane."""
    cc, ch, half = 1.54, 1.09, np.radians(109.47) / 2
    carbons = [np.array([i * cc * np.sin(half), (i % 2) * cc * np.cos(half), 0.0]) for i in range(n)]
    atoms = [("C", tuple(c)) for c in carbons]
    for i, c in enumerate(carbons):
        up = 1.0 if i % 2 else -1.0  # away from the chain
        for sz in (-1.0, 1.0):
            v = np.array([0.0, up * np.cos(half), sz * np.sin(half)])
            atoms.append(("H", tuple(c + ch * v / np.linalg.norm(v))))
        if i in (0, n - 1):  # terminal methyl groups: a third hydrogen along the chain
            v = np.array([-1.0 if i == 0 else 1.0, -0.3 * up, 0.0])
            atoms.append(("H", tuple(c + ch * v / np.linalg.norm(v))))
    return atoms


def _alkane(n: int):
    """CnH2n+2 with ccECP/ccecp-cc-pvdz and, as a restricted "mean field" for both codes, the natural
    orbitals of PySCF's MINAO guess density (no SCF; see the module docstring)."""
    import scipy.linalg

    mol = gto.M(atom=alkane(n), basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    S = mol.intor("int1e_ovlp")
    occ, C = scipy.linalg.eigh(S @ scf.hf.init_guess_by_minao(mol) @ S, S)  # natural orbitals, S-orthonormal
    mf = scf.RHF(mol)
    mf.mo_coeff, mf.mo_energy = C[:, ::-1], -occ[::-1]
    mf.mo_occ = np.where(np.arange(C.shape[1]) < mol.nelectron // 2, 2.0, 0.0)
    mf.e_tot, mf.converged = 0.0, True  # PyQMC converts the object to UHF; no energy is used
    return mol, mf


def _ours_vmc(mol, mf, nw, nsteps, tau, backend="numba"):
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
    from rung.qmc.vmc import VMCConfig, vmc

    orb = _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "bench")
    wf = slater_jastrow(mol, orb, backend=backend)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(0)
    configs = initial_configs(mol, nw, rng)
    state = {"configs": vmc(wf, ham, configs, VMCConfig(nwalkers=nw, nblocks=1, nsteps=5, nequil=5, tau=tau),
                            rng=rng).configs}

    def run():
        r = vmc(wf, ham, state["configs"], VMCConfig(nwalkers=nw, nblocks=1, nsteps=nsteps, nequil=0, tau=tau), rng=rng)
        state["configs"] = r.configs

    return run


def _pyqmc_vmc(mol, mf, nw, nsteps, tau):
    try:
        import pyqmc.api as pyq
    except ImportError:
        return None
    wf, _ = pyq.generate_wf(mol, mf)
    configs = pyq.initial_guess(mol, nw)
    acc = {"energy": pyq.EnergyAccumulator(mol)}
    pyq.vmc(wf, configs, nblocks=1, nsteps_per_block=5, accumulators=acc, tstep=tau, verbose=False)

    def run():
        pyq.vmc(wf, configs, nblocks=1, nsteps_per_block=nsteps, accumulators=acc, tstep=tau, verbose=False)

    return run


def _ours_dmc(mol, mf, nw, nsteps):
    from rung.qmc.dmc import DMCConfig, dmc
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
    from rung.qmc.vmc import VMCConfig, vmc

    wf = slater_jastrow(mol, _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "bench"))
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(0)
    v = vmc(wf, ham, initial_configs(mol, nw, rng), VMCConfig(nwalkers=nw, nblocks=1, nsteps=5, nequil=10), rng=rng)
    return lambda: dmc(wf, ham, v.configs, DMCConfig(tau=0.01, nblocks=2, nsteps=nsteps // 2, nequil_blocks=1),
                       e_ref=v.energy)


def _forces_vs_step(mol, mf, nw, method="auto", warp=True, backend="numba"):
    """(forces of nw walkers, one energy-only VMC step of the same walkers, one local energy of them),
    all on equilibrated walkers; ``method`` and ``warp`` of :class:`rung.qmc.forces.ForceConfig`,
    ``backend`` of the analytic derivatives (:class:`rung.qmc.force_derivs.AnalyticDerivatives`). The
    forces get the sampler's state (trial function and grad ln psi at the walkers) as in a VMC step, on
    their own copy of it (the energy step moves the peer's walkers)."""
    import copy

    from rung.qmc.forces import ForceConfig, NuclearDerivatives, displaced_builder
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
    from rung.qmc.vmc import VMCConfig, sweep, vmc

    orb = _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "bench")
    wf = slater_jastrow(mol, orb)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(0)
    configs = vmc(wf, ham, initial_configs(mol, nw, rng), VMCConfig(nwalkers=nw, nblocks=1, nsteps=2, nequil=5),
                  rng=rng).configs
    nd = NuclearDerivatives(displaced_builder(mol, orb, parameters=wf.parameters), mol.atom_coords(),
                            ForceConfig(method=method, warp=warp), backend=backend)
    wf.recompute(configs)
    _, grad = ham.local_energy(wf, configs, rng, return_grad=True)
    wf_f = copy.deepcopy(wf)
    walkers = configs.copy()
    wf.recompute(walkers)

    def step():  # what an energy-only VMC step does: one sweep, one local energy
        sweep(wf, walkers, 0.3, rng)
        ham.local_energy(wf, walkers, rng)

    return (lambda: nd(configs, wf_f, grad)), step, (lambda: ham.local_energy(wf, walkers, rng, return_grad=True))


def _pyqmc_dmc(mol, mf, nw, nsteps):
    try:
        import pyqmc.api as pyq
    except ImportError:
        return None
    wf, _ = pyq.generate_wf(mol, mf)
    configs = pyq.initial_guess(mol, nw)
    acc = {"energy": pyq.EnergyAccumulator(mol)}
    pyq.vmc(wf, configs, nblocks=1, nsteps_per_block=15, accumulators=acc, tstep=0.3, verbose=False)
    return lambda: pyq.rundmc(wf, configs.copy(), tstep=0.01, nblocks=2, nsteps_per_block=nsteps // 2,
                              accumulators=acc, vmc_warmup=0, verbose=False)


def _optimised_vmc(mol, mf, opt, nw, seed):
    """Ours up to the DMC: Slater-Jastrow from ``mf``'s orbitals optimised on 200 walkers (``opt``), then VMC
    on nw walkers (20 + 50 sweeps). Returns (wf, ham, VMC result, optimisation CPU-s (wave function
    built included), VMC CPU-s)."""
    import time

    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.optimize import optimize
    from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
    from rung.qmc.vmc import VMCConfig, vmc

    orb = _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "bench")
    c0 = time.process_time()
    wf = slater_jastrow(mol, orb)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(seed)
    optimize(wf, ham, initial_configs(mol, 200, rng), opt)
    c1 = time.process_time()
    v = vmc(wf, ham, initial_configs(mol, nw, rng), VMCConfig(nwalkers=nw, nblocks=5, nsteps=10, nequil=20, seed=seed),
            rng=rng)
    return wf, ham, v, c1 - c0, time.process_time() - c1


def _time_to_error(mol, mf, opt, target=3e-3, nw=400, seed=0):
    """Callable: optimise (200 walkers, ``opt``), VMC, then DMC rounds until the error bar <= target (Ha)."""
    from rung.qmc.dmc import DMCConfig, dmc
    from rung.qmc.stats import reblock

    def run():
        import time

        c0 = time.process_time()
        wf, ham, v, t_opt, _ = _optimised_vmc(mol, mf, opt, nw, seed)
        configs, e_ref, trace, r = v.configs, v.energy, [], None
        for k in range(40):
            d = dmc(wf, ham, configs, DMCConfig(tau=0.01, nblocks=10 + (k == 0), nsteps=50, nequil_blocks=int(k == 0),
                                                seed=seed + k), e_ref=e_ref)
            configs, e_ref = d.configs, d.energy
            trace.append(d.trace)
            r = reblock(np.concatenate(trace))
            if r.error <= target:
                break
        t = time.process_time() - c0
        print(f"    {opt.select}: E_DMC {r.mean:.4f}({r.error * 1e4:.0f}) after {len(trace) * 500} steps, "
              f"CPU {t:.0f} s (optimisation {t_opt:.0f} s); to 1 mHa ~ {t_opt + (t - t_opt) * (r.error / 1e-3) ** 2:.0f} CPU-s")

    return run


def cases(quick: bool):
    mol, mf = _water()
    # walkers per process: 25 -> 1600 (full mode)
    for nw in ([100] if quick else [25, 100, 400, 1600]):
        nsteps = 5 if quick or nw > 400 else 20
        peer = _pyqmc_vmc(mol, mf, nw, nsteps, 0.3)
        yield Case("qmc.vmc_water", f"H2O ccECP/ccecp-cc-pvdz, {nw} walkers x {nsteps} sweeps, SJ",
                   _ours_vmc(mol, mf, nw, nsteps, 0.3), peer=peer, peer_name="pyqmc.vmc" if peer else "",
                   work=nw * nsteps, work_unit="walker-sweeps", repeats=3, warmup=0,
                   note="" if peer else "PyQMC not installed")
    if not quick:  # scaling with electrons: 8 (water) -> 30 (benzene) -> 98 (hexadecane), valence
        for label, (emol, emf), nw, ns in (("qmc.vmc_benzene", _benzene(), 100, 4),
                                           ("qmc.vmc_alkane", _alkane(16), 20, 2)):
            name = "C6H6" if label == "qmc.vmc_benzene" else "C16H34 (MINAO natural orbitals)"
            peer = _pyqmc_vmc(emol, emf, nw, ns, 0.3)
            yield Case(label, f"{name} ccECP/ccecp-cc-pvdz, {emol.nelectron} e, {nw} walkers x {ns} sweeps, SJ",
                       _ours_vmc(emol, emf, nw, ns, 0.3), peer=peer, peer_name="pyqmc.vmc" if peer else "",
                       work=nw * ns, work_unit="walker-sweeps", repeats=1, warmup=0,
                       note="" if peer else "PyQMC not installed")
    nw, ns = 100, (10 if quick else 20)
    peer = _pyqmc_dmc(mol, mf, nw, ns)
    yield Case("qmc.dmc_water", f"H2O ccECP/ccecp-cc-pvdz, {nw} walkers x {ns} steps, tau 0.01, SJ",
               _ours_dmc(mol, mf, nw, ns), peer=peer, peer_name="pyqmc.rundmc" if peer else "",
               work=nw * ns, work_unit="walker-steps", repeats=3, warmup=0,
               note="" if peer else "PyQMC not installed")
    for label, (fmol, fmf), nw in (("qmc.forces_water", (mol, mf), 100),) + (() if quick else (
            ("qmc.forces_benzene", _benzene(), 20),)):
        size = f"{fmol.natm} atoms, {fmol.nelectron} e, {nw} walkers: 3 N_atom force derivatives"
        ours, step, energy = _forces_vs_step(fmol, fmf, nw)
        yield Case(label, size + " (analytic, space warp)", ours, peer=step, peer_name="one VMC energy step",
                   work=nw, work_unit="walkers", repeats=5, warmup=1)
        yield Case(label + "_local_energy", size + " (analytic, space warp)", ours, peer=energy,
                   peer_name="one local energy", work=nw, work_unit="walkers", repeats=5, warmup=1)
        nowarp, _, energy = _forces_vs_step(fmol, fmf, nw, warp=False)
        yield Case(label + "_nowarp_local_energy", size + " (analytic, no warp)", nowarp, peer=energy,
                   peer_name="one local energy", work=nw, work_unit="walkers", repeats=5, warmup=1)
        fd, step, _ = _forces_vs_step(fmol, fmf, nw, method="fd")
        yield Case(label + "_fd", size + " (central differences, space warp)", fd, peer=step,
                   peer_name="one VMC energy step", work=nw, work_unit="walkers", repeats=3, warmup=1)
    from rung.qmc.orbitals import AtomicBasis, evaluate_aos

    basis = AtomicBasis.from_mol(mol)
    for npos in ([800] if quick else [800, 8000]):
        pos = np.random.default_rng(1).normal(scale=1.5, size=(npos, 3))
        yield Case("qmc.aos", f"H2O ccecp-cc-pvdz ({mol.nao} AOs), {npos} points, value+gradient",
                   lambda pos=pos: evaluate_aos(basis, pos, 1), peer=lambda pos=pos: mol.eval_gto("GTOval_sph_deriv1", pos),
                   peer_name="pyscf eval_gto", work=npos, work_unit="points")
    yield from gpu_cases(quick)
    if not quick:
        from rung.qmc.optimize import OptimizeConfig

        yield Case("qmc.dmc_time_to_error_water", "H2O ccECP/ccecp-cc-pvdz, DMC tau 0.01, 400 walkers, to a 3 mHa error "
                   "bar, optimisation included", _time_to_error(mol, mf, OptimizeConfig(niter=6, nsteps=20)),
                   peer=_time_to_error(mol, mf, OptimizeConfig(niter=6, nsteps=20, min_samples=0, select="lowest")),
                   peer_name="previous default optimisation", work=1, work_unit="error bars", repeats=1, warmup=0)


def gpu_cases(quick: bool):
    """backend="cupy" (the AOs on the device, copied back; the rest on the CPU kernels) beside the numba
    backend; only when rung.core sees a CUDA device (``make gpu-check``: ``python -m tools.bench --gpu-only``)."""
    from rung.core.backend import gpu_available

    if not gpu_available():
        return
    from rung.qmc.orbitals import AtomicBasis, evaluate_aos

    from numba import cuda

    mol, mf = _water()
    basis = AtomicBasis.from_mol(mol)
    for npos in (8000, 80000):
        pos = np.random.default_rng(1).normal(scale=1.5, size=(npos, 3))
        yield Case("qmc.aos", f"H2O ccecp-cc-pvdz ({mol.nao} AOs), {npos} points, value+gradient+Laplacian (GPU)",
                   lambda pos=pos: evaluate_aos(basis, pos, 2, backend="cupy"),
                   peer=lambda pos=pos: evaluate_aos(basis, pos, 2), peer_name="ours, numba (CPU)",
                   work=npos, work_unit="points", device="gpu", sync=cuda.synchronize)
    nw, nsteps = 400, 5
    yield Case("qmc.vmc_water", f"H2O ccECP/ccecp-cc-pvdz, {nw} walkers x {nsteps} sweeps, SJ (AOs on the GPU)",
               _ours_vmc(mol, mf, nw, nsteps, 0.3, backend="cupy"), peer=_ours_vmc(mol, mf, nw, nsteps, 0.3),
               peer_name="ours, numba (CPU)", work=nw * nsteps, work_unit="walker-sweeps", device="gpu",
               sync=cuda.synchronize, repeats=3, warmup=1)
    nw = 400
    ours, _, _ = _forces_vs_step(mol, mf, nw, backend="cupy")
    peer, _, _ = _forces_vs_step(mol, mf, nw)
    yield Case("qmc.forces_water", f"{mol.natm} atoms, {mol.nelectron} e, {nw} walkers: 3 N_atom force derivatives "
               "(analytic, space warp; det, electron and ECP terms on the GPU)", ours, peer=peer,
               peer_name="ours, numba (CPU)", work=nw, work_unit="walkers", device="gpu", sync=cuda.synchronize,
               repeats=3, warmup=1)


# --- the DMC time to a 1 mHa error bar, ours against PyQMC, each with its default recipe (issue #15) ----------
# Not a timed Case: one run per (code, seed) in its own process, one thread, process CPU time; the main
# below runs them interleaved and prints one JSON line per run. The decomposition (per run):
#   t_1mHa = t_opt + t_vmc + t_step (n_equil + n_1mHa),  n_1mHa = sigma^2 kappa / (nw (1 mHa)^2)
# with sigma^2 the weighted local-energy variance of the DMC walkers and kappa = nw n err^2 / sigma^2
# (steps) the statistical inefficiency of the walker-averaged energy (its correlation time in steps,
# inter-walker correlation from branching included), err the reblocked error of the n averaged steps.

def _dmc_fom(trace_err, n_steps, variance, nw, t_step, t_fixed):
    """Figures of merit of one DMC run (see the comment above); trace_err Ha, t_* CPU-s."""
    kappa = nw * n_steps * trace_err**2 / variance
    n_1mha = variance * kappa / (nw * 1e-6)
    return {"kappa_steps": kappa, "steps_to_1mHa": n_1mha, "t_to_1mHa": t_fixed + t_step * n_1mha,
            "efficiency": 1.0 / (trace_err**2 * t_step * n_steps)}


def ours_time_to_error(seed: int, nsteps: int = 2000, nw: int = 400, nequil: int = 100, opt=None) -> dict:
    """Ours with the defaults of ``qmc optimize`` / ``qmc dmc`` (optimisation: 200 walkers,
    :class:`rung.qmc.optimize.OptimizeConfig` defaults unless ``opt``), VMC 400 walkers, DMC tau 0.01
    with T-moves, nequil + nsteps steps; times in process CPU seconds."""
    import time

    from rung.qmc.dmc import DMCConfig, dmc
    from rung.qmc.optimize import OptimizeConfig
    from rung.qmc.stats import reblock

    mol, mf = _water()
    wf, ham, v, t_opt, t_vmc = _optimised_vmc(mol, mf, opt or OptimizeConfig(seed=seed), nw, seed)
    c2 = time.process_time()
    ns = 50
    d = dmc(wf, ham, v.configs, DMCConfig(tau=0.01, nblocks=(nequil + nsteps) // ns, nsteps=ns,
                                          nequil_blocks=nequil // ns, seed=seed), e_ref=v.energy)
    c3 = time.process_time()
    t_step = (c3 - c2) / (nequil + nsteps)
    r = reblock(d.trace)
    out = {"code": "rung", "seed": seed, "t_opt": t_opt, "t_vmc": t_vmc, "t_step": t_step,
           "t_walker_step": t_step / nw, "e_vmc": v.energy, "var_vmc": v.variance, "e_dmc": r.mean,
           "err_dmc": r.error, "plateau": bool(r.plateau), "var_dmc": d.variance, "n_steps": d.nsteps}
    return out | _dmc_fom(r.error, d.nsteps, d.variance, nw, t_step, t_opt + t_vmc + t_step * nequil)


def pyqmc_time_to_error(seed: int, nblocks: int = 100, nw: int = 400, nequil_blocks: int = 10,
                        opt_kws=None) -> dict:
    """PyQMC 0.8 as its tutorial runs it: ``generate_wf`` (Slater x its default Jastrow), optimised by
    ``line_minimization`` on 1000 configurations with its defaults (30 iterations; ``opt_kws`` overrides,
    e.g. ``{"max_iterations": 10}``), then ``rundmc`` (tau 0.01, its default 10 steps per branching block,
    T-moves, its default VMC warm-up of 10 x 10 sweeps, here run first and timed apart) on nw fresh
    configurations: nequil_blocks + nblocks blocks. Times in process CPU seconds."""
    import time

    import pyqmc.api as pyq
    from pyqmc.method import mc

    from rung.qmc.stats import reblock

    class _Energy(pyq.EnergyAccumulator):  # E_L^2 as well (variance), from the same evaluation
        def __call__(self, configs, wf):
            d = super().__call__(configs, wf)
            d["total2"] = d["total"].real ** 2
            return d

    mol, mf = _water()
    np.random.seed(seed)
    c0 = time.process_time()
    wf, to_opt = pyq.generate_wf(mol, mf)
    # line_minimization's own warm-up (1 x 100 sweeps) run here, to time the iterations apart
    _, configs = mc.vmc(wf, pyq.initial_guess(mol, 1000), nblocks=1, nsteps_per_block=100, accumulators={})
    cw = time.process_time()
    opt_kws = {"max_iterations": 30} | (opt_kws or {})
    _, df_opt = pyq.line_minimization(wf, configs, pyq.gradient_generator(mol, wf, to_opt),
                                      warmup_options={"nblocks": 0}, **opt_kws)
    c1 = time.process_time()
    _, configs = mc.vmc(wf, pyq.initial_guess(mol, nw), nblocks=10)  # rundmc's default vmc_warmup
    c2 = time.process_time()
    acc = {"energy": _Energy(mol)}
    df, _, _ = pyq.rundmc(wf, configs, tstep=0.01, nblocks=nequil_blocks + nblocks, accumulators=acc, vmc_warmup=0)
    c3 = time.process_time()
    ns = int(df["nsteps_per_block"][0])
    t_step = (c3 - c2) / ((nequil_blocks + nblocks) * ns)
    e = df["energytotal"][nequil_blocks:].real
    variance = float(np.mean(df["energytotal2"][nequil_blocks:] - e**2))
    r = reblock(e)
    out = {"code": "pyqmc", "seed": seed, "t_opt": c1 - c0, "t_opt_warmup": cw - c0,
           "t_opt_iteration": (c1 - cw) / opt_kws["max_iterations"], "t_vmc": c2 - c1, "t_step": t_step,
           "t_walker_step": t_step / nw, "opt_energies": [float(x["energy"]) for x in df_opt],
           "e_dmc": r.mean, "err_dmc": r.error, "plateau": bool(r.plateau), "var_dmc": variance,
           "n_steps": nblocks * ns}
    return out | _dmc_fom(r.error, nblocks * ns, variance, nw, t_step, c1 - c0 + c2 - c1 + t_step * nequil_blocks * ns)


if __name__ == "__main__":  # python -m tools.bench.suites.qmc {rung|pyqmc} SEED [N]: one run, one JSON line
    import json
    import sys

    code, seed = sys.argv[1], int(sys.argv[2])
    kw = {} if len(sys.argv) < 4 else ({"nsteps": int(sys.argv[3])} if code == "rung" else {"nblocks": int(sys.argv[3])})
    res = ours_time_to_error(seed, **kw) if code == "rung" else pyqmc_time_to_error(seed, **kw)
    print(json.dumps(res), flush=True)
