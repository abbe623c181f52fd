"""Is one model better than another on the held-out conformations, beyond the noise of the labels and of
the small held-out set?

The statistic is the paired difference of squared errors, per held-out conformation, of model a (e.g.
the base model) and model b (the refit) against the same labels q::

    d_i = mean_k [(a_ik - q_ik)^2 - (b_ik - q_ik)^2]        D = mean_i d_i = MSE_a - MSE_b

(k runs over one energy, or the 3 n_atoms gradient components, of conformation i; D is the mean over
all N terms). With ``relative`` each model's mean offset over the held-out set is removed first (energies of an all-electron model
against a valence-only QMC rung), as in the report's relative RMSE. D > 0: b is better. Its error bar
has two parts, added in quadrature:

- the labels' noise, propagated exactly: D is linear in q (the q^2 terms cancel in the difference), with
  dD/dq_ik = -2 (a_ik - b_ik)~ / N, where ~ removes the mean over the held-out set when ``relative`` and
  N is the number of terms in the mean; so ``sigma_labels^2 = sum_ik (2 (a - b)~_ik / N)^2 err_ik^2``
  (label errors taken as independent);
- the finite held-out set: a bootstrap over conformations (the components of one conformation stay
  together; the offsets are removed again in each replicate), its standard deviation scaled by
  sqrt(n / (n - 1)) (the bootstrap's small-sample bias of the variance). Its variance is unbiased, but
  squared errors are heavy-tailed: with ~10 conformations a single sigma_boot is often low (on average
  ~20% in the tests' synthetic case), so z is optimistic there unless the label part makes up for it.

The bootstrap replicates already carry the label noise once (it is in every d_i), so the sum counts it
twice: the error bar is conservative (at most sqrt(2) too large where the label noise dominates).

In RMSE terms, ``gain = RMSE_a - RMSE_b = D / (RMSE_a + RMSE_b)`` exactly; its error bar is
sigma / (RMSE_a + RMSE_b) (the denominator held fixed), so gain / gain_sigma = D / sigma = z.
"""

from __future__ import annotations

import numpy as np


def _flat(pred_a, pred_b, ref, ref_err, conf):
    """The comparisons' inputs checked and flattened: (a, b, q, s) (m,) float64, conf (m,) in 0..n-1, n."""
    a, b, q, s = (np.asarray(v, np.float64) for v in (pred_a, pred_b, ref, ref_err))
    if not a.shape == b.shape == q.shape == s.shape or a.ndim == 0:
        raise ValueError(f"predictions, labels and errors need one shape, got {a.shape}, {b.shape}, {q.shape}, {s.shape}")
    if conf is None:
        conf = np.repeat(np.arange(a.shape[0]), a[0].size)
    a, b, q, s = a.ravel(), b.ravel(), q.ravel(), s.ravel()
    _, conf = np.unique(np.asarray(conf).ravel(), return_inverse=True)
    if conf.size != a.size:
        raise ValueError(f"conf has {conf.size} entries, the inputs {a.size}")
    n = int(conf.max()) + 1
    if n < 2:
        raise ValueError("need at least 2 conformations")
    return a, b, q, s, conf, n


def _resample_weights(n: int, n_boot: int, rng) -> np.ndarray:
    """A bootstrap over n conformations: each replicate's multiplicities, (n_boot, n) float64."""
    W = np.zeros((n_boot, n))
    np.add.at(W, (np.repeat(np.arange(n_boot), n), rng.integers(n, size=n_boot * n)), 1.0)
    return W


def _verdict(c: dict) -> tuple:
    """("beats" or "does not beat", "beyond 2 sigma" or "not beyond 2 sigma") of a comparison's dict."""
    return ("beats" if c["gain"] > 0 else "does not beat",
            "beyond 2 sigma" if c["beyond_2sigma"] else "not beyond 2 sigma")


