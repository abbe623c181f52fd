"""Interatomic forces from VMC and DMC samples: the zero-variance zero-bias (ZVZB) estimator.

Which derivative is computed. F_I = -dE/dR_I of the trial function's energy when nucleus I moves with

- the molecular-orbital coefficients frozen and the atomic orbitals moving with their nuclei,
- the Jastrow parameters fixed (its electron-nucleus terms move with the nuclei),
- the cusp correction of all-electron atoms re-fitted at the moved geometry (it is a function of it),
- the ECP quadrature points moving with their ion (the same random rotation on both sides).

For orbitals that are not re-optimised this is not the derivative of the energy surface the trial
function would have if it were re-made at every geometry: the difference is the "self-consistency
error" (Nakano et al., Phys. Rev. B 109, 205151 (2024)). It vanishes for the SCF determinant without a
Jastrow (the SCF energy is stationary in the orbitals, so the VMC force is the SCF gradient: the test
oracle) and is small but not zero once a Jastrow factor changes the optimal orbitals.

Estimator (Assaraf & Caffarel, J. Chem. Phys. 119, 10536 (2003)), with d_I = d/dR_I at fixed electrons:

    F_I = -<d_I E_L> - 2 (<E_L d_I ln|psi|> - <E_L><d_I ln|psi|>)

Averages are over the samples of one step (walker-weighted in DMC), then over steps. The error bar
comes from the reblocked series of the linearised estimator (delta method, so the covariances between
the four averages are included):  s_t = -a_t - 2 (q_t - E p_t - P e_t),  a = <d E_L>, p = <d ln psi>,
q = <E_L d ln psi>, e = <E_L>, E and P the run means.

Space warp (Filippi & Umrigar, Phys. Rev. B 61, R16291 (2000)), on by default: when nucleus I moves by
delta, each electron moves by omega_I(r) delta with omega_I(r) = F(|r-R_I|) / sum_J F(|r-R_J|),
F(r) = r^-4, and d ln psi gains half the log-Jacobian of that map, (1/2) sum_i d_x omega_I(r_i). The
electrons near a nucleus then move with it, which removes most of the fluctuation of the Pulay terms,
and the per-sample derivatives sum to zero over the atoms (translation invariance), so sum_I F_I = 0
holds sample by sample. The mean is unchanged: the warp is a change of integration variable.

Per-sample derivatives, two paths (``ForceConfig.method``):

- analytic (:mod:`rung.qmc.force_derivs`, the default wherever it applies: a single determinant per
  spin or a table-method multideterminant expansion (:mod:`rung.qmc.multidet_forces`, CI coefficients
  fixed) of LCAO orbitals without the cusp correction, with or without the one/two-body Jastrow, any
  ccECP or all-electron atoms): all 3 N_atom components of d ln|psi| and d E_L, warped or not, in one
  pass with the matrix formalism (Filippi, Assaraf, Moroni, J. Chem. Phys. 144, 194105 (2016)),
  grad_i E_L analytic for the warp;
- finite differences (``method="fd"``, and the fallback for everything else: three-body Jastrow, the
  per-determinant multideterminant, cusp-corrected orbitals): central differences in the nuclear coordinates with the
  electrons fixed (or warped), ``step_bohr`` = 1e-4 by default (the O(h^2) bias, ~1e-8 relative, is
  far below the statistics), the trial function and Hamiltonian re-built once per displaced geometry
  (6 N_atom copies), 6 N_atom wave-function recomputations and local energies per sample.

Both give the same derivative (the finite differences are the analytic path's test oracle) and draw
the ECP quadrature rotations from the same seeded stream in the same order, so either reproduces the
other's per-sample values. The random numbers of the derivatives come from their own stream, so an
energy run is bit-identical with forces on or off. See BENCHMARKS.md for what each costs.

Infinite variance near the nodes: d ln psi ~ 1/d and E_L ~ 1/d at distance d from a node, so
(E_L - E) d ln psi has an infinite variance and heavy tails. With ``epsilons`` set, each per-sample
term is also accumulated multiplied by the Pathak-Wagner regulariser (AIP Adv. 10, 085213 (2020)),
f(x) = 7x^6 - 15x^4 + 9x^2 for x = d/epsilon < 1 (else 1), d = 1/|grad_R ln psi| the node-distance
estimate, and the reported force is the straight-line extrapolation of F(epsilon) to epsilon = 0 (a
linear combination of the regularised series, so it gets its error bar by the same reblocking).

DMC: the mixed estimator of the same formula is Reynolds' approximation (d ln Phi replaced by
d ln psi_T; bias first order in psi_T - Phi); the hybrid 2 F_mixed - F_VMC cancels that first-order
term (bias second order in psi_T - Phi, plus the time-step and population biases of the energy). DMC
results report the hybrid when a VMC force is given, and Reynolds' value in ``extra``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rung.qmc.stats import reblock


@dataclass(frozen=True)
class ForceConfig:
    """step_bohr: nuclear displacement of the per-sample central differences (Bohr, finite-difference
    path only); every: forces at every ``every``-th step; epsilons: Pathak-Wagner node-distance
    cutoffs (Bohr), () for none; warp: space warp (electrons dragged with the nuclei, see the module
    docstring); seed: the derivative evaluations' own random stream (ECP quadrature rotations);
    method: "auto" (analytic where the trial function has that path, else finite differences),
    "analytic" (an error where it has not) or "fd" (finite differences, e.g. as a test oracle)."""

    step_bohr: float = 1e-4
    every: int = 1
    epsilons: tuple = ()
    warp: bool = True
    seed: int = 7
    method: str = "auto"

    def __post_init__(self):
        if self.method not in ("auto", "analytic", "fd"):
            raise ValueError(f"method must be 'auto', 'analytic' or 'fd', got {self.method!r}")
        if not 0 < self.step_bohr < 0.05:
            raise ValueError(f"step_bohr must be in (0, 0.05) Bohr, got {self.step_bohr}")
        if int(self.every) < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if any(not e > 0 for e in self.epsilons) or len(set(self.epsilons)) != len(self.epsilons):
            raise ValueError(f"epsilons must be distinct and > 0, got {self.epsilons}")
        if len(self.epsilons) == 1:
            raise ValueError("give at least two epsilons for the extrapolation to zero (or none)")


class NuclearDerivatives:
    """Per-sample d ln|psi| / dR and d E_L / dR (electrons fixed, or warped): analytic
    (:class:`rung.qmc.force_derivs.AnalyticDerivatives`) or by central differences (``config.method``).

    Parameters
    ----------
    build : callable(coords) -> (wf, ham), the trial function and Hamiltonian at nuclear positions
        coords (natom, 3) Bohr (same parameters, same MO coefficients); the analytic path also needs
        ``build.molecule(coords)``, the PySCF molecule there (:func:`displaced_builder` sets it)
    coords : (natom, 3) float64, Bohr
    config : ForceConfig
    backend : the analytic path's kernels (:class:`rung.qmc.force_derivs.AnalyticDerivatives`):
        "numba", "numpy" or "cupy"

    ``method`` is "analytic" or "finite differences", whichever this instance uses.
    """

    def __init__(self, build, coords, config: ForceConfig = ForceConfig(), backend: str = "numba"):
        self.config = config
        self.coords = np.array(coords, dtype=np.float64)
        self.h = float(config.step_bohr)
        self.rng = np.random.default_rng(config.seed)
        self.natom = self.coords.shape[0]
        self.analytic = None
        if config.method != "fd":
            from rung.qmc.force_derivs import AnalyticDerivatives, unsupported_reason

            molecule = getattr(build, "molecule", None)
            reason = "the builder gives no molecule (use displaced_builder)" if molecule is None else None
            if molecule is not None:
                wf, ham = build(self.coords)
                reason = unsupported_reason(wf)
            if reason is None:
                self.analytic = AnalyticDerivatives(molecule(self.coords), wf, ham, config, backend=backend)
                self.method = "analytic"
                return
            if config.method == "analytic":
                raise ValueError(f"no analytic nuclear derivatives: {reason}")
        self.method = "finite differences"
        self.displaced = []  # (atom, axis, sign) -> (wf, ham), in the order of the loop below
        for a in range(self.natom):
            for x in range(3):
                for s in (1.0, -1.0):
                    c = self.coords.copy()
                    c[a, x] += s * self.h
                    self.displaced.append(build(c))

    def __call__(self, configs, wf=None, grad=None):
        """(d ln|psi| (nw, natom, 3) Bohr^-1, d E_L (nw, natom, 3) Hartree/Bohr) at configs (nw, nelec, 3).

        ``wf`` (the sampler's trial function in the state of configs) and ``grad`` (nw, nelec, 3) (its
        grad ln psi) let the analytic path reuse the sampler's state (see
        :meth:`rung.qmc.force_derivs.AnalyticDerivatives.__call__`); the finite differences ignore them."""
        if self.analytic is not None:
            return self.analytic(configs, wf, grad)
        nw = configs.shape[0]
        state = self.rng.bit_generator.state  # one ECP rotation draw shared by every displacement
        lv = np.empty((len(self.displaced), nw))
        el = np.empty((len(self.displaced), nw))
        omega, domega = warp_weights(configs, self.coords) if self.config.warp else (None, None)
        for k, (wf, ham) in enumerate(self.displaced):
            rng = np.random.default_rng()
            rng.bit_generator.state = state
            a, x, s = k // 6, (k // 2) % 3, 1.0 - 2.0 * (k % 2)
            c, logjac = configs, 0.0
            if omega is not None:  # r_i -> r_i + omega_a(r_i) s h e_x; Jacobian prod_i (1 + s h d_x omega_a(r_i))
                c = configs.copy()
                c[:, :, x] += s * self.h * omega[:, :, a]
                logjac = 0.5 * np.log1p(s * self.h * domega[:, :, a, x]).sum(-1)
            lv[k] = wf.recompute(c)[1] + logjac
            el[k] = ham.local_energy(wf, c, rng)["total"]
        self.rng.bit_generator.state = rng.bit_generator.state
        shape = (self.natom, 3, 2, nw)
        lv, el = lv.reshape(shape), el.reshape(shape)
        dl = (lv[:, :, 0] - lv[:, :, 1]) / (2 * self.h)  # (natom, 3, nw)
        de = (el[:, :, 0] - el[:, :, 1]) / (2 * self.h)
        return dl.transpose(2, 0, 1), de.transpose(2, 0, 1)

    def state(self) -> dict:
        return (self.analytic.rng if self.analytic is not None else self.rng).bit_generator.state

    def set_state(self, state: dict) -> None:
        (self.analytic.rng if self.analytic is not None else self.rng).bit_generator.state = state


def warp_weights(configs, coords, power: int = 4):
    """Space-warp weights omega_I(r) = F(|r - R_I|) / sum_J F(|r - R_J|), F(r) = r^-power, and their
    gradients: (nw, ne, natom) and (nw, ne, natom, 3) Bohr^-1 (Filippi & Umrigar, PRB 61, R16291 (2000))."""
    d = configs[:, :, None, :] - coords  # (nw, ne, natom, 3)
    r2 = np.maximum(np.einsum("weax,weax->wea", d, d), 1e-300)
    f = r2 ** (-power / 2)
    df = -power * f[..., None] * d / r2[..., None]  # grad F_I
    s = f.sum(-1, keepdims=True)
    ds = df.sum(-2, keepdims=True)
    omega = f / s
    domega = (df * s[..., None] - f[..., None] * ds) / (s**2)[..., None]
    return omega, domega


def regulariser(d, eps) -> np.ndarray:
    """Pathak-Wagner f(d / eps): 7x^6 - 15x^4 + 9x^2 below eps, 1 above. d (...,) Bohr."""
    x2 = np.minimum(np.asarray(d) / eps, 1.0) ** 2
    return np.where(x2 < 1.0, x2 * (9.0 + x2 * (-15.0 + 7.0 * x2)), 1.0)


class ForceAccumulator:
    """Per-step averages of the ZVZB ingredients, for the unregularised and each regularised estimator.

    Arrays (index 0 unregularised, k >= 1 the k-th epsilon): ``a`` <d E_L>, ``p`` <d ln psi>,
    ``q`` <E_L d ln psi>, each (nreg, nsteps, natom, 3); ``e`` <E_L> (nsteps,).
    """

    def __init__(self, natom: int, epsilons=(), capacity: int = 0):
        self.epsilons = tuple(float(e) for e in epsilons)
        nreg = 1 + len(self.epsilons)
        self.a = np.zeros((nreg, capacity, natom, 3))
        self.p = np.zeros_like(self.a)
        self.q = np.zeros_like(self.a)
        self.e = np.zeros(capacity)
        self.n = 0

    def add(self, el, grad, dl, de, weights=None) -> None:
        """One step: el (nw,) Hartree, grad (nw, nelec, 3) grad ln psi, dl, de (nw, natom, 3)."""
        if not (np.all(np.isfinite(dl)) and np.all(np.isfinite(de))):
            raise FloatingPointError("non-finite nuclear derivative of ln psi or E_L (walker on a node or nucleus?)")
        w = np.ones(el.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        w = w / w.sum()
        if self.n == self.e.size:  # grow
            grow = max(16, self.n)
            pad = ((0, 0), (0, grow), (0, 0), (0, 0))
            self.a, self.p, self.q = (np.pad(x, pad) for x in (self.a, self.p, self.q))
            self.e = np.pad(self.e, (0, grow))
        d = 1.0 / np.maximum(np.sqrt(np.einsum("wex,wex->w", grad, grad)), 1e-300)  # node distance, Bohr
        fs = [np.ones_like(el)] + [regulariser(d, eps) for eps in self.epsilons]
        for k, f in enumerate(fs):
            wf = w * f
            self.a[k, self.n] = np.einsum("w,wax->ax", wf, de)
            self.p[k, self.n] = np.einsum("w,wax->ax", wf, dl)
            self.q[k, self.n] = np.einsum("w,wax->ax", wf * el, dl)
        self.e[self.n] = w @ el
        self.n += 1

    def arrays(self) -> dict:
        n = self.n
        return {"force_a": self.a[:, :n], "force_p": self.p[:, :n], "force_q": self.q[:, :n], "force_e": self.e[:n]}

    @classmethod
    def from_arrays(cls, arrays: dict, epsilons=()) -> "ForceAccumulator":
        acc = cls(arrays["force_a"].shape[2], epsilons)
        acc.a, acc.p, acc.q, acc.e = (np.array(arrays[k]) for k in ("force_a", "force_p", "force_q", "force_e"))
        acc.n = acc.e.size
        return acc

    def estimate(self, start: int = 0) -> "ForceEstimate":
        """ZVZB forces from steps ``start`` on (the extrapolation to epsilon = 0 when epsilons are set)."""
        sl = slice(start, self.n)
        e = self.e[sl]
        f, s = zip(*(zvzb(e, self.a[k, sl], self.p[k, sl], self.q[k, sl]) for k in range(self.a.shape[0])))
        per_eps = {0.0: (f[0], _errors(s[0]))}
        for k, eps in enumerate(self.epsilons, start=1):
            per_eps[eps] = (f[k], _errors(s[k]))
        if self.epsilons:
            eps = np.array(self.epsilons)
            c = np.linalg.pinv(np.stack([np.ones_like(eps), eps], 1))[0]  # intercept of a straight line
            force = sum(ck * fk for ck, fk in zip(c, f[1:]))
            series = sum(ck * sk for ck, sk in zip(c, s[1:]))
        else:
            force, series = f[0], s[0]
        return ForceEstimate(force, _errors(series), per_eps, series)


@dataclass(frozen=True)
class ForceEstimate:
    """forces, errors (natom, 3) Hartree/Bohr; per_epsilon {eps: (forces, errors)} (0.0: unregularised);
    series (nsteps, natom, 3): the linearised per-step estimator whose reblocked error is ``errors``."""

    forces: np.ndarray
    errors: np.ndarray
    per_epsilon: dict
    series: np.ndarray

    def result_fields(self, vmc_forces=None) -> dict:
        """:class:`rung.qmc.vmc.QMCResult` keyword arguments. With ``vmc_forces`` (forces, errors) of the
        VMC run (for a DMC estimate) the forces are the hybrid 2 F_mixed - F_VMC, errors added in
        quadrature (independent runs), and the mixed one is kept as ``force_estimates["reynolds"]``;
        the per-epsilon estimates are kept when regularised ones were accumulated."""
        other = {}
        if len(self.per_epsilon) > 1:
            other = {("unregularised" if eps == 0 else f"epsilon={eps:g}"): fe for eps, fe in self.per_epsilon.items()}
        if vmc_forces is None:
            return {"forces": self.forces, "forces_error": self.errors, "force_estimates": other}
        fv, ev = vmc_forces
        other["reynolds"] = (self.forces, self.errors)
        return {"forces": 2.0 * self.forces - fv, "forces_error": np.sqrt(4.0 * self.errors**2 + ev**2),
                "force_estimates": other}


def zvzb(e, a, p, q):
    """ZVZB force and its linearised per-step series.

    e (n,) <E_L>; a, p, q (n, natom, 3) <d E_L>, <d ln psi>, <E_L d ln psi> per step.
    Returns (F (natom, 3), s (n, natom, 3)) with mean(s) = F up to a constant and the same fluctuations
    to first order.
    """
    E, P = e.mean(), p.mean(0)
    F = -a.mean(0) - 2.0 * (q.mean(0) - E * P)
    s = -a - 2.0 * (q - E * p - e[:, None, None] * P)
    s = s - s.mean(0) + F
    return F, s


def _errors(series) -> np.ndarray:
    n, natom, _ = series.shape
    flat = series.reshape(n, -1)
    return np.array([reblock(flat[:, k]).error for k in range(flat.shape[1])]).reshape(natom, 3)


def displaced_builder(mol, orb, *, parameters=None, **wf_options):
    """build(coords) -> (wf, ham) for :class:`NuclearDerivatives`: the trial function of
    :func:`rung.qmc.system.slater_jastrow` with the same MO coefficients and parameters at other nuclear
    positions (Bohr)."""
    from rung.qmc.hamiltonian import Hamiltonian
    from rung.qmc.system import slater_jastrow

    def molecule(coords):
        m = mol.copy()
        m.set_geom_(np.asarray(coords), unit="Bohr")
        m.verbose = 0
        return m

    def build(coords):
        m = molecule(coords)
        return slater_jastrow(m, orb, parameters=parameters, **wf_options), Hamiltonian.from_mol(m)

    build.molecule = molecule
    return build
