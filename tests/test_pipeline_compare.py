"""The pipeline's held-out comparison statistic (tools/pipeline/compare.py) on synthetic models and labels
whose truth is known: detection when the refit is truly better, no false alarms when it is not, and the
error bar's two parts against Monte Carlo over the label noise and over held-out sets."""

import numpy as np
import pytest

from tools.pipeline.compare import conformation_sentence, paired_conformation_improvement, paired_improvement, sentence


def _case(rng, n, k, err_a, err_b, noise, offset=0.0):
    """Truth t, model predictions with independent errors of rms err_a / err_b, labels t + noise."""
    t = rng.normal(scale=10.0, size=(n, k))
    a = t + rng.normal(scale=err_a, size=(n, k)) + offset
    b = t + rng.normal(scale=err_b, size=(n, k))
    q = t + rng.normal(scale=noise, size=(n, k))
    return a, b, q, np.full((n, k), noise)


@pytest.mark.parametrize("relative, n, k, err_a, err_b, noise", [(True, 20, 1, 7.0, 2.0, 1.5),
                                                                  (False, 8, 9, 26.0, 16.5, 5.0)])
def test_a_truly_better_refit_is_found_and_an_equal_one_is_not(relative, n, k, err_a, err_b, noise):
    """Energies (relative, one per conformation, 20 held out) and gradients (9 components, 8 held out):
    b clearly better than a is found beyond 2 sigma in >= 85% of 200 held-out sets (independent model
    errors: the hard case for a paired test); with b as good as a, z > 2 in at most 5% of them (one-sided
    2 sigma: 2.3% nominal; the error bar is conservative), and never when b is the worse one."""
    rng = np.random.default_rng(1)

    def found(ea, eb, trials):
        return [paired_improvement(*_case(rng, n, k, ea, eb, noise), relative=relative, n_boot=400,
                                   seed=i)["beyond_2sigma"] for i in range(trials)]

    assert np.mean(found(err_a, err_b, 200)) >= 0.85
    assert np.mean(found(err_a, err_a, 200)) <= 0.05
    assert not any(found(err_b, err_a, 50))


def test_label_noise_part_equals_monte_carlo_over_the_labels():
    """sigma_labels (exact propagation, D is linear in the labels) against the spread of D over 20000
    redraws of the labels within their (unequal) error bars, predictions held fixed; relative and not."""
    rng = np.random.default_rng(2)
    n, k = 6, 3
    t = rng.normal(scale=10.0, size=(n, k))
    a, b = t + rng.normal(scale=5.0, size=(n, k)), t + rng.normal(scale=2.0, size=(n, k))
    err = rng.uniform(0.5, 3.0, size=(n, k))
    q = t + rng.normal(size=(20000, n, k)) * err
    for relative in (False, True):
        ra, rb = a - q, b - q
        if relative:  # one offset per model over all entries
            ra, rb = ra - ra.mean(axis=(1, 2), keepdims=True), rb - rb.mean(axis=(1, 2), keepdims=True)
        d = np.mean(ra**2, axis=(1, 2)) - np.mean(rb**2, axis=(1, 2))
        c = paired_improvement(a, b, t, err, relative=relative, n_boot=10)
        assert c["sigma_labels"] == pytest.approx(np.std(d), rel=0.03)
        assert np.mean(d) == pytest.approx(c["delta"], abs=3 * np.std(d) / np.sqrt(d.size))  # unbiased


def test_bootstrap_part_matches_the_spread_over_held_out_sets():
    """Noise-free labels: sigma_boot^2, averaged over 300 held-out sets of 10, is within 25% of the
    variance of D over those sets (what the scaled bootstrap variance estimates without bias; a single
    sigma_boot of 10 heavy-tailed squared errors is often low, its mean here ~20% below)."""
    rng = np.random.default_rng(3)
    cs = [paired_improvement(*_case(rng, 10, 1, 6.0, 3.0, 0.0), relative=True, n_boot=1000, seed=i)
          for i in range(300)]
    spread = np.std([c["delta"] for c in cs])
    assert np.mean([c["sigma_boot"] ** 2 for c in cs]) == pytest.approx(spread**2, rel=0.25)
    assert all(c["sigma_labels"] == 0 for c in cs)


