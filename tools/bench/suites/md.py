"""rung.md benchmarks (one numba thread; peers measured in the same process and run).

- md.overhead: driver cost per step with a trivial potential (zero forces), Langevin, classical and
  P = 32, against ASE's Langevin (``ase.md.langevin.Langevin``) with a zero-force calculator; for
  P = 32 the peer is 32 ASE classical steps (ASE has no ring polymers), i.e. the per-bead comparison.
- md.water_ani: 648-atom water box (216 molecules, 1 g/cm^3, periodic) with ANI-1x (one network,
  float32), Langevin 0.5 fs: ours vs ASE Langevin driving the same rung.nnp potential (NNPCalculator).
  Needs rung.nnp and the ANI-1x weights; skipped otherwise.
- md.rpmd_cost: one ring-polymer step of P beads (one batched force call) vs P classical steps.
- md.qtb_step: the same water box, adQTB steps inside a noise segment vs plain Langevin steps (ours
  both, same process): the per-step cost of the coloured-noise O step and its velocity record.
- md.qtb_segment_end: what adQTB does once per segment (spectra of the 1 ps segment, gamma_r update,
  corr_kin deconvolution, the next segment's noise) for 648 atoms; divide by the 2000 steps of the
  segment for its share of a step.
- ``python -m tools.bench.suites.md --qtb-overhead [STEPS [TSEG_FS]]``: end to end, Langevin / QTB / adQTB runs of
  STEPS steps of the water box, alternating in one process on one thread (segments of TSEG_FS, default
  250 fs: four times as many segment ends as the 1 ps default).
"""

import numba
import numpy as np

from rung.core import units as U
from rung.core.potential import PotentialResult, in_atomic_units
from tools.bench import Case

DT_FS = 0.5
STEPS = 10


def _one_thread(fn):
    def call():
        old = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return fn()
        finally:
            numba.set_num_threads(old)

    return call


class _Zero:
    energy_unit, length_unit = "hartree", "bohr"

    def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
        x = np.asarray(positions)
        return PotentialResult(np.zeros(x.shape[:-2]), np.zeros_like(x), None)


def _zero_ase_calc():
    from ase.calculators.calculator import Calculator, all_changes

    class ZeroCalc(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}

    return ZeroCalc()


def _gas(n):
    from ase import Atoms

    box = (n / 0.05) ** (1 / 3)
    rng = np.random.default_rng(0)
    return Atoms("Ar" * n, positions=rng.random((n, 3)) * box, cell=np.eye(3) * box, pbc=True)


def _ours(atoms, potential, P, steps):
    from rung.md.integrators import ring_polymer
    from rung.md.parallel import BeadForces

    cell = np.asarray(atoms.cell) * U.ANGSTROM_TO_BOHR if atoms.pbc.all() else None
    f = BeadForces(potential, atoms.numbers, cell)
    init, step = ring_polymer(f, DT_FS * U.FS_TO_AU_TIME, 300 * U.BOLTZMANN_HARTREE_PER_K, P, thermostat="pile-l",
                              tau=100 * U.FS_TO_AU_TIME, seed=1)
    box = {"s": init(atoms.positions * U.ANGSTROM_TO_BOHR, atoms.get_masses() * U.AMU_TO_ELECTRON_MASS)}

    def run():
        s = box["s"]
        for _ in range(steps):
            s = step(s)
        box["s"] = s

    return run


def _ours_qtb(atoms, potential, steps, adaptive="simple", tseg_fs=1000.0):
    from rung.md.parallel import BeadForces
    from rung.md.qtb import qtb

    cell = np.asarray(atoms.cell) * U.ANGSTROM_TO_BOHR if atoms.pbc.all() else None
    f = BeadForces(potential, atoms.numbers, cell)
    m = atoms.get_masses() * U.AMU_TO_ELECTRON_MASS
    init, step, _ = qtb(f, DT_FS * U.FS_TO_AU_TIME, 300 * U.BOLTZMANN_HARTREE_PER_K, 0.01 / U.FS_TO_AU_TIME,
                        masses=m, species=atoms.numbers, tseg=tseg_fs * U.FS_TO_AU_TIME,
                        omegacut=15000 * U.INV_CM_TO_HARTREE, adaptive=adaptive, seed=1, beads=True)
    box = {"s": init(atoms.positions * U.ANGSTROM_TO_BOHR, m)}

    def run():
        s = box["s"]
        for _ in range(steps):
            s = step(s)
        box["s"] = s

    return run


