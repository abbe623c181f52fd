"""ASE calculator for rung.nnp models: energy (eV), forces (eV/Angstrom), stress (eV/Angstrom^3).

Units are converted only here, through rung.core's :func:`~rung.core.potential.PotentialCalculator`
(CODATA 2018 factors from :mod:`rung.core.units`); the model itself works in Hartree and Angstrom.
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
    """
    from rung.core.potential import PotentialCalculator
    from rung.nnp.ani import ANIPotential, load_model

    pot = model if isinstance(model, ANIPotential) else load_model(model, member=member, dtype=dtype, backend=backend)
    return PotentialCalculator(pot, **kwargs)
