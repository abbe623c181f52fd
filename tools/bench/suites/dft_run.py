"""dft-gpu run throughput: conformations per hour of the farm against a plain PySCF loop (same process).

Level of theory for every case: ωB97M-D3BJ, ccECP + ccecp-cc-pVDZ, density fitting (the J/K engine's
default auxiliary basis, "etb", on both sides), energy on grid 3 and gradient on grid 4, conv_tol 1e-9,
orbital-gradient tolerance PySCF's default (3.2e-5) for the energy SCF and 1e-6 for the SCF the forces
come from (the farm's defaults).

Set (SPICE-like: several conformations per molecule): small organic molecules from ASE's G2 collection
(``FULL``: 2-5 heavy atoms, 10-26 valence electrons; ``QUICK``: its first three); conformation 0 is
the G2 geometry, the others add a Gaussian displacement (sigma ``SIGMA_ANGSTROM`` per Cartesian
coordinate, fixed seed) to every atom.

- ``dft_run.farm`` (harness case): ``rung.dft_gpu.run.run`` with the defaults (J/K engine, cached-AO XC
  quadrature and the cheaper gradient pieces, the gradient SCF warm-started from the grid-3 density)
  against the smart PySCF loop: per conformation, PySCF's ``density_fit()`` RKS on grid 3 for the
  energy, then an RKS on grid 4 started from the grid-3 density for the gradient (the plain loop
  starts grid 4 from PySCF's guess).

``python -m tools.bench.suites.dft_run measure [quick | NAME...] [--before] [--no-plain] [--repeats N]``
runs the detailed comparison in one process (N interleaved repeats) and prints markdown: process CPU time (one thread is what to set:
NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1) of the farm, the smart and the plain
PySCF loop per molecule, conformations per hour, the ratios and the peer's phases. ``python -m tools.bench.suites.dft_run OUT.h5``
prints the per-molecule cost of a dataset the farm wrote.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tools.bench import Case

FULL = ["HCN", "CH3OH", "CH3CHO", "CH3CONH2", "C4H4O"]
QUICK = ["HCN", "CH3OH", "CH3CHO"]
N_CONF = {True: 2, False: 2}  # conformations per molecule (quick, full)
SIGMA_ANGSTROM = 0.05
SETTINGS = dict(xc="wb97m-d3bj", basis="ccecp-cc-pvdz", ecp="ccecp")
FORCE_CONV_TOL_GRAD = 1e-6  # the farm's default (DFTConfig.force_conv_tol_grad); the energy SCF: PySCF's default


def molecules(names, n_conf=1, seed=7):
    """G2 molecules with ``n_conf`` conformations each (0: G2 geometry; others randomly displaced)."""
    from ase.collections import g2

    from rung.core.dataset import Molecule
    from rung.core.units import ANGSTROM_TO_BOHR

    rng = np.random.default_rng(seed)
    out = []
    for n in names:
        x0 = g2[n].positions
        confs = [x0] + [x0 + rng.normal(scale=SIGMA_ANGSTROM, size=x0.shape) for _ in range(n_conf - 1)]
        out.append(Molecule(n, g2[n].numbers, np.array(confs) * ANGSTROM_TO_BOHR))
    return out


def _pyscf_mol(z, x):
    from pyscf import gto

    return gto.M(atom=[(int(a), tuple(p)) for a, p in zip(z, x)], unit="Bohr", basis=SETTINGS["basis"],
                 ecp=SETTINGS["ecp"], verbose=0)


def _pyscf_rks(mol, level):
    from pyscf import dft

    from rung.dft_gpu.jk import resolve_auxbasis

    mf = dft.RKS(mol, xc=SETTINGS["xc"]).density_fit(auxbasis=resolve_auxbasis(mol))
    mf.grids.level, mf.conv_tol, mf.verbose = level, 1e-9, 0
    if level == 4:  # the SCF the forces come from: DFTConfig.force_conv_tol_grad, as the farm
        mf.conv_tol_grad = FORCE_CONV_TOL_GRAD
    return mf


def pyscf_conformation(z, x, warm=False):
    """The plain PySCF way for one conformation: SCF on grid 3 (energy), SCF on grid 4 (from PySCF's
    guess, or with ``warm`` from the grid-3 density), gradient. Returns energy, gradient and
    per-phase ``(cpu seconds, cycles)``."""
    mol = _pyscf_mol(z, x)
    phases = {}
    t = time.process_time()
    mf3 = _pyscf_rks(mol, 3)
    mf3.kernel()
    phases["scf3"] = (time.process_time() - t, mf3.cycles)
    t = time.process_time()
    mf4 = _pyscf_rks(mol, 4)
    mf4.kernel(dm0=mf3.make_rdm1() if warm else None)
    phases["scf4"] = (time.process_time() - t, mf4.cycles)
    t = time.process_time()
    g = mf4.nuc_grad_method()
    g.verbose = 0
    grad = g.kernel()
    phases["grad"] = (time.process_time() - t, 0)
    assert mf3.converged and mf4.converged
    return mf3.e_tot, grad, phases


def pyscf_loop(mols, warm=False):
    return [pyscf_conformation(m.atomic_numbers, x, warm) for m in mols for x in m.conformations]


def farm(src, **options):
    from rung.dft_gpu.run import run
    from rung.dft_gpu.scf import DFTConfig

    def call():
        d = Path(tempfile.mkdtemp(prefix="dft_run_bench"))
        try:
            s = run(src, d / "out.h5", DFTConfig(**SETTINGS, **options), progress=False)
            assert s.n_done == s.n_conformations, "a conformation failed"
            shutil.copyfile(d / "out.h5", Path(tempfile.gettempdir()) / "dft_run_last.h5")
        finally:
            shutil.rmtree(d)

    return call


class _CPUClock:
    """Process CPU time (all threads) of ours and the peer, printed after the peer's call: on a
    shared machine CPU seconds are a steadier measure than wall seconds."""

    def __init__(self, name):
        self.name, self.ours = name, None

    def wrap(self, fn, side):
        def call():
            t0 = time.process_time()
            fn()
            dt = time.process_time() - t0
            if side == "ours":
                self.ours = dt
            else:
                print(f"[dft_run] {self.name} CPU time: ours {self.ours:.1f} s, peer {dt:.1f} s, "
                      f"peer/ours {dt / self.ours:.3g}", flush=True)

        return call


def _warm_up(mols=()):
    """First-call costs outside the timings: libxc, numba caches, PySCF's lazy imports (one water
    through both sides) and the basis, ECP and auxiliary-basis parsing of every element of ``mols``
    (else whichever side runs a molecule first pays it)."""
    from rung.core.dataset import create_dataset
    from rung.dft_gpu.jk import resolve_auxbasis
    from pyscf.df.addons import make_auxmol

    tmp = Path(tempfile.mkdtemp(prefix="dft_run_bench_warm"))
    warm = create_dataset(tmp / "warm.h5", molecules(["H2O"]))
    farm(warm)()
    pyscf_loop(molecules(["H2O"]))
    for m in mols:
        mol = _pyscf_mol(m.atomic_numbers, m.conformations[0])
        make_auxmol(mol, resolve_auxbasis(mol))


def cases(quick: bool):
    from rung.core.dataset import create_dataset

    names = QUICK if quick else FULL
    mols = molecules(names, N_CONF[quick])
    n = sum(m.n_conf for m in mols)
    tmp = Path(tempfile.mkdtemp(prefix="dft_run_bench_in"))
    src = create_dataset(tmp / "set.h5", mols)
    _warm_up(mols)
    size = f"{len(mols)} G2 molecules x {N_CONF[quick]} conformations, wB97M-D3BJ/ccecp-cc-pvdz, grid 3 E + grid 4 F"
    clock = _CPUClock("dft_run.farm")
    yield Case("dft_run.farm", size, clock.wrap(farm(src), "ours"), peer=clock.wrap(lambda: pyscf_loop(mols, warm=True), "peer"),
               peer_name="PySCF DF loop, grid 4 from the grid-3 density", work=n, work_unit="conf", repeats=1, warmup=0,
               note="J/K engine, cached-AO XC, warm-started grid 4")


def measure(names, n_conf: int = 2, before: bool = False, repeats: int = 1, plain: bool = True) -> str:
    """The detailed side-by-side run (module docstring) on the G2 molecules ``names``; returns markdown.
    Sides, one molecule at a time in this process: the farm, the smart PySCF loop (grid 4 started from
    the grid-3 density), the plain PySCF loop (unless not ``plain``) and, with ``before``, the farm with
    ``fast_paths=False``. With ``repeats`` > 1 the whole sequence runs that many times (the sides
    interleaved molecule by molecule) and a table gives each repeat's totals, ratios and load average;
    the other tables average over the repeats."""
    import h5py
    from pyscf import gto

    from rung.core.dataset import create_dataset

    mols = molecules(names, n_conf)
    tmp = Path(tempfile.mkdtemp(prefix="dft_run_measure"))
    _warm_up(mols)
    sides = ["ours", "smart"] + (["peer"] if plain else []) + (["before"] if before else [])
    loops = [s for s in ("smart", "peer") if s in sides]
    tot = {k: 0.0 for s in sides for k in (s, s + "_wall")}
    rows, per_repeat = [], []
    max_de = max_dg = 0.0
    for rep, m in ((r, m) for r in range(repeats) for m in mols):
        if m is mols[0]:
            per_repeat.append({"load": os.getloadavg()[0], **{s: 0.0 for s in sides}})
        src = create_dataset(tmp / f"{m.name}-{rep}.h5", [m])
        cpu, wall, runs = {}, {}, {}
        for side in sides:
            w, t = time.perf_counter(), time.process_time()
            if side == "ours":
                farm(src)()
            elif side == "before":  # the farm as it was before the cached-AO XC and gradient pieces
                farm(src, fast_paths=False)()
            else:
                runs[side] = pyscf_loop([m], warm=side == "smart")
            cpu[side], wall[side] = time.process_time() - t, time.perf_counter() - w
            per_repeat[-1][side] += cpu[side]
            tot[side] += cpu[side]
            tot[side + "_wall"] += wall[side]
            if side == "ours":
                with h5py.File(Path(tempfile.gettempdir()) / "dft_run_last.h5", "r") as f:
                    e_ours, g_ours = f[m.name]["dft_total_energy"][()], f[m.name]["dft_total_gradient"][()]
                    c3, c4 = f[m.name]["dft_scf_cycles"][()], f[m.name]["dft_gradient_scf_cycles"][()]
        for side in loops:
            for i, (e, g, _) in enumerate(runs[side]):
                max_de, max_dg = max(max_de, abs(e - e_ours[i])), max(max_dg, float(np.abs(g - g_ours[i]).max()))
        mol = _pyscf_mol(m.atomic_numbers, m.conformations[0])
        phase = {s: {k: sum(p[2][k][0] for p in runs[s]) / m.n_conf for k in ("scf3", "scf4", "grad")}
                 for s in loops}
        cyc = {s: f"{np.mean([p[2]['scf3'][1] for p in runs[s]]):.0f} / {np.mean([p[2]['scf4'][1] for p in runs[s]]):.0f}"
               for s in loops}
        cyc.setdefault("peer", "-")
        rows.append((mol.nelectron, m.name, mol.nao, {s: cpu[s] / m.n_conf for s in sides},
                     f"{int(np.mean(c3))} / {int(np.mean(c4))}", cyc, phase))
        print(f"[dft_run] {m.name}: ne {mol.nelectron} nao {mol.nao} CPU-s (wall) "
              + ", ".join(f"{s} {cpu[s]:.1f} ({wall[s]:.1f})" for s in sides)
              + f"; repeat {rep}, load {os.getloadavg()[0]:.1f}; cycles ours {rows[-1][4]} smart {cyc['smart']} peer {cyc['peer']}; phases {phase}; "
              f"max dE {max_de:.1e} dG {max_dg:.1e}", file=sys.stderr, flush=True)
    n = sum(m.n_conf for m in mols) * repeats  # conformations computed per side
    labels = {"ours": "farm (`dft-gpu run`)", "smart": "smart PySCF loop (grid 4 from the grid-3 density)",
              "peer": "plain PySCF loop", "before": "farm, `fast_paths=False`"}
    out = [f"Set: {', '.join(names)} x {n_conf} conformations (displacement sigma {SIGMA_ANGSTROM} Angstrom), "
           f"{repeats} repeat(s): {n} conformations per side.", "",
           "| side | CPU (s) | wall (s) | conformations/hour (CPU) | conformations/hour (wall) |",
           "| --- | --- | --- | --- | --- |"]
    for side in sides:
        out.append(f"| {labels[side]} | {tot[side]:.1f} | {tot[side + '_wall']:.1f} | {3600 * n / tot[side]:.0f} | "
                   f"{3600 * n / tot[side + '_wall']:.0f} |")
    plain_ratio = (f"plain/ours {tot['peer'] / tot['ours']:.2f} (wall {tot['peer_wall'] / tot['ours_wall']:.2f}); "
                   if plain else "")
    out += ["", f"**smart/ours CPU time: {tot['smart'] / tot['ours']:.2f}** (wall {tot['smart_wall'] / tot['ours_wall']:.2f}); "
            + plain_ratio + f"largest differences farm vs loops: energy {max_de:.1e} Ha, gradient {max_dg:.1e} Ha/Bohr.", ""]
    if repeats > 1:
        out += ["| repeat | load average at its start | ours CPU-s | smart CPU-s | smart/ours |"
                + (" plain/ours |" if plain else ""), "| --- | --- | --- | --- | --- |" + (" --- |" if plain else "")]
        for i, r in enumerate(per_repeat):
            out.append(f"| {i} | {r['load']:.1f} | {r['ours']:.1f} | {r['smart']:.1f} | {r['smart'] / r['ours']:.2f} |"
                       + (f" {r['peer'] / r['ours']:.2f} |" if plain else ""))
        out.append("")
    out += ["| molecule (repeat) | valence electrons | AOs | ours CPU-s / conf | smart | plain | smart/ours | plain/ours | "
            "SCF cycles grid 3 / 4: ours, smart, plain | smart s/conf: SCF 3, SCF 4, gradient |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, (ne, name, nao, c, cy, pcy, ph) in sorted(enumerate(rows), key=lambda r: (r[1][0], r[0])):
        p = c.get("peer", float("nan"))
        out.append(f"| {name} ({i // len(mols)}) | {ne} | {nao} | {c['ours']:.2f} | {c['smart']:.2f} | {p:.2f} | "
                   f"{c['smart'] / c['ours']:.2f} | {p / c['ours']:.2f} | {cy}, {pcy['smart']}, {pcy['peer']} | "
                   f"{ph['smart']['scf3']:.2f}, {ph['smart']['scf4']:.2f}, {ph['smart']['grad']:.2f} |")
    shutil.rmtree(tmp)
    return "\n".join(out)


def per_molecule(path) -> str:
    """Markdown table: per-molecule cost against electron count, from a dataset the farm wrote."""
    import h5py

    rows = ["| molecule | electrons (valence) | AOs | wall (s) | SCF cycles grid 3 / grid 4 |", "| --- | --- | --- | --- | --- |"]
    with h5py.File(path, "r") as f:
        items = []
        for name, g in f.items():
            mol = _pyscf_mol(g["atomic_numbers"][()], g["conformations"][0])
            items.append((mol.nelectron, name, mol.nao, float(np.mean(g["dft_wall_time"][()])),
                          int(np.mean(g["dft_scf_cycles"][()])), int(np.mean(g["dft_gradient_scf_cycles"][()]))))
    for ne, name, nao, t, c3, c4 in sorted(items):
        rows.append(f"| {name} | {ne} | {nao} | {t:.1f} | {c3} / {c4} |")
    ne = np.array([i[0] for i in items], dtype=float)
    t = np.array([i[3] for i in items])
    slope = np.polyfit(np.log(ne), np.log(t), 1)[0] if len(items) > 2 else float("nan")
    rows.append(f"\nwall time ~ electrons^{slope:.2f} (log-log fit over this set)")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1] == "measure":  # measure [quick | NAME...] [--before] [--no-plain] [--repeats N]
        args = sys.argv[2:]
        repeats = 1
        if "--repeats" in args:
            i = args.index("--repeats")
            repeats = int(args[i + 1])
            del args[i:i + 2]
        names = [a for a in args if not a.startswith("--")]
        chosen = QUICK if names == ["quick"] else (names or FULL)
        print(measure(chosen, N_CONF[names == ["quick"]], before="--before" in args, repeats=repeats,
                      plain="--no-plain" not in args))
    else:
        print(per_molecule(sys.argv[1]))
