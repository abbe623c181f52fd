"""Conformance kit for wave-function components (PyQMC's ``testwf`` idea): one call checks a component.

Any object of the protocol in :mod:`rung.qmc.wavefunction` (a single component such as a
:class:`~rung.qmc.determinants.SlaterDeterminant` or :class:`~rung.qmc.jastrow.Jastrow`, or a
:class:`~rung.qmc.wavefunction.ProductWF`) is compared, on the walkers ``configs`` (nwalkers, nelec, 3)
float64 Bohr, with independent evaluations of itself:

- :func:`check_ratios`: ``testvalue`` against two full ``recompute`` calls; the ratio of
  ``gradient_value``; the many-point and masked (ECP) forms of ``testvalue`` against single points;
- :func:`check_derivatives`: grad psi / psi and lap psi / psi of ``gradient_value``,
  ``gradient_laplacian`` (at the electron's position and at a moved one) and
  ``gradient_laplacian_all`` against finite differences of psi(R + x) / psi(R);
- :func:`check_parameter_derivatives`: ``pgradient`` against finite differences of log|psi| in each
  parameter, and, for components that have it (Jastrow factors, optimised CI coefficients),
  ``parameter_terms`` (the parameter derivatives of the log ratio, grad_e ln psi and lap_e ln psi that
  the optimiser uses) against finite differences of ``testvalue`` and ``gradient_laplacian``, and the
  optional value-only ``parameter_values`` against the first of ``parameter_terms``;
- :func:`check_updates`: after random single-electron moves, each accepted for a random subset of the
  walkers (with and without the data ``gradient_value`` saved), and after ``resample``, the value, the
  derivatives and a ratio equal those of a fresh ``recompute`` at the same positions;
- :func:`check_nuclear_derivatives`: per-sample d ln|psi| / dR and d E_L / dR (the interface of
  :class:`rung.qmc.forces.NuclearDerivatives`, e.g. :class:`rung.qmc.force_derivs.AnalyticDerivatives`)
  against central differences of trial functions re-built at displaced nuclei.

Each ``check_*`` returns ``{quantity: error}``, the largest error over walkers, electrons and
components of ``|a - b| / (1 + |b|)`` (a the quantity under test, b the reference; relative for large
values, absolute for small ones; errors of log|psi| are absolute, i.e. relative errors of psi).
:func:`check_wavefunction` runs the four wave-function checks; :func:`assert_conforms` compares a
report with :data:`TOLERANCES` and raises ``AssertionError`` naming every quantity that fails.

Finite differences of the ratio r(x) = psi(R + x e_{i,a}) / psi(R), smooth through nodes (unlike
log|psi|), with the five-point stencils (error O(h^4))

    grad_{i,a} psi / psi = r'(0)  ~ [8 (r(h) - r(-h)) - (r(2h) - r(-2h))] / (12 h)
    lap_i psi / psi = sum_a r''(0) ~ sum_a [16 (r(h) + r(-h)) - (r(2h) + r(-2h)) - 30] / (12 h^2)

and the same first-derivative stencil for parameters (nuclear positions: central differences, or
with ``richardson`` their extrapolation from h and 2h, which is that stencil). The ratio is taken as
(s' / s) exp(log' - log) from ``recompute``'s (sign, log|psi|), which also holds for a complex phase s
(rung's trial functions are real). Choose walkers away from nodes and nuclei (by more than a few h):
the stencils assume psi smooth over [-2h, 2h]; the cusp corrections and Jastrow cutoffs are continuous
to the second derivative only, so a walker within 2h of r_c can fail the Laplacian check at ~h
relative.

The kit leaves the wave function recomputed at ``configs`` with its parameters unchanged; it adds no
hooks to the components. The checks follow the idea of PyQMC's ``testwf`` module (github.com/WagnerGroup/
pyqmc); the code is this package's own.
"""

from __future__ import annotations

import numpy as np

