"""Optimisation of the Jastrow parameters (and, when a multideterminant component exposes them, the CI
coefficients: :mod:`rung.qmc.multideterminant`, ``optimize_ci``) by the linear method (energy minimisation).

In the basis {psi, psi_i = d psi / d p_i - <O_i> psi} (O_i = d log psi / d p_i), sampled from |psi|^2,

    S_ij = <dO_i dO_j>,   H_ij = <dO_i (E_L dO_j + d_j E_L)>,        i, j = 0..n, dO_0 = 1
    (H_00 = <E_L>,  H_0j = <E_L dO_j> + <d_j E_L>,  H_i0 = <dO_i E_L>)

and the lowest eigenvector v of H v = lambda S v (with a shift a on the diagonal i > 0 for stability)
gives the update dp_i = v_i / v_0. For any parameter, with B_i(e, r) = d_i log psi (electron e at r):

    d_i E_L = -1/2 sum_e [d_i lap_e log psi + 2 d_i grad_e log psi . grad_e log psi]
              + sum_e sum_q V_q (psi(r_q) / psi) (B_i(e, r_q) - B_i(e, r_e))    (nonlocal ECP)

Each component with parameters gives d_i of (log psi, grad_e, lap_e) per electron
(``parameter_terms(e, epos)``) and O_i (``pgradient()``). For J (linear in its parameters) B_i = dJ/dp_i
up to terms without electron e (they cancel in the difference); for a CI coefficient B_I = D_I / psi.

The recipe: ``niter`` iterations of at least ``min_samples`` samples each (walkers x sweeps; the
sweeps per iteration grow when there are few walkers, and with ``min_samples_per_parameter`` when
there are many parameters). The step (``step``):

- ``"plain"`` (default): the shift grows tenfold from ``shift`` until no |dp| exceeds ``max_step``.
- ``"correlated"``: candidate steps for the shifts a, 10a, 100a (a: the plain rule's shift, i.e. the
  first candidate is the plain step); ``eval_fraction`` x the sweeps more are sampled
  at the current parameters and not used for H and S, and each candidate's energy on them is
  estimated by reweighting (w = psi'^2 / psi^2, the wave function and E_L recomputed at the candidate
  parameters on the stored configurations). The least damped candidate within two error bars of the
  lowest wins (:func:`choose_step`; degenerate weights, effective sample fraction < 0.1, exclude a
  candidate); no step when the lowest is above the current energy by more than two error bars.
  With few samples per parameter the sampled H has spurious soft directions, along which the plain
  step runs; the reweighting is done on other samples, so it sees
  those steps raise the energy.

The normalisation of the step (:func:`rescale`), with ``xi`` < 1: exact for the parameters psi is
linear in (the CI coefficients), ``xi`` the Toulouse-Umrigar rescaling of the others (``xi`` = 1: the
rule before 2026-12-07, no rescaling of any parameter). The parameters returned (``select``):

- ``"average"`` (default): the mean of the parameters sampled over the converged tail of the run, the
  last iterations whose energies are all within two error bars (reblocked) of the mean energy of the
  final ``tail`` iterations. Near the minimum the linear method's updates scatter around it with the
  noise of the sampled matrices; their mean has less of that noise than any one iteration, and the
  energy is quadratic in the parameters there, so the mean is at least as good as the iterations it
  averages. An iteration before the energy stopped decreasing beyond its error bar is never included.
- ``"lowest"``: the iteration with the lowest sampled energy (the rule before 2026-12-06). Biased:
  among iterations of equal true energy it picks the one whose sample fluctuated lowest, whose
  parameters are no better than the others' (often worse: a noisy step).

References: J. Toulouse, C. J. Umrigar, J. Chem. Phys. 126, 084102 (2007); C. J. Umrigar et al.,
Phys. Rev. Lett. 98, 110201 (2007) (averaging the parameters of the last iterations).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from rung.core.errors import InputError
from rung.qmc.stats import reblock
from rung.qmc.vmc import check_configs, sweep


@dataclass(frozen=True)
class OptimizeConfig:
    """niter iterations of at least nsteps VMC sweeps (after nequil) with tau, and at least min_samples
    walker-sweeps (more sweeps when there are fewer than min_samples / nsteps walkers); shift and
    max_step of the update; select: which parameters are returned ("average" or "lowest", see the
    module docstring), tail: the final iterations that define the converged energy; step ("plain" or
    "correlated"), xi, eval_fraction (extra sweeps for the correlated choice, a fraction of the
    sweeps per iteration) and min_samples_per_parameter: the update rule (module docstring)."""

    niter: int = 6
    nsteps: int = 20
    nequil: int = 10
    tau: float = 0.3
    shift: float = 1e-3
    max_step: float = 1.0
    seed: int = 0
    min_samples: int = 8000
    select: str = "average"
    tail: int = 3
    step: str = "plain"
    xi: float = 1.0
    eval_fraction: float = 0.25
    min_samples_per_parameter: int = 0

    def __post_init__(self):
        if self.select not in ("average", "lowest"):
            raise InputError(f"select must be 'average' or 'lowest', got {self.select!r}")
        if self.step not in ("plain", "correlated"):
            raise InputError(f"step must be 'plain' or 'correlated', got {self.step!r}")
        if not 0.0 <= self.xi <= 1.0 or self.eval_fraction <= 0.0 or self.min_samples_per_parameter < 0:
            raise InputError(f"xi must be in [0, 1], eval_fraction > 0, min_samples_per_parameter >= 0; got "
                             f"{self.xi}, {self.eval_fraction}, {self.min_samples_per_parameter}")
        if self.niter < 1 or self.nsteps < 1 or self.tail < 1:
            raise InputError(f"niter, nsteps and tail must be >= 1, got {self.niter}, {self.nsteps}, {self.tail}")


def _jastrows(wf):
    """The components with variational parameters (Jastrow factors, a multideterminant component with
    ``optimize_ci``), in order."""
    return [c for c in wf.components if c.parameters]


def energy_and_derivatives(wf, ham, configs, rng):
    """E_L (nw,), O = d log psi / dp (nw, npar), d E_L / dp (nw, npar) for every variational parameter
    (components in order, each component's parameters in its dict order, raveled)."""
    jastrows = _jastrows(wf)
    el, grad = ham.local_energy(wf, configs, rng, return_grad=True)
    nw, ne, _ = configs.shape

    def terms(e, pts):
        parts = [j.parameter_terms(e, pts) for j in jastrows]
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))

    def values(e, pts):  # d log psi / dp only; a component may have a cheaper path for that
        return np.concatenate([j.parameter_values(e, pts) if hasattr(j, "parameter_values")
                               else j.parameter_terms(e, pts)[0] for j in jastrows])

    npar = sum(v.size for j in jastrows for v in j.parameters.values())
    dE = np.zeros((npar, nw))
    # the nonlocal energy was evaluated above with another random rotation; it is recomputed together
    # with its derivative from one rotation so that E_L and d E_L are consistent
    nonlocal_ = ham.ecp.has_nonlocal
    nl = np.zeros(nw)
    for e in range(ne):
        b0, gb, lb = terms(e, configs[:, e][:, None])  # (npar, nw, 1), (npar, nw, 1, 3), (npar, nw, 1)
        dE += -0.5 * (lb[:, :, 0] + 2.0 * np.einsum("kwx,wx->kw", gb[:, :, 0], grad[:, e]))
        if nonlocal_:  # b0: d log psi / dp with electron e at its position, reused
            t, points = ham.ecp.nonlocal_electron(wf, e, configs, rng)
            bq = values(e, points)  # (npar, nw, npts)
            dE += np.einsum("wq,kwq->kw", t, bq - b0)
            nl += t.sum(-1)
    if nonlocal_:
        el["total"] = el["total"] - el["ecp_nonlocal"] + nl
    O = np.concatenate([v.reshape(nw, -1) for j in jastrows for v in j.pgradient().values()], axis=1)
    return el["total"], O, dE.T


