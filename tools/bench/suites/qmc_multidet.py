"""rung.qmc multideterminant benchmarks: VMC throughput against the number of determinants.

Water, ccECP/ccecp-cc-pvdz, RHF orbitals; the expansion is PySCF's CASCI(8e, 14o) vector truncated to
its N largest coefficients (N = 10 ... 10^4; the CI vector of a selected-CI run has the same
structure), times the two-body Jastrow. Cases (walker-sweeps: one proposed move of every electron plus
the local energy, nonlocal ECP included):

- ``qmc.multidet_vmc`` N dets, table method (the default :class:`rung.qmc.multideterminant.
  TableMultiSlater`); the peer is PyQMC's multi-Slater (``pyqmc.api.generate_wf`` with
  ``slater_kws={"determinants": ...}``, the same determinants, its default Jastrow) when installed.
- ``qmc.multidet_vs_single``: the table method at N against rung's single-determinant Slater-Jastrow
  on the same walkers (peer/ours < 1 is the slowdown of the expansion).
- ``qmc.multidet_per_det``: the per-determinant implementation (one inverse per determinant, the test
  oracle) as the peer of the table method, N <= 1000.

- ``qmc.multidet_forces_local_energy`` (N = 10, 100, 1000): all 3 N_atom analytic force derivatives of
  every walker (:class:`rung.qmc.forces.NuclearDerivatives`, space warp on, given the sampler's state as a
  VMC step gives it) against one multideterminant local energy of the same walkers (peer/ours < 1: the
  cost of the forces in local energies; goal <= 2x); ``..._nowarp_local_energy`` without the warp;
  ``qmc.multidet_forces_step`` against one energy-only VMC step (sweep + local energy);
  ``qmc.multidet_forces_fd`` the finite-difference fallback (6 N_atom re-built trial functions) as the
  peer of the analytic path.

``python -m tools.bench.suites.qmc_multidet --forces`` prints the forces' CPU seconds beside the local
energy, the VMC step and the finite differences, the single determinant and N = 10, 100, 1000 (one
process, same walkers).

``python -m tools.bench.suites.qmc_multidet`` prints CPU seconds per sweep, unique strings per spin and
the agreement of PyQMC's and rung's log|psi| on the same configurations (an independent check of the
expansion's sign convention). ``--growth [N ...]``: the table method alone from 10^3 to 10^6
determinants (CPU-s per sweep against the unique strings); ``--largest NORB``: the full (8e, NORB o)
space with synthetic coefficients (CPU-s per sweep, resident and peak memory). Run with
OMP/OPENBLAS/NUMBA_NUM_THREADS=1 for per-thread numbers.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from tools.bench import Case

WATER = "O 0 0 0.2217; H 0 1.4309 -0.8867; H 0 -1.4309 -0.8867"  # Bohr


@functools.lru_cache(maxsize=1)
def _water_casci(ncas: int = 14):
    from pyscf import fci, gto, mcscf, scf

    mol = gto.M(atom=WATER, unit="Bohr", basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    mc = mcscf.CASCI(mf, ncas, 8).run()
    ci = np.asarray(mc.ci)
    sa = fci.cistring.make_strings(range(ncas), mc.nelecas[0])
    sb = fci.cistring.make_strings(range(ncas), mc.nelecas[1])
    return mol, mf, mc, ci, sa, sb


def expansion(n: int):
    """(mol, mf, Expansion of the n largest CASCI determinants)."""
    from rung.qmc.multideterminant import Expansion

    mol, mf, mc, ci, sa, sb = _water_casci()
    ncore, ncas = mc.ncore, mc.ncas

    def occ(s):
        return tuple(list(range(ncore)) + [ncore + i for i in range(ncas) if int(s) >> i & 1])

    flat = np.argsort(-np.abs(ci).ravel(), kind="stable")[:n]
    ia, ib = np.unravel_index(flat, ci.shape)
    return mol, mf, Expansion(ci.ravel()[flat], tuple(occ(sa[i]) for i in ia), tuple(occ(sb[i]) for i in ib),
                              ncore + ncas)


def _ours(mol, mf, exp, nw, nsteps, method="table"):
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.multideterminant import build_multislater
    from rung.qmc.orbitals import AtomicBasis
    from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
    from rung.qmc.vmc import VMCConfig, vmc

    wf = slater_jastrow(mol, _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "bench"), expansion=exp)
    if exp is not None and method != "table":
        wf.components[0] = build_multislater(AtomicBasis.from_mol(mol), mf.mo_coeff, exp, mol.nelec,
                                             method=method)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(0)
    state = {"configs": vmc(wf, ham, initial_configs(mol, nw, rng), VMCConfig(nwalkers=nw, nblocks=1, nsteps=3,
                                                                              nequil=3), rng=rng).configs}

    def run():
        state["configs"] = vmc(wf, ham, state["configs"], VMCConfig(nwalkers=nw, nblocks=1, nsteps=nsteps, nequil=0),
                               rng=rng).configs

    run.wf = wf
    return run


def _pyqmc(mol, mf, exp, nw, nsteps):
    try:
        import pyqmc.api as pyq
    except ImportError:
        return None
    dets = [(float(c), [list(a), list(b)]) for c, a, b in zip(exp.coef, exp.occ_up, exp.occ_down)]
    wf, _ = pyq.generate_wf(mol, mf, slater_kws={"determinants": dets})
    configs = pyq.initial_guess(mol, nw)
    acc = {"energy": pyq.EnergyAccumulator(mol)}
    pyq.vmc(wf, configs, nblocks=1, nsteps_per_block=3, accumulators=acc, verbose=False)

    def run():
        pyq.vmc(wf, configs, nblocks=1, nsteps_per_block=nsteps, accumulators=acc, verbose=False)

    return run


def _forces(mol, mf, exp, nw, method="auto", warp=True):
    """(forces of nw equilibrated walkers, one local energy of them, one energy-only VMC step of them) for
    the expansion times the two-body Jastrow; the forces read the sampler's state (trial function after
    its local energy, grad ln psi) from their own copy of it, as a VMC step with forces does."""
    import copy

    from rung.qmc.forces import ForceConfig, NuclearDerivatives, displaced_builder
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.system import _spin_orbitals, initial_configs, slater_jastrow
    from rung.qmc.vmc import VMCConfig, sweep, vmc

    orb = _spin_orbitals(mf.mo_coeff, mf.mo_occ, mf.e_tot, "bench")
    wf = slater_jastrow(mol, orb, expansion=exp)
    ham = Hamiltonian.from_mol(mol)
    rng = np.random.default_rng(0)
    configs = vmc(wf, ham, initial_configs(mol, nw, rng), VMCConfig(nwalkers=nw, nblocks=1, nsteps=2, nequil=5),
                  rng=rng).configs
    nd = NuclearDerivatives(displaced_builder(mol, orb, parameters=wf.parameters, expansion=exp), mol.atom_coords(),
                            ForceConfig(method=method, warp=warp))
    wf.recompute(configs)
    _, grad = ham.local_energy(wf, configs, rng, return_grad=True)
    wf_f = copy.deepcopy(wf)
    walkers = configs.copy()

    def step():
        sweep(wf, walkers, 0.3, rng)
        ham.local_energy(wf, walkers, rng)

    def energy():  # as after a sweep: the ratio vectors not cached
        wf.components[0]._beta = {}
        return ham.local_energy(wf, walkers, rng, return_grad=True)

    # wf_f as after the step's local energy (its ratio vectors cached), which the forces only read
    return (lambda: nd(configs, wf_f, grad)), energy, step


def cases(quick: bool):
    nw = 50 if quick else 100
    sizes = (10, 100) if quick else (10, 100, 1000, 10000)
    for n in sizes:
        mol, mf, exp = expansion(n)
        nsteps = 2 if n >= 10000 else 4
        size = f"H2O ccECP, CASCI(8,14) top {n} dets, {nw} walkers x {nsteps} sweeps"
        ours = _ours(mol, mf, exp, nw, nsteps)
        yield Case("qmc.multidet_vmc", size, ours, _pyqmc(mol, mf, exp, nw, nsteps), "PyQMC multi-Slater",
                   work=nw * nsteps, work_unit="walker-sweeps", repeats=3)
        yield Case("qmc.multidet_vs_single", size, ours, _ours(mol, mf, None, nw, nsteps),
                   "rung single determinant", work=nw * nsteps, work_unit="walker-sweeps", repeats=3)
        if n <= 1000:
            yield Case("qmc.multidet_per_det", size, ours, _ours(mol, mf, exp, nw, nsteps, "per-determinant"),
                       "rung per-determinant", work=nw * nsteps, work_unit="walker-sweeps", repeats=3)
    for n in (10, 100) if quick else (10, 100, 1000):
        mol, mf, exp = expansion(n)
        size = f"H2O ccECP, CASCI(8,14) top {n} dets, {nw} walkers: 3 N_atom force derivatives"
        forces, energy, step = _forces(mol, mf, exp, nw)
        yield Case("qmc.multidet_forces_local_energy", size + " (analytic, space warp)", forces, energy,
                   "one local energy", work=nw, work_unit="walkers", repeats=5, warmup=1)
        yield Case("qmc.multidet_forces_step", size + " (analytic, space warp)", forces, step,
                   "one VMC energy step", work=nw, work_unit="walkers", repeats=5, warmup=1)
        nowarp, energy, _ = _forces(mol, mf, exp, nw, warp=False)
        yield Case("qmc.multidet_forces_nowarp_local_energy", size + " (analytic, no warp)", nowarp, energy,
                   "one local energy", work=nw, work_unit="walkers", repeats=5, warmup=1)
        fd = _forces(mol, mf, exp, nw, "fd")[0]
        yield Case("qmc.multidet_forces_fd", size + " (analytic, space warp)", forces, fd,
                   "finite differences (6 N_atom trial functions)", work=nw, work_unit="walkers", repeats=3, warmup=1)


def _cpu_per_sweep(run, nsteps, nw, repeats=2):
    best = np.inf
    for _ in range(repeats):
        c0 = time.process_time()
        run()
        best = min(best, time.process_time() - c0)
    return best / nsteps


def main(sizes=(1, 10, 100, 1000, 10000), nw=100):
    """CPU seconds per sweep of nw walkers: single determinant, table, per-determinant, PyQMC."""
    print("| N_det | unique strings (up, down) | table (CPU-s/sweep) | per-determinant | single det | PyQMC | "
          "PyQMC / table | table / single |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    mol, mf, _ = expansion(1)
    single = _cpu_per_sweep(_ours(mol, mf, None, nw, 4), 4, nw)
    for n in sizes:
        mol, mf, exp = expansion(n)
        nsteps = 2 if n >= 10000 else 4
        ours = _ours(mol, mf, exp, nw, nsteps)
        t = _cpu_per_sweep(ours, nsteps, nw)
        per = _cpu_per_sweep(_ours(mol, mf, exp, nw, nsteps, "per-determinant"), nsteps, nw) if n <= 1000 else None
        pq = _pyqmc(mol, mf, exp, nw, nsteps)
        tp = _cpu_per_sweep(pq, nsteps, nw, 1) if pq is not None and n <= 10000 else None
        comp = ours.wf.components[0]
        ns = getattr(comp, "nstrings", (1, 1))
        fmt = lambda x: "-" if x is None else f"{x:.4f}"  # noqa: E731
        print(f"| {n} | {ns[0]}, {ns[1]} | {t:.4f} | {fmt(per)} | {single:.4f} | {fmt(tp)} | "
              f"{'-' if tp is None else f'{tp / t:.1f}'} | {t / single:.1f} |", flush=True)


def forces_table(sizes=(0, 10, 100, 1000), nw=100, repeats=5):
    """CPU seconds per call for nw walkers (best of ``repeats``): one local energy, one VMC energy step,
    the analytic forces with and without the warp, the finite differences; one row per N_det, after a
    first row for rung's single-determinant Slater-Jastrow (N_det 0 in ``sizes``: the same yardsticks for
    the path the multideterminant extends)."""
    print("| N_det | unique strings (up, down) | local energy (CPU-s) | VMC step | forces, warp | forces, no warp | "
          "FD forces | warp / local energy | no warp / local energy | warp / step | FD / analytic |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        mol, mf, exp = expansion(max(n, 1))
        exp = exp if n else None
        forces, energy, step = _forces(mol, mf, exp, nw)
        nowarp = _forces(mol, mf, exp, nw, warp=False)[0]
        fd = _forces(mol, mf, exp, nw, "fd")[0]
        t = {}
        for name, fn, rep in (("e", energy, repeats), ("s", step, repeats), ("f", forces, repeats),
                              ("n", nowarp, repeats), ("fd", fd, 1)):
            fn()
            t[name] = _cpu_per_sweep(fn, 1, nw, rep)
        print(f"| {n or 'single det'} | {_strings(exp) if n else '-'} | {t['e']:.4f} | {t['s']:.4f} | "
              f"{t['f']:.4f} | {t['n']:.4f} | "
              f"{t['fd']:.3f} | {t['f'] / t['e']:.2f} | {t['n'] / t['e']:.2f} | {t['f'] / t['s']:.2f} | "
              f"{t['fd'] / t['f']:.0f} |", flush=True)


def _strings(exp):
    return f"{len(exp.occ_up.unique)}, {len(exp.occ_down.unique)}"


def full_space(norb: int, seed: int = 0, basis: str = "ccecp-cc-pvdz"):
    """(mol, mf, Expansion of every (4 up, 4 down) determinant in the lowest ``norb`` RHF orbitals of
    water in ``basis`` (ccecp-cc-pvdz has 23 orbitals; ccecp-cc-pvtz for more)): C(norb, 4)^2
    determinants with synthetic coefficients (exp(-2 x excitation level), random sign and magnitude in
    [0.5, 1], the RHF determinant largest), sorted by |c| (float32 key). The cost and memory of the table
    method depend on the determinants and strings, not on the coefficients' values; a CASCI of this size
    would not run here. Built in the string-index form directly (int32 string indices, no per-determinant
    Python objects, the coefficients in chunks: ~34 bytes per determinant at the peak of the construction,
    against the 17.6 the expansion and its trial function then keep)."""
    import itertools

    from pyscf import gto, scf

    from rung.qmc.multideterminant import Expansion, SpinStrings

    mol = gto.M(atom=WATER, unit="Bohr", basis=basis, ecp="ccecp", verbose=0)
    mf = scf.RHF(mol).run()
    strings = list(itertools.combinations(range(norb), 4))  # ascending: already sorted
    exc = np.array([sum(o >= 4 for o in s) for s in strings], dtype=np.int32)
    ns = len(strings)
    rng = np.random.default_rng(seed)
    ia, ib = np.divmod(np.arange(ns * ns, dtype=np.int32), np.int32(ns))
    coef = np.empty(ns * ns)
    chunk = 1 << 22
    for k in range(0, ns * ns, chunk):
        sl = slice(k, k + chunk)
        c = np.exp(-2.0 * (exc[ia[sl]] + exc[ib[sl]])) * rng.uniform(0.5, 1.0, coef[sl].size)
        coef[sl] = c * rng.choice([-1.0, 1.0], c.size)
    coef[0] = 1.0
    key = np.abs(coef).astype(np.float32)
    np.negative(key, out=key)
    order = np.argsort(key, kind="stable")
    del key
    coef = coef[order]
    ia, ib = ia[order], ib[order]
    del order
    return mol, mf, Expansion(coef, SpinStrings(strings, ia), SpinStrings(strings, ib), norb)


def _rss_mib():
    """(current, peak) resident set size of this process, MiB (Linux)."""
    import resource

    with open("/proc/self/statm") as f:
        current = int(f.read().split()[1]) * resource.getpagesize() / 2**20
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def largest(norb: int, nw: int = 100, basis: str = "ccecp-cc-pvdz"):
    """One line: determinants, CPU-s per sweep of nw walkers, resident memory after the sweeps and peak
    RSS (MiB) of this process at ``full_space(norb)`` (run each size in a fresh process: the peak is the
    process's, construction included)."""
    mol, mf, exp = full_space(norb, basis=basis)
    t = _cpu_per_sweep(_ours(mol, mf, exp, nw, 2), 2, nw, repeats=2)
    rss, peak = _rss_mib()
    print(f"| (8e, {norb}o) {basis} | {len(exp.coef)} | {t:.3f} | {rss:.0f} | {peak:.0f} |", flush=True)


def growth(sizes=(1000, 10000, 100000, 1000000), nw=100, rounds=5):
    """The growth table: CPU-s per sweep (sweep + local energy, as in :func:`main`) of the table method on
    water CASCI(8,14) top N, nw walkers, with the unique strings per spin. Every size is built first and
    the timings interleaved (``rounds`` rounds over the sizes, best per size), so that a change of the
    machine's load hits all sizes alike and the ratios between sizes hold."""
    runs = []
    for n in sizes:
        mol, mf, exp = expansion(n)
        nsteps = 2 if n >= 10000 else 4
        runs.append((exp, _ours(mol, mf, exp, nw, nsteps), nsteps))
    best = [np.inf] * len(runs)
    for _ in range(rounds):
        for k, (_, run, nsteps) in enumerate(runs):
            best[k] = min(best[k], _cpu_per_sweep(run, nsteps, nw, 1))
    print("| N_det | unique strings (up, down) | CPU-s per sweep | growth from the first | strings growth |")
    print("| --- | --- | --- | --- | --- |")
    ns = [run.wf.components[0].nstrings for _, run, _ in runs]
    for (exp, _, _), t, (nu, nd) in zip(runs, best, ns):
        print(f"| {len(exp.coef)} | {nu}, {nd} | {t:.4f} | {t / best[0]:.2f} | {nu / ns[0][0]:.2f} |", flush=True)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--largest"]:  # python -m tools.bench.suites.qmc_multidet --largest 26 [ccecp-cc-pvtz]
        largest(int(sys.argv[2]), basis=sys.argv[3] if len(sys.argv) > 3 else "ccecp-cc-pvdz")
    elif sys.argv[1:2] == ["--growth"]:  # python -m tools.bench.suites.qmc_multidet --growth [1000 ... 1000000]
        growth(tuple(int(x) for x in sys.argv[2:]) or (1000, 10000, 100000, 1000000))
    elif sys.argv[1:2] == ["--forces"]:  # python -m tools.bench.suites.qmc_multidet --forces [10 100 1000]
        forces_table(tuple(int(x) for x in sys.argv[2:]) or (0, 10, 100, 1000))
    else:
        main(tuple(int(x) for x in sys.argv[1:]) or (1, 10, 100, 1000, 10000))
