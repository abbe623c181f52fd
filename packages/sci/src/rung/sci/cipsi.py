"""CIPSI: selected configuration interaction with Epstein-Nesbet PT2.

From the current variational space (start: the aufbau determinant and its spin partners), repeat

1. diagonalize H in the space (Davidson-Liu, ``nroots`` roots, sparse H through string lookups);
2. generate the singles and doubles connected to it and their EN-PT2 contributions
   (deterministic, or semi-stochastic beyond ``stochastic_min_det``);
3. add the ``(growth - 1) * n_det`` best (largest |e_alpha|) and complete the space with spin partners
   (fewer when their contributions predict |E_PT2| well below ``pt2_threshold`` with fewer: ``guided_growth``);

until ``max_det`` determinants (never more: the growth that would pass it keeps the best selected
determinants whose spin partners fit), ``|E_PT2| < pt2_threshold`` or the full CI space. Every iteration
reports n_det, E_var, E_PT2 (± error), <S^2> and time, and is checkpointed (the output file itself),
so a killed run resumes. The FCI limit is estimated by the linear fit of E_var against E_PT2 over
the last iterations (extrapolation to E_PT2 = 0, as Quantum Package reports).

Spin: the space is closed under S^2 (spin completion), so eigenvectors are S^2 eigenfunctions. The
first diagonalization (and any whose <S^2> drifts) uses ``H + spin_penalty (S^2 - S(S+1))^2`` so that
states of another spin lie higher and a near-degenerate triplet cannot replace the requested singlet;
later ones start from the previous (spin-pure) vectors and use H with a preconditioner that commutes
with S^2 (see :func:`_diagonalize`). Energies reported are <H>. The H of an iteration reuses the
previous iteration's block (``hamiltonian.build(previous=...)``).

References: Huron, Malrieu, Rancurel, J. Chem. Phys. 58, 5745 (1973); Garniron et al., J. Chem.
Theory Comput. 15, 3591 (2019) (Quantum Package 2); Holmes, Tubman, Umrigar, J. Chem. Theory
Comput. 12, 3674 (2016). Energies in Hartree; stored energies include the core energy.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from rung.core.errors import InputError
from rung.sci import __version__
from rung.sci.davidson import davidson
from rung.sci.determinants import Layout
from rung.sci.fcidump import Hamiltonian
from rung.sci.hamiltonian import SpinSquared, build
from rung.sci.multidet import from_active, write_multidet
from rung.sci import pt2 as pt2_module
from rung.sci.pt2 import accumulate_cpu, en_pt2

SCHEMA = "rung.sci.wavefunction"
SCHEMA_VERSION = 1
DENSE_MAX = 300  # spaces up to this size are diagonalized densely
BLAS_LIMIT_MAX = 100_000  # CIPSIConfig.blas_threads holds while the space is smaller than this


@dataclass(frozen=True)
class CIPSIConfig:
    """CIPSI options (energies in Hartree).

    max_det : the largest space: growth stops there, and the growth that would pass it takes only the
        best selected determinants whose spin completion fits (:func:`cap_selection`), then stops
    pt2_threshold : stop once |E_PT2| falls below this
    growth : the space grows by this factor per iteration
    nroots : roots of the Davidson step (PT2 and selection use the lowest)
    spin : target S (default: the lowest allowed, |MS|); spin_penalty : Hartree
    stochastic_min_det : beyond this many determinants the PT2 is semi-stochastic
    pt2_samples, pt2_det_fraction, pt2_sample_fraction : semi-stochastic parameters (see ``pt2``)
    pt2_samples_growing : semi-stochastic samples in an iteration that grows the space (>= 2): the
        selection uses the first sample only, so the others serve the error bar of an intermediate
        estimate; the last iteration (budget reached) draws ``pt2_samples``
    max_entries : (alpha, I) pairs held in memory at once during selection (20-28 bytes each, see ``pt2.en_pt2``)
    extrapolation_points : iterations used in the linear fit of E_var against E_PT2
    pt2_screen : Hartree; on FCI spaces beyond ``pt2.DENSE_KEYS`` determinants, PT2 and selection keep
        only the pairs with ``|c_I <alpha|H|I>| > pt2_screen`` (heat-bath screening; 0 = every pair).
        Small FCI spaces are always treated exactly.
    blas_threads : BLAS threads during the diagonalization (numba backend) of a space of fewer than
        ``BLAS_LIMIT_MAX`` determinants (None: leave the process setting). There the BLAS work
        (Davidson's tall-skinny subspace products, O(n m^2) for m <= 24 vectors) is small next to the
        numba kernels, and a multi-threaded OpenBLAS leaves its workers spinning after each call on the
        cores that numba's parallel regions need next. Beyond, BLAS threads pay, so the setting is left
        alone (timings: BENCHMARKS.md, session 3 two-thread follow-up).
    guided_growth : fraction f (0 = off): when the selected determinants' own contributions predict
        |E_PT2| < f * pt2_threshold within this iteration's growth, add only as many as that prediction
        needs (:func:`trim_selection`); f < 1 leaves room for the prediction's error, so that the next
        PT2 lands below the threshold without one more iteration (H2O/6-31G, threshold 0.1 mHa: the
        PT2 met is 0.88-0.97 f times the threshold for f = 0.6-0.9).
    min_last_step : fraction s (0 = off, the default): no short last step. When this iteration's growth
        (spin partners included) would reach n' determinants with ``max_det - n' < s * (growth - 1) * n'``
        (the next growth, cut to the budget, would be less than s times a whole one), this growth goes
        straight to ``max_det`` instead (the best selected determinants whose spin partners fit), which
        saves the selection pass over n' determinants (:func:`_select`). The price: one selection from the
        smaller space picks worse determinants than two, so E_var at the same size comes out higher (by up
        to a few 0.1 mHa on the cases of BENCHMARKS.md, 2026-12-07, where the time saved is measured) while
        E_var + PT2 barely moves. Hence off by default; worth it where E_var + PT2 is the result.
    """

    max_det: int = 100_000
    pt2_threshold: float = 1e-5
    growth: float = 2.0
    nroots: int = 1
    spin: float | None = None
    spin_penalty: float = 1.0
    davidson_tol: float = 1e-5
    stochastic_min_det: int = 300_000
    pt2_samples: int = 8
    pt2_samples_growing: int = 2
    pt2_det_fraction: float = 0.02
    pt2_sample_fraction: float = 0.05
    max_entries: int = 20_000_000
    extrapolation_points: int = 3
    seed: int = 0
    pt2_screen: float = 1e-8
    guided_growth: float = 0.8
    blas_threads: int | None = 1
    min_last_step: float = 0.0

    def __post_init__(self):
        for name, ok, rule in (("max_det", self.max_det >= 1, ">= 1"), ("growth", self.growth > 1.0, "> 1"),
                               ("nroots", self.nroots >= 1, ">= 1")):
            if not ok:
                raise InputError(f"{name} must be {rule}, got {getattr(self, name)}")
        if self.pt2_samples < 2 or self.pt2_samples_growing < 2:
            raise InputError("pt2_samples and pt2_samples_growing must be >= 2 (the error bar needs two)")
        if not 0.0 <= self.guided_growth <= 1.0:
            raise InputError(f"guided_growth must lie in [0, 1], got {self.guided_growth}")
        if self.min_last_step < 0.0:
            raise InputError(f"min_last_step must be >= 0, got {self.min_last_step}")
        if self.blas_threads is not None and self.blas_threads < 1:
            raise InputError(f"blas_threads must be None or >= 1, got {self.blas_threads}")


@dataclass(frozen=True)
class CIPSIResult:
    """Outcome of a CIPSI run.

    e_var : (nroots,) float64, Hartree, total variational energies (core energy included)
    e_pt2, pt2_error : float, Hartree, EN-PT2 of the lowest root and its standard error
    e_extrapolated : float, Hartree, linear extrapolation of E_var against E_PT2 to E_PT2 = 0
    s2 : (nroots,) <S^2>; dets : (n, 2, nw) uint64; coef : (n, nroots) float64
    history : list of per-iteration dicts (n_det, e_var, e_pt2, pt2_error, pt2_kind, s2, seconds)
    """

    e_var: np.ndarray
    e_pt2: float
    pt2_error: float
    e_extrapolated: float
    s2: np.ndarray
    dets: np.ndarray
    coef: np.ndarray
    history: list = field(default_factory=list)
    backend: str = "numba"
    complete_space: bool = False

    @property
    def n_det(self) -> int:
        return self.dets.shape[0]

    @property
    def pt2_kind(self) -> str:
        """The last PT2's kind (:func:`rung.sci.pt2.describe`); "unknown" in files written before it was kept."""
        return self.history[-1].get("pt2_kind", "unknown") if self.history else "unknown"

    @property
    def e_var_pt2(self) -> float:
        return float(self.e_var[0] + self.e_pt2)


def extrapolate(history: list, npoints: int) -> float:
    """Intercept of the linear fit E_var = a + b E_PT2 over the last ``npoints`` iterations."""
    # A near-degenerate perturber can make an early PT2 infinite (E0 - H_aa ~ 0 in floating point);
    # such iterations say nothing about the linear regime and are left out of the fit.
    pts = [(h["e_pt2"], h["e_var"]) for h in history if h["e_pt2"] != 0.0 and np.isfinite(h["e_pt2"])][-npoints:]
    if history and history[-1]["e_pt2"] == 0.0:
        return history[-1]["e_var"]
    if len(pts) < 2:
        return history[-1]["e_var"] + history[-1]["e_pt2"] if history else float("nan")
    x, y = np.array(pts).T
    b, a = np.polyfit(x, y, 1)
    return float(a)


def _configurations(dets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels of the spatial configurations (doubly, singly occupied orbitals) of ``dets`` (n, 2, nw)
    uint64: ``np.unique``'s (first, inverse), (m,) and (n,) int64. When every orbital in use is below 32
    a configuration is one uint64 (``doubly << 32 | singly``) and the sort is 1-D (several times faster
    than ``np.unique``'s row sort); else rows of 2 nw words."""
    d, s = dets[:, 0] & dets[:, 1], dets[:, 0] ^ dets[:, 1]
    if dets.shape[2] == 1 and dets.shape[0] > 0 and int((d | s).max()) < 2**32:
        _, first, inv = np.unique((d[:, 0] << np.uint64(32)) | s[:, 0], return_index=True, return_inverse=True)
    else:
        _, first, inv = np.unique(np.concatenate([d, s], axis=1), axis=0, return_index=True, return_inverse=True)
    return first, inv.reshape(-1)


def trim_selection(layout: Layout, selected: np.ndarray, e2: np.ndarray, e_pt2: float, threshold: float) -> np.ndarray:
    """The shortest head of ``selected`` (keys (m,) int64, best first, with their EN contributions ``e2``
    (m,) Hartree) after which the predicted PT2 is below ``threshold`` in magnitude; all of it if none.

    The space grows by whole spin-partner sets (spin completion), taken in the order of their best
    member; the prediction is ``e_pt2`` minus the contributions of the selected determinants so added.
    Spin partners that were not selected are left out of the sum, so it errs toward adding more.
    """
    if selected.size == 0 or threshold <= 0.0 or not np.isfinite(e_pt2) or abs(e_pt2) < threshold:
        return selected
    first, inv = _configurations(layout.from_keys(selected))
    first_of = first[inv.reshape(-1)]  # where each determinant's configuration first enters the head
    captured = np.cumsum(np.bincount(first_of, weights=e2, minlength=selected.size))  # heads of 1, 2, ... entries
    ok = np.flatnonzero(np.abs(e_pt2 - captured) < threshold)
    return selected[: ok[0] + 1] if ok.size else selected


def completion_sizes(layout: Layout, selected: np.ndarray) -> np.ndarray:
    """(m,) int64: the determinants that the spin completion of the heads of 1, 2, ..., m entries of
    ``selected`` (keys (m,) int64, best first, none in the space) adds to a spin-complete space.

    A configuration with ``k`` open shells, ``k_a`` of them alpha, brings all ``C(k, k_a)`` of its
    determinants; configurations are counted where their first member enters the head (as
    :meth:`Layout.grow` completes them).
    """
    if selected.size == 0:
        return np.zeros(0, np.int64)
    d = layout.from_keys(selected)
    first, _ = _configurations(d)
    n_open = np.bitwise_count(d[:, 0] ^ d[:, 1]).sum(axis=1)
    n_alpha_open = np.bitwise_count(d[:, 0] & ~d[:, 1]).sum(axis=1)  # <= na: within the alpha ranking table
    added = np.zeros(selected.size, np.int64)
    added[first] = layout.binom_a[n_open[first], n_alpha_open[first]]
    return np.cumsum(added)


def cap_selection(layout: Layout, selected: np.ndarray, room: int) -> tuple[np.ndarray, bool]:
    """The longest head of ``selected`` (keys (m,) int64, best first, none in the space) whose spin
    completion adds at most ``room`` determinants to a spin-complete space (:func:`completion_sizes`),
    and whether it had to be cut."""
    if selected.size == 0:
        return selected, False
    total = completion_sizes(layout, selected)
    if total[-1] <= room:
        return selected, False
    return selected[:int(np.searchsorted(total, room, side="right"))], True


def _resolve_backend(backend: str):
    """(array module, backend name) of rung.core.backend.resolve: numba on the CPU, cupy on the GPU."""
    from rung.core.backend import resolve, select

    name = resolve(backend, supported=("numba", "cupy"))
    return (select("gpu") if name == "cupy" else np), name


def configuration_average(dets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Average of ``values`` (n,) over the determinants of ``dets`` (n, 2, nw) uint64 that share a spatial
    occupation (same doubly and singly occupied orbitals): a diagonal that commutes with S^2."""
    _, inv = _configurations(dets)
    return (np.bincount(inv, weights=values) / np.bincount(inv))[inv]


class _BlasHold:
    """Holds BLAS at ``cfg.blas_threads`` threads around the diagonalization of a small space (see
    :meth:`__call__`). The threadpoolctl controller (a scan of the process's loaded libraries) is made
    once per run, at the first diagonalization that needs it, not once per iteration."""

    def __init__(self, cfg: CIPSIConfig, xp):
        self.limit = cfg.blas_threads if xp is np else None
        self._controller = None

    def __call__(self, n: int):
        """Context for an ``n``-determinant space (the only BLAS work of an iteration: Davidson's subspace
        products, the dense ``eigh``): BLAS held at ``blas_threads`` on the numba backend when ``n <
        BLAS_LIMIT_MAX``, else a no-op. The previous setting returns on exit."""
        if self.limit is None or n >= BLAS_LIMIT_MAX:
            return nullcontext()
        if self._controller is None:
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController()
        return self._controller.limit(limits=self.limit, user_api="blas")


def _diagonalize(hs, s2, target, cfg, guess, guess_s2, xp, log, dets):
    """Lowest ``nroots`` eigenvectors of H with <S^2> = ``target``, normalized, and their <S^2>.

    ``s2`` a :class:`SpinSquared`; ``guess_s2`` the <S^2> of the ``guess`` columns (the previous
    iteration's vectors, whose S^2 does not change in the grown space: both spaces are spin complete).
    With a spin-pure guess, Davidson runs on H alone with the
    configuration-averaged diagonal as preconditioner: both commute with S^2 in a spin-complete space,
    so every correction stays in the target spin (no penalty operator, whose (S^2 - S(S+1))^2 term
    roughly triples the iteration count). <S^2> of the result is checked; a drift (round-off feeding
    a lower state of another spin) falls back to ``H + spin_penalty (S^2 - S(S+1))^2`` from there.
    """
    n = hs.n
    k = min(cfg.nroots, n)

    def normalized(v):
        v = v / np.linalg.norm(v, axis=0)[None, :]
        return v, np.einsum("ik,ik->k", v, s2 @ v)

    if n <= DENSE_MAX:
        hd = hs.dense()
        sd = s2 @ np.eye(n) - target * np.eye(n)  # (the matrix-free product: no S^2 CSR kernel to load)
        w, v = np.linalg.eigh(hd + cfg.spin_penalty * sd @ sd)
        return normalized(v[:, :k])
    from rung.core.backend import to_host

    if xp is not np:
        from rung.sci._kernels import gpu

        mv_h = gpu.sparse_matvec(hs)
    else:
        mv_h = hs.matvec
    pure = (guess is not None and guess_s2 is not None and guess.shape[1] >= k and len(guess_s2) >= k
            and all(np.any(guess[:, c]) for c in range(k)) and bool(np.all(np.abs(guess_s2[:k] - target) < 1e-8)))
    if pure:
        g = np.ascontiguousarray(guess[:, :k])
        g /= np.linalg.norm(g, axis=0)[None, :]
        diag = configuration_average(dets, hs.diag)
        if xp is not np:
            g, diag = xp.asarray(g), xp.asarray(diag)
        res = davidson(mv_h, diag, g, tol=cfg.davidson_tol)
        v, s2v = normalized(to_host(res.vectors))
        dev = np.abs(s2v - target)
        if res.converged.all() and np.all(dev < 1e-6):
            return v, s2v
        log(f"<S^2> drifted by {dev.max():.1e} (or no convergence): Davidson with the spin penalty")
        guess = v
    s2m = s2.matrix()
    s2g = gpu.csr_to_device(s2m) if xp is not np else s2m
    diag = hs.diag + cfg.spin_penalty * (s2m.diagonal() - target) ** 2

    def matvec(x):
        y = s2g @ x - target * x
        return mv_h(x) + cfg.spin_penalty * (s2g @ y - target * y)

    g = np.zeros((n, k))
    if guess is not None:
        g[:, : guess.shape[1]] = guess[:, :k]
    lowest = np.argsort(diag)
    j = 0
    for c in range(k):
        if not np.any(g[:, c]):
            while np.any(g[lowest[j]] != 0):
                j += 1
            g[lowest[j], c] = 1.0
            j += 1
    if xp is not np:
        g, diag = xp.asarray(g), xp.asarray(diag)
    res = davidson(matvec, diag, g, tol=cfg.davidson_tol)
    if not res.converged.all():
        log(f"warning: Davidson did not converge all roots in {res.iterations} iterations")
    return normalized(to_host(res.vectors))


def _write(path: Path, layout, ham, cfg, result: CIPSIResult, next_keys, backend):
    tmp = path.with_name(path.name + ".tmp")
    md = from_active(result.dets, result.coef, ham.ncore, ham.ncore + ham.norb)
    with h5py.File(tmp, "w") as f:
        f.attrs["schema"] = SCHEMA
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["package_version"] = __version__
        f.attrs["backend"] = backend
        write_multidet(None, md, group=f, attrs={"complete": next_keys is None})
        g = f.create_group("sci")
        g.attrs["fingerprint"] = ham.fingerprint()
        g.attrs["config"] = json.dumps(asdict(cfg))
        g.attrs["norb"], g.attrs["nelec"], g.attrs["ncore"] = ham.norb, list(ham.nelec), ham.ncore
        g.attrs["complete"] = next_keys is None
        g.attrs["complete_space"] = result.complete_space
        g.create_dataset("dets", data=result.dets).attrs["units"] = "dimensionless"
        g.create_dataset("coef", data=result.coef).attrs["units"] = "dimensionless"
        for name in ("e_var", "s2"):
            g.create_dataset(name, data=np.asarray(getattr(result, name))).attrs["units"] = "hartree" if name == "e_var" else "dimensionless"
        for name in ("e_pt2", "pt2_error", "e_extrapolated"):
            g.create_dataset(name, data=getattr(result, name)).attrs["units"] = "hartree"
        g.attrs["history"] = json.dumps(result.history)
        if next_keys is not None:
            g.create_dataset("next_keys", data=next_keys).attrs["units"] = "dimensionless"
    os.replace(tmp, path)


def load(path) -> tuple[CIPSIResult, np.ndarray | None, dict]:
    """Read a wavefunction/checkpoint file written by :func:`kernel`: (result, next_keys or None, attrs).

    Raises :class:`~rung.core.errors.InputError` for a file that is not one (corrupt, truncated, foreign).
    """
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != SCHEMA or "sci" not in f:
                raise InputError(f"{path}: not a rung.sci wavefunction file")
            g = f["sci"]
            res = CIPSIResult(g["e_var"][()], float(g["e_pt2"][()]), float(g["pt2_error"][()]),
                         float(g["e_extrapolated"][()]), g["s2"][()], g["dets"][()], g["coef"][()],
                         json.loads(g.attrs["history"]), str(f.attrs["backend"]), bool(g.attrs["complete_space"]))
            nk = g["next_keys"][()] if "next_keys" in g else None
            return res, nk, dict(g.attrs)
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: not a readable rung.sci wavefunction file (corrupt or truncated?): {err}") from err


def _extrapolation_note(history: list, npoints: int) -> str:
    pts = [h for h in history if h["e_pt2"] != 0.0 and np.isfinite(h["e_pt2"])][-npoints:]
    if history and history[-1]["e_pt2"] == 0.0:
        return "= E_var: the last PT2 is zero"
    if len(pts) < 2:
        return "= E_var + E_PT2: fewer than two iterations to fit"
    return f"linear fit of E_var against E_PT2 over {len(pts)} iterations, at E_PT2 = 0"


def summary(path, top: int = 5) -> list[str]:
    """Lines that describe a wavefunction file: its ``/MultiDet`` and completeness; for a rung.sci file also
    the energies (Hartree) with the kind of PT2, the extrapolation, <S^2>, the run's settings and space."""
    from rung.core.multidet import read_multidet

    md = read_multidet(path)
    state = {True: "complete", False: "INCOMPLETE (an unfinished run: resume it with sci run)",
             None: "completeness unknown"}
    na, nb = md.nelec
    lines = [f"{md.ndet} determinants over {md.nstate} orbitals ({na}+{nb} electrons), {state[md.complete]}"]
    with h5py.File(path, "r") as f:
        ours = f.attrs.get("schema") == SCHEMA and "sci" in f
        version = str(f.attrs.get("package_version", "?"))
    if not ours:
        lines.append("no rung.sci results in this file (a /MultiDet of another program): energies unknown")
    else:
        res, _, attrs = load(path)
        cfg = json.loads(attrs["config"])
        for k, e in enumerate(np.atleast_1d(res.e_var)):
            lines.append(f"E_var[{k}]   = {e:.8f} Ha   <S^2> = {np.atleast_1d(res.s2)[k]:.4f}")
        pm = f" ± {res.pt2_error:.1e}" if res.pt2_error > 0 else ""
        lines.append(f"E_PT2      = {res.e_pt2:.8f}{pm} Ha ({res.pt2_kind}; of root 0)")
        lines.append(f"E_var+PT2  = {res.e_var_pt2:.8f}{pm} Ha")
        lines.append(f"E_extrap   = {res.e_extrapolated:.8f} Ha "
                     f"({_extrapolation_note(res.history, cfg.get('extrapolation_points', 3))})")
        ncore = int(attrs["ncore"])
        lines.append(f"space: {res.n_det} determinants of {int(attrs['norb'])} active orbitals, electrons "
                     f"{tuple(int(x) for x in attrs['nelec'])}, {ncore} frozen; {len(res.history)} iterations"
                     + ("; the full CI space" if res.complete_space else ""))
        keys = ("max_det", "pt2_threshold", "growth", "min_last_step", "nroots", "spin", "pt2_screen",
                "stochastic_min_det", "pt2_samples", "seed")
        lines.append("settings: " + ", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg)
                     + f"; backend {res.backend}; rung-sci {version}")
    for i in range(min(top, md.ndet)):
        a, b = md.occupations(i)
        lines.append(f"{md.coef[i]: .6f}  alpha {a}  beta {b}")
    return lines


def _select(layout: Layout, r, n: int, n_select: int, cfg: CIPSIConfig) -> tuple[np.ndarray, bool, bool]:
    """The keys an iteration over ``n`` determinants adds (before spin completion), whether the growth
    was cut to ``cfg.max_det`` (:func:`cap_selection`), and whether ``min_last_step`` aimed it there
    (the history's ``to_budget``; ``capped`` says whether it got there).

    ``r`` the pass's :class:`~rung.sci.pt2.PT2Result`, its ``selected`` ranked best first. A normal
    growth takes the first ``n_select``, trimmed by the PT2 prediction (``guided_growth``) and cut to the
    budget. When that growth is whole and would leave room for a last one smaller than ``min_last_step``
    times a whole one (see :class:`CIPSIConfig`), the growth takes every ranked candidate instead,
    trimmed and cut the same way.

    How many to rank (the caller's ``n_rank``): with rho >= 1 determinants per candidate after spin
    completion, the head reaches n' = n + rho n_select, and the growth to the budget happens only when
    room = max_det - n < s (g - 1) n + (1 + s (g - 1)) rho n_select, so it needs room / rho < (1 + s g)
    n_select candidates (s = ``min_last_step``, g = ``growth``, n_select = (g - 1) n); twice that are
    ranked, a margin for rho varying along the ranking. (Should they still not fill the room, the growth
    is not cut and the next iteration grows on as usual.)
    """
    room = cfg.max_det - n

    def take(m):  # the first m ranked, trimmed, cut to the budget
        sel = r.selected[:m]
        if cfg.guided_growth > 0.0:
            sel = trim_selection(layout, sel, r.selected_e2[:m], r.e_pt2, cfg.guided_growth * cfg.pt2_threshold)
        return cap_selection(layout, sel, room)

    sel, capped = take(n_select)
    whole = not capped and sel.size == min(n_select, r.selected.size)
    if cfg.min_last_step > 0.0 and whole and r.selected.size > n_select:
        n_next = n + int(completion_sizes(layout, sel)[-1])
        if cfg.max_det - n_next < cfg.min_last_step * (cfg.growth - 1.0) * n_next:
            return *take(r.selected.size), True
    return sel, capped, False


def kernel(ham: Hamiltonian, config: CIPSIConfig = CIPSIConfig(), *, backend: str = "auto", checkpoint=None,
           log: Callable[[str], None] | None = None) -> CIPSIResult:
    """Run CIPSI on ``ham``; with ``checkpoint`` (a path) write the wavefunction every iteration and
    resume from that file when it already holds a run on the same Hamiltonian.

    On the numba backend each diagonalization of a space smaller than ``BLAS_LIMIT_MAX`` runs with BLAS
    held at ``config.blas_threads`` threads (threadpoolctl, see :class:`_BlasHold`). ``log``: where the
    per-iteration lines go (a callable taking one string; None: logger ``rung.sci`` at INFO, so the library
    prints nothing unless a caller asks, as the CLI does with ``click.echo``)."""
    log = log or logging.getLogger("rung.sci").info
    xp, backend_used = _resolve_backend(backend)
    cfg = config
    layout = Layout(ham.norb, *ham.nelec)
    sz = 0.5 * (layout.na - layout.nb)
    s_target = abs(sz) if cfg.spin is None else float(cfg.spin)
    if s_target < abs(sz) - 1e-9 or abs((s_target - abs(sz)) - round(s_target - abs(sz))) > 1e-9:
        raise InputError(f"spin S={s_target} is impossible with Ms={sz}")
    target = s_target * (s_target + 1)
    h1, eri = ham.h1, ham.eri
    rng = np.random.default_rng(cfg.seed)
    history: list = []
    guess = guess_s2 = None
    previous = None
    checkpoint = Path(checkpoint) if checkpoint is not None else None
    blas_held = _BlasHold(cfg, xp)
    last_growth = False  # the previous iteration's growth was cut to max_det: no more growth
    dets, keys = layout.spin_complete(layout.aufbau(s_target))
    if checkpoint is not None and checkpoint.exists():
        old, next_keys, attrs = load(checkpoint)
        if attrs["fingerprint"] != ham.fingerprint():
            raise InputError(f"{checkpoint} holds a run on another Hamiltonian; use another output path")
        history = old.history
        okeys = layout.keys(old.dets)
        same_budget = cfg.max_det <= json.loads(attrs["config"])["max_det"]  # (a larger one grows on)
        if next_keys is None:
            last = history[-1]
            cut = len(history) > 1 and history[-2].get("capped", False) and same_budget  # last growth cut to it
            if old.complete_space or old.n_det >= cfg.max_det or cut or abs(last["e_pt2"]) < cfg.pt2_threshold:
                log(f"{checkpoint}: run already complete (n_det = {old.n_det})")
                return old
            history = history[:-1]  # a larger budget: redo the last iteration's selection and go on
            next_keys = okeys
        else:  # killed midway: after a growth cut to this budget, the next iteration is the last
            last_growth = history[-1].get("capped", False) and same_budget
        dets, keys = layout.from_keys(next_keys), next_keys
        guess = np.zeros((keys.size, old.coef.shape[1]))
        guess[np.searchsorted(keys, okeys)] = old.coef
        guess_s2 = np.atleast_1d(old.s2)
        log(f"resuming from {checkpoint}: {len(history)} iterations done, next space {keys.size} determinants")
    log(f"CIPSI: {layout.na}+{layout.nb} electrons in {layout.norb} orbitals, FCI space {layout.fci_size:.3e}, "
        f"target S = {s_target:g}, backend {backend_used}")
    while True:
        t0 = time.perf_counter()
        hs = build(dets, h1, eri, previous=previous, orbsym=ham.orbsym)  # the last iteration's block is reused
        previous = None
        s2 = SpinSquared(layout, dets, keys)
        t_build = time.perf_counter() - t0
        with blas_held(keys.size):
            coef, s2v = _diagonalize(hs, s2, target, cfg, guess, guess_s2, xp, log, dets)
        t_diag = time.perf_counter() - t0 - t_build
        hc = hs.matvec(coef)
        e_el = np.einsum("ik,ik->k", coef, hc)
        n = keys.size
        complete = n == layout.fci_size
        grow = (not complete) and n < cfg.max_det and not last_growth
        room = cfg.max_det - n
        n_select = max(1, min(int(n * (cfg.growth - 1.0)), room)) if grow else 0
        n_rank = (min(room, 2 * math.ceil((1.0 + cfg.min_last_step * cfg.growth) * n_select))  # (see _select)
                  if grow and cfg.min_last_step > 0.0 else n_select)
        capped = to_budget = False
        if complete:
            e2, err, sel = 0.0, 0.0, np.empty(0, np.int64)
        else:
            acc = accumulate_cpu
            if xp is not np:
                from rung.sci._kernels import gpu

                acc = gpu.accumulate
            r = en_pt2(layout, dets, keys, coef[:, 0], float(e_el[0]), h1, eri, n_select=n_rank,
                       stochastic=n > cfg.stochastic_min_det,
                       n_samples=cfg.pt2_samples_growing if grow else cfg.pt2_samples,
                       det_fraction=cfg.pt2_det_fraction, sample_fraction=cfg.pt2_sample_fraction,
                       max_entries=cfg.max_entries, rng=rng, accumulate=acc, screen=cfg.pt2_screen,
                       orbsym=ham.orbsym)
            e2, err = r.e_pt2, r.error
            sel, capped, to_budget = _select(layout, r, n, n_select, cfg)
            last_growth = capped
        seconds = time.perf_counter() - t0
        rec = dict(n_det=int(n), e_var=float(e_el[0] + ham.ecore), e_pt2=float(e2), pt2_error=float(err),
                   s2=float(s2v[0]), seconds=seconds, seconds_h=t_build, seconds_davidson=t_diag,
                   seconds_pt2=seconds - t_build - t_diag, h_nnz=int(hs.upper.nnz), h_bytes=int(hs.nbytes()),
                   n_external=int(r.n_external) if not complete else 0,
                   pt2_samples=int(r.n_samples) if not complete and r.stochastic else 0, capped=capped,
                   to_budget=to_budget,
                   pt2_kind=pt2_module.describe(None if complete else r))
        history.append(rec)
        done = (not grow) or abs(e2) < cfg.pt2_threshold or sel.size == 0
        next_keys = None
        if not done:
            ndets, nkeys = layout.grow(dets, keys, sel)  # the space is spin complete: partners of sel only
            next_keys = nkeys
        result = CIPSIResult(e_el + ham.ecore, float(e2), float(err), extrapolate(history, cfg.extrapolation_points), s2v,
                        dets, coef, history, backend_used, complete)
        pm = (f"± {err:.1e} " if err > 0 else "") + f"({rec['pt2_kind']})"
        log(f"iter {len(history):3d}  n_det {n:9d}  E_var {rec['e_var']:.8f}  E_PT2 {e2:.8f} {pm}  "
            f"E_var+PT2 {rec['e_var'] + e2:.8f}  <S^2> {s2v[0]:.4f}  {seconds:.1f} s")
        if checkpoint is not None:
            _write(checkpoint, layout, ham, cfg, result, next_keys, backend_used)
        if done:
            return result
        okeys = keys
        previous = (keys, hs)
        dets, keys = ndets, nkeys
        guess = np.zeros((keys.size, coef.shape[1]))
        guess[np.searchsorted(keys, okeys)] = coef
        guess_s2 = s2v


def fci_energy(ham: Hamiltonian, nroots: int = 1) -> np.ndarray:
    """Exact PySCF FCI energies, Hartree, core energy included: the test oracle.

    With ORBSYM labels, the totally symmetric block only (``direct_spin1_symm``), else ``direct_spin1``.
    """
    from pyscf import fci

    if ham.orbsym is not None:  # Molpro labels minus one multiply by XOR, as PySCF's irrep ids do
        solver = fci.direct_spin1_symm.FCI()
        solver.conv_tol = 1e-12
        solver.nroots = nroots
        e, _ = solver.kernel(ham.h1, ham.eri, ham.norb, ham.nelec, orbsym=ham.orbsym - 1, wfnsym=0)
    else:
        e, _ = fci.direct_spin1.kernel(ham.h1, ham.eri, ham.norb, ham.nelec, nroots=nroots, tol=1e-12, conv_tol=1e-12)
    return np.atleast_1d(e) + ham.ecore


__all__ = ["CIPSIConfig", "CIPSIResult", "kernel", "load", "extrapolate", "fci_energy", "summary", "trim_selection"]
