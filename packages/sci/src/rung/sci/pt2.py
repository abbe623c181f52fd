"""Epstein-Nesbet second-order perturbation theory and CIPSI selection.

For the variational state ``|Psi> = sum_I c_I |I>`` with energy E (electronic, Hartree), every
determinant alpha outside the space that is connected to it contributes

    e_alpha = <alpha|H|Psi>^2 / (E - <alpha|H|alpha>),      E_PT2 = sum_alpha e_alpha,

and CIPSI selects the alpha with the largest |e_alpha| (Huron, Malrieu and Rancurel, J. Chem. Phys.
58, 5745 (1973); Garniron et al., J. Chem. Phys. 147, 034101 (2017)). The connected alpha are
generated from every determinant of the space (all singles and doubles), keyed, sorted and summed;
generators are taken in chunks that fit ``max_entries`` and the per-determinant sums are merged
(or, for small FCI spaces, accumulated in arrays indexed by key; there the singles and same-spin
doubles of every alpha and beta string, with their signs and string-only parts of the elements, are
tabulated once, so a generator's excitations need no ranking and no Slater-Condon evaluation).

Heat-bath screening on large FCI spaces (beyond ``DENSE_KEYS``; Holmes, Tubman and Umrigar, J. Chem.
Theory Comput. 12, 3674 (2016)): with ``screen = eps > 0`` only the pairs with |c_I H_aI| > eps are
generated. The double-excitation integrals of every occupied pair are sorted by magnitude once, so a
generator walks each list only while |c_I| |<ab||ij>| > eps; singles are all evaluated and kept above
the same bound. E_PT2 and the selection are those of the screened sums (error ~1e-9 Ha at 1e-8 on
N2/cc-pVDZ, see BENCHMARKS.md). Small FCI spaces are always exact.

Semi-stochastic estimate for large spaces: the determinants holding the largest |c_I| (set D) are
treated exactly; from the rest (S), N generators are drawn with probabilities p_I ~ |c_I| (counts
n_I, weights W_I = n_I / (N p_I), E[W_I] = 1). With A_D = sum_{I in D} c_I H_aI, Â_S = sum_{I in S} W_I
c_I H_aI and T = sum_{I in S} W_I (c_I H_aI)^2 / p_I,

    A^2 ≈ A_D^2 + 2 A_D Â_S + (Â_S^2 - T / N) / (1 - 1/N)

is unbiased for <alpha|H|Psi>^2 (multinomial moments: Var W_I = (1 - p_I)/(N p_I), Cov = -1/N; the
estimator of Sharma et al., J. Chem. Theory Comput. 13, 1595 (2017), with a deterministic stratum).
Independent draws give the mean and its standard error.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from math import comb

import numpy as np

from rung.sci._kernels import cpu
from rung.sci.determinants import Layout


@dataclass(frozen=True)
class PT2Result:
    """``e_pt2`` and its standard ``error`` (0 when deterministic), Hartree; ``selected`` candidate keys,
    best first, and ``selected_e2`` their contributions e_alpha (Hartree; of the first sample when
    stochastic); ``n_external`` external determinants met (first sample; on small FCI spaces those with a
    nonzero sum); ``n_generated`` (alpha, I) pairs; ``screen`` the heat-bath threshold the sums were
    actually screened at (Hartree; 0: every pair, as on small FCI spaces whatever ``screen`` was asked)."""

    e_pt2: float
    error: float
    selected: np.ndarray
    n_external: int
    n_generated: int
    stochastic: bool
    n_samples: int
    selected_e2: np.ndarray | None = None
    screen: float = 0.0


def describe(r: PT2Result | None) -> str:
    """What kind of estimate ``r`` is, for labels: deterministic or semi-stochastic, screened or not
    (None: no PT2 because the space is the full CI)."""
    if r is None:
        return "none: the space is the full CI"
    kind = f"semi-stochastic, {r.n_samples} samples" if r.stochastic else "deterministic"
    return kind + (f", heat-bath screened at {r.screen:g} Ha" if r.screen > 0 else ", every pair")


def n_excitations(layout: Layout) -> int:
    """Singles and doubles of one determinant (upper bound on its external partners)."""
    na, nb, n = layout.na, layout.nb, layout.norb
    va, vb = n - na, n - nb
    return na * va + nb * vb + comb(na, 2) * comb(va, 2) + comb(nb, 2) * comb(vb, 2) + na * va * nb * vb


DENSE_KEYS = 2**22  # FCI spaces up to this size accumulate into arrays indexed by key (no sorting)
MARK_FRACTION = 1.0  # such a pass marks the entries it writes (bit sets) when generators x n_excitations, a
# bound on its pairs, is below this fraction of the FCI size; the collection then visits those entries only
# (else it sweeps the accumulator rows: for H2O/6-31G at 27.8k determinants, marking every pair cost more
# than the sweep it saves; timings: BENCHMARKS.md)
#: |E_0 - H_aa| (Hartree) below which a met determinant counts as degenerate with the space's energy
#: (rounding noise of two ~100 Ha numbers is ~1e-13).
DEGENERATE_HA = 1e-10
POS_BITS = 26  # entries per chunk < 2**26 when keys are packed with positions for sorting


STRING_TABLE_MAX = 2**24  # beta strings held in a table by the external diagonals (uk sorted)
TABLE_MAX = 2**24  # string-table entries (singles + doubles of every string) for the table-driven kernel
_TABLES: dict = {}  # the last tables built, keyed by layout and a digest of the integrals


def _string_tables(layout, h1, eri):
    """Per-string excitation tables (:func:`cpu.string_tables`) of both spins, or None when too large."""
    size = 0
    for ne in (layout.na, layout.nb):
        nv = layout.norb - ne
        size += comb(layout.norb, ne) * (ne * nv + comb(ne, 2) * comb(nv, 2))
    if size > TABLE_MAX:
        return None
    h = hashlib.blake2b(np.ascontiguousarray(h1).tobytes(), digest_size=16)
    h.update(np.ascontiguousarray(eri).tobytes())
    key = (layout.norb, layout.na, layout.nb, layout.nw, h.hexdigest())
    if key not in _TABLES:  # built once per Hamiltonian and layout (every CIPSI iteration reuses them)
        _TABLES.clear()
        ta = cpu.string_tables(layout.na, layout.norb, layout.nw, layout.binom_a, h1, eri)
        same = layout.nb == layout.na and np.array_equal(layout.binom_b, layout.binom_a)
        tb = ta if same else cpu.string_tables(layout.nb, layout.norb, layout.nw, layout.binom_b, h1, eri)
        _TABLES[key] = (ta, tb)
    return _TABLES[key]


HEATBATH_MAX = 2**24  # norb^4 entries at most in the heat-bath lists (norb <= 64)
_HEATBATH: dict = {}


def _heatbath_tables(eri):
    """Heat-bath lists (:func:`cpu.heatbath_tables`) of ``eri``, cached by an integral digest; None when too large."""
    if eri.shape[0] ** 4 > HEATBATH_MAX:
        return None
    key = hashlib.blake2b(np.ascontiguousarray(eri).tobytes(), digest_size=16).hexdigest()
    if key not in _HEATBATH:
        _HEATBATH.clear()
        _HEATBATH[key] = cpu.heatbath_tables(np.ascontiguousarray(eri))
    return _HEATBATH[key]


def _chunks(bounds, limit):
    """Split generators into consecutive slices whose summed ``bounds`` stay below ``limit`` (one at least)."""
    ends = np.cumsum(bounds)
    out = []
    start = 0
    base = 0
    while start < bounds.size:
        stop = int(np.searchsorted(ends, base + limit, side="right"))
        stop = max(stop, start + 1)
        out.append(slice(start, stop))
        base = int(ends[stop - 1])
        start = stop
    return out


_ACC: dict = {}


def _accumulators(nparts, size):
    """Zeroed key-indexed accumulators (ad, as_, t float64, (nparts, size) each), their bit sets of the
    entries written (touched, (nparts, ceil(size / 64)) uint64) and an empty (nparts, 0) stand-in for
    passes that do not mark, kept between passes (the pass clears what it wrote), so no FCI-sized array
    is allocated or zeroed per pass."""
    key = (nparts, size)
    if key not in _ACC:
        _ACC.clear()
        _ACC[key] = (np.zeros((nparts, size)), np.zeros((nparts, size)), np.zeros((nparts, size)),
                     np.zeros((nparts, (size + 63) >> 6), np.uint64), np.zeros((nparts, 0), np.uint64))
    return _ACC[key]


_SYM: dict = {}


def _blocked_tables(layout, tables, h1, eri, orbsym):
    """(ta, tb, sym) for the table kernels: ``tables`` (both spins, :func:`_string_tables`) blocked as
    :class:`cpu.StringTables` (:func:`cpu.block_tables`: singles grouped by irrep product, nonzero
    same-spin doubles first). Labels are used only when every
    integral they forbid is exactly zero (as in an FCIDUMP written with ORBSYM), so skipping those
    pairs changes no sum; else one group (all labels 0)."""
    sym = np.zeros(layout.norb, np.int64)
    if orbsym is not None and layout.norb <= 64:
        s = np.asarray(orbsym, np.int64) - 1
        if s.min() >= 0 and s.max() < 8:
            prod = s[:, None, None, None] ^ s[None, :, None, None] ^ s[None, None, :, None] ^ s[None, None, None, :]
            if not np.any(eri[prod != 0]) and not np.any(h1[(s[:, None] ^ s[None, :]) != 0]):
                sym = s
    if _SYM.get("tables") is not tables or _SYM.get("sym") != sym.tobytes():
        _SYM.clear()  # the cache holds the tables themselves, so their identity is a safe key
        ta = cpu.block_tables(tables[0], sym)  # (the same object for both spins when na == nb)
        _SYM.update(tables=tables, sym=sym.tobytes(),
                    blocked=(ta, ta if tables[1] is tables[0] else cpu.block_tables(tables[1], sym), sym))
    return _SYM["blocked"]


def _pass(layout, dets, keys, h1, eri, e0, gens, gcoef, gstoch, gw, gq, n_draws, n_select, max_entries, accumulate,
          screen=0.0, orbsym=None):
    nexc = n_excitations(layout)
    chunk = max(1, min(max_entries, 2**POS_BITS - 1) // nexc)
    dense = layout.fci_size <= DENSE_KEYS
    hb = _heatbath_tables(eri) if (screen > 0.0 and not dense) else None
    packable = layout.fci_size < 2 ** (63 - POS_BITS)
    tables = None
    if dense:
        import numba

        nparts = max(1, numba.get_num_threads())
        tables = _string_tables(layout, h1, eri)
        # the external determinants met are the nonzero sums (a zero sum contributes and selects nothing);
        # only the sums of the kinds of generator present (deterministic: ad; sampled: as_, t) can be set;
        # the table path's occupied-orbital tables give the met determinants' diagonals in the same sweep
        kinds = (bool(not gstoch.all()), bool(gstoch.any()))
        if tables is not None:
            ad_, as__, t_, bits, nobits = _accumulators(nparts, layout.fci_size)
            # few pairs (at most nexc per generator) against the keys: mark the entries written, so the
            # collection visits them only; else it sweeps the rows (cheaper than marking every pair)
            acc = (ad_, as__, t_, bits if gens.size * nexc < MARK_FRACTION * layout.fci_size else nobits)
            try:  # the accumulators are kept for the next pass: the collection sets back what was written
                ta, tb, sym = _blocked_tables(layout, tables, h1, eri, orbsym)
                counts = cpu.external_dense_tables(keys[gens], eri, cpu.key_bits(keys, layout.fci_size), layout.nstr_b,
                                                   ta, tb, gcoef, gstoch, gw, gq, *acc, sym)
                uk, ad, as_, t, hdiag = cpu.collect_dense(*acc, *kinds, True, layout.nstr_b, ta.occ, tb.occ,
                                                          layout.na, layout.nb, h1, eri)
            except BaseException:
                _ACC.clear()  # possibly left dirty
                raise
        else:
            mask = np.zeros(layout.fci_size, np.uint8)
            mask[keys] = 1
            acc = cpu.external_dense(dets, gens, h1, eri, mask, layout.binom_a, layout.binom_b, layout.nstr_b, nexc,
                                     gcoef, gstoch, gw, gq, nparts, layout.fci_size)
            counts = acc[4]
            no_occ = np.zeros((0, 1), np.int64)
            uk, ad, as_, t, hdiag = cpu.collect_dense(*acc[:4], *kinds, False, layout.nstr_b, no_occ, no_occ,
                                                      layout.na, layout.nb, h1, eri)
        n_gen = int(counts.sum())
        del acc
    else:
        table = cpu.hash_table(keys)
        mask = np.empty(0, np.uint8)
        runs = []
        n_gen = 0
        deterministic = not gstoch.any()
        if hb is not None:
            bounds = cpu.screened_bounds(dets, gens, gcoef, screen, hb[1], hb[3])
            slices = _chunks(bounds, min(max_entries, 2**POS_BITS - 1))
            slabs = cpu.pass_buffers(max((int(bounds[sl].sum()) for sl in slices), default=0),
                                     not (packable and deterministic),
                                     not packable)
        else:
            slices = [slice(start, start + chunk) for start in range(0, gens.size, chunk)]
        for sl in slices:
            args = (gcoef[sl], gstoch[sl], gw[sl], gq[sl])
            if hb is not None:  # pairs written into the pass's buffers, packed (key, position) when packable
                m = cpu.external_screened(dets, gens[sl], gcoef[sl], screen, bounds[sl], h1, eri, *hb, table,
                                          layout.binom_a, layout.binom_b, layout.nstr_b, POS_BITS if packable else 0,
                                          packable and deterministic, *slabs)
                n_gen += m
                if m == 0:
                    continue
                _, sval, sgen, out, out_pos = slabs
                if packable:
                    packed = out[:m].view(np.uint64)
                    packed.sort()
                    part = (cpu.reduce_packed_x(packed, POS_BITS, sval) if deterministic
                            else cpu.reduce_packed(packed, POS_BITS, sgen, sval, *args))
                else:
                    order = np.argsort(out[:m], kind="stable")
                    pos = out_pos[:m][order]
                    part = cpu.reduce_sorted(out[:m][order], sgen[pos], sval[pos], *args)
            else:
                k, g, v = cpu.external_contributions(dets, gens[sl], h1, eri, table, mask, layout.binom_a,
                                                     layout.binom_b, layout.nstr_b, nexc)
                n_gen += k.size
                if k.size == 0:
                    continue
                if packable and deterministic:  # the products c_I H_aI in generation order, then one gather each
                    part = cpu.reduce_packed_x(np.sort(cpu.pack(k, POS_BITS)), POS_BITS,
                                               np.multiply(gcoef[sl][g], v, out=v))
                elif packable:
                    part = cpu.reduce_packed(np.sort(cpu.pack(k, POS_BITS)), POS_BITS, g, v, *args)
                else:
                    order = np.argsort(k)
                    part = cpu.reduce_sorted(k[order], g[order], v[order], *args)
                del k, g, v
            runs.append(part)  # (keys, A_D) from reduce_packed_x, else (keys, A_D, A_S, T)
            merge = cpu.merge_sorted_sum if len(part) == 2 else cpu.merge_sorted_sums
            while len(runs) > 1 and runs[-2][0].size <= 2 * runs[-1][0].size:  # merge like a binary counter:
                b = runs.pop()                                                 # O(N log chunks), not O(N chunks)
                runs.append(merge(*runs.pop(), *b))
        if not runs:
            return 0.0, np.empty(0, np.int64), np.empty(0), 0, n_gen
        while len(runs) > 1:
            b = runs.pop()
            runs.append(merge(*runs.pop(), *b))
        uk, ad = runs[0][:2]
        as_, t = runs[0][2:] if len(runs[0]) == 4 else (np.zeros(uk.size), np.zeros(uk.size))
    if uk.size == 0:
        return 0.0, np.empty(0, np.int64), np.empty(0), 0, n_gen
    if not (dense and tables is not None):  # (else from the collection)
        hdiag = (cpu.diagonals_sorted_keys(uk, layout.na, layout.nb, layout.norb, layout.binom_a, layout.binom_b,
                                           layout.nstr_b, h1, eri) if layout.nstr_b <= STRING_TABLE_MAX
                 else cpu.diagonals(layout.from_keys(uk), h1, eri))
    total = _sum_terms(accumulate, ad, as_, t, hdiag, e0, n_draws)
    sel = np.empty(0, np.int64)
    sel_e2 = np.empty(0)
    if n_select > 0:
        # (a degenerate determinant, see _sum_terms, scores as if DEGENERATE_HA above E_0)
        score = cpu.selection_scores(ad, as_, hdiag, e0, DEGENERATE_HA)
        m = min(n_select, uk.size)
        top = np.argpartition(-score, m - 1)[:m]
        top = top[np.argsort(-score[top], kind="stable")]
        top = top[score[top] > 1e-24]  # symmetry-forbidden determinants have no coupling: never selected
        sel = uk[top]
        den = e0 - hdiag[top]
        den[np.abs(den) < DEGENERATE_HA] = -DEGENERATE_HA
        sel_e2 = (ad[top] + as_[top]) ** 2 / den
    return total, sel, sel_e2, uk.size, n_gen


def _sum_terms(accumulate, ad, as_, t, hdiag, e0, n_draws) -> float:
    """``accumulate`` over the met determinants, except that a determinant degenerate with ``e0``
    (``|E_0 - H_aa| < DEGENERATE_HA``) and coupled to the space makes EN-PT2 diverge: -inf (an
    intruder, e.g. the partner of a single determinant in degenerate orbitals; its selection score is
    the largest, so it enters the space first), instead of rounding noise divided into ~1e11 Ha or a
    division by zero."""
    if cpu.any_near(hdiag, e0, DEGENERATE_HA):
        degenerate = np.abs(e0 - hdiag) < DEGENERATE_HA
        if np.any((ad[degenerate] != 0.0) | (as_[degenerate] != 0.0)):
            return -np.inf
        keep = ~degenerate
        ad, as_, t, hdiag = ad[keep], as_[keep], t[keep], hdiag[keep]
    return accumulate(ad, as_, t, hdiag, e0, n_draws)


def accumulate_cpu(ad, as_, t, hdiag, e0, n_draws) -> float:
    """sum_alpha A^2 / (E - H_aa) with the estimator of the module docstring (n_draws = 0: deterministic)."""
    return float(cpu.en_sum(ad, as_, t, hdiag, float(e0), int(n_draws)))


def en_pt2(layout: Layout, dets: np.ndarray, keys: np.ndarray, coef: np.ndarray, e0: float, h1: np.ndarray,
           eri: np.ndarray, *, n_select: int = 0, stochastic: bool = False, n_samples: int = 8,
           det_fraction: float = 0.02, sample_fraction: float = 0.05, max_entries: int = 20_000_000,
           rng: np.random.Generator | None = None, accumulate=accumulate_cpu, screen: float = 0.0,
           orbsym=None) -> PT2Result:
    """EN-PT2 energy of a variational state and the ``n_select`` best external determinants.

    Parameters
    ----------
    layout : the space's :class:`Layout`
    dets : (n, 2, nw) uint64, the variational space sorted by ``keys`` (n,) int64
    coef : (n,) float64, normalized coefficients of the state
    e0 : float, Hartree, its electronic energy (no core energy)
    h1 : (norb, norb) float64, Hartree; eri : (norb,)*4 float64, Hartree
    stochastic : semi-stochastic estimate (``n_samples`` draws of ``sample_fraction * |S|``
        generators beyond the ``det_fraction`` largest), else deterministic
    max_entries : (alpha, I) pairs generated at once (20 bytes each); on the heat-bath path, entries of
        the generators' screened bounds (an upper bound on their pairs; 24 bytes each, 28 when sampled)
    screen : float, Hartree; > 0: on large FCI spaces (beyond ``DENSE_KEYS``) only the pairs with
        ``|c_I <alpha|H|I>| > screen`` are generated (heat-bath screening, see the module docstring);
        the PT2 and the selection are then those of the screened sums. 0: every pair (exact).
    orbsym : (norb,) Molpro irrep labels 1..8 or None; on small FCI spaces, pairs coupled only through
        integrals these labels forbid (and that are exactly zero) are skipped.
    """
    n = dets.shape[0]
    coef = np.asarray(coef, dtype=np.float64)
    # the screened path runs only where _pass takes it: large FCI spaces with heat-bath tables (norb <= 64)
    applied = screen if (screen > 0.0 and layout.fci_size > DENSE_KEYS and _heatbath_tables(eri) is not None) else 0.0
    if not stochastic:
        gens = np.arange(n, dtype=np.int64)
        z = np.zeros(n)
        total, sel, sel_e2, n_ext, n_gen = _pass(layout, dets, keys, h1, eri, e0, gens, coef, np.zeros(n, np.bool_),
                                                 z, z, 0, n_select, max_entries, accumulate, screen, orbsym)
        return PT2Result(total, 0.0, sel, n_ext, n_gen, False, 1, sel_e2, applied)
    rng = rng or np.random.default_rng(0)
    order = np.argsort(-np.abs(coef), kind="stable")
    nd = min(n - 2, max(1, int(det_fraction * n)))
    det_part, rest = order[:nd], order[nd:]
    p = np.abs(coef[rest]) / np.abs(coef[rest]).sum()
    n_draws = max(2, int(sample_fraction * rest.size))
    estimates = []
    selected = selected_e2 = None
    n_ext = n_gen_total = 0
    for m in range(n_samples):
        counts = rng.multinomial(n_draws, p)
        hit = np.flatnonzero(counts)
        gens = np.concatenate([det_part, rest[hit]]).astype(np.int64)
        ng = gens.size
        stoch = np.zeros(ng, np.bool_)
        stoch[nd:] = True
        w = np.zeros(ng)
        q = np.zeros(ng)
        w[nd:] = counts[hit] / (n_draws * p[hit])
        q[nd:] = 1.0 / p[hit]
        total, sel, sel_e2, ne, ngen = _pass(layout, dets, keys, h1, eri, e0, gens, coef[gens], stoch, w, q, n_draws,
                                             n_select if m == 0 else 0, max_entries, accumulate, screen, orbsym)
        estimates.append(total)
        n_gen_total += ngen
        if m == 0:
            selected, selected_e2, n_ext = sel, sel_e2, ne
    est = np.array(estimates)
    err = float(est.std(ddof=1) / np.sqrt(est.size)) if est.size > 1 else float("nan")
    return PT2Result(float(est.mean()), err, selected, n_ext, n_gen_total, True, n_samples, selected_e2, applied)


__all__ = ["PT2Result", "describe", "en_pt2", "n_excitations", "accumulate_cpu"]
