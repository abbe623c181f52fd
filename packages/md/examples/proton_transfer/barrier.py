"""Malonaldehyde (C3H4O2) with ANI-1x: the C_s minimum, the C_2v proton-transfer saddle, the barrier.

    python barrier.py          # writes malonaldehyde.xyz (the C_s minimum) and barrier.txt here; seconds

Both structures are built here from a planar sketch (Angstrom), not taken from elsewhere. The saddle
is a minimum within the C_2v subspace: the energy is minimised over mirror-symmetrised positions (the
mirror x -> -x exchanges O1/O2, C1/C3, H1/H3; C2, its H and the shared proton lie on the axis), then
the Hessian (finite differences of ANI-1x forces) is checked for exactly one imaginary mode. The
minimum: unconstrained BFGS from the sketch with the proton moved to O1.

Reference: electronic barrier 4.1 kcal/mol, the saddle of the CCSD(T) (near basis-set limit) surface of
Wang, Braams, Bowman, Carter and Tew, J. Chem. Phys. 128, 224314 (2008).
"""

from pathlib import Path

import numpy as np
from ase import Atoms
from ase.optimize import BFGS
from ase.units import kcal, mol
from ase.vibrations import VibrationsData
from scipy.optimize import minimize

from rung.nnp import NNPCalculator

SYMBOLS = ["O", "C", "C", "C", "O", "H", "H", "H", "H"]  # O1 C1 C2 C3 O2 H(shared) H1 H2 H3
SKETCH = np.array([[-1.25, 2.00, 0.0], [-1.20, 0.70, 0.0], [0.00, 0.00, 0.0], [1.20, 0.70, 0.0],
                   [1.25, 2.00, 0.0], [0.00, 2.40, 0.0], [-2.15, 0.15, 0.0], [0.00, -1.08, 0.0],
                   [2.15, 0.15, 0.0]])
MIRROR = [4, 3, 2, 1, 0, 5, 8, 7, 6]  # atom -> its image under x -> -x


def symmetrise(x):
    """Average of x (n, 3) and its mirror image: the projection onto C_2v-symmetric positions."""
    m = x[MIRROR] * np.array([-1.0, 1.0, 1.0])
    return 0.5 * (x + m)


def c2v_saddle(calc):
    atoms = Atoms(SYMBOLS, positions=SKETCH, calculator=calc)

    def energy_and_gradient(flat):
        atoms.positions = symmetrise(flat.reshape(-1, 3))
        e = atoms.get_potential_energy()
        return e, -symmetrise(atoms.get_forces()).ravel()

    res = minimize(energy_and_gradient, SKETCH.ravel(), jac=True, method="L-BFGS-B",
                   options={"gtol": 1e-5, "maxiter": 2000})
    atoms.positions = symmetrise(res.x.reshape(-1, 3))
    return atoms


def hessian_frequencies_cm(atoms, h=1e-3):
    """Harmonic wavenumbers (cm^-1; imaginary as negative) from central differences of the forces."""
    x0 = atoms.positions.copy()
    n = len(atoms)
    hess = np.zeros((3 * n, 3 * n))
    for k in range(3 * n):
        for s in (1, -1):
            x = x0.copy()
            x.flat[k] += s * h
            atoms.positions = x
            hess[k] -= s * atoms.get_forces().ravel() / (2 * h)
    atoms.positions = x0
    hess = 0.5 * (hess + hess.T)
    e = VibrationsData(atoms, hess.reshape(n, 3, n, 3)).get_energies()  # eV, complex for imaginary modes
    return np.where(np.abs(e.imag) > np.abs(e.real), -np.abs(e.imag), e.real) / 1.2398419843320026e-4


def main():
    calc = NNPCalculator("ani-1x", dtype="float64")
    ts = c2v_saddle(calc)
    e_ts = ts.get_potential_energy()
    f_ts = hessian_frequencies_cm(ts)

    start = SKETCH.copy()
    start[5] = [-0.35, 2.45, 0.0]
    start[:, 2] += 0.02 * np.sin(np.arange(len(start)))  # leave the plane: let BFGS find any lower minimum
    mn = Atoms(SYMBOLS, positions=start, calculator=calc)
    BFGS(mn, logfile=None).run(fmax=1e-3, steps=2000)
    e_min = mn.get_potential_energy()
    f_min = hessian_frequencies_cm(mn)

    def d(a, i, j):
        return a.get_distance(i, j)

    barrier = (e_ts - e_min) / (kcal / mol)
    members = []  # the same two structures with each network of the ensemble alone
    for k in range(8):
        c = NNPCalculator("ani-1x", member=k, dtype="float64")
        members.append((c.get_potential_energy(ts) - c.get_potential_energy(mn)) / (kcal / mol))
    lines = [f"ANI-1x (8-member ensemble mean, float64) malonaldehyde, proton transfer O1-H...O2",
             f"C_s minimum:  E = {e_min:.5f} eV, O-H {d(mn, 0, 5):.3f} A, H...O {d(mn, 4, 5):.3f} A, "
             f"O...O {d(mn, 0, 4):.3f} A, lowest frequencies {np.round(np.sort(f_min)[6:9], 0)} cm^-1",
             f"C_2v saddle:  E = {e_ts:.5f} eV, O-H {d(ts, 0, 5):.3f} A (both), O...O {d(ts, 0, 4):.3f} A, "
             f"imaginary modes: {int(np.sum(f_ts < -50))} ({np.round(np.sort(f_ts)[0], 0)} cm^-1)",
             f"barrier: {barrier:.2f} kcal/mol (reference: 4.1 kcal/mol, CCSD(T) surface of Wang et al., "
             "J. Chem. Phys. 128, 224314 (2008))",
             f"barrier of each ensemble member: {' '.join(f'{b:.2f}' for b in members)} kcal/mol"]
    print("\n".join(lines))
    here = Path(__file__).resolve().parent
    with open(here / "barrier.txt", "w") as fh:
        fh.write("\n".join(lines) + "\n")
    mn.calc = None
    mn.write(here / "malonaldehyde.xyz", format="xyz", comment="malonaldehyde C_s minimum, relaxed with ANI-1x (barrier.py)")


if __name__ == "__main__":
    main()