def _flat(wf):
    return np.concatenate([v.ravel() for j in _jastrows(wf) for v in j.parameters.values()])


def _set(wf, p):
    i = 0
    for j in _jastrows(wf):
        for v in j.parameters.values():
            v[...] = p[i:i + v.size].reshape(v.shape)
            i += v.size


LINEAR_KEYS = ("ci",)  # parameter names in which psi is linear (a multideterminant's CI coefficients)


def _linear_mask(wf) -> np.ndarray:
    """(npar,) bool: True for the parameters psi is linear in (``LINEAR_KEYS``), in :func:`_flat` order."""
    return np.concatenate([np.full(v.size, k in LINEAR_KEYS) for j in _jastrows(wf) for k, v in j.parameters.items()])


def linear_method_matrices(E, O, dE):
    """The linear method's H, S (npar + 1, npar + 1) in the basis {psi, psi_i - <O_i> psi} (module
    docstring) from samples E (n,) Hartree, O (n, npar), dE (n, npar) Hartree; also keep (npar + 1,)
    bool: the directions the samples resolve (the first always True). H, S are restricted to them."""
    n, npar = O.shape
    dO = O - O.mean(0)
    Ebar = E.mean()
    S = np.zeros((npar + 1, npar + 1))
    H = np.zeros_like(S)
    S[0, 0] = 1.0
    S[1:, 1:] = dO.T @ dO / n
    H[0, 0] = Ebar
    H[0, 1:] = ((E - Ebar)[:, None] * dO).mean(0) + dE.mean(0)
    H[1:, 0] = (dO * (E - Ebar)[:, None]).mean(0)
    H[1:, 1:] = dO.T @ (E[:, None] * dO + dE) / n
    # drop directions the samples cannot resolve (e.g. basis functions no electron reaches)
    keep = np.concatenate([[True], np.diag(S)[1:] > 1e-12 * max(1.0, np.diag(S)[1:].max())])
    return H[np.ix_(keep, keep)], S[np.ix_(keep, keep)], keep


