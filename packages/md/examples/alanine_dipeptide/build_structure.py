"""Build Ace-Ala-Nme (alanine dipeptide, 22 atoms) from internal coordinates and relax it with ANI-1x.

Standard peptide bond lengths and angles, trans peptide bonds, L-alanine, started in the C7eq basin
(phi, psi = -80, 75 degrees); then BFGS with the ANI-1x ensemble (ASE, fmax 0.01 eV/Angstrom).
Writes ace_ala_nme.xyz beside this script. Run: python build_structure.py (about a minute on one core).

Atom order (0-based): 0 C(H3, Ace) 1 C(=O, Ace) 2 O 3 N 4 H(N) 5 CA 6 C(=O) 7 O 8 N(Nme) 9 H(N)
10 C(H3, Nme) 11-13 H(Nme) 14 HA 15 CB 16-18 HB 19-21 H(Ace).
phi = C1-N3-CA5-C6, psi = N3-CA5-C6-N8.
"""

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.optimize import BFGS

from rung.md.adaptive import dihedral
from rung.nnp import NNPCalculator


def place(a, b, c, bond, angle, torsion):
    """Position of d with |cd| = bond, angle b-c-d, dihedral a-b-c-d (Angstrom, degrees)."""
    angle, torsion = np.radians(angle), np.radians(torsion)
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    d = np.array([-bond * np.cos(angle), bond * np.sin(angle) * np.cos(torsion), bond * np.sin(angle) * np.sin(torsion)])
    return c + d[0] * bc + d[1] * m + d[2] * n


def build(phi=-80.0, psi=75.0, cb_offset=120.0):
    x = {0: np.zeros(3), 1: np.array([1.52, 0.0, 0.0])}
    x[2] = place(np.array([0.0, 1.0, 0.0]), x[0], x[1], 1.23, 121.0, 0.0)
    # (symbol, bond to, angle with, dihedral with, length, angle, dihedral)
    zmat = [(3, "N", 1, 0, 2, 1.335, 116.0, 180.0),
            (4, "H", 3, 1, 2, 1.01, 119.0, 180.0),
            (5, "C", 3, 1, 2, 1.46, 121.7, 0.0),      # omega = 180: CA cis to O
            (6, "C", 5, 3, 1, 1.53, 111.0, phi),
            (7, "O", 6, 5, 3, 1.23, 120.5, psi + 180.0),
            (8, "N", 6, 5, 3, 1.335, 116.0, psi),
            (9, "H", 8, 6, 7, 1.01, 119.0, 180.0),
            (10, "C", 8, 6, 7, 1.45, 121.9, 0.0),
            (11, "H", 10, 8, 6, 1.09, 109.5, 60.0),
            (12, "H", 10, 8, 6, 1.09, 109.5, 180.0),
            (13, "H", 10, 8, 6, 1.09, 109.5, 300.0),
            (14, "H", 5, 3, 1, 1.09, 109.5, phi - cb_offset),
            (15, "C", 5, 3, 1, 1.53, 110.5, phi + cb_offset),
            (16, "H", 15, 5, 3, 1.09, 109.5, 60.0),
            (17, "H", 15, 5, 3, 1.09, 109.5, 180.0),
            (18, "H", 15, 5, 3, 1.09, 109.5, 300.0),
            (19, "H", 0, 1, 2, 1.09, 109.5, 0.0),
            (20, "H", 0, 1, 2, 1.09, 109.5, 120.0),
            (21, "H", 0, 1, 2, 1.09, 109.5, 240.0)]
    symbols = ["C", "C", "O"] + [z[1] for z in zmat]
    for i, _, c, b, a, r, ang, tor in zmat:
        x[i] = place(x[a], x[b], x[c], r, ang, tor)
    return Atoms(symbols, positions=[x[i] for i in range(22)])


def is_l_alanine(p):
    """CA is S (L-Ala): with HA away from the viewer, N -> C -> CB runs counterclockwise."""
    n, c, cb = p[3] - p[5], p[6] - p[5], p[15] - p[5]
    return n @ np.cross(c, cb) > 0


if __name__ == "__main__":
    atoms = build()
    if not is_l_alanine(atoms.positions):
        atoms = build(cb_offset=-120.0)
    assert is_l_alanine(atoms.positions)
    atoms.calc = NNPCalculator("ani-1x", dtype="float64")
    BFGS(atoms, logfile=None).run(fmax=0.01, steps=500)
    p = atoms.positions
    phi, psi = (np.degrees(dihedral(*(p[i] for i in t))) for t in ((1, 3, 5, 6), (3, 5, 6, 8)))
    print(f"E = {atoms.get_potential_energy():.4f} eV, phi = {phi:.1f}, psi = {psi:.1f} deg, L-Ala: {is_l_alanine(p)}")
    atoms.calc = None
    atoms.info = {"comment": "Ace-Ala-Nme, C7eq, relaxed with ANI-1x (build_structure.py)"}
    atoms.write(Path(__file__).resolve().parent / "ace_ala_nme.xyz", format="xyz", comment=atoms.info["comment"])