def _segment_end(atoms):
    """The once-per-segment work of adQTB (1 ps segments of 0.5 fs) on a full segment of velocities."""
    from dataclasses import replace

    from rung.md.qtb import end_of_segment, initial_state, qtb_parameters

    m = atoms.get_masses() * U.AMU_TO_ELECTRON_MASS
    params = qtb_parameters(DT_FS * U.FS_TO_AU_TIME, 300 * U.BOLTZMANN_HARTREE_PER_K, 0.01 / U.FS_TO_AU_TIME,
                            masses=m, species=atoms.numbers, tseg=1000 * U.FS_TO_AU_TIME,
                            omegacut=15000 * U.INV_CM_TO_HARTREE, adaptive="simple", skip_segments=0, seed=1)
    ts = initial_state(params)
    v = np.random.default_rng(0).normal(size=ts.velocity.shape) * np.sqrt(300 * U.BOLTZMANN_HARTREE_PER_K / m)[:, None]
    ts = replace(ts, velocity=v, istep=params.nseg)
    return lambda: end_of_segment(params, ts), params.nseg


def _ase(atoms, calc, steps):
    from ase import units
    from ase.md.langevin import Langevin

    a = atoms.copy()
    a.calc = calc
    dyn = Langevin(a, DT_FS * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=np.random.default_rng(1))
    return lambda: dyn.run(steps)


def _water_box():
    from ase import Atoms
    from ase.build import molecule

    n = 6
    edge = (216 * 18.015 / 0.60221408) ** (1 / 3)  # 1 g/cm^3, Angstrom
    rng = np.random.default_rng(0)
    w = molecule("H2O")
    pos, nums = [], []
    for i in range(n):
        for j in range(n):
            for k in range(n):
                m = w.copy()
                m.rotate(rng.random() * 360, rng.normal(size=3))
                pos.append(m.positions + (np.array([i, j, k]) + 0.5) * edge / n)
                nums.extend(m.numbers)
    return Atoms(numbers=nums, positions=np.concatenate(pos), cell=np.eye(3) * edge, pbc=True)


