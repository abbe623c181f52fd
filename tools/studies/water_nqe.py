"""Liquid water with ANI-1x: nuclear quantum effects from adQTB beside RPMD (P = 16) and classical Langevin.

27 waters (81 atoms) at 1 g/cm^3 in a periodic cube, ANI-1x (member 0, float32), 300 K, 0.5 fs, all
through rung.md's Python API (``ring_polymer`` and ``qtb``, the integrators behind ``nnp-md run``):

- ``equil``: a random-orientation lattice relaxed by classical Langevin (tau 50 fs) for EQUIL_STEPS;
  the three runs below start from its last state.
- ``langevin``: classical BAOAB, friction 10 ps^-1.
- ``adqtb``: adaptive QTB ("simple", agamma AGAMMA), friction 20 ps^-1, 0.25 ps segments, 15000 cm^-1
  cut-off; the first ADQTB_SKIP_STEPS (gamma_r adaptation, zero-point energy flowing in) are discarded.
- ``qtb``: the same without adaptation (plain QTB); ``adqtb_long``: adQTB twice as long (10 ps, the
  first 4 ps discarded), to see whether gamma_r and the kinetic energies have converged.
- ``langevin_ens``, ``rpmd_ens``, ``adqtb_ens``: the same with the 8-network ensemble mean as the
  potential (member 0 alone has a hole that the (ad)QTB trajectories fall into; see
  packages/md/BENCHMARKS.md); adqtb_ens runs 8 ps, the first 3 ps discarded.
- ``rpmd``: P = 16, PILE-L (centroid tau 100 fs); the first RPMD_SKIP_STEPS are discarded.
- ``plot``: O-H g(r) of the three (RPMD: averaged over all beads), the kinetic energy per H and per O
  with blocked standard errors, a PNG and a Markdown table.

Kinetic energy per species:
- Langevin: sum p^2 / 2m of the post-O momenta p - (dt/2) F (B A O A B's exactly thermal momenta).
- adQTB: the same post-O kinetic energy divided by corr_kin (rung.md.qtb's quantum kinetic estimator,
  restricted to a species); also with corr_kin computed from each species' own spectrum
  (rung.md.qtb.kinetic_correction on the averaged m C_vv of that species).
- RPMD: centroid-virial estimator per atom, 3/2 kT - (1 / 2P) sum_k (q_k - q_c) . F_k.

    .venv/bin/python tools/studies/water_nqe.py equil      # then, in parallel if cores allow:
    .venv/bin/python tools/studies/water_nqe.py rpmd
    .venv/bin/python tools/studies/water_nqe.py langevin
    .venv/bin/python tools/studies/water_nqe.py adqtb
    .venv/bin/python tools/studies/water_nqe.py plot --png packages/md/docs/water_nqe.png

Outputs go to $WATER_NQE_DIR (default /tmp/water_nqe): one .npz per run.
"""

import os
import sys
import time
from pathlib import Path

import numba
import numpy as np

from rung.core import units as U
from rung.core.potential import in_atomic_units

WORK = Path(os.environ.get("WATER_NQE_DIR", "/tmp/water_nqe"))
NSIDE = 3  # 3^3 = 27 waters (9.32 Angstrom box; ANI-1x sees every periodic image)
DT_FS, T_K = 0.5, 300.0
EQUIL_STEPS = 2000  # 1 ps classical
LANGEVIN_STEPS = 6000  # 3 ps
ADQTB_STEPS, ADQTB_SKIP_STEPS = 10000, 4000  # 5 ps, the first 2 ps discarded
RPMD_STEPS, RPMD_SKIP_STEPS, BEADS = 2400, 400, 16  # 1.2 ps, the first 0.2 ps discarded
ENS_STEPS, ENS_SKIP_STEPS = 16000, 6000  # adqtb_ens: the 8-network ensemble, 8 ps, the first 3 ps discarded
SAMPLE_EVERY = 10  # steps between samples of the estimators and frames
GAMMA_LANGEVIN_FS, GAMMA_QTB_FS, TSEG_FS, OMEGACUT_CM1, AGAMMA = 0.01, 0.02, 250.0, 15000.0, 0.3
RMAX_ANGSTROM, NBINS = 4.6, 230
kT = T_K * U.BOLTZMANN_HARTREE_PER_K
dt = DT_FS * U.FS_TO_AU_TIME


