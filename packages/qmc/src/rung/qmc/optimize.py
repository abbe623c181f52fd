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
sweeps per iteration grow when there are few walkers); the shift grows tenfold until no |dp|
exceeds ``max_step``. The parameters returned (``select``):

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
    module docstring), tail: the final iterations that define the converged energy."""

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

    def __post_init__(self):
        if self.select not in ("average", "lowest"):
            raise InputError(f"select must be 'average' or 'lowest', got {self.select!r}")
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


def linear_method_step(E, O, dE, shift, max_step):
    """Parameter update from samples E (n,), O (n, npar), dE (n, npar). Returns (dp, shift used)."""
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
    S, H = S[np.ix_(keep, keep)], H[np.ix_(keep, keep)]
    while True:
        Hs = H + shift * np.diag(np.r_[0.0, np.ones(H.shape[0] - 1)])
        w, v = scipy.linalg.eig(Hs, S)
        w, v = w.real, v.real
        ok = np.abs(v[0]) > 1e-8
        # the physical solution: lowest eigenvalue among vectors with a sizeable psi_0 component
        overlap = np.abs(v[0]) / np.linalg.norm(v, axis=0)
        cand = np.where(ok & (overlap > 0.3))[0]
        k = cand[np.argmin(w[cand])] if cand.size else int(np.argmax(overlap))
        dp = np.zeros(npar)
        dp[keep[1:]] = v[1:, k] / v[0, k]
        if np.all(np.abs(dp) <= max_step) or shift > 1e4:
            return dp, shift
        shift *= 10.0


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


def optimize(wf, ham, configs, config: OptimizeConfig = OptimizeConfig(), *, progress=None):
    """Optimise the parameters of wf (every component with parameters: Jastrow factors, CI coefficients
    when the multideterminant component exposes them) in place.

    Returns (history, configs): history is a list of (energy, error, flat parameter vector) per
    iteration (energy and reblocked error, :func:`rung.qmc.stats.reblock`, of the parameters that
    were sampled); wf ends with the parameters chosen by ``config.select`` (:func:`select_parameters`).
    """
    if not _jastrows(wf):
        raise ValueError("the wave function has no parameters to optimise (no Jastrow factor, CI coefficients frozen)")
    configs = check_configs(configs)
    nsteps = max(config.nsteps, 2, -(-config.min_samples // configs.shape[0]))  # >= 2: an error bar
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
        dp, _ = linear_method_step(E, O, dE, config.shift, config.max_step)
        _set(wf, _flat(wf) + dp)
    _set(wf, select_parameters(history, config.select, config.tail))
    wf.recompute(configs)
    return history, configs