def cases(quick: bool):
    zero = _Zero()
    for n in ([1000] if quick else [1000, 8000]):
        atoms = _gas(n)
        yield Case("md.overhead", f"{n} atoms, P=1, zero forces, {STEPS} steps",
                   _one_thread(_ours(atoms, zero, 1, STEPS)),
                   peer=_ase(atoms, _zero_ase_calc(), STEPS), peer_name="ASE Langevin", work=STEPS * n,
                   work_unit="atom-steps")
        yield Case("md.overhead", f"{n} atoms, P=32, zero forces, {STEPS} steps",
                   _one_thread(_ours(atoms, zero, 32, STEPS)), peer=_ase(atoms, _zero_ase_calc(), 32 * STEPS),
                   peer_name="ASE Langevin x32 steps", work=32 * STEPS * n, work_unit="bead-atom-steps", repeats=3)
    from rung.md.potentials import LennardJones

    from ase.build import bulk

    ar = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((5, 5, 5))
    lj = LennardJones(0.0103 * U.EV_TO_HARTREE, 3.4 * U.ANGSTROM_TO_BOHR, 8.5 * U.ANGSTROM_TO_BOHR,
                      skin=1.0 * U.ANGSTROM_TO_BOHR)
    for P in ([8] if quick else [8, 32]):
        yield Case("md.rpmd_cost", f"LJ argon {len(ar)} atoms, P={P}, 1 step vs {P} classical",
                   _one_thread(_ours(ar, lj, P, 1)), peer=_one_thread(_ours(ar, lj, 1, P)),
                   peer_name=f"{P} classical steps (ours)", work=P * len(ar), work_unit="bead-atoms", repeats=5)
    try:
        from rung.nnp import NNPCalculator, load_model

        ani = load_model("ani-1x", member=0, dtype="float32")
    except Exception as err:  # engine or weights missing
        print(f"[md] water/ANI cases skipped: {err}")
        return
    water = _water_box()
    steps = 2 if quick else 5
    yield Case("md.water_ani", f"648-atom water box, ANI-1x x1 float32, Langevin 0.5 fs, {steps} steps",
               _one_thread(_ours(water, in_atomic_units(ani), 1, steps)),
               peer=_one_thread(_ase(water, NNPCalculator(ani), steps)), peer_name="ASE Langevin + rung.nnp",
               work=steps * DT_FS, work_unit="fs", repeats=3)
    ani_au = in_atomic_units(ani)
    qtb_steps = _ours_qtb(water, ani_au, steps)
    yield Case("md.qtb_step", f"648-atom water box, ANI-1x x1 float32, adQTB vs Langevin 0.5 fs, {steps} steps "
               "inside a 1 ps segment", _one_thread(qtb_steps), peer=_one_thread(_ours(water, ani_au, 1, steps)),
               peer_name="Langevin BAOAB (ours)", work=steps * DT_FS, work_unit="fs", repeats=3,
               note="peer/ours < 1: adQTB's per-step cost over Langevin")
    seg_end, nseg = _segment_end(water)
    yield Case("md.qtb_segment_end", f"648 atoms, 1 ps segment ({nseg} steps): spectra, gamma_r, corr_kin, noise",
               _one_thread(seg_end), work=nseg, work_unit="steps amortised", repeats=3,
               note=f"per step: time / {nseg}")
    if not quick:
        P = 4
        yield Case("md.rpmd_cost", f"648-atom water box, ANI-1x, P={P}, 1 step vs {P} classical",
                   _one_thread(_ours(water, in_atomic_units(ani), P, 1)),
                   peer=_one_thread(_ours(water, in_atomic_units(ani), 1, P)), peer_name=f"{P} classical steps (ours)",
                   work=P * 648, work_unit="bead-atoms", repeats=3)


# --- i-PI (optional): `python -m tools.bench.suites.md --ipi /path/to/venv/bin` -------------------------
# i-PI runs as a server plus its Python driver (``i-pi-py_driver -m dummy``: zero forces) over a UNIX
# socket, PILE-L, 0.5 fs. Its start-up (seconds) is removed by timing two step counts and differencing;
# ours is timed alternately in the same process, so both see the same machine load.

_IPI_XML = """<simulation verbosity='quiet' safe_stride='1000000'>
  <output prefix='{tag}'><properties stride='1000000' filename='out'> [ step ] </properties></output>
  <total_steps>{steps}</total_steps>
  <prng><seed>31415</seed></prng>
  <ffsocket name='dummy' mode='unix' pbc='false'><address>{tag}</address></ffsocket>
  <system>
    <initialize nbeads='{P}'>
      <file mode='xyz'>{xyz}</file>
      <velocities mode='thermal' units='kelvin'>300</velocities>
    </initialize>
    <forces><force forcefield='dummy'/></forces>
    <motion mode='dynamics'><dynamics mode='nvt'>
      <timestep units='femtosecond'>0.5</timestep>
      <thermostat mode='pile_l'><tau units='femtosecond'>100</tau></thermostat>
    </dynamics></motion>
    <ensemble><temperature units='kelvin'>300</temperature></ensemble>
  </system>
</simulation>
"""