def paired_improvement(pred_a, pred_b, ref, ref_err, conf=None, *, relative: bool = False, n_boot: int = 4000,
                       seed: int = 0) -> dict:
    """How much model b beats model a against noisy labels, with an error bar (see the module).

    Parameters
    ----------
    pred_a, pred_b : (n_conf, ...) float64 arrays (any one unit), the two models' predictions; or flat
        (m,) arrays with ``conf``
    ref, ref_err : same shape, float64, the labels and their one-sigma errors (same unit)
    conf : (m,) int, the conformation of each entry of flat inputs (e.g. gradient components of molecules
        of different sizes); None: the leading axis
    relative : remove each model's mean offset over all entries first (energies)
    n_boot : bootstrap replicates; seed : their random stream

    Returns
    -------
    dict of floats (the unit of the inputs, squared for ``delta`` and the ``sigma*`` entries): ``n_conf``;
    ``rmse_a``, ``rmse_b``; ``delta`` (MSE_a - MSE_b); ``sigma`` (total), ``sigma_labels``, ``sigma_boot``;
    ``z`` (delta / sigma); ``gain`` (RMSE_a - RMSE_b) and ``gain_sigma`` (the inputs' unit);
    ``beyond_2sigma`` (bool, z > 2); ``top_share``: the part of delta from the one conformation that
    contributes most (1: all of it; squared errors are heavy-tailed, and where one conformation carries
    the difference the bootstrap's z is near 1 whatever its size).
    """
    a, b, q, s, conf, n = _flat(pred_a, pred_b, ref, ref_err, conf)
    ra, rb = a - q, b - q
    diff = a - b
    if relative:
        ra, rb, diff = ra - ra.mean(), rb - rb.mean(), diff - diff.mean()
    mse_a, mse_b = float(np.mean(ra**2)), float(np.mean(rb**2))
    delta = mse_a - mse_b
    per_conf = np.bincount(conf, weights=ra**2 - rb**2, minlength=n) / a.size  # sums to delta
    top = float(per_conf[np.argmax(np.abs(per_conf))])
    sigma_labels = float(2.0 / a.size * np.sqrt(np.sum(diff**2 * s**2)))
    # bootstrap over conformations: per-conformation sums, a replicate's multiplicities W (n_boot, n_conf)
    W = _resample_weights(n, n_boot, np.random.default_rng(seed))
    sums = lambda v: np.bincount(conf, weights=v, minlength=n)  # noqa: E731
    count = W @ sums(np.ones_like(a))
    reps = np.zeros(n_boot)
    for r, sign in ((a - q, 1.0), (b - q, -1.0)):
        mse = (W @ sums(r**2)) / count
        if relative:
            mse -= ((W @ sums(r)) / count) ** 2
        reps += sign * mse
    sigma_boot = float(np.std(reps) * np.sqrt(n / (n - 1)))
    sigma = float(np.hypot(sigma_labels, sigma_boot))
    scale = np.sqrt(mse_a) + np.sqrt(mse_b)
    z = delta / sigma if sigma > 0 else (np.inf if delta > 0 else 0.0)
    return {"n_conf": n, "rmse_a": float(np.sqrt(mse_a)), "rmse_b": float(np.sqrt(mse_b)), "delta": delta,
            "sigma": sigma, "sigma_labels": sigma_labels, "sigma_boot": sigma_boot, "z": float(z),
            "gain": float(delta / scale) if scale > 0 else 0.0,
            "gain_sigma": float(sigma / scale) if scale > 0 else 0.0, "beyond_2sigma": bool(z > 2),
            "top_share": top / delta if delta != 0 else 0.0}


