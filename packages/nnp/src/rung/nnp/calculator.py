"""ASE calculator for rung.nnp models: energy (eV), forces (eV/Angstrom), stress (eV/Angstrom^3).

Units are converted only here, with ASE's own factors (:mod:`ase.units`, CODATA 2014, through
:func:`rung.core.potential.ase_unit_factors`), not rung.core's CODATA 2018 table: then
``atoms.get_potential_energy() / ase.units.Hartree`` is the model's Hartree to rounding (with
rung.core's factor a 648-atom water box would be off by about 1e-4 Hartree). The model itself works
in Hartree and Angstrom.

Besides the ASE properties, ``calc.results`` holds the ensemble's

- ``energy_members`` : (n_members,) float64, eV, each network's energy (the energy is their mean);
- ``energy_spread`` : float, eV, their sample standard deviation (ddof=1; 0 for one network).
"""

from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


class _NNPCalc(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress", "energy_members", "energy_spread"]

    def __init__(self, potential, **kwargs):
        from rung.core.potential import ase_unit_factors

        super().__init__(**kwargs)
        self.potential = potential
        self._e, self._l = ase_unit_factors(potential.energy_unit, potential.length_unit)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        periodic = bool(np.any(self.atoms.pbc))
        if periodic and not np.all(self.atoms.pbc):
            raise ValueError("mixed periodic/open boundaries are not supported; set pbc all True or all False")
        cell = np.asarray(self.atoms.cell) * self._l if periodic else None
        r = self.potential.evaluate(self.atoms.positions * self._l, self.atoms.numbers, cell=cell,
                                    forces=True, virial=periodic)
        e = float(r.energy[0]) * self._e
        self.results = {"energy": e, "free_energy": e, "forces": np.asarray(r.forces) * (self._e * self._l),
                        "energy_members": np.asarray(r.energy_members)[:, 0] * self._e,
                        "energy_spread": float(r.spread[0]) * self._e}
        if periodic:
            from ase.stress import full_3x3_to_voigt_6_stress

            w = np.asarray(r.virial[0]) * self._e  # (3, 3) eV
            self.results["stress"] = full_3x3_to_voigt_6_stress(-w / self.atoms.get_volume())


def NNPCalculator(model="ani-1x", *, member: int | None = None, dtype="float64", backend: str = "auto", **kwargs):
    """An ASE ``Calculator`` for an ANI model.

    Parameters
    ----------
    model : a name ("ani-1x"), a model file or NeuroChem folder (see :func:`rung.nnp.load_model`), or an
        already loaded :class:`rung.nnp.ani.ANIPotential`
    member : one ensemble member (0-based), None for the ensemble mean
    dtype : precision of the networks; float64 by default here (geometry optimisation, vibrations)

    ``calc.results["energy_spread"]`` (eV) and ``calc.results["energy_members"]`` ((n_members,) eV)
    come with every energy.
    """
    from rung.nnp.ani import ANIPotential, load_model

    pot = model if isinstance(model, ANIPotential) else load_model(model, member=member, dtype=dtype, backend=backend)
    return _NNPCalc(pot, **kwargs)