def test_relative_ignores_offsets_and_gain_is_the_rmse_difference():
    rng = np.random.default_rng(4)
    a, b, q, s = _case(rng, 7, 1, 6.0, 2.0, 1.0)
    c = paired_improvement(a, b, q, s, relative=True, seed=5)
    c2 = paired_improvement(a + 1234.5, b - 17.0, q, s, relative=True, seed=5)
    for key in ("delta", "sigma", "sigma_labels", "sigma_boot", "z"):
        assert c2[key] == pytest.approx(c[key], rel=1e-9, abs=1e-9)
    assert c["rmse_a"] == pytest.approx(np.std(a - q)) and c["rmse_b"] == pytest.approx(np.std(b - q))
    assert c["gain"] == pytest.approx(c["rmse_a"] - c["rmse_b"])
    assert c["gain"] / c["gain_sigma"] == pytest.approx(c["z"])
    assert "beats" in sentence(c, "base", "read-out", "relative energy", "mHa", 1.0)
    one = paired_improvement(np.r_[30.0, np.zeros(9)], np.zeros(10), np.zeros(10), np.zeros(10))
    assert one["top_share"] == pytest.approx(1.0) and one["z"] == pytest.approx(1.0, rel=0.05)  # one carries it: z ~ 1
    with pytest.raises(ValueError, match="one shape"):
        paired_improvement(a, b[:3], q, s)


def test_ragged_entries_by_conformation_equal_the_array_form():
    """Flat entries with a conformation index (molecules of different sizes) give what the (n_conf, k)
    form gives, bootstrap included (same seed); a conformation with more entries weighs more."""
    rng = np.random.default_rng(6)
    a, b, q, s = _case(rng, 6, 9, 5.0, 3.0, 2.0)
    c = paired_improvement(a, b, q, s, seed=3)
    conf = np.repeat(np.arange(6), 9)
    perm = rng.permutation(conf.size)  # entry order does not matter
    flat = paired_improvement(a.ravel()[perm], b.ravel()[perm], q.ravel()[perm], s.ravel()[perm], conf[perm] * 10,
                              seed=3)
    for key in ("delta", "sigma", "sigma_labels", "sigma_boot", "rmse_a", "rmse_b"):
        assert flat[key] == pytest.approx(c[key], rel=1e-12)
    with pytest.raises(ValueError, match="conf has"):
        paired_improvement(a.ravel(), b.ravel(), q.ravel(), s.ravel(), conf[:5])


def test_per_conformation_statistic_by_hand():
    """The tail-robust statistic on a hand case, noise-free labels: gain = mean_i (e_a,i - e_b,i) with e the
    per-conformation rms of the residuals (|r| for one entry), offsets removed first with ``relative``;
    no label part; swapping the models flips the gain; the sentence says which model wins."""
    q = np.array([[0.0, 1.0], [2.0, -1.0], [1.0, 1.0]])
    a = q + np.array([[3.0, 4.0], [0.0, 0.0], [1.0, -1.0]])
    b = q + np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    c = paired_conformation_improvement(a, b, q, np.zeros_like(q), n_boot=50)
    ea, eb = np.array([np.sqrt(12.5), 0.0, 1.0]), np.array([np.sqrt(0.5), 1.0, 0.0])
    assert c["gain"] == pytest.approx(np.mean(ea - eb)) and c["sigma_labels"] == 0
    assert c["mean_a"] == pytest.approx(ea.mean()) and c["n_better"] == 2
    assert c["top_share"] == pytest.approx((ea - eb).max() / (ea - eb).sum())
    e_q, e_a, e_b = np.array([1.0, 2.0, 4.0]), np.array([1.5, 2.5, 5.5]), np.array([7.0, 8.0, 10.0])
    r = paired_conformation_improvement(e_a, e_b, e_q, np.zeros(3), relative=True, n_boot=50)
    # a's residuals 0.5, 0.5, 1.5 -> minus 5/6; b's 6, 6, 6 -> 0
    assert r["gain"] == pytest.approx(np.mean(np.abs(np.array([0.5, 0.5, 1.5]) - 5.0 / 6.0)))
    assert r["mean_b"] == pytest.approx(0.0, abs=1e-12)
    assert "read-out beats base" in conformation_sentence(r, "base", "read-out", "relative energy", "mHa", 1.0)
    worse = paired_conformation_improvement(e_b, e_a, e_q, np.zeros(3), relative=True, n_boot=50)
    assert worse["gain"] == pytest.approx(-r["gain"])
    assert "does not beat" in conformation_sentence(worse, "base", "read-out", "relative energy", "mHa", 1.0)


