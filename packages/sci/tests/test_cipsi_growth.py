"""CIPSI's growth near the budget: ``min_last_step`` (no short last step) and its checkpoint resume.

H2O/6-31G, growth 2, no PT2 stop, ``max_det`` 3000: the plain growth goes ... 681 -> 2505 and would end
with a step cut to 495 determinants (< 0.5 x a whole one of 2505), so with ``min_last_step`` 0.5 the
growth from 681 goes straight to the budget. The expectations are derived from the plain run's sizes.
"""

import numpy as np
import pytest

from rung.sci import cipsi

PLAIN = dict(max_det=3000, pt2_threshold=0.0, growth=2.0, min_last_step=0.0)


def _sizes(r):
    return [h["n_det"] for h in r.history]


def _short_step_at(plain: cipsi.CIPSIResult, s: float) -> int | None:
    """The first iteration k of a plain run whose whole growth (to n' = the next size, below max_det)
    leaves room for a last step of less than s (growth - 1) n': where the rule goes to the budget."""
    cfg, sizes = PLAIN, _sizes(plain)
    for k in range(len(sizes) - 1):
        n_next = sizes[k + 1]
        if plain.history[k]["capped"] or n_next >= cfg["max_det"]:
            return None
        if cfg["max_det"] - n_next < s * (cfg["growth"] - 1.0) * n_next:
            return k
    return None


@pytest.fixture(scope="module")
def plain(h2o):
    return cipsi.kernel(h2o, cipsi.CIPSIConfig(**PLAIN), log=None)


def test_short_last_step_goes_straight_to_the_budget(h2o, plain):
    """With min_last_step 0.5 the run is the plain one (bit for bit) up to the iteration that would leave
    a short last step; that growth is cut to max_det, fills it, and is the last: one iteration fewer."""
    k = _short_step_at(plain, 0.5)
    assert k is not None and plain.history[-2]["capped"]  # the case has a short capped last step
    assert len(plain.history) == k + 3
    r = cipsi.kernel(h2o, cipsi.CIPSIConfig(**dict(PLAIN, min_last_step=0.5)), log=None)
    assert _sizes(r)[: k + 1] == _sizes(plain)[: k + 1]
    assert [h["e_var"] for h in r.history[: k + 1]] == [h["e_var"] for h in plain.history[: k + 1]]
    assert len(r.history) == k + 2
    assert r.history[k]["to_budget"] and r.history[k]["capped"]
    assert not any(h["to_budget"] for h in r.history[:k] + r.history[k + 1:])
    assert plain.history[k + 1]["n_det"] < 0.9 * PLAIN["max_det"] < r.n_det <= PLAIN["max_det"]


def test_no_short_step_no_change(h2o, plain):
    """Where every step is long enough for the rule (a small s), the run is the plain one bit for bit."""
    assert _short_step_at(plain, 0.1) is None
    r = cipsi.kernel(h2o, cipsi.CIPSIConfig(**dict(PLAIN, min_last_step=0.1)), log=None)
    assert _sizes(r) == _sizes(plain)
    assert [h["e_var"] for h in r.history] == [h["e_var"] for h in plain.history]
    assert [h["e_pt2"] for h in r.history] == [h["e_pt2"] for h in plain.history]
    with pytest.raises(ValueError, match="min_last_step"):
        cipsi.CIPSIConfig(min_last_step=-0.5)


@pytest.mark.parametrize("killed_after", ["before", "after"])
def test_kill_around_the_growth_to_the_budget_resumes_to_the_same_end(h2o, tmp_path, killed_cipsi, killed_after):
    """A run killed in the pass that decides the growth to the budget ("before": the checkpoint holds
    the iterations up to it) or in the last pass ("after": the checkpoint holds the grown space) resumes
    to the straight run's space and energy; a rerun then finds it complete."""
    cfg = cipsi.CIPSIConfig(**dict(PLAIN, min_last_step=0.5))
    straight = cipsi.kernel(h2o, cfg, log=None)
    k = next(i for i, h in enumerate(straight.history) if h["to_budget"])
    dies_at = {"before": k + 1, "after": k + 2}[killed_after]  # en_pt2 calls, 1-based
    wf = tmp_path / "wf.h5"
    killed_cipsi(h2o, cfg, wf, dies_at)
    saved, next_keys, _ = cipsi.load(wf)
    assert len(saved.history) == dies_at - 1 and next_keys is not None
    resumed = cipsi.kernel(h2o, cfg, checkpoint=wf, log=None)
    assert _sizes(resumed) == _sizes(straight)
    from rung.sci.determinants import Layout

    lay = Layout(h2o.norb, *h2o.nelec)
    np.testing.assert_array_equal(np.sort(lay.keys(resumed.dets)), np.sort(lay.keys(straight.dets)))
    assert resumed.e_var[0] == pytest.approx(straight.e_var[0], abs=1e-9)
    lines = []
    again = cipsi.kernel(h2o, cfg, checkpoint=wf, log=lines.append)
    assert "already complete" in lines[0] and again.n_det == straight.n_det


def test_completion_sizes_match_layout_grow(h2o, plain):
    """completion_sizes against Layout.grow (the oracle) for heads of a PT2 selection."""
    from rung.sci import pt2
    from rung.sci.determinants import Layout

    lay = Layout(h2o.norb, *h2o.nelec)
    dets, keys = plain.dets, lay.keys(plain.dets)
    order = np.argsort(keys)
    dets, keys = dets[order], keys[order]
    sel = pt2.en_pt2(lay, dets, keys, plain.coef[order, 0], plain.e_var[0] - h2o.ecore, h2o.h1, h2o.eri,
                     n_select=300).selected
    sizes = cipsi.completion_sizes(lay, sel)
    assert sizes.shape == sel.shape and sizes[-1] > sel.size  # spin partners that were not selected count
    for m in (1, 2, 17, 150, sel.size):
        assert sizes[m - 1] == lay.grow(dets, keys, sel[:m])[1].size - keys.size
    assert cipsi.completion_sizes(lay, sel[:0]).size == 0


def test_cli_option_reaches_the_run_and_its_file(h2o, tmp_path):
    """``sci run --min-last-step`` sets the option: the written history marks the growth to the budget
    (``to_budget``, read back by ``load``) and ``sci show`` lists the setting."""
    from click.testing import CliRunner

    from rung.sci.cli import main
    from rung.sci.fcidump import write_fcidump

    fd = write_fcidump(h2o, tmp_path / "FCIDUMP")
    runs = {}
    for s in ("0", "0.5"):
        out = tmp_path / f"wf{s}.h5"
        r = CliRunner().invoke(main, ["run", str(fd), "--max-det", "3000", "--pt2-threshold", "0", "--min-last-step",
                                      s, "--out", str(out)])
        assert r.exit_code == 0, r.output
        runs[s] = cipsi.load(out)[0]
        shown = CliRunner().invoke(main, ["show", str(out)]).output
        assert f"min_last_step={float(s)}" in shown
    assert not any(h["to_budget"] for h in runs["0"].history)
    assert [h["to_budget"] for h in runs["0.5"].history].count(True) == 1
    assert len(runs["0.5"].history) == len(runs["0"].history) - 1