def solve_linear_method(H, S, shift):
    """delta (npar,) = v_i / v_0 of the lowest physical eigenvector of (H + shift on the diagonal i > 0) v
    = lambda S v (a sizeable psi_0 component); in the centred basis of :func:`linear_method_matrices`."""
    Hs = H + shift * np.diag(np.r_[0.0, np.ones(H.shape[0] - 1)])
    w, v = scipy.linalg.eig(Hs, S)
    w, v = w.real, v.real
    ok = np.abs(v[0]) > 1e-8
    overlap = np.abs(v[0]) / np.linalg.norm(v, axis=0)
    cand = np.where(ok & (overlap > 0.3))[0]
    k = cand[np.argmin(w[cand])] if cand.size else int(np.argmax(overlap))
    return v[1:, k] / v[0, k]


def rescale(delta, S, Obar, linear, xi):
    """Parameter change from the linear method's delta (centred basis), Toulouse & Umrigar (2007).

    The linear method gives psi + sum_i delta_i (psi_i - <O_i> psi); which multiple of psi goes with
    each psi_i is a choice of normalisation. For parameters psi is linear in (``linear``) the exact
    one is dp = delta / (1 - sum_lin <O_i> delta_i). For the others the change is made orthogonal to
    xi psi/|psi| + (1 - xi) psi_new/|psi_new|: their dp is divided by 1 + (1 - xi) Q / (1 - xi + xi D),
    Q = delta_n^T S_nn delta_n, D = sqrt(1 + Q) (xi = 1: no rescaling, the rule before 2026-12-07;
    xi = 1/2: the smallest change of the normalised wave function). delta, Obar (npar,), S (npar, npar)
    (the block i, j > 0 of the linear method's S), linear (npar,) bool. Returns dp (npar,).
    """
    if xi >= 1.0 and not linear.any():
        return delta
    nl = ~linear
    Q = float(delta[nl] @ S[np.ix_(nl, nl)] @ delta[nl])
    c = -(1.0 - xi) * Q / (1.0 - xi + xi * np.sqrt(1.0 + Q)) + float(Obar[linear] @ delta[linear])
    return delta / (1.0 - c)


def linear_method_step(E, O, dE, shift, max_step, *, linear=None, xi: float = 1.0):
    """Parameter update from samples E (n,), O (n, npar), dE (n, npar): the shift grows tenfold from
    ``shift`` until no |dp| exceeds ``max_step``. linear (npar,) bool, xi: see :func:`rescale` (the
    defaults: no rescaling). Returns (dp, shift used)."""
    H, S, keep = linear_method_matrices(E, O, dE)
    return _bounded_step(H, S, keep, O.mean(0), linear, xi, shift, max_step)


def _bounded_step(H, S, keep, Obar, linear, xi, shift, max_step):
    npar = keep.size - 1
    lin = np.zeros(npar, bool) if linear is None else np.asarray(linear, bool)
    while True:
        dp = np.zeros(npar)
        dp[keep[1:]] = rescale(solve_linear_method(H, S, shift), S[1:, 1:], Obar[keep[1:]], lin[keep[1:]], xi)
        if (np.all(np.abs(dp) <= max_step) and np.all(np.isfinite(dp))) or shift > 1e4:
            return dp, shift
        shift *= 10.0