def paired_conformation_improvement(pred_a, pred_b, ref, ref_err, conf=None, *, relative: bool = False,
                                    n_boot: int = 4000, n_labels: int = 400, seed: int = 0) -> dict:
    """The tail-robust companion of :func:`paired_improvement`: per held-out conformation i the error of
    each model is e_i = sqrt(mean_k r_ik^2) over its entries (|r_i| for one energy; the rms over the
    gradient components), and the statistic is the mean over conformations of e_a,i - e_b,i (linear, not
    quadratic, in the errors, so one strongly distorted conformation weighs less). ``relative`` removes
    each model's mean offset over the held-out set first (again in every replicate).

    Error bar: the finite held-out set by a bootstrap over conformations (scaled by sqrt(n / (n - 1))),
    the labels' noise by ``n_labels`` Monte Carlo redraws of the labels within their error bars (the
    statistic is not linear in them), added in quadrature. Label noise shrinks the gain towards zero
    (E|x + noise| - E|y + noise| has the sign of |x| - |y| and a smaller size), so it is conservative.

    Same inputs as :func:`paired_improvement`; returns a dict (inputs' unit): ``n_conf``, ``mean_a``,
    ``mean_b`` (mean per-conformation error), ``gain`` (mean_a - mean_b), ``gain_sigma``, ``sigma_boot``,
    ``sigma_labels``, ``z``, ``beyond_2sigma`` (z > 2), ``top_share`` (the largest conformation's part of
    the gain), ``n_better`` (conformations where b's error is the smaller).
    """
    a, b, q, s, conf, n = _flat(pred_a, pred_b, ref, ref_err, conf)
    rng = np.random.default_rng(seed)
    onehot = np.zeros((a.size, n))
    onehot[np.arange(a.size), conf] = 1.0

    def per_conf(r, w=None):
        """(..., n) per-conformation errors of residuals r (..., m); with ``relative`` the mean offset is
        removed first, over the conformations' multiplicities w (a bootstrap replicate's) or all once."""
        if relative:
            we = np.ones(a.size) if w is None else w @ onehot.T  # per-entry weights
            r = r - (we * r).sum(-1, keepdims=True) / we.sum(-1, keepdims=True)
        return np.sqrt((r**2 @ onehot) / onehot.sum(0))

    ea, eb = per_conf(a - q), per_conf(b - q)
    d = ea - eb
    gain = float(d.mean())
    W = _resample_weights(n, n_boot, rng)
    if relative:  # each replicate's offsets from its own conformations
        reps = np.einsum("bn,bn->b", W, per_conf(a - q, W) - per_conf(b - q, W)) / n
    else:
        reps = W @ d / n
    sigma_boot = float(np.std(reps) * np.sqrt(n / (n - 1)))
    qs = q + s * rng.normal(size=(n_labels, q.size))
    sigma_labels = float(np.std((per_conf(a - qs) - per_conf(b - qs)).mean(-1))) if np.any(s > 0) else 0.0
    sigma = float(np.hypot(sigma_boot, sigma_labels))
    z = gain / sigma if sigma > 0 else (np.inf if gain > 0 else 0.0)
    return {"n_conf": n, "mean_a": float(ea.mean()), "mean_b": float(eb.mean()),
            "gain": gain, "gain_sigma": sigma, "sigma_boot": sigma_boot, "sigma_labels": sigma_labels,
            "z": float(z), "beyond_2sigma": bool(z > 2), "top_share": float(d.max() / d.sum()) if d.sum() else 0.0,
            "n_better": int(np.sum(d > 0))}


def sentence(c: dict, a: str, b: str, what: str, unit: str, factor: float = 1e3) -> str:
    """One line of the report: "<b> beats <a>: by X +- Y <unit> in <what> RMSE (ra -> rb ...; z = ...: beyond
    2 sigma or not; the top conformation's share)"
    from :func:`paired_improvement`'s dict; ``factor`` converts the inputs' unit into ``unit``."""
    verb, verdict = _verdict(c)
    return (f"{b} {verb} {a}: by {c['gain'] * factor:+.2f} +- {c['gain_sigma'] * factor:.2f} {unit} in {what} RMSE "
            f"({c['rmse_a'] * factor:.2f} -> {c['rmse_b'] * factor:.2f} on {c['n_conf']} conformations; "
            f"z = {c['z']:.1f}: {verdict}; {c['top_share'] * 100:.0f}% of the MSE difference from one conformation)")


def conformation_sentence(c: dict, a: str, b: str, what: str, unit: str, factor: float = 1e3) -> str:
    """One line of the report from :func:`paired_conformation_improvement`'s dict (as :func:`sentence`)."""
    verb, verdict = _verdict(c)
    return (f"{b} {verb} {a}: by {c['gain'] * factor:+.2f} +- {c['gain_sigma'] * factor:.2f} {unit} in mean "
            f"per-conformation {what} error ({c['mean_a'] * factor:.2f} -> {c['mean_b'] * factor:.2f}, smaller "
            f"in {c['n_better']} of {c['n_conf']} conformations; z = {c['z']:.1f}: {verdict}; "
            f"{c['top_share'] * 100:.0f}% of the gain from one conformation)")