#: default tolerances of :func:`assert_conforms`: identities that hold to round-off (1e-9), and finite
#: differences (h^4 truncation plus round-off of the ratios divided by h or h^2). Largest errors seen
#: (ccECP and all-electron water, open-shell LiH, C2, 4 walkers x 3 seeds, h = 1e-3 / 3e-4 Bohr):
#: gradients 1e-8, Laplacians 5e-7, parameter derivatives 4e-11, identities 2e-12
TOLERANCES = {
    "ratio": 1e-9,
    "ratio.gradient_value": 1e-9,
    "ratio.points": 1e-9,
    "ratio.mask": 1e-9,
    "gradient_value": 1e-7,
    "gradient_laplacian.grad": 1e-7,
    "gradient_laplacian.lap": 1e-5,
    "gradient_laplacian_all.grad": 1e-7,
    "gradient_laplacian_all.lap": 1e-5,
    "pgradient": 1e-8,
    "parameter_terms.value": 1e-8,
    "parameter_terms.grad": 1e-8,
    "parameter_terms.lap": 1e-8,
    "parameter_values": 1e-9,
    "update.value": 1e-9,
    "update.derivatives": 1e-8,
    "update.ratio": 1e-9,
    "resample.value": 1e-9,
    "resample.derivatives": 1e-8,
    "resample.ratio": 1e-9,
    "nuclear.dlogpsi": 1e-6,
    "nuclear.dlocal_energy": 1e-6,
}