@pytest.mark.parametrize("relative, n, k, err_a, err_b, noise", [(True, 20, 1, 7.0, 2.0, 1.5),
                                                                  (False, 8, 9, 26.0, 16.5, 5.0)])
def test_per_conformation_statistic_finds_a_better_refit_and_no_false_alarms(relative, n, k, err_a, err_b, noise):
    """As for the squared-error statistic: b better than a found beyond 2 sigma in >= 85% of 100 held-out
    sets; b as good as a: z > 2 in at most 5% (2.3% nominal) of 200; b worse: never."""
    rng = np.random.default_rng(11)

    def found(ea, eb, trials):
        return [paired_conformation_improvement(*_case(rng, n, k, ea, eb, noise), relative=relative, n_boot=300,
                                                n_labels=100, seed=i)["beyond_2sigma"] for i in range(trials)]

    assert np.mean(found(err_a, err_b, 100)) >= 0.85
    assert np.mean(found(err_a, err_a, 200)) <= 0.05
    assert not any(found(err_b, err_a, 50))


def test_per_conformation_statistic_is_not_carried_by_one_conformation():
    """A refit better on every one of 20 conformations (gradient-like errors 5 -> 2, random signs) whose
    base model is also far off on one (30): the squared-error statistic is dominated by that one
    conformation (69% of D, z ~ 1.5), the per-conformation statistic is not (33% of the gain, z ~ 3.5)."""
    rng = np.random.default_rng(12)
    sign = lambda: rng.choice([-1.0, 1.0], size=20)  # noqa: E731
    a = 5.0 * sign()
    a[3] = 30.0
    b, q, s = 2.0 * sign(), np.zeros(20), np.full(20, 0.5)
    sq = paired_improvement(a, b, q, s, seed=1)
    pc = paired_conformation_improvement(a, b, q, s, seed=1)
    assert sq["top_share"] > 0.6 and sq["z"] < 2
    assert pc["z"] > 3 and pc["top_share"] < 0.4 and pc["n_better"] == 20


def test_per_conformation_label_part_against_monte_carlo_and_ragged_form():
    """sigma_labels against an independent Monte Carlo over 4000 label redraws (gradient-like, no
    offsets); flat entries with a conformation index equal the array form (same seed)."""
    rng = np.random.default_rng(13)
    a, b, q, s = _case(rng, 6, 9, 5.0, 3.0, 2.0)
    c = paired_conformation_improvement(a, b, q, s, seed=3, n_labels=2000)
    qs = q + s * rng.normal(size=(4000,) + q.shape)
    g = (np.sqrt(((a - qs) ** 2).mean(-1)) - np.sqrt(((b - qs) ** 2).mean(-1))).mean(-1)
    assert c["sigma_labels"] == pytest.approx(np.std(g), rel=0.1)
    conf = np.repeat(np.arange(6), 9)
    perm = rng.permutation(conf.size)
    flat = paired_conformation_improvement(a.ravel()[perm], b.ravel()[perm], q.ravel()[perm], s.ravel()[perm],
                                           conf[perm] * 10, seed=3, n_labels=2000)
    for key in ("gain", "sigma_boot", "mean_a", "mean_b", "n_better"):
        assert flat[key] == pytest.approx(c[key], rel=1e-12)
