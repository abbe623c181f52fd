"""Variational Monte Carlo: electron-by-electron drift-diffusion Metropolis-Hastings, walkers batched.

Each step moves every electron once (a *sweep*) in every walker. Proposal (Umrigar-limited drift):

    r' = r + tau vbar(r) + sqrt(tau) eta,   eta ~ N(0, 1)
    vbar = v (-1 + sqrt(1 + 2 a v^2 tau)) / (a v^2 tau),  v = grad log psi,  a = 1
    accept with min(1, |psi(R')/psi(R)|^2 T(r|r') / T(r'|r)),  T(r'|r) ∝ exp(-|r' - r - tau vbar(r)|^2 / 2 tau)

The local energy is averaged over walkers at every step; error bars come from reblocking that series.
References: C. J. Umrigar, M. P. Nightingale, K. J. Runge, J. Chem. Phys. 99, 2865 (1993);
W. M. C. Foulkes et al., Rev. Mod. Phys. 73, 33 (2001).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from rung.core.errors import InputError
from rung.qmc.hamiltonian import COMPONENTS
from rung.qmc.stats import reblock
from rung.qmc.wavefunction import ratio_vector_parts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VMCConfig:
    """nwalkers; nblocks x nsteps sweeps after nequil equilibration sweeps; tau (a.u. time); seed."""

    nwalkers: int = 100
    nblocks: int = 10
    nsteps: int = 10
    nequil: int = 20
    tau: float = 0.3
    seed: int = 0

    def __post_init__(self):
        for name in ("nwalkers", "nblocks", "nsteps"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.nblocks * self.nsteps < 2:  # refused here, not after the run
            raise InputError(f"nblocks x nsteps = {self.nblocks} x {self.nsteps}: the error bar needs at least 2 samples")
        if self.nequil < 0 or not self.tau > 0:
            raise InputError("nequil must be >= 0 and tau > 0")


@dataclass(frozen=True)
class QMCResult:
    """Energies in Hartree. components: {name: (mean, error)}; trace: (nsteps,) walker-averaged E_L.

    forces, forces_error: (natom, 3) Hartree/Bohr when forces were asked for (:mod:`rung.qmc.forces`),
    else None; force_estimates: {name: ((natom, 3), (natom, 3))} the other estimates (per epsilon when
    regularised, "reynolds": the mixed estimate of a DMC whose forces are the hybrid)."""

    method: str
    energy: float
    error: float
    components: dict
    variance: float
    acceptance: float
    nwalkers: int
    nsteps: int
    tau: float
    trace: np.ndarray = field(repr=False)
    configs: np.ndarray = field(repr=False)
    extra: dict = field(default_factory=dict)
    forces: np.ndarray | None = None
    forces_error: np.ndarray | None = None
    force_estimates: dict = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        from rung.qmc.stats import format_value

        note = "" if self.extra.get("plateau", 1.0) else "  (no plateau in the blocking curve: error bar may be too small)"
        return f"E({self.method.upper()}) = {format_value(self.energy, self.error)} Ha{note}"

    def to_hdf5(self, path, backend: str = "numba") -> None:
        """Write the result (energies, components, per-step trace, final walkers) to an HDF5 file."""
        import json

        import h5py

        from rung.qmc import __version__

        with h5py.File(path, "w") as f:
            f.attrs.update(schema="rung.qmc.result", schema_version=1, package_version=__version__, backend=backend,
                           method=self.method, nwalkers=self.nwalkers, nsteps=self.nsteps, tau=self.tau,
                           acceptance=float(self.acceptance), extra=json.dumps({k: float(v) for k, v in self.extra.items()}))
            for name, value, unit in (("energy", self.energy, "hartree"), ("error", self.error, "hartree"),
                                      ("variance", self.variance, "hartree^2"), ("trace", self.trace, "hartree"),
                                      ("configs", self.configs, "bohr")):
                f.create_dataset(name, data=value).attrs["units"] = unit
            g = f.create_group("components")
            for k, (m, e) in self.components.items():
                g.create_dataset(k, data=[m, e]).attrs["units"] = "hartree"
            if self.forces is not None:
                g = f.create_group("forces")
                for k, (m, e) in {"best": (self.forces, self.forces_error), **self.force_estimates}.items():
                    g.create_dataset(k, data=np.stack([m, e])).attrs["units"] = "hartree/bohr"

    @classmethod
    def from_hdf5(cls, path) -> "QMCResult":
        import json

        import h5py

        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != "rung.qmc.result":
                raise ValueError(f"{path}: not a rung.qmc result file")
            a = f.attrs
            fo = {k: tuple(f["forces"][k][()]) for k in f["forces"]} if "forces" in f else {}
            best = fo.pop("best", (None, None))
            return cls(str(a["method"]), float(f["energy"][()]), float(f["error"][()]),
                       {k: tuple(map(float, f["components"][k][()])) for k in f["components"]},
                       float(f["variance"][()]), float(a["acceptance"]), int(a["nwalkers"]), int(a["nsteps"]),
                       float(a["tau"]), f["trace"][()], f["configs"][()], json.loads(a["extra"]), *best, fo)


def limit_drift(v, tau, a=1.0):
    """Umrigar drift limiting per electron: v (..., 3) -> vbar (..., 3)."""
    v2 = np.einsum("...x,...x->...", v, v)
    av2t = a * v2 * tau
    f = np.where(av2t > 1e-12, (np.sqrt(1.0 + 2.0 * av2t) - 1.0) / np.where(av2t > 1e-12, av2t, 1.0), 1.0)
    return v * f[..., None]


def check_configs(configs) -> np.ndarray:
    c = np.asarray(configs, dtype=np.float64)
    if c.ndim != 3 or c.shape[-1] != 3:
        raise ValueError(f"walker configurations must have shape (nwalkers, nelec, 3), got {c.shape}")
    if not np.all(np.isfinite(c)):
        bad = np.unique(np.argwhere(~np.isfinite(c))[:, 0])
        raise ValueError(f"walker configurations contain NaN or infinite coordinates (walkers {bad[:5].tolist()})")
    return c.copy()


def sweep(wf, configs, tau, rng, fixed_node=False, fused=True):
    """One drift-diffusion sweep over all electrons (in place). Returns (accepted fraction, tau_eff factor).

    With ``fixed_node`` moves that change the sign of psi are rejected (DMC). A plain Slater(-Jastrow)
    or table-method multi-Slater(-Jastrow) wave function (:func:`rung.qmc.wavefunction.ratio_vector_parts`)
    takes the fused numba path unless ``fused`` is False (same random numbers and arithmetic up to
    round-off; the generic component-protocol path below is its oracle).
    """
    parts = ratio_vector_parts(wf) if fused else None
    if parts is not None:
        return _sweep_fused(*parts, configs, tau, rng, fixed_node)
    nw, ne, _ = configs.shape
    acc, r2_acc, r2_prop = 0.0, 0.0, 0.0
    for e in range(ne):
        g_old = limit_drift(wf.gradient_value(e, configs[:, e])[0].T, tau)
        step = np.sqrt(tau) * rng.normal(size=(nw, 3))
        new = configs[:, e] + tau * g_old + step
        g_new, ratio, saved = wf.gradient_value(e, new)
        g_new = limit_drift(g_new.T, tau)
        fwd = np.sum((new - configs[:, e] - tau * g_old) ** 2, -1)
        bwd = np.sum((configs[:, e] - new - tau * g_new) ** 2, -1)
        prob = ratio**2 * np.exp((fwd - bwd) / (2.0 * tau))
        ok = rng.random(nw) < prob
        if fixed_node:
            ok &= ratio > 0
        d2 = np.sum((new - configs[:, e]) ** 2, -1)  # proposed displacement^2, for tau_eff
        wf.accept(e, new, ok, saved)
        configs[ok, e] = new[ok]
        acc += ok.mean()
        r2_prop += d2.sum()
        r2_acc += (d2 * ok).sum()
    return acc / ne, (r2_acc / r2_prop if r2_prop > 0 else 0.0)


def _sweep_fused(det, jas, configs, tau, rng, fixed_node):
    """:func:`sweep` for D_up D_down or a table-method multi-Slater expansion
    (:class:`rung.qmc.multideterminant.TableMultiSlater`) [x exp(J)]: per electron one numba call before
    and one after the orbital evaluation at the proposed positions (:mod:`rung.qmc._kernels.cpu`,
    ``sweep_*``); the expansion's ratio vector beta takes the place of the inverse's column."""
    from rung.qmc._kernels.cpu import sweep_accept, sweep_accept_table, sweep_propose
    from rung.qmc.determinants import SlaterDeterminant
    from rung.qmc.jastrow import no_jastrow_arguments

    table = type(det) is not SlaterDeterminant
    nw, ne, _ = configs.shape
    logval = jas.logval if jas is not None else np.zeros(nw)
    acc, r2_acc, r2_prop = 0.0, 0.0, 0.0
    for e in range(ne):
        s, i = det._spin(e)
        jargs = jas.kernel_arguments(e) if jas is not None else no_jastrow_arguments(det.configs, e)
        step = np.sqrt(tau) * rng.normal(size=(nw, 3))
        col = det.beta(e) if table else det.inverse[s][:, :, i]
        new, vbar, j_cur = sweep_propose(np.ascontiguousarray(det.configs[:, e]), det.mo[s][:, :, i], col, step, tau,
                                         jas is not None, *jargs)
        mo_new = det.orbitals[s](new, 2)  # (5, nw, norb)
        u = rng.random(nw)
        if table:
            ok, d2 = sweep_accept_table(i, new, vbar, mo_new, col, det.configs, configs, u, tau, fixed_node,
                                        jas is not None, j_cur, logval, *det._accept_arguments(s), *jargs)
            if ok.any():
                det.moved(s)  # psi updated per move from the other spin's partial contraction, which stays
        else:
            ok, d2 = sweep_accept(i, new, vbar, mo_new, det.inverse[s], det.mo[s], det.sign, det.logdet, det.configs,
                                  configs, u, tau, fixed_node, jas is not None, j_cur, logval, *jargs)
        if jas is not None and ok.any():
            jas._cache = {}
        acc += ok.mean()
        r2_prop += d2.sum()
        r2_acc += (d2 * ok).sum()
    return acc / ne, (r2_acc / r2_prop if r2_prop > 0 else 0.0)


def vmc(wf, ham, configs, config: VMCConfig = VMCConfig(), *, rng=None, progress=None, forces=None) -> QMCResult:
    """Run VMC from walker positions configs (nwalkers, nelec, 3) Bohr; returns a :class:`QMCResult`.

    ``forces``: a :class:`rung.qmc.forces.NuclearDerivatives`; the result then carries ZVZB forces.
    """
    from rung.qmc.forces import ForceAccumulator

    configs = check_configs(configs)
    rng = rng if rng is not None else np.random.default_rng(config.seed)
    wf.recompute(configs)
    for _ in range(config.nequil):
        sweep(wf, configs, config.tau, rng)
    ntot = config.nblocks * config.nsteps
    series = {k: np.zeros(ntot) for k in COMPONENTS + ("total",)}
    var = np.zeros(ntot)
    acc = 0.0
    facc = None if forces is None else ForceAccumulator(forces.natom, forces.config.epsilons, ntot)
    t0 = time.perf_counter()
    i = 0
    for b in range(config.nblocks):
        if b > 0 or config.nequil > 0:  # (the state is fresh from the recomputation above otherwise)
            wf.recompute(configs)  # bound Sherman-Morrison round-off
        for _ in range(config.nsteps):
            a, _ = sweep(wf, configs, config.tau, rng)
            acc += a
            el, grad = ham.local_energy(wf, configs, rng, return_grad=True)
            if not np.all(np.isfinite(el["total"])):
                raise FloatingPointError("non-finite local energy in VMC (walker on a node or a nucleus?)")
            if facc is not None and i % forces.config.every == 0:
                facc.add(el["total"], grad, *forces(configs, wf, grad))
            for k in series:
                series[k][i] = el[k].mean()
            var[i] = el["total"].var()
            i += 1
        if progress is not None:
            progress(b + 1, config.nblocks, series["total"][:i].mean(), time.perf_counter() - t0)
    r = reblock(series["total"])
    comps = {}
    for k in COMPONENTS:
        rb = reblock(series[k])
        comps[k] = (rb.mean, rb.error)
    fkw = {} if facc is None else facc.estimate().result_fields()
    if not r.plateau:
        log.warning("VMC: the blocking curve of the energy has no plateau (%d steps are too few for its "
                    "correlation time): the error bar may be too small", ntot)
    return QMCResult("vmc", r.mean, r.error, comps, float(var.mean()), acc / ntot, config.nwalkers, ntot,
                     config.tau, series["total"], configs, extra={"plateau": float(r.plateau)}, **fkw)

