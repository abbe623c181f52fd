"""Loss types of the gradient solver, per labelled value (an energy or one force component).

With the residual ``r = prediction - label``, the label's 1-sigma error bar ``sigma`` (floored, or the
stage's default; see :mod:`rung.nnp.train.data`), the component's factor ``alpha``
(``energy_weight`` / ``forces_weight``) and ``z = r / sigma``, a row adds ``alpha * rho(...)``::

    mse       z^2                                   (= alpha r^2 / sigma^2: the read-out refit's chi^2)
    mae       |z|
    log-cosh  log cosh z                            (quadratic near 0, linear in the tails)
    nll       z^2 sigma^2 / v + log(v / sigma^2)    Gaussian negative log-likelihood x 2, up to a constant,
    crps      sqrt(v) / sigma * crps_N(r / sqrt(v)) with v = sigma^2 + s^2 (below)

``nll`` and ``crps`` take the predictive variance ``v = sigma^2 + s^2``: the label's own error bar
plus a model error ``s`` learned with the weights, one per component (energy, forces), stored as
``log s`` (initial s: the stage's ``energy_sigma`` / ``gradient_sigma``). The Gaussian CRPS is
``crps_N(y) = y (2 Phi(y) - 1) + 2 phi(y) - 1/sqrt(pi)`` (Gneiting & Raftery, JASA 102, 359 (2007);
the proper score FeNNol offers for ensembles); with these scalings every type is dimensionless and
mse reproduces the read-out refit's loss exactly.
"""

from __future__ import annotations

import numpy as np

LOSSES = ("mse", "mae", "log-cosh", "nll", "crps")
VARIANCE_LOSSES = ("nll", "crps")


def rho(kind: str, r, sigma, log_s=None):
    """Per-row loss of residuals ``r`` with error bars ``sigma`` (same shape); jax.numpy or NumPy.

    log_s : scalar, log of the model error s (``nll``/``crps`` only), in the unit of r.
    """
    xp = _xp(r)
    if kind == "mse":
        z = r / sigma
        return z * z
    if kind == "mae":
        return xp.abs(r / sigma)
    if kind == "log-cosh":
        a = xp.abs(r / sigma)
        return a + xp.log1p(xp.exp(-2.0 * a)) - np.log(2.0)
    v = sigma * sigma + xp.exp(2.0 * log_s)
    if kind == "nll":
        return r * r / v + xp.log(v / (sigma * sigma))
    if kind == "crps":
        sd = xp.sqrt(v)
        y = r / sd
        return sd / sigma * (y * _erf(xp, y / np.sqrt(2.0)) + np.sqrt(2.0 / np.pi) * xp.exp(-0.5 * y * y)
                             - 1.0 / np.sqrt(np.pi))
    raise ValueError(f"unknown loss {kind!r}; use one of {list(LOSSES)}")


def _xp(a):
    if isinstance(a, np.ndarray | np.generic | float):
        return np
    import jax.numpy as jnp

    return jnp


def _erf(xp, a):
    if xp is np:
        from math import erf

        return np.vectorize(erf)(a)
    import jax.scipy.special as jss

    return jss.erf(a)
