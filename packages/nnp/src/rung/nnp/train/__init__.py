"""Training ANI models on a rung's energies and forces (``nnp train config.toml``).

Public names::

    from rung.nnp.train import load_config, train, refit, Labels
    result = train(load_config("refit.toml"))      # stages, log, model file with provenance
    fit = refit(model, labels, l2sp=1.0)            # the exact read-out refit alone (an ANIModel in, one out)

Modules: ``config`` (the TOML input, stages and their inheritance), ``data`` (labels from rung
datasets, the seeded split, 1/sigma^2 weights), ``readout`` (the exact last-layer refit), ``gradient``
(fine-tuning of any layers with jax + optax: the optional ``[train]`` extra), ``jaxani`` (the ANI
model in JAX, the gradient solver's forward pass), ``losses`` (mse, mae, log-cosh, nll, crps),
``plots`` (learning curve, parity; matplotlib), ``run`` (the stages, errors before/after, log,
checkpoints, provenance). Only ``gradient``, ``jaxani`` and ``losses`` import jax, and only when a
gradient stage runs: inference never needs it.
"""

__all__ = ["Labels", "TrainInputError", "load_config", "refit", "train"]


def __getattr__(name):
    if name in ("load_config", "TrainInputError"):
        from rung.nnp.train import config

        return getattr(config, name)
    if name in ("refit", "Labels"):
        from rung.nnp.train import readout

        return getattr(readout, name)
    if name == "train":
        from rung.nnp.train.run import train

        return train
    raise AttributeError(f"module 'rung.nnp.train' has no attribute {name!r}")
