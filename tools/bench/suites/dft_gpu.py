"""rung.dft_gpu benchmarks: the J/K engine against PySCF's density-fitted get_jk and DF SCF.

Cases (all in one process, side by side):
- ``dft_gpu.dgemm``: the machine's DGEMM rate (2000x2000), measured in the same run; the J/K "floor"
  is the J/K FLOP count divided by this rate.
- ``dft_gpu.jk``: J + K for one closed-shell density tagged with its orbitals (occupied-orbital K),
  the 3-index tensor already cached, against ``pyscf.df.DF.get_jk`` (tensor also prebuilt). FLOPs
  counted: J ``4 naux nao^2`` + K ``2 naux nao^2 nocc`` (GEMM) + ``naux nao^2 nocc`` (SYRK).
- ``dft_gpu.scf``: end-to-end ωB97M-D3BJ SCF (tensor build, grids, SCF) with ``accelerate`` against
  PySCF's DF SCF, same auxiliary basis.

``python -m tools.bench.suites.dft_gpu breakdown [molecule]`` runs the end-to-end SCF of both sides in
separate single-threaded processes and prints the J/K, XC and rest CPU times and each process's peak
resident memory; ``python -m tools.bench.suites.dft_gpu floor`` times J+K of both sides and DGEMM on
one thread in CPU seconds (ours through both CPU paths: the packed tensor with the numba
micro-kernel, and the square tensor with plain BLAS). CPU time on one thread is what stays comparable on a shared machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tools.bench import Case

DATA = Path(__file__).resolve().parents[3] / "packages" / "dft_gpu" / "tests" / "data"
WATER = "O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692"


def molecule(name: str):
    from pyscf import gto

    atom = WATER if name == "water" else str(DATA / f"{name}.xyz")
    return gto.M(atom=atom, basis="ccecp-cc-pvdz", ecp="ccecp", verbose=0)


def core_density(mol):
    """Closed-shell density of the core-Hamiltonian orbitals, tagged with them (as PySCF tags dms)."""
    import scipy.linalg
    from pyscf import lib, scf

    _, c = scipy.linalg.eigh(scf.hf.get_hcore(mol), mol.intor("int1e_ovlp"))
    nocc = mol.nelectron // 2
    occ = np.zeros(mol.nao)
    occ[:nocc] = 2.0
    return lib.tag_array(2.0 * c[:, :nocc] @ c[:, :nocc].T, mo_coeff=c, mo_occ=occ), nocc


def jk_flop(naux: int, nao: int, nocc: int, n_dm: int = 1) -> float:
    return n_dm * (4.0 * naux * nao**2 + 2.0 * naux * nao**2 * nocc + naux * nao**2 * nocc)


def _jk_setup(name):
    """Molecule, a closed-shell density, nocc, our engine and PySCF's DF object on the same auxbasis."""
    from pyscf import df

    from rung.dft_gpu.jk import JKEngine, resolve_auxbasis

    mol = molecule(name)
    dm, nocc = core_density(mol)
    aux = resolve_auxbasis(mol)
    eng = JKEngine(mol, aux, backend="numba")
    dfobj = df.DF(mol, aux)
    dfobj.verbose = 0
    dfobj.build()
    return mol, dm, nocc, eng, dfobj


