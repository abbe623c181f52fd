"""The ladder on one water molecule: each rung consumes what the rung below wrote.

Every package that has landed its rung provides ``rung.<package>.ladder.step(workdir, dataset,
molecule) -> str``: it reads what it needs from the rung.core dataset (and the files the rungs below
wrote into ``workdir``), writes its own results, and returns one line for the summary. A package
without that module is reported as not yet available.

    python tools/ladder.py --out ladder-out
"""

from __future__ import annotations

import argparse
import importlib
import time
from pathlib import Path

RUNGS = [  # (package, what it adds)
    ("dft_gpu", "DFT energy, forces and orbitals"),
    ("sci", "selected-CI energy and multideterminant wavefunction"),
    ("qmc", "VMC/DMC energy"),
    ("nnp", "neural-network-potential energy and forces"),
    ("md", "molecular and ring-polymer dynamics"),
]


def water_dataset(path: Path) -> Path:
    from ase.collections import g2

    from rung.core.dataset import Molecule, create_dataset
    from rung.core.units import ANGSTROM_TO_BOHR

    atoms = g2["H2O"]
    mol = Molecule("water", atoms.numbers, atoms.positions[None] * ANGSTROM_TO_BOHR, smiles="O")
    return create_dataset(path, [mol])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("ladder-out"), help="working folder (kept; a rerun resumes)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dataset = water_dataset(args.out / "water.h5")
    print(f"rung ladder on one water molecule (G2 geometry); dataset {dataset}")
    lines = []
    for package, what in RUNGS:
        try:
            mod = importlib.import_module(f"rung.{package}.ladder")
        except ModuleNotFoundError as err:
            if err.name not in (f"rung.{package}", f"rung.{package}.ladder"):
                raise
            lines.append(f"{package:8s} not yet available ({what})")
            print(lines[-1], flush=True)
            continue
        t0 = time.perf_counter()
        line = mod.step(args.out, dataset, "water")
        lines.append(f"{package:8s} {line}  [{time.perf_counter() - t0:.1f} s]")
        print(lines[-1], flush=True)
    print("\nsummary\n" + "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
