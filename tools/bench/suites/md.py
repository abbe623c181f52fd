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
- md.adaptive_replicas: ``nnp-md adaptive --mpi`` end to end (start-up included), R = 2 replicas on 2
  ranks against 1 replica on 1 rank (same per-replica work: 256 LJ argon atoms, RPMD P = 4, 2 iterations);
  peer/ours is the parallel efficiency (goal >= 0.9).
- md.protons: ``nnp-md analyze protons``'s detector (numba cell-list kernel, one thread) on 1000 waters
  (random O in a 31.04 A periodic box, H at 0.97 A, 0.05 A jitter per frame), 50 frames, cutoff 2.5 A,
  against MDAnalysis's HydrogenBondAnalysis on the same frames (O-H bonds given, D-A 3.0 A, angle 150
  degrees: its hydrogen-bond search, a comparable pair search per hydrogen); throughput in (frame x hydrogen)
  assignments per second (goal 1e6 per CPU second).
- ``python -m tools.bench.suites.md --replica-throughput [STEPS [ROUNDS]]``: the same two runs alternating,
  timed inside (the analyses' ``replica_wall_s`` and ``selection_s``, start-up excluded): efficiency
  t_1 / t_R and the selection step's cost.
- ``python -m tools.bench.suites.md --qtb-overhead [STEPS [TSEG_FS]]``: end to end, Langevin / QTB / adQTB runs of
  STEPS steps of the water box, alternating in one process on one thread (segments of TSEG_FS, default
  250 fs: four times as many segment ends as the 1 ps default).
- ``python -m tools.bench.suites.md --fennol FENNOL_SITE [THREADS]``: the same water box under FeNNol's
  ``fennol_md`` (adQTB and Langevin) and ours, the same ANI-1x member-0 network on both sides (FeNNol's
  ANI built with those weights, saved as a .fnx file that ours reads back with rung.nnp.fennol), same
  dt, friction, segment, cut-off and thread count; CPU seconds per step of the steps after a warm-up
  (FeNNol: its process's CPU time read from /proc when its log reaches those steps), see fennol_md().
"""

import sys

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


def _adaptive_case(workdir, replicas, steps, iterations=2):
    """Input of an adaptive run: 256 LJ argon atoms (fcc 4x4x4), RPMD P = 4, 2 fs, 16 distances as features
    (a small analysis, so that the replicas' share is what is measured); returns its path."""
    from pathlib import Path

    from ase.build import bulk

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    a = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((4, 4, 4))
    a.rattle(0.05, seed=1)
    a.write(workdir / "ar.xyz", format="extxyz")
    path = workdir / f"in_{replicas}.toml"
    path.write_text(f'structure = "ar.xyz"\nsteps = {steps}\ndt_fs = 2.0\ntemperature_K = 50\nbeads = 4\n'
                    'thermostat = "langevin"\ntau_fs = 100\nseed = 4\n'
                    'potential = {type = "lj", epsilon_eV = 0.0103, sigma_angstrom = 3.4, cutoff_angstrom = 8.0}\n'
                    f"[output]\ntrajectory_every = 10\nlog_every = 10\ncheckpoint_every = {steps}\nxyz = false\n"
                    f"[adaptive]\niterations = {iterations}\nreplicas = {replicas}\nplot = false\n"
                    f"features = {[[i, i + 128] for i in range(0, 128, 8)]}\n")  # 16 distances
    return path


def _adaptive_mpi(inp, ranks, workdir):
    """A callable running ``mpiexec -n ranks nnp-md adaptive inp --mpi`` in a fresh workdir (one thread per rank)."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    mpiexec = Path(sys.executable).with_name("mpiexec")
    mpiexec = str(mpiexec) if mpiexec.exists() else shutil.which("mpiexec")
    env = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

    def run():
        shutil.rmtree(workdir, ignore_errors=True)
        subprocess.run([mpiexec, "-n", str(ranks), sys.executable, "-m", "rung.md.cli", "adaptive", str(inp),
                        "--workdir", str(workdir), "--quiet", "--mpi"], check=True, env=env, capture_output=True)
        return workdir

    return run


def replica_throughput(steps: int = 2000, rounds: int = 3, replicas: int = 2):
    """R replicas on R ranks against 1 replica on 1 rank, alternating; prints the timings inside the runs
    (sums over the iterations of the analyses' timings; best round by loop time)."""
    import os
    import tempfile
    from pathlib import Path

    import h5py

    keys = ("replica_wall_s", "replica_cpu_s", "gather_wait_s", "selection_s")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = {1: _adaptive_mpi(_adaptive_case(tmp, 1, steps), 1, tmp / "w1"),
                replicas: _adaptive_mpi(_adaptive_case(tmp, replicas, steps), replicas, tmp / f"w{replicas}")}
        best = {}
        for _ in range(rounds):
            for r, fn in runs.items():
                w = fn()
                t = dict.fromkeys(keys, 0.0)
                for a in sorted(w.glob("iter_*/analysis.h5")):
                    with h5py.File(a) as f:
                        for k in keys:
                            t[k] += float(f.attrs[k])
                t["loop_s"] = t["replica_wall_s"] + t["selection_s"]
                if r not in best or t["loop_s"] < best[r]["loop_s"]:
                    best[r] = t
    print(f"load average {os.getloadavg()[0]:.2f}; 2 iterations x {steps} steps per replica, best of {rounds}")
    print("| ranks = replicas | replica phase wall s | max CPU s of a rank | gather wait s | selection s (rank 0) "
          "| loop s | wall efficiency t_1 / t_R |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r, t in best.items():
        print(f"| {r} | {t['replica_wall_s']:.3f} | {t['replica_cpu_s']:.3f} | {t['gather_wait_s']:.3f} | "
              f"{t['selection_s']:.4f} | {t['loop_s']:.3f} | {best[1]['loop_s'] / t['loop_s']:.3f} |")


def _water_protons(n_waters=1000, frames=50, box=31.04, seed=0):
    """Random waters in a periodic box (Angstrom): numbers (3n,), positions (frames, 3n, 3), O first."""
    rng = np.random.default_rng(seed)
    o = rng.uniform(size=(n_waters, 3)) * box
    u = rng.normal(size=(n_waters, 2, 3))
    h = o[:, None] + 0.97 * u / np.linalg.norm(u, axis=-1, keepdims=True)
    x0 = np.concatenate([o, h.reshape(-1, 3)])
    x = x0[None] + rng.normal(scale=0.05, size=(frames,) + x0.shape)
    return np.r_[np.full(n_waters, 8), np.ones(2 * n_waters, dtype=np.int64)], x


def _protons_ours(numbers, x, box):
    from rung.md.analysis.protons import Trajectory, detect

    A = U.ANGSTROM_TO_BOHR
    traj = Trajectory(numbers, x * A, np.repeat(np.eye(3)[None] * box * A, len(x), axis=0), np.arange(len(x)) * 1.0)
    return lambda: detect(traj, cutoff=2.5 * A)


def _protons_mda(numbers, x, box):
    import MDAnalysis as mda
    from MDAnalysis.analysis.hydrogenbonds import HydrogenBondAnalysis
    from MDAnalysis.coordinates.memory import MemoryReader

    n_w = int(np.sum(numbers == 8))
    u = mda.Universe.empty(len(numbers), n_residues=n_w, atom_resindex=np.r_[np.arange(n_w), np.repeat(np.arange(n_w), 2)],
                           trajectory=True)
    u.add_TopologyAttr("name", np.where(numbers == 8, "O", "H"))
    u.add_TopologyAttr("type", np.where(numbers == 8, "O", "H"))
    u.add_TopologyAttr("bonds", [(i, n_w + 2 * i + k) for i in range(n_w) for k in (0, 1)])
    u.load_new(x.astype(np.float32), format=MemoryReader, dimensions=[box, box, box, 90, 90, 90])

    def run():
        h = HydrogenBondAnalysis(u, hydrogens_sel="name H", acceptors_sel="name O", d_a_cutoff=3.0,
                                 d_h_a_angle_cutoff=150)
        h.run()
        return h

    return run


def cases(quick: bool):
    zero = _Zero()
    numbers, x = _water_protons(frames=10 if quick else 50)
    try:
        import MDAnalysis  # noqa: F401

        peer = _one_thread(_protons_mda(numbers, x, 31.04))
    except ImportError:
        peer = None
    n_h = int(np.sum(numbers == 1))
    yield Case("md.protons", f"1000 waters ({n_h} H), {len(x)} frames, cutoff 2.5 A, periodic",
               _one_thread(_protons_ours(numbers, x, 31.04)), peer=peer,
               peer_name="MDAnalysis HydrogenBondAnalysis (D-A 3.0 A, 150 deg)", work=len(x) * n_h,
               work_unit="assignments", repeats=5)
    for n in ([1000] if quick else [1000, 8000]):
        atoms = _gas(n)
        yield Case("md.overhead", f"{n} atoms, P=1, zero forces, {STEPS} steps",
                   _one_thread(_ours(atoms, zero, 1, STEPS)),
                   peer=_ase(atoms, _zero_ase_calc(), STEPS), peer_name="ASE Langevin", work=STEPS * n,
                   work_unit="atom-steps")
        yield Case("md.overhead", f"{n} atoms, P=32, zero forces, {STEPS} steps",
                   _one_thread(_ours(atoms, zero, 32, STEPS)), peer=_ase(atoms, _zero_ase_calc(), 32 * STEPS),
                   peer_name="ASE Langevin x32 steps", work=32 * STEPS * n, work_unit="bead-atom-steps", repeats=3)
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="bench-md-adaptive-"))
    steps = 200 if quick else 2000
    yield Case("md.adaptive_replicas", f"2 replicas on 2 ranks vs 1 on 1, 256 LJ argon, P=4, 2 x {steps} steps",
               _adaptive_mpi(_adaptive_case(tmp, 2, steps), 2, tmp / "w2"),
               peer=_adaptive_mpi(_adaptive_case(tmp, 1, steps), 1, tmp / "w1"), peer_name="1 replica on 1 rank",
               work=2 * 2 * steps, work_unit="replica-steps", repeats=3,
               note="peer/ours = parallel efficiency, start-up included")
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


def _children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished children (i-PI's server and driver)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _ipi_run(bindir, workdir, n, P, steps):
    """Wall and CPU seconds (server + driver) of an i-PI run of ``steps`` steps."""
    import os
    import subprocess
    import time
    from pathlib import Path

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
    c0 = _children_cpu()
    t0 = time.perf_counter()
    srv = subprocess.Popen([f"{bindir}/i-pi", f"{tag}.xml"], cwd=workdir, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    sock = Path(f"/tmp/ipi_{tag}")  # i-PI's UNIX socket; a driver started before it exists exits at once
    while not sock.exists() and time.perf_counter() - t0 < 300 and srv.poll() is None:
        time.sleep(0.05)
    drv = subprocess.Popen([f"{bindir}/i-pi-py_driver", "-u", "-a", tag, "-m", "dummy"], cwd=workdir,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        srv.wait(timeout=900)
    finally:
        dt = time.perf_counter() - t0
        srv.kill()
        drv.kill()
        srv.wait()
        drv.wait()
    return dt, _children_cpu() - c0


def ipi_overhead(bindir, sizes=((1000, 1, 10, 1010), (1000, 32, 5, 105), (8000, 1, 10, 210))):
    """Prints i-PI's and our per-step cost, wall and CPU time (CPU: i-PI's server + driver processes,
    ours this process; the fair comparison on a loaded machine)."""
    import tempfile
    import time
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        for n, P, s0, s1 in sizes:
            (w1, c1), (w0, c0) = _ipi_run(bindir, Path(tmp), n, P, s1), _ipi_run(bindir, Path(tmp), n, P, s0)
            ipi, ipi_cpu = (w1 - w0) / (s1 - s0), (c1 - c0) / (s1 - s0)
            ours_fn = _one_thread(_ours(_gas(n), _Zero(), P, 10))
            ours_fn()
            times, cpus = [], []
            for _ in range(7):
                t0, c0 = time.perf_counter(), time.process_time()
                ours_fn()
                times.append((time.perf_counter() - t0) / 10)
                cpus.append((time.process_time() - c0) / 10)
            ours, ours_cpu = sorted(times)[3], sorted(cpus)[3]  # medians
            print(f"| {n} | {P} | {ipi * 1e3:.3g} | {ipi / P * 1e3:.3g} | {ours * 1e3:.3g} | {ours / P * 1e3:.3g} | "
                  f"{ipi / ours:.3g} | {ipi_cpu * 1e3:.3g} | {ours_cpu * 1e3:.3g} | {ipi_cpu / ours_cpu:.3g} |", flush=True)


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


# --- FeNNol's fennol_md (optional): `python -m tools.bench.suites.md --fennol /path/to/fennol-site [THREADS]` ------
# FeNNol (pip package ``fennol``, with flax) is put on sys.path from FENNOL_SITE (e.g. installed with
# ``uv pip install --target /tmp/fennol-site fennol``); jax comes from this environment. fennol_md runs in a
# child process; its CPU time (all threads, /proc/<pid>/stat) is read when its log prints the first and the
# last timed step, so start-up, jit compilation and the warm-up steps are left out. Ours runs in this
# process (numba threads = THREADS), CPU time of the same steps.

_FENNOL_INPUT = """model_file {model}
xyz_input{{
  file {xyz}
}}
cell {edge:.8f} {edge:.8f} {edge:.8f}
temperature 300.0
dt[fs] {dt_fs}
nsteps {nsteps}
nprint {nprint}
nsummary {nsummary}
tdump[ps] 1000.0
traj_format xyz
energy_unit Ha
per_atom_energy no
random_seed 1
thermostat {thermostat}
gamma[THz] {gamma_thz}
{skin}
qtb{{
  tseg[fs] {tseg_fs}
  omegacut[cm1] {omegacut_cm1}
  agamma 0.1
  write_spectra yes
}}
"""


def _proc_cpu(pid) -> float:
    """CPU seconds (user + system, all threads) of a live process, from /proc/<pid>/stat."""
    import os

    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fennol_run(site, workdir, thermostat, warm, timed, tseg_fs, threads, skin):
    """CPU s/step of fennol_md over steps warm+1 .. warm+timed, its first potential energy (Hartree) and its
    own ns/day report (wall time, last summary)."""
    import os
    import re
    import subprocess

    nprint = 10
    inp = workdir / f"{thermostat.lower()}_{skin or 0}.fnl"
    inp.write_text(_FENNOL_INPUT.format(model="ani.fnx", xyz="water.xyz", edge=float(_water_box().cell[0, 0]),
                                        dt_fs=DT_FS, nsteps=warm + timed, nprint=nprint, nsummary=timed,
                                        thermostat=thermostat, gamma_thz=10.0, tseg_fs=tseg_fs, omegacut_cm1=15000.0,
                                        skin=f"nblist_skin {skin}" if skin else ""))
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads), JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
                         f"intra_op_parallelism_threads={threads}")
    code = (f"import sys; sys.path.append({str(site)!r}); from fennol.md.dynamic import main; "
            f"sys.argv = ['fennol_md', {inp.name!r}]; sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    marks, epot, perf, log = {}, None, None, []
    for line in proc.stdout:
        log.append(line)
        words = line.split()
        if line.startswith("# Initial potential energy:"):
            epot = float(re.findall(r"[-+0-9.eE]+", line.split(":")[1])[0])
        elif line.startswith("# Perf.:"):
            perf = float(words[2])
        elif words and not line.startswith("#") and words[0].isdigit() and int(words[0]) in (warm, warm + timed):
            marks[int(words[0])] = _proc_cpu(proc.pid)
    proc.wait()
    if proc.returncode != 0 or len(marks) != 2:
        raise RuntimeError(f"fennol_md failed (exit {proc.returncode}):\n" + "".join(log[-30:]))
    return (marks[warm + timed] - marks[warm]) / timed, epot, perf


def fennol_md(site, threads=1, warm=50, timed=300, tseg_fs=150.0, skins=(None, 2.0)):
    """ns/day of FeNNol's fennol_md and ours on the 648-atom water box, adQTB and Langevin (see above).

    Both: ANI-1x member 0 (float32), 0.5 fs, 300 K, friction 10 ps^-1, segments of tseg_fs (timed steps
    include one segment end for both), cut-off 15000 cm^-1. FeNNol with its default neighbour list
    (rebuilt every step) and with its skin list (nblist_skin in Angstrom). Prints a Markdown table.
    """
    import tempfile
    import time
    from pathlib import Path

    sys.path.append(str(site))
    from ase.io import write

    from rung.nnp import load_model
    from rung.nnp.ani import ANIPotential
    from rung.nnp.fennol import read_fnx
    from tools.bench.suites.nnp import fennol_ani

    numba.set_num_threads(threads)
    water = _water_box()
    ours_model = load_model("ani-1x", member=0, dtype="float32")
    with tempfile.TemporaryDirectory(prefix="fennol_md_") as tmp:
        tmp = Path(tmp)
        built = fennol_ani(ours_model.model, "float32")
        if built is None:
            raise SystemExit(f"fennol is not importable from {site}")
        built[0].save(tmp / "ani.fnx")
        write(tmp / "water.xyz", water, format="xyz")
        pot = ANIPotential(read_fnx(tmp / "ani.fnx"), dtype="float32")  # ours reads FeNNol's file
        mine = pot.compute(water.positions, water.numbers, np.asarray(water.cell))
        ref = ours_model.compute(water.positions, water.numbers, np.asarray(water.cell))
        print(f"# .fnx read back by rung: max |dF| = {np.abs(np.asarray(mine.forces) - np.asarray(ref.forces)).max():.2e} "
              f"Ha/A against rung's ANI-1x[0]; E(.fnx) - E(ANI-1x[0]) = "
              f"{float(np.squeeze(mine.energy)) - float(np.squeeze(ref.energy)):.6f} Ha (FeNNol's ANI has no self "
              f"energies); E(.fnx) = {float(np.squeeze(mine.energy)):.6f} Ha", flush=True)
        ours_pot = in_atomic_units(pot)
        rows = []
        for thermostat in ("ADQTB", "LGV"):
            if thermostat == "ADQTB":
                run = _ours_qtb(water, ours_pot, 1, adaptive="simple", tseg_fs=tseg_fs)
            else:
                run = _ours(water, ours_pot, 1, 1)
            for _ in range(warm):
                run()
            t0 = time.process_time()
            for _ in range(timed):
                run()
            ours = (time.process_time() - t0) / timed
            for skin in skins:
                fen, epot, perf = _fennol_run(site, tmp, thermostat, warm, timed, tseg_fs, threads, skin)
                rows.append((thermostat, skin, ours, fen, epot, perf))
                print(f"# {thermostat} skin={skin}: ours {ours:.4g} CPU s/step, FeNNol {fen:.4g} CPU s/step "
                      f"(its own report {perf} ns/day wall), FeNNol E0 = {epot} Ha", flush=True)
    print(f"\n| thermostat | FeNNol neighbour list | ours CPU s/step | ours ns/day | FeNNol CPU s/step | FeNNol ns/day | "
          f"ours / FeNNol |  ({threads} thread(s), {timed} steps after {warm}, segments of {tseg_fs:g} fs)")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    nsday = lambda t: DT_FS * 1e-6 / t * 86400  # noqa: E731
    for th, skin, ours, fen, _, _ in rows:
        print(f"| {th} | {'every step' if not skin else f'skin {skin} A'} | {ours:.4g} | {nsday(ours):.3g} | {fen:.4g} | "
              f"{nsday(fen):.3g} | {fen / ours:.2f} |")


# --- ab-initio MD: `python -m tools.bench.suites.md --aimd [STEPS [ROUNDS]]` ----------------------------
# nnp-md's "dft" potential (rung.dft_gpu: J/K engine, extrapolated density guess) against the loop a
# PySCF user writes: the DF-RKS gradient scanner (as_scanner, which starts each SCF from the previous
# density) in a velocity-Verlet loop. Same molecule, start, functional, basis, auxiliary basis
# (aug_etb), grid level, SCF tolerances and grid response; NVE, both sides one thread; CPU seconds per
# step, sides alternating ROUNDS times in one process.

def _aimd_ours(numbers, x, m, v, dt, steps, spec):
    from rung.md.integrators import ring_polymer
    from rung.md.parallel import BeadForces
    from rung.md.potentials import build_potential  # also 'dft' before the entry points are installed

    pot = build_potential(spec)
    init, step = ring_polymer(BeadForces(in_atomic_units(pot), numbers), dt, 300 * U.BOLTZMANN_HARTREE_PER_K, 1,
                              thermostat=None)
    s = init(x, m, momenta=m[:, None] * v)
    cycles = 0
    for _ in range(steps):
        s = step(s)
        cycles += sum(pot.scf_cycles)
    return cycles


def _aimd_pyscf(numbers, x, m, v, dt, steps, spec):
    from pyscf import df, dft, gto

    mol = gto.M(atom=[(int(z), tuple(r)) for z, r in zip(numbers, x)], unit="Bohr", basis=spec["basis"], verbose=0)
    mf = dft.RKS(mol, xc=spec["xc"]).density_fit(auxbasis=df.addons.aug_etb(mol))
    mf.grids.level, mf.conv_tol, mf.conv_tol_grad = 3, 1e-10, 1e-6
    g = mf.nuc_grad_method()
    g.grid_response = True
    scan = g.as_scanner()
    cycles = 0

    def forces(xx):
        nonlocal cycles
        _, grad = scan(mol.set_geom_(xx, unit="Bohr", inplace=False))
        cycles += int(scan.base.cycles)
        return -grad

    xx, vv = x.copy(), v.copy()
    f = forces(xx)
    cycles = 0  # the initial forces are outside the timed steps on our side too (init)
    for _ in range(steps):
        vv = vv + 0.5 * dt * f / m[:, None]
        xx = xx + dt * vv
        f = forces(xx)
        vv = vv + 0.5 * dt * f / m[:, None]
    return cycles


def aimd_dft(steps: int = 10, rounds: int = 3, molecules=("H2O", "CH3CH2OH")):
    import time

    from ase.build import molecule
    from pyscf import lib
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # BLAS threads left free spin and inflate CPU time
    lib.num_threads(1)
    numba.set_num_threads(1)
    spec = {"type": "dft", "xc": "pbe", "basis": "def2-svp"}
    sides = (("ours", _aimd_ours, spec), ("ours jk=pyscf", _aimd_ours, {**spec, "jk": "pyscf"}),
             ("pyscf", _aimd_pyscf, spec))
    dt = DT_FS * U.FS_TO_AU_TIME
    print(f"| molecule | atoms | ours CPU s/step | ours, jk = pyscf | PySCF scanner | PySCF / ours | "
          f"PySCF / ours (jk = pyscf) | SCF cycles/step ours | PySCF |  (PBE/def2-SVP, aug_etb, grid 3, grid "
          f"response, NVE {DT_FS} fs, {steps} steps, {rounds} rounds, ranges over rounds)")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in molecules:
        a = molecule(name)
        numbers, x = a.numbers, a.positions * U.ANGSTROM_TO_BOHR
        m = a.get_masses() * U.AMU_TO_ELECTRON_MASS
        v = np.random.default_rng(0).normal(size=x.shape) * np.sqrt(300 * U.BOLTZMANN_HARTREE_PER_K / m)[:, None]
        t = {side: [] for side, _, _ in sides}
        cyc = {}
        for _ in range(rounds):
            for side, fn, sp in sides:
                t0 = time.process_time()
                cyc[side] = fn(numbers, x, m, v, dt, steps, sp)
                t[side].append((time.process_time() - t0) / steps)
        o, j, p = (np.array(t[side]) for side, _, _ in sides)
        rng = lambda a: f"{a.min():.3g}-{a.max():.3g}"  # noqa: E731
        print(f"| {name} | {len(a)} | {rng(o)} | {rng(j)} | {rng(p)} | {rng(p / o)} | {rng(p / j)} | "
              f"{cyc['ours'] / steps:.1f} | {cyc['pyscf'] / steps:.1f} |", flush=True)


if __name__ == "__main__":
    import sys

    if len(sys.argv) >= 3 and sys.argv[1] == "--fennol":
        fennol_md(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    elif len(sys.argv) >= 2 and sys.argv[1] == "--replica-throughput":
        replica_throughput(int(sys.argv[2]) if len(sys.argv) > 2 else 2000, int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    elif len(sys.argv) >= 2 and sys.argv[1] == "--qtb-overhead":
        qtb_overhead(int(sys.argv[2]) if len(sys.argv) > 2 else 1000,
                     float(sys.argv[3]) if len(sys.argv) > 3 else 250.0)
    elif len(sys.argv) >= 2 and sys.argv[1] == "--aimd":
        aimd_dft(int(sys.argv[2]) if len(sys.argv) > 2 else 10, int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    elif len(sys.argv) == 3 and sys.argv[1] == "--ipi":
        print("| atoms | P | i-PI ms/step | i-PI ms/bead/step | ours ms/step | ours ms/bead/step | i-PI/ours | "
              "i-PI CPU ms/step | ours CPU ms/step | i-PI/ours CPU |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        ipi_overhead(sys.argv[2])
    else:
        print("usage: python -m tools.bench.suites.md --ipi /path/to/ipi-venv/bin | --qtb-overhead [STEPS [TSEG_FS]] "
              "| --fennol /path/to/fennol-site [THREADS] | --replica-throughput [STEPS [ROUNDS]] | --aimd [STEPS [ROUNDS]]")