def _ipi_run(bindir, workdir, n, P, steps) -> float:
    import os
    import subprocess
    import time

    atoms = _gas(n)
    xyz = workdir / f"init{n}.xyz"
    if not xyz.exists():
        a = atoms.cell.lengths()
        lines = [str(n), f"# CELL(abcABC): {a[0]:.6f} {a[1]:.6f} {a[2]:.6f} 90 90 90 "
                         "positions{angstrom} cell{angstrom}"]
        lines += [f"Ar {x:.6f} {y:.6f} {z:.6f}" for x, y, z in atoms.positions]
        xyz.write_text("\n".join(lines) + "\n")
    tag = f"ipi_{n}_{P}_{steps}_{os.getpid()}"
    (workdir / f"{tag}.xml").write_text(_IPI_XML.format(tag=tag, steps=steps, P=P, xyz=xyz.name))
    t0 = time.perf_counter()
    srv = subprocess.Popen([f"{bindir}/i-pi", f"{tag}.xml"], cwd=workdir, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    drv = subprocess.Popen([f"{bindir}/i-pi-py_driver", "-u", "-a", tag, "-m", "dummy"], cwd=workdir,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv.wait(timeout=900)
    dt = time.perf_counter() - t0
    drv.kill()
    drv.wait()
    return dt


def ipi_overhead(bindir, sizes=((1000, 1, 10, 1010), (1000, 32, 5, 105), (8000, 1, 10, 210))):
    import tempfile
    import time
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        for n, P, s0, s1 in sizes:
            ipi = (_ipi_run(bindir, Path(tmp), n, P, s1) - _ipi_run(bindir, Path(tmp), n, P, s0)) / (s1 - s0)
            ours_fn = _one_thread(_ours(_gas(n), _Zero(), P, 10))
            ours_fn()
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                ours_fn()
                times.append((time.perf_counter() - t0) / 10)
            ours = sorted(times)[3]  # median
            print(f"| {n} | {P} | {ipi * 1e3:.3g} | {ipi / P * 1e3:.3g} | {ours * 1e3:.3g} | {ours / P * 1e3:.3g} | "
                  f"{ipi / ours:.3g} |", flush=True)


def qtb_overhead(steps: int = 1000, tseg_fs: float = 250.0, rounds: int = 2):
    """Langevin, QTB and adQTB on the 648-atom ANI-1x water box, one thread, alternating in this process.

    Prints s/step of each (best of ``rounds``) and the overhead over Langevin.
    """
    import time

    from rung.nnp import load_model

    pot = in_atomic_units(load_model("ani-1x", member=0, dtype="float32"))
    water = _water_box()
    runs = {"langevin": _ours(water, pot, 1, steps),
            "qtb": _ours_qtb(water, pot, steps, adaptive=None, tseg_fs=tseg_fs),
            "adqtb": _ours_qtb(water, pot, steps, adaptive="simple", tseg_fs=tseg_fs)}
    best = {k: float("inf") for k in runs}
    numba.set_num_threads(1)
    for _ in range(rounds):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], (time.perf_counter() - t0) / steps)
    print(f"| thermostat | s/step | ns/day | overhead over Langevin |  ({steps} steps, segments of {tseg_fs:g} fs)")
    print("| --- | --- | --- | --- |")
    for name, t in best.items():
        print(f"| {name} | {t:.4g} | {DT_FS * 1e-6 / t * 86400:.3g} | {100 * (t / best['langevin'] - 1):+.1f}% |")


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 2 and sys.argv[1] == "--qtb-overhead":
        qtb_overhead(int(sys.argv[2]) if len(sys.argv) > 2 else 1000,
                     float(sys.argv[3]) if len(sys.argv) > 3 else 250.0)
    elif len(sys.argv) == 3 and sys.argv[1] == "--ipi":
        print("| atoms | P | i-PI ms/step | i-PI ms/bead/step | ours ms/step | ours ms/bead/step | i-PI/ours |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        ipi_overhead(sys.argv[2])
    else:
        print("usage: python -m tools.bench.suites.md --ipi /path/to/ipi-venv/bin | --qtb-overhead [STEPS [TSEG_FS]]")
