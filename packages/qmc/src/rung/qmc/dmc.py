"""Fixed-node diffusion Monte Carlo with T-moves, a fixed-population comb and exact restarts.

One step of imaginary time tau, for all walkers at once:

1. T-moves for the nonlocal ECP (Casula's size-consistent sequential scheme): electron i jumps to
   quadrature point q with probability T_q / (1 + sum_q T_q), ``T_q = -tau V_q`` for the matrix
   elements with ``V_q = <R'|V_NL|R> psi(R')/psi(R) < 0``; the local energy keeps the full V_NL psi/psi.
   The matrix elements are those of the last local energy (its quadrature points and random rotation,
   as QMCPACK's T-moves), evaluated afresh only for the walkers an earlier electron's T-move moved;
2. drift-diffusion sweep, electron by electron (as in :mod:`rung.qmc.vmc`, Umrigar-limited drift),
   rejecting moves that cross a node of psi (fixed node); then the local energy E_L(R');
   (this order, PyQMC's and QMCPACK's, evaluates E_L after a drift-diffusion, not right after the
   T-moves: a smaller time-step error and E_L variance on ccECP water, see the package's BENCHMARKS.md)
3. weights ``w *= exp(tau_eff (S(R) + S(R'))/2)`` (R the walker at the step's start, before its T-moves), ``S = (E_ref - E_L) |vbar|/|v|`` (Umrigar's energy
   limiting) with ``|E_ref - E_L|`` capped at ``0.2 sqrt(N/tau)`` (Zen et al. 2016; without it a walker
   near a nucleus of a cusp-less Gaussian wave function takes over the population),
   ``tau_eff = tau <accepted dr^2>/<proposed dr^2>``;
4. mixed estimator ``E = sum w E_L / sum w``, then a fixed-population stochastic comb (walkers drawn
   with probability w / sum w, weights reset to one). ``E_ref`` is the mean of the last block.

A population whose effective size ``(sum w)^2 / sum w^2`` stays below ``min_neff`` x nwalkers, or whose
mean weight changes by more than a factor e^2 in one step, is a collapse or explosion: the run stops
with :class:`PopulationError` (nothing is written as a result).

Checkpoint after every block (walkers, RNG state, per-step estimates, E_ref, tau_eff sums) and a full
wave-function recomputation at every block start, so a killed run resumed from its checkpoint
reproduces the uninterrupted run step for step.
References: C. J. Umrigar, M. P. Nightingale, K. J. Runge, J. Chem. Phys. 99, 2865 (1993);
M. Casula, Phys. Rev. B 74, 161102 (2006); M. Casula et al., J. Chem. Phys. 132, 154113 (2010).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rung.core.errors import InputError
from rung.qmc.hamiltonian import COMPONENTS
from rung.qmc.stats import reblock
from rung.qmc.traces import Trace, read_checkpoint, write_checkpoint
from rung.qmc.vmc import QMCResult, check_configs, limit_drift, sweep

log = logging.getLogger(__name__)


class PopulationError(RuntimeError):
    """The DMC population collapsed or exploded."""


@dataclass(frozen=True)
class DMCConfig:
    """tau (a.u. time); nblocks x nsteps steps, the first nequil_blocks not averaged; tmoves for ECPs.

    energy_cutoff: in the branching factor |E_ref - E_L| is capped at energy_cutoff sqrt(nelec / tau)
    (Zen et al., Phys. Rev. B 93, 241118 (2016)); the bias vanishes as tau -> 0. min_neff, patience:
    collapse detection.
    """

    tau: float = 0.01
    nblocks: int = 20
    nsteps: int = 50
    nequil_blocks: int = 2
    tmoves: bool = True
    seed: int = 0
    energy_cutoff: float = 0.2
    min_neff: float = 0.1
    patience: int = 10

    def __post_init__(self):
        if not self.tau > 0:
            raise InputError(f"tau must be > 0, got {self.tau}")
        if self.nblocks <= self.nequil_blocks or self.nsteps < 1:
            raise InputError(f"need nblocks > nequil_blocks and nsteps >= 1, got nblocks {self.nblocks}, "
                             f"nequil_blocks {self.nequil_blocks}, nsteps {self.nsteps}")
        if (self.nblocks - self.nequil_blocks) * self.nsteps < 2:  # refused here, not after the run
            raise InputError(f"(nblocks - nequil_blocks) x nsteps = {self.nblocks - self.nequil_blocks} x "
                             f"{self.nsteps}: the error bar needs at least 2 averaged steps")


def comb(weights, rng) -> np.ndarray:
    """Fixed-population stochastic comb: (nwalkers,) indices drawn with probability w / sum w."""
    n = weights.size
    cum = np.cumsum(weights) / weights.sum()
    return np.minimum(np.searchsorted(cum, (np.arange(n) + rng.random()) / n), n - 1)


def tmove(wf, ecp, configs, tau, rng, quadrature=None) -> float:
    """Sequential T-moves over all electrons (in place); returns the fraction of electrons moved.

    ``quadrature``: per electron, the (terms (nw, npts), points (nw, npts, 3)) of the local energy at
    ``configs`` (:meth:`rung.qmc.hamiltonian.Hamiltonian.local_energy`'s ``nonlocal_terms``): electron e
    of a walker none of whose electrons has moved yet in this pass takes its moves from there (the
    matrix elements of the same discretised V_NL that weighted the walker, as QMCPACK's T-moves take the
    local energy's); the walkers already moved are evaluated afresh. Without it, every electron's
    quadrature is evaluated afresh (a new random rotation).
    """
    nw, ne, _ = configs.shape
    moved = 0
    stale = np.zeros(nw, dtype=bool)  # walkers with an electron moved in this pass
    for e in range(ne):
        if quadrature is None:
            terms, points = ecp.nonlocal_electron(wf, e, configs, rng)  # (nw, npts), (nw, npts, 3)
        else:
            terms, points = quadrature[e]
            idx = np.nonzero(stale)[0]
            if idx.size:
                terms, points = terms.copy(), points.copy()
                terms[idx], points[idx] = ecp.nonlocal_electron(wf, e, configs, rng, walkers=idx)
        if terms.shape[1] == 0:
            return 0.0
        t = np.where(terms < 0.0, -tau * terms, 0.0)
        cum = np.cumsum(t, axis=1) / (1.0 + t.sum(1, keepdims=True))
        k = (cum < rng.random(nw)[:, None]).sum(1)
        move = k < t.shape[1]
        if not move.any():
            continue
        new = points[np.arange(nw), np.minimum(k, t.shape[1] - 1)]
        wf.accept(e, new, move)  # the components evaluate the new position at the moved walkers only
        configs[move, e] = new[move]
        stale |= move
        moved += move.sum()
    return moved / (nw * ne)


def _setup(config, configs, ham, forces=None):
    setup = {"tau": config.tau, "nsteps": config.nsteps, "nequil_blocks": config.nequil_blocks,
             "tmoves": bool(config.tmoves), "seed": config.seed, "nwalkers": int(configs.shape[0]),
             "nelec": int(configs.shape[1]), "natom": int(len(ham.atom_charges))}
    if forces is not None:  # absent for energy-only runs, so their checkpoints cannot resume a force run
        setup["forces"] = asdict(forces.config) | {"epsilons": list(forces.config.epsilons)}
    return setup


def dmc(wf, ham, configs, config: DMCConfig = DMCConfig(), *, e_ref: float | None = None, checkpoint=None,
        trace=None, backend: str = "numba", progress=None, forces=None, vmc_forces=None) -> QMCResult:
    """Run (or resume) fixed-node DMC from walkers configs (nwalkers, nelec, 3) Bohr.

    Parameters
    ----------
    e_ref : starting reference energy, Hartree (default: mean local energy of the initial walkers)
    checkpoint : path; if it exists the run resumes from it (``configs`` is then only used for its shape)
    trace : path of the append-only per-block HDF5 trace
    progress : callable(block, nblocks, energy, seconds, done, equilibration) called after every block:
        ``block`` counts from the start of the run (a resumed run goes on from its checkpoint's),
        ``seconds`` and ``done`` (blocks) are this call's only, so that ``seconds / done`` is the time a
        block takes even after a resume; ``equilibration``: the block was not averaged
    forces : :class:`rung.qmc.forces.NuclearDerivatives`: accumulate the mixed ZVZB force estimator
        (Reynolds' approximation) over the averaged blocks
    vmc_forces : (forces, errors) (natom, 3) Hartree/Bohr of the VMC run of the same trial function:
        the result's forces are then the hybrid 2 F_mixed - F_VMC (see :mod:`rung.qmc.forces`)
    """
    from rung.qmc.forces import ForceAccumulator, zvzb

    configs = check_configs(configs)
    nw, ne, _ = configs.shape
    setup = _setup(config, configs, ham, forces)
    facc = None if forces is None else ForceAccumulator(forces.natom, forces.config.epsilons)
    ntot = config.nblocks * config.nsteps
    series = {k: np.full(ntot, np.nan) for k in COMPONENTS + ("total", "neff", "weight", "variance")}
    start_block, r2 = 0, np.zeros(2)  # r2: accepted and proposed squared displacements (tau_eff)
    rng = np.random.default_rng(config.seed)
    if checkpoint is not None and Path(checkpoint).exists():
        state, meta = read_checkpoint(checkpoint, setup)
        configs = check_configs(state["configs"])
        start_block, e_ref, r2 = int(meta["block"]), float(meta["e_ref"]), state["r2"]
        n = min(state["series_total"].size, ntot)
        for k in series:
            series[k][:n] = state[f"series_{k}"][:n]
        rng.bit_generator.state = meta["rng"]
        if facc is not None:
            facc = ForceAccumulator.from_arrays(state, forces.config.epsilons)
            forces.set_state(meta["force_rng"])
            vmc_forces = (state["vmc_forces"], state["vmc_forces_error"]) if "vmc_forces" in state else None
        log.info("resuming DMC from %s at block %d", checkpoint, start_block)
    tr = None
    if trace is not None:
        fields = {"energy": "hartree", **{k: "hartree" for k in COMPONENTS}, "weight": "dimensionless",
                  "neff": "dimensionless", "tau_eff": "hartree^-1", "variance": "hartree^2",
                  "equilibration": "dimensionless"}
        if facc is not None:
            fields.update({f"force_{a}_{x}": "hartree/bohr" for a in range(forces.natom) for x in "xyz"})
        tr = Trace(trace, "dmc", fields, backend, keep_blocks=start_block)

    use_tmoves = config.tmoves and ham.ecp.has_nonlocal

    def local_energy():
        """E_L components, grad log psi and (with T-moves) the nonlocal quadrature at configs."""
        quad = [] if use_tmoves else None
        el, grad = ham.local_energy(wf, configs, rng, return_grad=True, nonlocal_terms=quad)
        return el, grad, quad

    wf.recompute(configs)
    el, grad, quad = local_energy()
    if e_ref is None:
        e_ref = float(np.mean(el["total"]))

    ecut = config.energy_cutoff * np.sqrt(ne / config.tau)

    def s_limited(el, grad, e_ref):
        vbar = limit_drift(grad, config.tau)
        ratio = np.sqrt(np.sum(vbar**2, (1, 2)) / np.maximum(np.sum(grad**2, (1, 2)), 1e-300))
        return np.clip(e_ref - el["total"], -ecut, ecut) * ratio

    s_old = s_limited(el, grad, e_ref)
    low_neff = 0
    t0 = time.perf_counter()
    for b in range(start_block, config.nblocks):
        if b > start_block:
            wf.recompute(configs)  # bound Sherman-Morrison round-off; also what a restart does
            el, grad, quad = local_energy()
            s_old = s_limited(el, grad, e_ref)
        fstart = facc.n if facc is not None else 0
        for j in range(config.nsteps):
            i = b * config.nsteps + j
            if use_tmoves:
                tmove(wf, ham.ecp, configs, config.tau, rng, quad)
            _, acc_ratio = sweep(wf, configs, config.tau, rng, fixed_node=True)
            r2 += (acc_ratio, 1.0)
            el, grad, quad = local_energy()
            if not np.all(np.isfinite(el["total"])):
                raise PopulationError(f"non-finite local energy at step {i}")
            s_new = s_limited(el, grad, e_ref)
            tau_eff = config.tau * r2[0] / r2[1]
            w = np.exp(tau_eff * 0.5 * (s_old + s_new))
            wsum = w.sum()
            for k in COMPONENTS + ("total",):
                series[k][i] = np.dot(w, el[k]) / wsum
            series["variance"][i] = np.dot(w, (el["total"] - series["total"][i]) ** 2) / wsum
            if facc is not None and b >= config.nequil_blocks and i % forces.config.every == 0:
                facc.add(el["total"], grad, *forces(configs, wf, grad), weights=w)
            series["neff"][i] = wsum**2 / np.dot(w, w) / nw
            series["weight"][i] = wsum / nw
            if abs(np.log(series["weight"][i])) > 2.0:
                raise PopulationError(
                    f"population explosion/collapse at step {i}: mean weight changed by a factor "
                    f"{series['weight'][i]:.3g} in one step (E_ref {e_ref:.6f}, mixed energy {series['total'][i]:.6f})")
            low_neff = low_neff + 1 if series["neff"][i] < config.min_neff else 0
            if low_neff >= config.patience:
                raise PopulationError(
                    f"population collapse at step {i}: effective population {series['neff'][i]:.3f} x nwalkers "
                    f"for {low_neff} steps (a few walkers carry all the weight)")
            idx = comb(w, rng)
            configs = configs[idx]
            wf.resample(idx)
            s_old = s_new[idx]
            if use_tmoves:
                quad = [(t[idx], p[idx]) for t, p in quad]
        blk = slice(b * config.nsteps, (b + 1) * config.nsteps)
        e_ref = float(np.mean(series["total"][blk]))
        if tr is not None:
            row = {"energy": e_ref, **{k: np.mean(series[k][blk]) for k in COMPONENTS},
                   "weight": np.mean(series["weight"][blk]), "neff": np.mean(series["neff"][blk]),
                   "tau_eff": config.tau * r2[0] / r2[1], "variance": np.mean(series["variance"][blk]),
                   "equilibration": float(b < config.nequil_blocks)}
            if facc is not None:
                sl = slice(fstart, facc.n)  # this block's force samples (none in equilibration blocks)
                fb = zvzb(facc.e[sl], facc.a[0, sl], facc.p[0, sl], facc.q[0, sl])[0] if facc.n > fstart \
                    else np.full((forces.natom, 3), np.nan)
                row.update({f"force_{a}_{x}": fb[a, k] for a in range(forces.natom) for k, x in enumerate("xyz")})
            tr.append(row)
        if checkpoint is not None:
            extra_state = {} if facc is None else facc.arrays()
            if facc is not None and vmc_forces is not None:
                extra_state.update(vmc_forces=vmc_forces[0], vmc_forces_error=vmc_forces[1])
            extra_meta = {} if facc is None else {"force_rng": forces.state()}
            write_checkpoint(checkpoint, {"configs": configs, "r2": r2, **{f"series_{k}": v for k, v in series.items()},
                                          **extra_state},
                             {"setup": setup, "block": b + 1, "e_ref": e_ref, "rng": rng.bit_generator.state,
                              "config": asdict(config), **extra_meta})
        if progress is not None:
            progress(b + 1, config.nblocks, e_ref, time.perf_counter() - t0, b + 1 - start_block,
                     b < config.nequil_blocks)
    keep = slice(config.nequil_blocks * config.nsteps, ntot)
    r = reblock(series["total"][keep])
    comps = {k: (reblock(series[k][keep]).mean, reblock(series[k][keep]).error) for k in COMPONENTS}
    if not r.plateau:
        log.warning("DMC: the blocking curve of the energy has no plateau (%d steps are too few for its "
                    "correlation time): the error bar may be too small", keep.stop - keep.start)
    fkw = {} if facc is None else facc.estimate().result_fields(vmc_forces)
    return QMCResult("dmc", r.mean, r.error, comps, float(np.mean(series["variance"][keep])), float(r2[0] / r2[1]),
                     nw, keep.stop - keep.start, config.tau, series["total"][keep].copy(), configs,
                     extra={"tau_eff": config.tau * r2[0] / r2[1], "neff": float(np.mean(series["neff"][keep])),
                            "plateau": float(r.plateau)}, **fkw)

