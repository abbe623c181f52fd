"""The MD rung of the ladder: a short ring-polymer MD of the water molecule.

With the nnp engine and its ANI-1x weights (``from rung.nnp import load_model``; one network), a
P = 8 PILE-L run at 300 K (300 steps of 0.5 fs) from the dataset geometry reports the centroid-virial
quantum kinetic energy against the classical 3/2 N kT: the difference is the nuclear zero-point
effect the path integral captures (P = 8 recovers only part of it). Without the engine (or its
weights) the same run uses a harmonic test potential (every atom in a 3700 cm^-1 well), whose exact
P-bead value is printed beside the measured one. Files go to ``<workdir>/md/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rung.core import units as U

BEADS, STEPS, DT_FS, T_K = 8, 300, 0.5, 300.0
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
    try:
        res = run(load_config(out / "input.toml"), workdir=out, overwrite=True, progress=False)
    finally:
        numba.set_num_threads(threads)
    kT = T_K * U.BOLTZMANN_HARTREE_PER_K
    n = mol.n_atoms
    kcv = res.observables["kinetic_centroid_virial"][STEPS // 3:]  # drop the first third (equilibration)
    blocks = np.array_split(kcv, 10)
    mean = float(np.mean(kcv))
    err = float(np.std([b.mean() for b in blocks], ddof=1) / np.sqrt(len(blocks)))
    kj = U.HARTREE_TO_KJ_PER_MOL
    classical = 1.5 * n * kT
    line = (f"RPMD P={BEADS}, {STEPS} x {DT_FS} fs, {T_K:.0f} K: K_cv = {mean * kj:.2f}({err * kj:.2f}) kJ/mol vs "
            f"classical 3/2 NkT = {classical * kj:.2f} kJ/mol (zero-point excess {(mean - classical) * kj:+.1f})")
    if why_not is None:
        return line + "; ANI-1x (1 network)"
    exact = 3 * n * harmonic_path_integral_energy(HARMONIC_CM * U.INV_CM_TO_HARTREE, kT, BEADS)
    return line + f"; harmonic {HARMONIC_CM:.0f} cm-1 test potential (exact P-bead {exact * kj:.2f}), {why_not}"