def cases(quick: bool):
    from rung.dft_gpu.jk import DEFAULT_AUXBASIS, JKEngine, resolve_auxbasis

    a = np.random.default_rng(0).random((2000, 2000))
    yield Case("dft_gpu.dgemm", "2000x2000 float64", lambda: a @ a, flop=2 * 2000.0**3, repeats=5,
               note="machine DGEMM rate: the J/K floor is jk FLOPs / this rate")
    for name in (["glycine"] if quick else ["glycine", "aspirin"]):
        mol, dm, nocc, eng, dfobj = _jk_setup(name)
        yield Case("dft_gpu.jk", f"{name} ccecp-cc-pvdz nao={mol.nao} naux={eng.naux} nocc={nocc}",
                   lambda eng=eng, dm=dm: eng.get_jk(dm), peer=lambda dfobj=dfobj, dm=dm: dfobj.get_jk(dm),
                   peer_name="pyscf DF.get_jk", flop=jk_flop(eng.naux, mol.nao, nocc), repeats=5,
                   note=f"{DEFAULT_AUXBASIS}, tensor cached ({eng._full_bytes() / 2**20:.0f} MiB)")
    yield from gpu_cases(quick)
    if not quick:
        yield Case("dft_gpu.scf", "glycine ωB97M-D3BJ ccecp-cc-pvdz grid 3", lambda: scf_energy("glycine", True),
                   peer=lambda: scf_energy("glycine", False), peer_name="pyscf DF RKS", repeats=1, warmup=0,
                   note=f"{DEFAULT_AUXBASIS} both sides; incl. tensor build and grids")


def gpu_cases(quick: bool):
    """The CuPy J/K engine on the device beside the numba engine, same density; only when rung.core sees a
    CUDA device (``make gpu-check`` runs only these: ``python -m tools.bench --gpu-only``)."""
    from rung.core.backend import gpu_available

    if not gpu_available():
        return
    import cupy

    from rung.core.backend import synchronize
    from rung.dft_gpu.jk import JKEngine, resolve_auxbasis

    for name in ["glycine", "aspirin"]:
        mol, dm, nocc, eng, _ = _jk_setup(name)
        gpu = JKEngine(mol, resolve_auxbasis(mol), backend="cupy")
        dm_gpu = cupy.asarray(dm)
        yield Case("dft_gpu.jk", f"{name} ccecp-cc-pvdz nao={mol.nao} naux={gpu.naux} nocc={nocc} (GPU)",
                   lambda gpu=gpu, d=dm_gpu: gpu.get_jk(d), peer=lambda eng=eng, dm=dm: eng.get_jk(dm),
                   peer_name="ours, numba (CPU)", flop=jk_flop(gpu.naux, mol.nao, nocc), device="gpu",
                   sync=lambda: synchronize(cupy), repeats=5)


def scf_energy(name: str, ours: bool, timers: dict | None = None) -> float:
    """ωB97M-D3BJ SCF energy (Hartree) with the engine (``ours``) or PySCF's DF, same auxbasis."""
    from pyscf import dft

    from rung.dft_gpu.jk import accelerate, resolve_auxbasis

    mol = molecule(name)
    mf = dft.RKS(mol, xc="wb97m-d3bj")
    mf.grids.level = 3
    mf = accelerate(mf, backend="numba") if ours else mf.density_fit(auxbasis=resolve_auxbasis(mol))
    if timers is not None:
        _instrument(mf, timers)
    return mf.kernel()


def _instrument(mf, timers: dict) -> None:
    """Time J/K and XC of one SCF object (instance attributes only; nothing global is patched)."""
    from pyscf.dft import numint

    get_jk = mf.get_jk

    def timed_jk(*args, **kwargs):
        t0 = time.process_time()
        out = get_jk(*args, **kwargs)
        timers["jk_s"] = timers.get("jk_s", 0.0) + time.process_time() - t0
        return out

    class TimedNumInt(numint.NumInt):
        def nr_rks(self, *args, **kwargs):
            t0 = time.process_time()
            out = super().nr_rks(*args, **kwargs)
            timers["xc_s"] = timers.get("xc_s", 0.0) + time.process_time() - t0
            return out

    mf.get_jk = timed_jk
    mf._numint = TimedNumInt()


def _breakdown_child(name: str, side: str) -> None:
    import resource

    timers: dict = {}
    t0 = time.process_time()
    e = scf_energy(name, side == "ours", timers)
    total = time.process_time() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"side": side, "e_tot": e, "total_s": total, "jk_s": timers.get("jk_s", 0.0),
                      "xc_s": timers.get("xc_s", 0.0), "peak_rss_mib": peak_mib}))


