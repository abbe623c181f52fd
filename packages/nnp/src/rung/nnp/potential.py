"""The ``nnp`` potential type of rung's potential registry (:mod:`rung.core.potential`).

``potential = {type = "nnp", model = "ani-1x", member = 0, dtype = "float32", backend = "auto"}`` in an
``nnp-md`` input builds :func:`rung.nnp.load_model` (energies in Hartree, lengths in Angstrom, as the
model declares). Registered through the ``rung.potentials`` entry point of this package's pyproject.
"""

from __future__ import annotations

from rung.core.potential import check_options


def nnp_potential(options: dict, **context):
    """An ANI model from an input entry's options (``model``, ``member``, ``dtype``, ``backend``).

    Raises :class:`~rung.core.errors.InputError` for an unknown option or an engine that cannot be
    imported (as :func:`rung.core.potential.load_attr` does when rung.nnp is absent), and
    ``RuntimeError`` when the model's weights are missing or unreadable.
    """
    from rung.core.errors import InputError

    check_options("nnp", options, ("model", "member", "dtype", "backend"))
    try:
        from rung.nnp import load_model
    except ImportError as err:  # rung.nnp present only in part (a dependency missing)
        raise InputError(f"potential type 'nnp' needs the rung.nnp engine (rung-nnp with load_model), "
                         f"which is not importable here: {err}") from err

    model = options.get("model", "ani-1x")
    try:
        return load_model(model, **{k: options[k] for k in ("member", "dtype", "backend") if k in options})
    except OSError as err:  # weights missing (rung.nnp.fetch.WeightsMissing) or unreadable
        raise RuntimeError(f"nnp model {model!r} could not be loaded: {err}") from err


__all__ = ["nnp_potential"]
