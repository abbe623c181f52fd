"""The ladder step on water without the DFT rung's files (it builds its own RHF Hamiltonian)."""

import numpy as np


def test_ladder_step_writes_wavefunction_and_energies(tmp_path):
    from ase.collections import g2

    from rung.core.dataset import Molecule, create_dataset, read_property
    from rung.core.units import ANGSTROM_TO_BOHR
    from rung.sci.ladder import step
    from rung.sci.multidet import read_multidet

    atoms = g2["H2O"]
    ds = create_dataset(tmp_path / "water.h5",
                        [Molecule("water", atoms.numbers, atoms.positions[None] * ANGSTROM_TO_BOHR, smiles="O")])
    line = step(tmp_path, ds, "water")
    assert line.startswith("E_var = ") and "n_det = " in line and "(deterministic, heat-bath screened at 1e-08 Ha PT2)" in line  # FCI space 8855^2 > pt2.DENSE_KEYS
    md = read_multidet(tmp_path / "water.sci.h5")
    assert md.ndet >= 1000 and md.nstate == 23  # ccECP removes the O 1s: 23 orbitals, 4+4 electrons
    assert md.occupations(0) == ([0, 1, 2, 3], [0, 1, 2, 3])
    e_var = read_property(ds, "water", "sci_variational_energy")[0][0]
    e_tot = read_property(ds, "water", "sci_total_energy")[0][0]
    assert e_tot < e_var < -17.0 and np.isfinite(e_tot)