def _one_thread_env() -> dict:
    import os

    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    return env


def breakdown(name: str = "glycine") -> list[dict]:
    """End-to-end SCF of both sides, each in its own single-threaded process; CPU seconds."""
    rows = []
    for side in ("ours", "pyscf"):
        out = subprocess.run([sys.executable, "-m", "tools.bench.suites.dft_gpu", "_child", name, side],
                             check=True, capture_output=True, text=True, env=_one_thread_env()).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["rest_s"] = row["total_s"] - row["jk_s"] - row["xc_s"]
        rows.append(row)
    print("| side | E (Ha) | total CPU (s) | J/K incl. tensor build (s) | XC (s) | rest (s) | peak RSS (MiB) |\n"
          "| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['side']} | {r['e_tot']:.10f} | {r['total_s']:.1f} | {r['jk_s']:.1f} | {r['xc_s']:.1f} | "
              f"{r['rest_s']:.1f} | {r['peak_rss_mib']:.0f} |")
    return rows


def _cpu_time(fn, repeats: int = 3) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _floor_child() -> None:
    from rung.dft_gpu._kernels import cpu
    from rung.dft_gpu.jk import JKEngine

    a = np.random.default_rng(0).random((2000, 2000))
    print("packed = the engine built with the packed tensor and the numba half-transform micro-kernel "
          "(cpu.USE_MICROKERNEL = True); square = the engine built with the square tensor and plain BLAS GEMMs "
          f"(False); ours = the default (packed for nao >= {cpu.MICROKERNEL_MIN_NAO} on AVX-512, else square). "
          "DGEMM rate measured right before each molecule.\n")
    print("| molecule | nao | naux | nocc | GFLOP | DGEMM (GFLOP/s) | floor (s) | square (s) | square/floor | "
          "packed (s) | packed/floor | ours/floor | PySCF (s) | PySCF/floor | PySCF/ours |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in ("glycine", "aspirin"):
        mol, dm, nocc, eng, dfobj = _jk_setup(name)
        engines = {eng.packed: eng}
        cpu.USE_MICROKERNEL = not eng.packed
        engines[not eng.packed] = JKEngine(mol, eng.auxbasis, backend="numba")
        cpu.USE_MICROKERNEL = None
        rate = 2 * 2000.0**3 / _cpu_time(lambda: a @ a, 5)
        flop = jk_flop(eng.naux, mol.nao, nocc)
        floor = flop / rate
        times = {packed: _cpu_time(lambda e=e: e.get_jk(dm), 7) for packed, e in engines.items()}
        peer = _cpu_time(lambda: dfobj.get_jk(dm), 5)
        ours = times[eng.packed]
        print(f"| {name} | {mol.nao} | {eng.naux} | {nocc} | {flop / 1e9:.2f} | {rate / 1e9:.1f} | {floor:.3f} | "
              f"{times[False]:.3f} | {times[False] / floor:.2f} | {times[True]:.3f} | {times[True] / floor:.2f} | "
              f"{ours / floor:.2f} | {peer:.3f} | {peer / floor:.2f} | {peer / ours:.2f} |", flush=True)
        del engines, eng, dfobj


if __name__ == "__main__":
    if sys.argv[1:2] == ["_child"]:
        _breakdown_child(sys.argv[2], sys.argv[3])
    elif sys.argv[1:2] == ["_floor"]:
        _floor_child()
    elif sys.argv[1:2] == ["floor"]:
        subprocess.run([sys.executable, "-m", "tools.bench.suites.dft_gpu", "_floor"], check=True,
                       env=_one_thread_env())
    elif sys.argv[1:2] == ["breakdown"]:
        breakdown(*(sys.argv[2:3] or ["glycine"]))
    else:
        raise SystemExit("usage: python -m tools.bench.suites.dft_gpu breakdown [molecule] | floor")