def _err(a, b) -> float:
    """max |a - b| / (1 + |b|) over all entries (0 for empty arrays)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} where {b.shape} is expected")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / (1.0 + np.abs(b))))


def _worst(out, key, a, b) -> None:
    """out[key] = max(out[key], _err(a, b))."""
    out[key] = max(out.get(key, 0.0), _err(a, b))


def _derivative(f, h):
    """f'(0) by the five-point stencil [8 (f(h) - f(-h)) - (f(2h) - f(-2h))] / (12 h), error O(h^4);
    f returns an array or a tuple of arrays (then a list of derivatives)."""
    def stencil(m2, m1, p1, p2):
        return (8.0 * (p1 - m1) - (p2 - m2)) / (12.0 * h)

    v = [f(k * h) for k in (-2, -1, 1, 2)]
    return [stencil(*x) for x in zip(*v)] if isinstance(v[0], tuple) else stencil(*v)


def _ratio(wf, configs, sign0, log0):
    """psi(configs) / psi_0 by a full recomputation, (nwalkers,)."""
    s, l = wf.recompute(configs)
    return s / sign0 * np.exp(l - log0)


def _moves(rng, configs, step):
    """(nwalkers, nelec, 3): a random new position for every electron, a normal step of ``step`` Bohr."""
    return configs + rng.normal(scale=step, size=configs.shape)


def check_ratios(wf, configs, *, step: float = 0.3, npts: int = 4, seed: int = 0) -> dict:
    """Ratios psi(R')/psi(R) of one-electron moves against full recomputations.

    Parameters
    ----------
    wf : wave-function component or product (protocol of :mod:`rung.qmc.wavefunction`)
    configs : (nwalkers, nelec, 3) float64, Bohr
    step : size of the random moves, Bohr
    npts : points per walker of the many-point (ECP quadrature) form of ``testvalue``
    seed : random moves

    Returns
    -------
    dict with "ratio" (``testvalue`` against recompute), "ratio.gradient_value" (its ratio, also 1 at the
    current position), "ratio.points" ((nwalkers, npts, 3) against single points) and "ratio.mask" (bool
    and index masks, with repeats, against the unmasked call).
    """
    configs = np.array(configs, dtype=np.float64)
    nw, ne, _ = configs.shape
    rng = np.random.default_rng(seed)
    new = _moves(rng, configs, step)
    pts = configs[:, :, None] + rng.normal(scale=step, size=(nw, ne, npts, 3))  # (nw, ne, npts, 3)
    mask = np.arange(nw) % 2 == 0  # bool mask
    index = np.array([nw - 1, 0, nw - 1])  # walker indices, with a repeat
    out = dict.fromkeys(("ratio", "ratio.gradient_value", "ratio.points", "ratio.mask"), 0.0)

    sign0, log0 = wf.recompute(configs)
    got = []
    for e in range(ne):
        r = wf.testvalue(e, new[:, e])
        got.append(r)
        _worst(out, "ratio.gradient_value", wf.gradient_value(e, new[:, e])[1], r)
        _worst(out, "ratio.gradient_value", wf.gradient_value(e, configs[:, e])[1], np.ones(nw))
        many = wf.testvalue(e, pts[:, e])  # (nw, npts)
        single = np.stack([wf.testvalue(e, pts[:, e, p]) for p in range(npts)], axis=1)
        _worst(out, "ratio.points", many, single)
        _worst(out, "ratio.mask", wf.testvalue(e, pts[mask, e], mask), many[mask])
        _worst(out, "ratio.mask", wf.testvalue(e, pts[index, e], index), many[index])
        _worst(out, "ratio.mask", wf.testvalue(e, new[mask, e], mask), r[mask])
    for e in range(ne):
        trial = configs.copy()
        trial[:, e] = new[:, e]
        _worst(out, "ratio", got[e], _ratio(wf, trial, sign0, log0))
    wf.recompute(configs)
    return out


def _fd_electron(wf, configs, e, h):
    """grad psi / psi (3, nwalkers) and lap psi / psi (nwalkers,) for electron e by five-point
    differences of full recomputations; leaves wf in an undefined state."""
    sign0, log0 = wf.recompute(configs)
    grad = np.zeros((3, configs.shape[0]))
    lap = np.zeros(configs.shape[0])
    for a in range(3):
        r = {}
        for k in (-2, -1, 1, 2):
            c = configs.copy()
            c[:, e, a] += k * h
            r[k] = _ratio(wf, c, sign0, log0)
        grad[a] = (8.0 * (r[1] - r[-1]) - (r[2] - r[-2])) / (12.0 * h)
        lap += (16.0 * (r[1] + r[-1]) - (r[2] + r[-2]) - 30.0) / (12.0 * h * h)
    return grad, lap


def check_derivatives(wf, configs, *, eps: float = 1e-3, step: float = 0.3, seed: int = 0) -> dict:
    """grad psi / psi and lap psi / psi against five-point finite differences (module docstring).

    Parameters
    ----------
    wf : wave-function component or product
    configs : (nwalkers, nelec, 3) float64, Bohr
    eps : finite-difference step h, Bohr
    step : size of the random move of the "moved" checks, Bohr
    seed : random moves

    Returns
    -------
    dict with "gradient_value" (its gradient at the electron's position and at a moved one),
    "gradient_laplacian.grad", "gradient_laplacian.lap" (both positions), "gradient_laplacian_all.grad"
    and "gradient_laplacian_all.lap".
    """
    configs = np.array(configs, dtype=np.float64)
    nw, ne, _ = configs.shape
    new = _moves(np.random.default_rng(seed), configs, step)
    wf.recompute(configs)
    g_all, l_all = wf.gradient_laplacian_all()  # (nw, ne, 3), (nw, ne)
    analytic = []  # (electron, at its position?, position, gradient_value grad, gradient_laplacian grad, lap)
    for e in range(ne):
        for current, pos in ((True, configs[:, e]), (False, new[:, e])):
            g1 = wf.gradient_value(e, pos)[0]
            g2, lap = wf.gradient_laplacian(e, pos)
            analytic.append((e, current, pos, g1, g2, lap))
    out = dict.fromkeys(("gradient_value", "gradient_laplacian.grad", "gradient_laplacian.lap",
                         "gradient_laplacian_all.grad", "gradient_laplacian_all.lap"), 0.0)
    for e, current, pos, g1, g2, lap in analytic:
        c = configs.copy()
        c[:, e] = pos
        fg, fl = _fd_electron(wf, c, e, eps)
        _worst(out, "gradient_value", g1, fg)
        _worst(out, "gradient_laplacian.grad", g2, fg)
        _worst(out, "gradient_laplacian.lap", lap, fl)
        if current:
            _worst(out, "gradient_laplacian_all.grad", g_all[:, e].T, fg)
            _worst(out, "gradient_laplacian_all.lap", l_all[:, e], fl)
    wf.recompute(configs)
    return out


def _parameter_views(wf):
    """[(name, array)] of wf's parameters: the arrays themselves, modified in place."""
    return list(wf.parameters.items())


def _components_with_terms(wf):
    """The parts of wf that provide ``parameter_terms`` (wf itself, or the components of a product)."""
    if hasattr(wf, "parameter_terms"):
        return [wf]
    return [c for c in getattr(wf, "components", []) if hasattr(c, "parameter_terms")]


def check_parameter_derivatives(wf, configs, *, eps: float = 1e-4, step: float = 0.3, seed: int = 0) -> dict:
    """d ln psi / d p (``pgradient``) and ``parameter_terms`` against central differences in each parameter.

    ``parameter_terms(e, epos)`` (epos (nwalkers, P, 3)) gives per parameter p, flattened in the order
    of the component's ``parameters`` dict, three arrays (npar, nwalkers, P[, 3]) whose differences and
    derivatives are checked as d_p [ln psi(R') - ln psi(R)] (R' with electron e at epos, from
    ``testvalue``), d_p grad_e ln psi(R') and d_p lap_e ln psi(R') (from ``gradient_laplacian``).

    Parameters
    ----------
    wf : wave-function component or product; its parameters are restored afterwards
    configs : (nwalkers, nelec, 3) float64, Bohr
    eps : step in each parameter
    step, seed : the random moved positions of the ``parameter_terms`` check, Bohr

    Returns
    -------
    dict with "pgradient" and, where a component has ``parameter_terms``, "parameter_terms.value",
    "parameter_terms.grad" and "parameter_terms.lap" (and "parameter_values" where it has that);
    empty for a wave function without parameters.
    """
    configs = np.array(configs, dtype=np.float64)
    nw, ne, _ = configs.shape
    params = _parameter_views(wf)
    if not params:
        wf.recompute(configs)
        return {}
    new = _moves(np.random.default_rng(seed), configs, step)
    wf.recompute(configs)
    pg = wf.pgradient()
    out = {"pgradient": 0.0}
    saved = [v.copy() for _, v in params]
    try:
        for (name, v), s in zip(params, saved):
            ana = np.asarray(pg[name]).reshape(nw, -1)  # (nw, size)
            for j, idx in enumerate(np.ndindex(v.shape)):

                def log(t):
                    v[idx] = s[idx] + t
                    return wf.recompute(configs)[1]

                fd = _derivative(log, eps)
                v[...] = s
                _worst(out, "pgradient", ana[:, j], fd)
        for comp in _components_with_terms(wf):
            for key, val in _check_parameter_terms(comp, configs, new, eps).items():
                out[key] = max(out.get(key, 0.0), val)
    finally:
        for (_, v), s in zip(params, saved):
            v[...] = s
        wf.recompute(configs)
    return out


def _terms_fd(comp, configs, pts):
    """Per electron e, with e at pts[:, e, 0] (its position) and pts[:, e, 1]: ln ratio, grad_e ln psi and
    lap_e ln psi at the current parameters: (ne, nw, 2), (ne, nw, 2, 3), (ne, nw, 2)."""
    comp.recompute(configs)
    logr, grad, lap = [], [], []
    for e in range(configs.shape[1]):
        logr.append(np.log(np.abs(comp.testvalue(e, pts[:, e]))))
        for p in range(2):
            g, l = comp.gradient_laplacian(e, pts[:, e, p])  # (3, nw) grad psi/psi; lap psi/psi (nw,)
            grad.append(g.T)
            lap.append(l - np.einsum("xw,xw->w", g, g))  # lap ln psi
    nw, ne = configs.shape[:2]
    return (np.array(logr), np.array(grad).reshape(ne, 2, nw, 3).swapaxes(1, 2),
            np.array(lap).reshape(ne, 2, nw).swapaxes(1, 2))


def _check_parameter_terms(comp, configs, new, eps):
    nw, ne, _ = configs.shape
    pts = np.stack([configs, new], axis=2)  # (nw, ne, 2, 3): each electron at its position and moved
    comp.recompute(configs)
    terms = [comp.parameter_terms(e, pts[:, e]) for e in range(ne)]  # each (npar, nw, 2[, 3])
    val, grad, lap = (np.stack([t[i] for t in terms], axis=1) for i in range(3))  # (npar, ne, nw, 2[, 3])
    out = {"parameter_terms.value": 0.0, "parameter_terms.grad": 0.0, "parameter_terms.lap": 0.0}
    if hasattr(comp, "parameter_values"):  # the optional value-only path (ECP quadrature points)
        for e in range(ne):
            _worst(out, "parameter_values", comp.parameter_values(e, pts[:, e]), terms[e][0])
    j = 0
    for _, v in _parameter_views(comp):
        s = v.copy()
        for idx in np.ndindex(v.shape):

            def terms(t):
                v[idx] = s[idx] + t
                return _terms_fd(comp, configs, pts)

            fd = _derivative(terms, eps)
            v[...] = s
            _worst(out, "parameter_terms.value", val[j, ..., 1] - val[j, ..., 0], fd[0][..., 1])
            _worst(out, "parameter_terms.grad", grad[j], fd[1])
            _worst(out, "parameter_terms.lap", lap[j], fd[2])
            j += 1
    comp.recompute(configs)
    return out


def _state(wf, probe, probe_e):
    """(sign, log|psi|), grad psi/psi and lap psi/psi of every electron, and the ratio of moving electron
    ``probe_e`` to probe (nwalkers, 3), of wf's current state."""
    s, l = wf.value()
    g, lap = wf.gradient_laplacian_all()
    return s, l, g, lap, wf.testvalue(probe_e, probe)


def _compare_states(prefix, got, ref) -> dict:
    s, l, g, lap, r = got
    s0, l0, g0, lap0, r0 = ref
    return {f"{prefix}.value": float(np.max(np.abs(s / s0 * np.exp(l - l0) - 1.0))),
            f"{prefix}.derivatives": max(_err(g, g0), _err(lap, lap0)),
            f"{prefix}.ratio": _err(r, r0)}


def check_updates(wf, configs, *, nsweeps: int = 2, step: float = 0.3, accept: float = 0.6,
                  seed: int = 0) -> dict:
    """The state after accepted and rejected one-electron moves (and after ``resample``) against a fresh
    ``recompute`` at the same positions.

    Each sweep moves every electron in turn to a random position and accepts the move for a random
    subset of the walkers (probability ``accept``), passing the data saved by ``gradient_value`` for
    odd electrons and ``None`` for even ones, with the drivers' other calls in between (the drift at
    the old position, ``gradient_laplacian_all`` once per sweep). Compared: the value (sign and log|psi|), grad psi/psi and
    lap psi/psi of every electron (``gradient_laplacian_all``) and the ratio of one more move.

    Parameters
    ----------
    wf : wave-function component or product
    configs : (nwalkers, nelec, 3) float64, Bohr
    nsweeps : sweeps before the comparison (and again after ``resample``)
    step : size of the random moves, Bohr; accept : acceptance probability per walker and move
    seed : random moves and masks

    Returns
    -------
    dict with "update.value" (|psi / psi_ref - 1|), "update.derivatives", "update.ratio", and the same
    for "resample.*" (``resample`` with repeated walkers after the sweeps, then ``nsweeps`` more).
    """
    configs = np.array(configs, dtype=np.float64)
    nw, ne, _ = configs.shape
    rng = np.random.default_rng(seed)

    def sweeps(cur):  # the drivers' call sequence (vmc.py's sweep, the local energy, dmc.py's moves)
        for _ in range(nsweeps):
            wf.gradient_laplacian_all()
            for e in range(ne):
                new = cur[:, e] + rng.normal(scale=step, size=(nw, 3))
                mask = rng.random(nw) < accept
                wf.gradient_value(e, cur[:, e])  # the drift at the old position
                if e % 2:
                    wf.accept(e, new, mask, wf.gradient_value(e, new)[2])
                else:
                    wf.testvalue(e, new)
                    wf.accept(e, new, mask)
                cur[mask, e] = new[mask]
        return cur

    probe = configs[:, 0] + rng.normal(scale=step, size=(nw, 3))
    wf.recompute(configs)
    cur = sweeps(configs.copy())
    got = _state(wf, probe, 0)
    wf.recompute(cur)
    out = _compare_states("update", got, _state(wf, probe, 0))

    wf.recompute(configs)
    cur = sweeps(configs.copy())
    idx = rng.permutation(np.r_[0, np.arange(nw - 1)])  # walker 0 twice, the last one dropped
    wf.resample(idx)
    cur = sweeps(cur[idx])
    got = _state(wf, probe[idx], 0)
    wf.recompute(cur)
    out.update(_compare_states("resample", got, _state(wf, probe[idx], 0)))
    wf.recompute(configs)
    return out


def check_wavefunction(wf, configs, *, eps: float = 1e-3, eps_parameters: float = 1e-4, seed: int = 0,
                       parameters: bool = True) -> dict:
    """All wave-function checks of this module in one call: :func:`check_ratios`,
    :func:`check_derivatives` (step ``eps``, Bohr), :func:`check_parameter_derivatives` (step
    ``eps_parameters``; skipped with ``parameters=False``) and :func:`check_updates`.

    configs : (nwalkers, nelec, 3) float64, Bohr. Returns the merged ``{quantity: error}``.
    """
    out = check_ratios(wf, configs, seed=seed)
    out.update(check_derivatives(wf, configs, eps=eps, seed=seed))
    if parameters:
        out.update(check_parameter_derivatives(wf, configs, eps=eps_parameters, seed=seed))
    out.update(check_updates(wf, configs, seed=seed))
    return out


def check_nuclear_derivatives(derivs, build, coords, configs, *, eps: float = 3e-5,
                              richardson: bool = False) -> dict:
    """Per-sample nuclear derivatives against central differences of re-built trial functions.

    The oracle is :class:`rung.qmc.forces.NuclearDerivatives` with ``method="fd"`` and the
    configuration of ``derivs`` (space warp on or off, seed); both draw the ECP quadrature rotation from
    the same stream state, so the nonlocal energies agree sample by sample.

    Parameters
    ----------
    derivs : callable(configs) -> (d ln|psi| (nwalkers, natom, 3) Bohr^-1, d E_L (nwalkers, natom, 3)
        Hartree/Bohr) with ``config`` (:class:`rung.qmc.forces.ForceConfig`), ``state()`` and
        ``set_state(state)``, e.g. :class:`rung.qmc.force_derivs.AnalyticDerivatives`
    build : callable(coords) -> (wf, ham) at nuclear positions coords (natom, 3) Bohr, e.g.
        :func:`rung.qmc.forces.displaced_builder`
    coords : (natom, 3) float64, Bohr, the geometry of ``derivs``
    configs : (nwalkers, nelec, 3) float64, Bohr
    eps : nuclear displacement, Bohr
    richardson : extrapolate the steps eps and 2 eps (error O(eps^4) instead of O(eps^2)), for
        all-electron atoms whose bare nuclei make the O(eps^2) term large

    Returns
    -------
    dict with "nuclear.dlogpsi" and "nuclear.dlocal_energy".
    """
    from dataclasses import replace

    from rung.qmc.forces import NuclearDerivatives

    configs = np.array(configs, dtype=np.float64)
    state = derivs.state()
    fds = []
    for h in (eps, 2 * eps) if richardson else (eps,):
        oracle = NuclearDerivatives(build, coords, replace(derivs.config, method="fd", step_bohr=h))
        oracle.set_state(state)
        fds.append(oracle(configs))
    fd = tuple((4.0 * a - b) / 3.0 for a, b in zip(*fds)) if richardson else fds[0]
    derivs.set_state(state)
    dl, de = derivs(configs)
    return {"nuclear.dlogpsi": _err(dl, fd[0]), "nuclear.dlocal_energy": _err(de, fd[1])}


def assert_conforms(report: dict, tol: dict | None = None) -> None:
    """Raise AssertionError listing every quantity of ``report`` ({quantity: error}) above its
    tolerance (:data:`TOLERANCES`, updated by ``tol``) or not finite."""
    limits = {**TOLERANCES, **(tol or {})}
    bad = [f"{k}: error {v:.3g} > {limits[k]:.3g}" for k, v in report.items() if not v <= limits[k]]
    if bad:
        raise AssertionError("wave-function conformance: " + "; ".join(bad))


def assert_wavefunction(wf, configs, *, tol: dict | None = None, **kwargs) -> dict:
    """:func:`check_wavefunction` followed by :func:`assert_conforms`; returns the report."""
    report = check_wavefunction(wf, configs, **kwargs)
    assert_conforms(report, tol)
    return report