def candidate_steps(E, O, dE, shift, max_step, *, linear=None, xi: float = 1.0, factors=(1.0, 10.0, 100.0)):
    """Updates for the shifts a * factors, a the shift of :func:`linear_method_step` (the smallest shift
    >= ``shift`` whose step respects ``max_step``). Returns (list of dp (npar,), list of shifts)."""
    H, S, keep = linear_method_matrices(E, O, dE)
    Obar = O.mean(0)
    plain = _bounded_step(H, S, keep, Obar, linear, xi, shift, max_step)
    a = plain[1]
    steps = [plain if f == 1.0 else _bounded_step(H, S, keep, Obar, linear, xi, a * f, max_step) for f in factors]
    return [s[0] for s in steps], [s[1] for s in steps]


def reweighted_energies(logpsi0, el0, logpsi, el):
    """Correlated-sampling energies of candidate parameters on configurations sampled from |psi_0|^2.

    logpsi0, el0 : (nw, m) log|psi| and E_L (Hartree) at the sampled parameters (nw walkers, m stored
    sweeps); logpsi, el : (ncand, nw, m) the same at each candidate. E_c = sum w E_L,c / sum w with
    w = psi_c^2 / psi_0^2. Returns (E_c - E_0 (ncand,), its standard error (ncand,), effective sample
    fraction (sum w)^2 / (n sum w^2) (ncand,)); the error treats walkers as independent (their sweeps
    are correlated) and linearises the ratio.
    """
    lw = 2.0 * (logpsi - logpsi0[None])
    w = np.exp(lw - lw.max(axis=(1, 2), keepdims=True))
    wsum = w.sum(axis=(1, 2))
    ec = (w * el).sum(axis=(1, 2)) / wsum
    e0 = el0.mean()
    nw, m = el0.shape
    wbar = wsum / (nw * m)
    # per-walker contributions to the difference of the two ratio estimators (delta method)
    d = ((w * (el - ec[:, None, None])).sum(-1) / (m * wbar[:, None])) - (el0 - e0).sum(-1)[None] / m
    err = d.std(axis=1, ddof=1) / np.sqrt(nw)
    ess = wsum**2 / ((w**2).sum(axis=(1, 2)) * nw * m)
    return ec - e0, err, ess


def choose_step(diffs, errors, ess, min_ess: float = 0.1) -> int:
    """Index of the candidate to take (candidates ordered by growing shift): among those whose weights
    are not degenerate (effective sample fraction >= ``min_ess``), the first whose reweighted energy
    is within two of its error bars of the lowest (the least damped step that is not measurably
    worse); -1 (no step) when the lowest is above the sampled parameters' energy by more than two
    error bars, or no candidate is usable."""
    diffs, errors, ess = (np.asarray(x, dtype=np.float64) for x in (diffs, errors, ess))
    errors = np.where(np.isfinite(errors), errors, 0.0)  # no error bar (one walker): the lowest wins
    ok = np.flatnonzero((ess >= min_ess) & np.isfinite(diffs))
    if not ok.size:
        return -1
    best = int(ok[np.argmin(diffs[ok])])
    if diffs[best] > 2.0 * errors[best]:
        return -1
    return int(next(i for i in ok if diffs[i] <= diffs[best] + 2.0 * errors[i]))


def _evaluate(wf, ham, stored, seed):
    """log|psi| and E_L (nw, m) of wf (its current parameters) on stored configurations [(nw, ne, 3)]; the
    nonlocal quadrature rotations come from ``seed`` (the same for every parameter set: correlated)."""
    rng = np.random.default_rng(seed)
    logs, els = [], []
    for c in stored:
        logs.append(wf.recompute(c)[1])
        els.append(ham.local_energy(wf, c, rng)["total"])
    return np.stack(logs, axis=1), np.stack(els, axis=1)


