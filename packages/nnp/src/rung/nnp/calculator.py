"""ASE calculator for rung.nnp models: energy (eV), forces (eV/Angstrom), stress (eV/Angstrom^3).

Units are converted only here, by rung.core's :func:`~rung.core.potential.PotentialCalculator` with
ASE's own factors (:mod:`ase.units`, CODATA 2014), not rung.core's CODATA 2018 table: then
``atoms.get_potential_energy() / ase.units.Hartree`` is the model's Hartree to rounding (with
rung.core's factor a 648-atom water box would be off by about 1e-4 Hartree). The model itself works
in Hartree and Angstrom.

Besides the ASE properties, ``calc.results`` holds the ensemble's

- ``energy_members`` : (n_members,) float64, eV, each network's energy (the energy is their mean);
- ``energy_spread`` : float, eV, their sample standard deviation (ddof=1; 0 for one network).
"""

from __future__ import annotations


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
    from rung.core.potential import PotentialCalculator
    from rung.nnp.ani import ANIPotential, load_model

    pot = model if isinstance(model, ANIPotential) else load_model(model, member=member, dtype=dtype, backend=backend)
    return PotentialCalculator(pot, **kwargs)