def water_box(nside=NSIDE, seed=0):
    """nside^3 rigid waters on a cubic lattice with random orientations at 1 g/cm^3 (ASE Atoms)."""
    from ase import Atoms
    from ase.build import molecule

    n = nside ** 3
    edge = (n * 18.015 / 0.60221408) ** (1 / 3)  # Angstrom
    rng = np.random.default_rng(seed)
    w = molecule("H2O")
    pos, nums = [], []
    for i in range(nside):
        for j in range(nside):
            for k in range(nside):
                m = w.copy()
                m.rotate(rng.random() * 360, rng.normal(size=3))
                pos.append(m.positions + (np.array([i, j, k]) + 0.5) * edge / nside)
                nums.extend(m.numbers)
    return Atoms(numbers=nums, positions=np.concatenate(pos), cell=np.eye(3) * edge, pbc=True)


def forces_fn(atoms, member=0):
    """Forces of ANI-1x (float32): one network (``member``) or the 8-network ensemble mean (None)."""
    from rung.md.parallel import BeadForces
    from rung.nnp import load_model

    pot = in_atomic_units(load_model("ani-1x", member=member, dtype="float32"))
    return BeadForces(pot, atoms.numbers, np.asarray(atoms.cell) * U.ANGSTROM_TO_BOHR)


def masses(atoms):
    return atoms.get_masses() * U.AMU_TO_ELECTRON_MASS


def post_o_kinetic(state, species_mask):
    """sum over atoms of a species of p^2 / 2m with p the post-O momenta p_end - (dt/2) F_end, Hartree."""
    p = np.asarray(state.momenta).reshape(-1, 3) - 0.5 * dt * np.asarray(state.forces).reshape(-1, 3)
    e = 0.5 * np.sum(p * p, axis=1) / state.masses
    return [float(e[m].sum()) for m in species_mask]


def centroid_virial_per_species(state, species_mask):
    """Centroid-virial kinetic energy summed over the atoms of each species, Hartree."""
    q, f = np.asarray(state.positions), np.asarray(state.forces)  # (P, n, 3)
    P = q.shape[0]
    per_atom = 1.5 * kT - 0.5 * np.sum((q - q.mean(axis=0)) * f, axis=(0, 2)) / P
    return [float(per_atom[m].sum()) for m in species_mask]


