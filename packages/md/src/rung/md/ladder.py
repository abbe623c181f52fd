"""The MD rung of the ladder: a short ring-polymer MD of the water molecule.

With the nnp engine and its ANI-1x weights (``from rung.nnp import load_model``; one network), a
P = 8 PILE-L run at 300 K (300 steps of 0.5 fs) from the dataset geometry reports the centroid-virial
quantum kinetic energy against the classical 3/2 N kT: the difference is the nuclear zero-point
effect the path integral captures (P = 8 recovers only part of it). A short adQTB trajectory of the
same molecule (one classical replica with quantum noise, :mod:`rung.md.qtb`) prints its quantum
kinetic energy beside RPMD's. Without the engine (or its weights) both runs use a harmonic test
potential (every atom in a 3700 cm^-1 well), whose exact P-bead and quantum values are printed beside
the measured ones. Files go to ``<workdir>/md/`` and ``<workdir>/md/adqtb/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rung.core import units as U

BEADS, STEPS, DT_FS, T_K = 8, 300, 0.5, 300.0
QTB_STEPS, QTB_TSEG_FS, QTB_GAMMA_FS = 600, 50.0, 0.02  # 6 segments; a strong friction for a short run
HARMONIC_CM = 3700.0


def _nnp_available() -> str | None:
    """None when ANI-1x can be used, else the reason it cannot."""
    try:
        from rung.nnp import load_model
    except ImportError as err:
        return f"rung.nnp not importable ({err})"
    try:
        load_model("ani-1x", member=0)
    except Exception as err:  # weights missing or unreadable
        return f"ANI-1x not available ({type(err).__name__})"
    return None


def step(workdir: Path, dataset: Path, molecule: str) -> str:
    from ase import Atoms

    from rung.core.dataset import read_structures
    from rung.md.config import load_config
    from rung.md.estimators import harmonic_path_integral_energy
    from rung.md.simulation import run

    mol = next(m for m in read_structures(dataset) if m.name == molecule)
    out = Path(workdir) / "md"
    out.mkdir(parents=True, exist_ok=True)
    Atoms(numbers=mol.atomic_numbers, positions=mol.conformations[0] * U.BOHR_TO_ANGSTROM).write(out / "start.xyz")
    why_not = _nnp_available()
    potential = ('{type = "nnp", model = "ani-1x", member = 0}' if why_not is None
                 else f'{{type = "harmonic", frequency_cm = {HARMONIC_CM}}}')
    (out / "input.toml").write_text(
        f'structure = "start.xyz"\nsteps = {STEPS}\ndt_fs = {DT_FS}\ntemperature_K = {T_K}\nbeads = {BEADS}\n'
        f'thermostat = "langevin"\ntau_fs = 20\nseed = 2024\npotential = {potential}\n'
        "[output]\ntrajectory_every = 10\nlog_every = 1\ncheckpoint_every = 100\n")
    import numba

    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # 24 bead-atoms: threads cost more than they gain on a small, shared machine
    qtb_dir = out / "adqtb"
    qtb_dir.mkdir(exist_ok=True)
    (qtb_dir / "input.toml").write_text(
        f'structure = "../start.xyz"\nsteps = {QTB_STEPS}\ndt_fs = {DT_FS}\ntemperature_K = {T_K}\n'
        f'thermostat = "adqtb"\nseed = 2024\npotential = {potential}\n'
        f"[qtb]\ntseg_fs = {QTB_TSEG_FS}\ngamma_fs = {QTB_GAMMA_FS}\n"
        "[output]\ntrajectory_every = 10\nlog_every = 1\ncheckpoint_every = 100\n")
    try:
        res = run(load_config(out / "input.toml"), workdir=out, overwrite=True, progress=False)
        res_qtb = run(load_config(qtb_dir / "input.toml"), workdir=qtb_dir, overwrite=True, progress=False)
    finally:
        numba.set_num_threads(threads)
    kT = T_K * U.BOLTZMANN_HARTREE_PER_K
    n = mol.n_atoms
    mean, err = _mean_err(res.observables["kinetic_centroid_virial"][STEPS // 3:])  # first third: equilibration
    # the QTB estimate needs the spectra of a finished segment (corr_kin): from the second segment on
    first = 2 * int(round(QTB_TSEG_FS / DT_FS))
    kq, kq_err = _mean_err(res_qtb.observables["kinetic_centroid_virial"][first:])
    kj = U.HARTREE_TO_KJ_PER_MOL
    classical = 1.5 * n * kT
    line = (f"RPMD P={BEADS}, {STEPS} x {DT_FS} fs, {T_K:.0f} K: K_cv = {mean * kj:.2f}({err * kj:.2f}) kJ/mol vs "
            f"classical 3/2 NkT = {classical * kj:.2f} kJ/mol (zero-point excess {(mean - classical) * kj:+.1f}); "
            f"adQTB {QTB_STEPS} x {DT_FS} fs: K = {kq * kj:.2f}({kq_err * kj:.2f}) kJ/mol")
    if why_not is None:
        return line + "; ANI-1x (1 network)"
    w = HARMONIC_CM * U.INV_CM_TO_HARTREE
    exact = 3 * n * harmonic_path_integral_energy(w, kT, BEADS)
    quantum = 3 * n * w / 4 / np.tanh(w / (2 * kT))
    return line + (f"; harmonic {HARMONIC_CM:.0f} cm-1 test potential (exact P-bead {exact * kj:.2f}, "
                   f"quantum {quantum * kj:.2f}), {why_not}")


def _mean_err(series) -> tuple[float, float]:
    """Mean and the standard error of 10 blocks."""
    x = np.asarray(series, dtype=np.float64)
    blocks = np.array_split(x, 10)
    return float(x.mean()), float(np.std([b.mean() for b in blocks], ddof=1) / np.sqrt(len(blocks)))
