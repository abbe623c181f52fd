"""dft-gpu run throughput: conformations per hour of the farm against a plain PySCF loop (same process).

Level of theory for every case: ωB97M-D3BJ, ccECP + ccecp-cc-pVDZ, density fitting, energy on grid 3
and gradient on grid 4. Set: small organic molecules from ASE's G2 collection (2-6 heavy atoms,
H/C/N/O/F/S/Cl; SPICE-like closed-shell neutrals); ``quick`` takes 4 of them.

- ``dft_run.farm``: ``rung.dft_gpu.run.run`` with the defaults (J/K engine; the gradient SCF warm-started
  from the grid-3 density) against the plain loop: per molecule, PySCF's ``density_fit()`` RKS on
  grid 3 for the energy, then a fresh RKS on grid 4 from PySCF's guess for the gradient.
- ``dft_run.grid_strategy``: the farm with PySCF's own density fitting (``jk="pyscf"``) against the
  same loop: what the warm start on the finer grid alone saves.

Each case also prints the process CPU time of both sides (steadier than wall time on a shared
machine). ``python -m tools.bench.suites.dft_run OUT.h5`` prints the per-molecule cost (electrons, AOs, wall
time, SCF cycles) of a dataset written by the farm.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from tools.bench import Case

FULL = ["HCN", "C2H4", "H2CO", "CH3OH", "H3CNH2", "CH3SH", "CH3Cl", "CH3CN", "HCOOH", "CH3CHO", "C3H8",
        "CH3CH2OH", "CH3CONH2", "CH3COOH", "CH3NO2", "isobutane", "C4H4O", "C4H4NH", "C5H5N", "C6H6"]
QUICK = ["HCN", "CH3OH", "CH3CHO", "C4H4O"]
SETTINGS = dict(xc="wb97m-d3bj", basis="ccecp-cc-pvdz", ecp="ccecp")


def molecules(names):
    from ase.collections import g2

    from rung.core.dataset import Molecule
    from rung.core.units import ANGSTROM_TO_BOHR

    return [Molecule(n, g2[n].numbers, g2[n].positions[None] * ANGSTROM_TO_BOHR) for n in names]


def pyscf_loop(mols):
    """The plain PySCF way: an SCF per grid, each from PySCF's initial guess."""
    from pyscf import dft, gto

    out = []
    for m in mols:
        mol = gto.M(atom=[(int(z), tuple(x)) for z, x in zip(m.atomic_numbers, m.conformations[0])], unit="Bohr",
                    basis=SETTINGS["basis"], ecp=SETTINGS["ecp"], verbose=0)
        energy = None
        for level in (3, 4):
            mf = dft.RKS(mol, xc=SETTINGS["xc"]).density_fit()
            mf.grids.level, mf.conv_tol, mf.verbose = level, 1e-9, 0
            mf.kernel()
            energy = mf.e_tot if energy is None else energy
        out.append((energy, mf.nuc_grad_method().kernel()))
    return out


def farm(src, jk):
    from rung.dft_gpu.run import RunConfig, run

    def call():
        d = Path(tempfile.mkdtemp(prefix="dft_run_bench"))
        try:
            s = run(src, d / "out.h5", RunConfig(jk=jk, **SETTINGS), progress=False)
            assert s.n_done == s.n_conformations, "a conformation failed"
            shutil.copyfile(d / "out.h5", Path(tempfile.gettempdir()) / f"dft_run_last_{jk}.h5")
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


def cases(quick: bool):
    from rung.core.dataset import create_dataset

    names = QUICK if quick else FULL
    mols = molecules(names)
    tmp = Path(tempfile.mkdtemp(prefix="dft_run_bench_in"))
    src = create_dataset(tmp / "set.h5", mols)
    warm = create_dataset(tmp / "warm.h5", molecules(["H2O"]))
    farm(warm, "engine")()  # first-call costs (libxc, numba caches) outside the timings
    pyscf_loop(molecules(["H2O"]))
    size = f"{len(mols)} G2 molecules, wB97M-D3BJ/ccecp-cc-pvdz, grid 3 E + grid 4 F"
    loop = lambda: pyscf_loop(mols)  # noqa: E731
    for name, jk, note in (("dft_run.farm", "engine", "J/K engine + warm-started grid 4"),
                           ("dft_run.grid_strategy", "pyscf", "PySCF DF J/K; warm start only")):
        clock = _CPUClock(name)
        yield Case(name, size, clock.wrap(farm(src, jk), "ours"), peer=clock.wrap(loop, "peer"),
                   peer_name="PySCF DF loop", work=len(mols), work_unit="conf", repeats=1, warmup=0, note=note)


def per_molecule(path) -> str:
    """Markdown table: per-molecule cost against electron count, from a dataset the farm wrote."""
    import h5py
    from pyscf import gto

    rows = ["| molecule | electrons (valence) | AOs | wall (s) | SCF cycles grid 3 / grid 4 |", "| --- | --- | --- | --- | --- |"]
    with h5py.File(path, "r") as f:
        items = []
        for name, g in f.items():
            z = g["atomic_numbers"][()]
            x = g["conformations"][0]
            mol = gto.M(atom=[(int(a), tuple(p)) for a, p in zip(z, x)], unit="Bohr", verbose=0, **{
                k: SETTINGS[k] for k in ("basis", "ecp")})
            items.append((mol.nelectron, name, mol.nao, float(g["dft_wall_time"][0]), int(g["dft_scf_cycles"][0]),
                          int(g["dft_gradient_scf_cycles"][0])))
    for ne, name, nao, t, c3, c4 in sorted(items):
        rows.append(f"| {name} | {ne} | {nao} | {t:.1f} | {c3} / {c4} |")
    ne = np.array([i[0] for i in items], dtype=float)
    t = np.array([i[3] for i in items])
    slope = np.polyfit(np.log(ne), np.log(t), 1)[0] if len(items) > 2 else float("nan")
    rows.append(f"\nwall time ~ electrons^{slope:.2f} (log-log fit over this set)")
    return "\n".join(rows)


if __name__ == "__main__":
    print(per_molecule(sys.argv[1]))