def run(kind):
    from dataclasses import replace

    from rung.md.integrators import ring_polymer

    numba.set_num_threads(1)
    WORK.mkdir(parents=True, exist_ok=True)
    atoms = water_box()
    f = forces_fn(atoms, None if kind.endswith("_ens") else 0)
    m = masses(atoms)
    masks = [atoms.numbers == 1, atoms.numbers == 8]
    if kind == "equil":
        init, step = ring_polymer(f, dt, kT, 1, thermostat="pile-l", tau=50 * U.FS_TO_AU_TIME, seed=11)
        s = init(atoms.positions * U.ANGSTROM_TO_BOHR, m)
        t0 = time.perf_counter()
        for i in range(EQUIL_STEPS):
            s = step(s)
            if (i + 1) % 500 == 0:
                print(f"equil {i + 1}: T = {2 * sum(post_o_kinetic(s, masks)) / (3 * len(m) * U.BOLTZMANN_HARTREE_PER_K):.1f} K, "
                      f"E = {float(np.mean(s.energy)):.5f} Ha, {time.perf_counter() - t0:.0f} s", flush=True)
        np.savez(WORK / "equil.npz", positions=s.positions[0], momenta=s.momenta[0])
        return
    start = np.load(WORK / "equil.npz")
    x0, p0 = start["positions"], start["momenta"]
    params = None
    base = kind.removesuffix("_ens")
    if base == "langevin":
        init, step = ring_polymer(f, dt, kT, 1, thermostat="pile-l", tau=1 / GAMMA_LANGEVIN_FS * U.FS_TO_AU_TIME, seed=21)
        s = init(x0, m, p0[None])
        nsteps, skip = LANGEVIN_STEPS, 0
    elif base in ("adqtb", "qtb", "adqtb_long"):
        from rung.md.qtb import qtb

        init, step, params = qtb(f, dt, kT, GAMMA_QTB_FS / U.FS_TO_AU_TIME, masses=m, species=atoms.numbers,
                                 tseg=TSEG_FS * U.FS_TO_AU_TIME, omegacut=OMEGACUT_CM1 * U.INV_CM_TO_HARTREE,
                                 adaptive=None if base == "qtb" else "simple", agamma=AGAMMA, seed=31, beads=True)
        s = init(x0[None], m, p0[None])
        nsteps, skip = ADQTB_STEPS, ADQTB_SKIP_STEPS
        if kind == "adqtb_long":
            nsteps, skip = 2 * ADQTB_STEPS, 2 * ADQTB_SKIP_STEPS
        if kind == "adqtb_ens":
            nsteps, skip = ENS_STEPS, ENS_SKIP_STEPS
    elif base == "rpmd":
        init, step = ring_polymer(f, dt, kT, BEADS, thermostat="pile-l", tau=100 * U.FS_TO_AU_TIME, seed=41)
        s = init(x0, m)  # beads start collapsed on the classical configuration, momenta at P kT
        nsteps, skip = RPMD_STEPS, RPMD_SKIP_STEPS
    else:
        raise SystemExit(f"unknown run {kind!r}")
    kin, frames, epot = [], [], []
    t0 = time.perf_counter()
    for i in range(1, nsteps + 1):
        s = step(s)
        if i % SAMPLE_EVERY:
            continue
        if base == "rpmd":
            kin.append(centroid_virial_per_species(s, masks))
        else:
            kin.append(post_o_kinetic(s, masks))
        epot.append(float(np.mean(s.energy)))
        if i > skip:
            frames.append(np.asarray(s.positions, dtype=np.float32))  # (P, n, 3) Bohr
        if i % (50 * SAMPLE_EVERY) == 0:
            k = np.array(kin[-50:]).mean(axis=0) / [masks[0].sum(), masks[1].sum()] * U.HARTREE_TO_EV * 1e3
            extra = ""
            if params is not None:
                extra = f", corr_kin {s.thermostat_state.corr_kin:.4f}"
            print(f"{kind} {i}/{nsteps}: K_H {k[0]:.1f} meV, K_O {k[1]:.1f} meV (raw){extra}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    wall = time.perf_counter() - t0
    out = dict(kin=np.array(kin), epot=np.array(epot), frames=np.array(frames), numbers=atoms.numbers,
               cell=np.asarray(atoms.cell) * U.ANGSTROM_TO_BOHR, skip_samples=skip // SAMPLE_EVERY,
               counts=[masks[0].sum(), masks[1].sum()], wall_s=wall, steps=nsteps)
    if params is not None:
        from rung.md.qtb import kinetic_correction

        ts = s.thermostat_state
        nom = params.nom
        corr_species = [kinetic_correction(ts.mcvv[k], params.kT, params.omega[:nom], params.spectrum[:nom],
                                           params.kin_kernel, params.post_energy, params.theta_over_kT)
                        for k in range(params.nspecies)]
        out.update(corr_kin=ts.corr_kin, corr_kin_species=np.array(corr_species),
                   species_labels=np.array(params.species_labels), gammar=ts.gammar, dfdt=ts.dfdt, mcvv=ts.mcvv,
                   omega_cm1=params.omega[:nom] * U.HARTREE_TO_INV_CM)
    np.savez(WORK / f"{kind}.npz", **out)
    print(f"{kind}: {nsteps} steps in {wall:.0f} s ({nsteps * DT_FS * 1e-6 / wall * 86400:.3g} ns/day)")


def rdf_oh(frames, numbers, cell, rmax, nbins):
    """O-H g(r) over frames (F, P, n, 3) Bohr (all beads pooled) in a cubic cell; r in Angstrom."""
    L = cell[0, 0]
    o, h = numbers == 8, numbers == 1
    edges = np.linspace(0, rmax, nbins + 1)
    hist = np.zeros(nbins)
    nframes = 0
    for fr in frames:
        for x in fr:
            d = x[o][:, None, :] - x[h][None, :, :]
            d -= L * np.round(d / L)
            r = np.sqrt(np.sum(d * d, axis=-1)).ravel() * U.BOHR_TO_ANGSTROM
            hist += np.histogram(r, edges)[0]
            nframes += 1
    rho_h = h.sum() / (L * U.BOHR_TO_ANGSTROM) ** 3
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    return 0.5 * (edges[1:] + edges[:-1]), hist / (nframes * o.sum() * rho_h * shell)


def blocked(series, nblocks=8):
    """Mean and standard error from nblocks contiguous blocks."""
    b = np.array_split(np.asarray(series), nblocks)
    means = np.array([x.mean(axis=0) for x in b])
    return means.mean(axis=0), means.std(axis=0, ddof=1) / np.sqrt(nblocks)


def plot(png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classical = 1.5 * kT * U.HARTREE_TO_EV * 1e3
    fig, axes = plt.subplots(2, 2, figsize=(9, 6.4))
    rows = []
    runs = (("langevin", "classical Langevin", "k", "-", 0), ("qtb", "QTB (no adaptation)", "C1", ":", 0),
            ("adqtb", "adQTB 5 ps", "C3", "--", 0), ("adqtb_long", "adQTB 10 ps", "C3", "-", 0),
            ("rpmd", f"RPMD P = {BEADS}", "C0", "-", 0),
            ("langevin_ens", "classical Langevin", "k", "-", 1), ("adqtb_ens", "adQTB", "C3", "-", 1),
            ("rpmd_ens", f"RPMD P = {BEADS}", "C0", "-", 1))
    v0 = {}
    for kind, label, color, style, group in runs:
        ax = axes[group]
        path = WORK / f"{kind}.npz"
        if not path.exists():
            print(f"missing {path}")
            continue
        d = np.load(path)
        r, g = rdf_oh(d["frames"], d["numbers"], d["cell"], RMAX_ANGSTROM, NBINS)
        for a in ax:
            a.plot(r, g, color=color, ls=style, lw=1.0, label=label)
        k = d["kin"][int(d["skip_samples"]):] / d["counts"] * U.HARTREE_TO_EV * 1e3  # meV per atom
        mean, err = blocked(k)
        v, dv = blocked(d["epot"][int(d["skip_samples"]):] / (NSIDE ** 3) * U.HARTREE_TO_EV * 1e3)  # meV per molecule
        peak = r[np.argmax(np.where(r < 1.3, g, 0))]
        width = np.sqrt(np.sum(np.where(r < 1.3, g * r * r, 0) * (r - peak) ** 2) / np.sum(np.where(r < 1.3, g * r * r, 0)))
        if kind.startswith("langevin"):
            v0[group] = v
        label = label + (" (8 networks)" if group else " (member 0)")
        row = dict(label=label, v0=v0.get(group, np.nan), KH=mean[0], dKH=err[0], KO=mean[1], dKO=err[1], V=v, dV=dv, peak=peak, width=width,
                   gmax=g[r < 1.3].max(), ps=(d["steps"] - int(d["skip_samples"]) * SAMPLE_EVERY) * DT_FS / 1e3,
                   nsday=d["steps"] * DT_FS * 1e-6 / float(d["wall_s"]) * 86400)
        if "corr_kin" in d:
            corr = float(d["corr_kin"])
            raw = k * corr  # back to the raw post-O kinetic energy
            spec = dict(zip([int(x) for x in d["species_labels"]], d["corr_kin_species"]))
            row.update(corr=corr, corrH=spec[1], corrO=spec[8])
            mH, eH = blocked(raw[:, 0] / spec[1])
            mO, eO = blocked(raw[:, 1] / spec[8])
            row.update(KH_s=mH, dKH_s=eH, KO_s=mO, dKO_s=eO)
        rows.append(row)
    for group, name in enumerate(("ANI-1x member 0", "ANI-1x, 8-network ensemble")):
        ax = axes[group]
        ax[0].set_xlim(0.7, 1.4)
        ax[1].set_xlim(1.3, RMAX_ANGSTROM)
        ax[1].set_ylim(0, 2.0)
        for a in ax:
            a.set_xlabel("r(O-H) / Å")
            a.set_ylabel("g_OH(r)")
        ax[0].set_title(f"{name}: intramolecular O-H", fontsize=9)
        ax[1].set_title(f"{name}: hydrogen bond and beyond", fontsize=9)
        ax[1].legend(frameon=False, fontsize=7)
    fig.suptitle(f"ANI-1x water, {NSIDE ** 3} molecules, {T_K:.0f} K", fontsize=10)
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    print(f"wrote {png} ({Path(png).stat().st_size / 1024:.0f} kB)")
    print(f"\nclassical 3/2 kT = {classical:.2f} meV\n")
    print("| run | production ps | K per H (meV) | K per O (meV) | K per molecule - classical (meV) | "
          "V per molecule - classical (meV) | O-H peak (Å) | g_OH max | O-H peak rms width (Å) | ns/day |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for w in rows:
        kmol = 2 * w["KH"] + w["KO"] - 3 * classical
        print(f"| {w['label']} | {w['ps']:.2f} | {w['KH']:.1f} ± {w['dKH']:.1f} | {w['KO']:.1f} ± {w['dKO']:.1f} | "
              f"{kmol:.0f} | {w['V'] - w['v0']:.0f} ± {w['dV']:.0f} | {w['peak']:.3f} | {w['gmax']:.1f} | {w['width']:.4f} | "
              f"{w['nsday']:.3g} |")
    for w in rows:
        if "corr" in w:
            print(f"\n{w['label']} corr_kin: all atoms {w['corr']:.4f}, H spectrum {w['corrH']:.4f}, O spectrum {w['corrO']:.4f}; "
                  f"with per-species corr_kin: K_H {w['KH_s']:.1f} ± {w['dKH_s']:.1f}, K_O {w['KO_s']:.1f} ± {w['dKO_s']:.1f} meV")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    if sys.argv[1] == "plot":
        plot(sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--png" else WORK / "water_nqe.png")
    else:
        run(sys.argv[1])