def converged_tail(energies, errors, tail: int = 3) -> int:
    """Index of the first iteration of the converged tail: the longest run of final iterations whose
    energies are all within two combined error bars of the mean energy of the last ``tail`` ones.

    energies, errors : (niter,) float64, Hartree. Returns an int in [0, niter - 1].
    """
    E, s = np.asarray(energies, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    m = min(tail, E.size)
    ref, ref_err = E[-m:].mean(), np.sqrt((s[-m:] ** 2).sum()) / m
    ok = E <= ref + 2.0 * np.sqrt(s**2 + ref_err**2)
    k = E.size - 1
    while k > 0 and ok[k - 1]:
        k -= 1
    return k


def select_parameters(history, select: str = "average", tail: int = 3) -> np.ndarray:
    """The parameter vector to keep from ``history`` [(energy, error, parameters), ...] (see the module
    docstring for the rules)."""
    if select == "lowest":
        return history[min(range(len(history)), key=lambda i: history[i][0])][2]
    k = converged_tail([h[0] for h in history], [h[1] for h in history], tail)
    return np.mean([h[2] for h in history[k:]], axis=0)


def optimize(wf, ham, configs, config: OptimizeConfig = OptimizeConfig(), *, progress=None, trace=None):
    """Optimise the parameters of wf (every component with parameters: Jastrow factors, CI coefficients
    when the multideterminant component exposes them) in place.

    Returns (history, configs): history is a list of (energy, error, flat parameter vector) per
    iteration (energy and reblocked error, :func:`rung.qmc.stats.reblock`, of the parameters that
    were sampled); wf ends with the parameters chosen by ``config.select`` (:func:`select_parameters`).
    ``trace`` (a list) receives one dict per update: the shifts tried, the chosen one, and with
    ``step="correlated"`` the candidates' reweighted energy differences and the CPU seconds they took.
    """
    if not _jastrows(wf):
        raise ValueError("the wave function has no parameters to optimise (no Jastrow factor, CI coefficients frozen)")
    configs = check_configs(configs)
    nw = configs.shape[0]
    npar = _flat(wf).size
    nsteps = max(config.nsteps, 2, -(-config.min_samples // nw),  # >= 2: an error bar
                 -(-config.min_samples_per_parameter * npar // nw))
    neval = max(1, int(np.ceil(config.eval_fraction * nsteps)))
    linear = _linear_mask(wf) if config.xi < 1.0 else None
    rng = np.random.default_rng(config.seed)
    wf.recompute(configs)
    for _ in range(config.nequil):
        sweep(wf, configs, config.tau, rng)
    history = []
    t0 = time.perf_counter()
    for it in range(config.niter):
        wf.recompute(configs)
        Es, Os, dEs = [], [], []
        for _ in range(nsteps):
            sweep(wf, configs, config.tau, rng)
            E, O, dE = energy_and_derivatives(wf, ham, configs, rng)
            Es.append(E)
            Os.append(O)
            dEs.append(dE)
        E, O, dE = np.concatenate(Es), np.concatenate(Os), np.concatenate(dEs)
        err = reblock([x.mean() for x in Es]).error
        history.append((float(E.mean()), err, _flat(wf)))
        if progress is not None:
            progress(it + 1, config.niter, E.mean(), time.perf_counter() - t0)
        if it == config.niter - 1:
            break
        p0 = _flat(wf)
        if config.step == "plain":
            dp, used = linear_method_step(E, O, dE, config.shift, config.max_step, linear=linear, xi=config.xi)
            if trace is not None:
                trace.append({"shift": used})
        else:
            dp = _correlated_step(wf, ham, configs, E, O, dE, linear, neval, rng, config, trace)
        _set(wf, p0 + dp)
    _set(wf, select_parameters(history, config.select, config.tail))
    wf.recompute(configs)
    return history, configs


def _correlated_step(wf, ham, configs, E, O, dE, linear, neval, rng, config, trace):
    """One update chosen by correlated sampling (module docstring); returns dp."""
    c0 = time.process_time()
    dps, shifts = candidate_steps(E, O, dE, config.shift, config.max_step, linear=linear, xi=config.xi)
    stored = []
    for _ in range(neval):  # configurations not used for H and S
        sweep(wf, configs, config.tau, rng)
        stored.append(configs.copy())
    seed = int(rng.integers(2**62))
    p0 = _flat(wf)
    l0, e0 = _evaluate(wf, ham, stored, seed)
    cand = []
    for dp in dps:
        _set(wf, p0 + dp)
        cand.append(_evaluate(wf, ham, stored, seed))
    _set(wf, p0)
    diffs, errs, ess = reweighted_energies(l0, e0, np.stack([c[0] for c in cand]), np.stack([c[1] for c in cand]))
    k = choose_step(diffs, errs, ess)
    if trace is not None:
        trace.append({"shifts": shifts, "diffs": diffs, "errors": errs, "ess": ess, "chosen": k,
                      "cpu_s": time.process_time() - c0})
    return dps[k] if k >= 0 else np.zeros_like(p0)
