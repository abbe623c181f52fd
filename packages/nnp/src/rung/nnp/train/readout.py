"""Exact read-out refit: the last layer of every species network, the rest frozen, by weighted ridge
least squares on energies and forces.

For one ensemble member, with ``h_i`` (H_s,) the last hidden layer of atom i (species s_i), computed by
the frozen layers, and ``n_cs`` the number of atoms of species s in conformation c::

    E_c = sum_s (w_s . Phi_cs + b_s n_cs) + sum_s sae_s n_cs,       Phi_cs = sum_{i in c, s_i = s} h_i
    F_a = -dE/dx_a = -sum_s w_s . dPhi_s/dx_a,                      dPhi_s/dx_a = sum_{i: s_i = s} dh_i/dx_a

so energies and forces are affine in ``theta = [w_0, b_0, w_1, b_1, ...]`` (P = sum_s (H_s + 1)
parameters per member; the bias b_s is the member's per-element energy shift).

Derivatives: for the entries e of centre i (``vec_e = x_nbr - x_i``), ``dh_i/dvec_e`` by the chain
rule: ``dG_i/dvec_e`` from the AEV Jacobian kernel (one call per chunk, shared by all members), then
forward mode through the frozen layers (tangent ``t -> act'(z) * (t W^T)``, three per entry); then
``dh_i/dx_nbr += dh_i/dvec_e`` and ``dh_i/dx_i -= dh_i/dvec_e`` (``scatter_columns``). Forward mode
costs 3 x (entries per atom) tangents per atom against H_s backward passes, so it wins for the small
molecules of QMC-sized data (numbers in BENCHMARKS.md). The first layer multiplies only the AEV columns
a neighbour's species can touch (its radial block and the angular blocks of its pairs).

Loss (a chi^2 with a Gaussian prior around the starting weights, i.e. L2-SP)::

    L(theta) = sum_c wE_c (E_c - E_c^ref)^2 + sum_{a,k} wF_ak (F_ak - F_ak^ref)^2
               + l2sp |w - w_start|^2 + shift_l2sp |b - b_start|^2

minimised exactly: the weighted rows ``[A | r]`` (r: labels minus the starting member) are reduced
chunk by chunk to their triangular factor (TSQR with numpy's QR), then
``lstsq([R_free; sqrt(Lambda)], [q; 0])`` over the free (not frozen) parameters. lstsq's minimum-norm
solution leaves shift combinations the data cannot tell apart (H and O from water alone) at their
start. Every member is refit on its own, so the ensemble spread stays an uncertainty estimate.
Written back, the members' mean shift change goes into the float64 self energies and the rest into
the biases; refit layers are stored as float64; frozen layers are the same arrays as before.

Units: the model's own (Angstrom, Hartree, Hartree/Angstrom). Row weights are 1/Hartree^2 and
1/(Hartree/Angstrom)^2, so with 1/sigma^2 weights L is dimensionless and l2sp (1/Hartree^2) is
1/sigma_w^2 of a prior on the weight change (Hartree per unit activation).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np

from rung.nnp.model import ANIModel, Layer, Network
from rung.nnp.mlp import _act


@dataclass(frozen=True)
class Labels:
    """The refit's data, atoms of all conformations concatenated (conformation by conformation).

    x : (n_atoms, 3) float64, Angstrom; numbers : (n_atoms,) int; batch : (n_atoms,) int, conformation
    index 0..n_conf-1, non-decreasing. energy : (n_conf,) float64, Hartree; energy_weight : (n_conf,)
    float64, 1/Hartree^2 (0: no label). forces : (n_atoms, 3) float64, Hartree/Angstrom; forces_weight :
    (n_atoms, 3) float64, 1/(Hartree/Angstrom)^2 (0: no label). Labels with weight 0 are never read.
    """

    x: np.ndarray
    numbers: np.ndarray
    batch: np.ndarray
    energy: np.ndarray
    energy_weight: np.ndarray
    forces: np.ndarray
    forces_weight: np.ndarray

    @property
    def n_conf(self) -> int:
        return self.energy.size


@dataclass(frozen=True)
class Refit:
    """model : the refit ANIModel; loss_before, loss_after : (n_members,) float64, L of each member at
    the start and at the solution (dimensionless with 1/sigma^2 weights); n_free : free parameters per member."""

    model: ANIModel
    loss_before: np.ndarray
    loss_after: np.ndarray
    n_free: int


def parameter_names(model: ANIModel) -> list[str]:
    """Names of one member's parameters, ``<species>.<layer>.weight|bias`` (layer 0 reads the AEV)."""
    return [f"{sp}.{k}.{kind}" for sp, net in zip(model.species, model.members[0])
            for k in range(len(net.layers)) for kind in ("weight", "bias")]


def _layout(nets):
    """Hidden widths H_s of the last layers and the column offsets of [w_s, b_s] in theta."""
    H = np.array([net.layers[-1].weight.shape[1] for net in nets])
    return H, np.concatenate([[0], np.cumsum(H + 1)])


def free_columns(model: ANIModel, frozen=()) -> np.ndarray:
    """(P,) bool: the read-out parameters not matched by any ``frozen`` pattern (fnmatch on parameter names)."""
    H, off = _layout(model.members[0])
    free = np.zeros(off[-1], bool)
    for s, (sp, net) in enumerate(zip(model.species, model.members[0])):
        k = len(net.layers) - 1
        free[off[s]:off[s] + H[s]] = not any(fnmatchcase(f"{sp}.{k}.weight", p) for p in frozen)
        free[off[s] + H[s]] = not any(fnmatchcase(f"{sp}.{k}.bias", p) for p in frozen)
    return free


def _aev_columns(p):
    """For each neighbour species q: the AEV columns dG/dvec_e can be non-zero in (entry to a q neighbour)."""
    from rung.nnp._kernels.reference import pair_index

    S, nR, nAZ = p.n_species, p.ShfR.size, p.ShfA.size * p.ShfZ.size
    pidx = pair_index(S)
    return [np.concatenate([np.arange(q * nR, (q + 1) * nR)]
                           + [p.radial_length + pr * nAZ + np.arange(nAZ) for pr in np.unique(pidx[q])])
            for q in range(S)]


def _slice(ent, a0, a1):
    """The entries of atoms a0..a1-1 (whole conformations), renumbered from 0."""
    from rung.nnp.ani import Entries

    e0, e1, g0, g1 = ent.start[a0], ent.start[a1], ent.ang_start[a0], ent.ang_start[a1]
    return Entries(ent.start[a0:a1 + 1] - e0, ent.centre[e0:e1] - a0, ent.nbr[e0:e1] - a0, ent.vec[e0:e1],
                   ent.dist[e0:e1], ent.ang_start[a0:a1 + 1] - g0, ent.ang[g0:g1] - e0)


def member_design(nets, species, G, J, ent, batch, n_conf, aev_cols):
    """One member's energy features and position derivatives of the read-out inputs.

    Parameters
    ----------
    nets : tuple of Network, one per species; species : (n_atoms,) int model species index
    G : (n_atoms, L) float64 AEVs; J : (n_entries, 3, L) float64, dG_centre/dvec_e
    ent : Entries of these atoms; batch : (n_atoms,) int conformation index; aev_cols : see _aev_columns

    Returns
    -------
    Phi : (n_conf, P) float64, per conformation sum_i h_i in the w_s columns and n_cs in the b_s columns
    dPhi : (n_atoms, 3, P) float64, 1/Angstrom: dPhi/dx (forces are ``-dPhi @ theta``, Hartree/Angstrom)
    """
    from rung.nnp._kernels.cpu import scatter_columns

    H, off = _layout(nets)
    n = species.size
    Phi = np.zeros((n_conf, off[-1]))
    dPhi = np.zeros((n, 3, off[-1]))
    es, en = species[ent.centre], species[ent.nbr]
    local = np.empty(n, np.int64)  # index of an atom among the atoms of its species
    for s, net in enumerate(nets):
        atoms = np.nonzero(species == s)[0]
        if atoms.size == 0:
            continue
        local[atoms] = np.arange(atoms.size)
        hidden = [(lay.weight.astype(np.float64), lay.bias.astype(np.float64), lay.activation) for lay in net.layers[:-1]]
        h, slopes = G[atoms], []
        for W, b, act in hidden:
            h, d = _act(np, act, h @ W.T + b)  # (n_s, width)
            slopes.append(d)
        for u in range(H[s]):
            Phi[:, off[s] + u] = np.bincount(batch[atoms], weights=h[:, u], minlength=n_conf)
        Phi[:, off[s] + H[s]] = np.bincount(batch[atoms], minlength=n_conf)
        for q, cols in enumerate(aev_cols):
            e = np.nonzero((es == s) & (en == q))[0]
            if e.size == 0:
                continue
            row = np.repeat(local[ent.centre[e]], 3)  # the atom of each tangent
            t = np.take(J[e], cols, axis=2).reshape(3 * e.size, cols.size) @ hidden[0][0][:, cols].T  # (3 n_e, h1)
            for k, (W, _, _) in enumerate(hidden):
                if k:
                    t = t @ W.T
                if slopes[k] is not None:
                    t *= slopes[k][row]
            scatter_columns(ent.centre[e], ent.nbr[e], t.reshape(e.size, 3, H[s]), dPhi[:, :, off[s]:off[s] + H[s]])
    return Phi, dPhi


def _theta(nets):
    return np.concatenate([np.append(net.layers[-1].weight[0].astype(np.float64), float(net.layers[-1].bias[0]))
                           for net in nets])


def _factors(model: ANIModel, labels: Labels, budget_bytes: int):
    """Per member, the triangular factor (P+1, P+1) of the weighted rows [A | r] (see module)."""
    from rung.nnp.ani import build_entries

    species = species_index(model, labels.numbers)
    p = model.aev
    ent = build_entries(labels.x, labels.batch, labels.n_conf, None, p.Rcr, p.Rca)
    P = _layout(model.members[0])[1][-1]
    R = [np.zeros((0, P + 1)) for _ in model.members]
    conf_entries = np.bincount(labels.batch, weights=np.diff(ent.start), minlength=labels.n_conf)
    atom_start = np.searchsorted(labels.batch, np.arange(labels.n_conf + 1))
    cols = _aev_columns(p)
    c0 = 0
    while c0 < labels.n_conf:
        c1 = c0 + 1  # as many conformations as the Jacobian budget allows, at least one
        while c1 < labels.n_conf and conf_entries[c0:c1 + 1].sum() * 3 * p.length * 8 <= budget_bytes:
            c1 += 1
        _add_rows(model, labels, species, ent, c0, c1, atom_start, cols, R)
        c0 = c1
    return [np.vstack([r, np.zeros((P + 1 - r.shape[0], P + 1))]) for r in R]


def _add_rows(model, labels, species, ent, c0, c1, atom_start, aev_cols, R):
    """Reduce the weighted rows of conformations c0..c1-1 into each member's factor R[m] (in place)."""
    from rung.nnp._kernels import cpu

    p = model.aev
    P = R[0].shape[1] - 1
    a0, a1 = atom_start[c0], atom_start[c1]
    sub = _slice(ent, a0, a1)
    sp = species[a0:a1]
    args = (sp, sub.start, sub.nbr, sub.vec, sub.dist, sub.ang_start, sub.ang, p)
    G = cpu.aev_forward(*args, np.float64)
    J = cpu.aev_jacobian(*args)
    batch = labels.batch[a0:a1] - c0
    wE = labels.energy_weight[c0:c1]
    wF = labels.forces_weight[a0:a1].ravel()
    e_ok, f_ok = wE > 0, wF > 0
    offset = np.bincount(batch, weights=model.self_energies[sp], minlength=c1 - c0)
    for m, nets in enumerate(model.members):
        theta = _theta(nets)
        Phi, dPhi = member_design(nets, sp, G, J, sub, batch, c1 - c0, aev_cols)
        AF = -dPhi.reshape(-1, P)
        rE = labels.energy[c0:c1][e_ok] - Phi[e_ok] @ theta - offset[e_ok]
        rF = labels.forces[a0:a1].ravel()[f_ok] - AF[f_ok] @ theta
        rows = np.vstack([np.column_stack([Phi[e_ok], rE]) * np.sqrt(wE[e_ok])[:, None],
                          np.column_stack([AF[f_ok], rF]) * np.sqrt(wF[f_ok])[:, None]])
        R[m] = np.linalg.qr(np.vstack([R[m], rows]), mode="r")


def species_index(model: ANIModel, numbers) -> np.ndarray:
    """Model species index of each atomic number; ValueError naming an element the model lacks."""
    z = np.asarray(numbers, np.int64)
    known = dict(zip(model.atomic_numbers.tolist(), range(len(model.species))))
    missing = sorted(set(np.unique(z).tolist()) - set(known))
    if missing:
        from ase.data import chemical_symbols

        raise ValueError(f"element(s) {', '.join(chemical_symbols[k] for k in missing)} not covered by model "
                         f"{model.name!r} ({', '.join(model.species)})")
    return np.array([known[k] for k in z.tolist()], np.int64)


def refit(model: ANIModel, labels: Labels, *, frozen=(), l2sp: float = 1.0e3, shift_l2sp: float = 0.0,
          budget_bytes: int = 1 << 25) -> Refit:
    """Refit the last layer of every species network of every member (exact minimiser of L, see module).

    Parameters
    ----------
    model : ANIModel; labels : Labels (open structures)
    frozen : fnmatch patterns of parameter names kept fixed (see :func:`parameter_names`); all but the
        last layers are always fixed
    l2sp : float >= 0, 1/Hartree^2: prior precision of the last-layer weight change
    shift_l2sp : float >= 0, 1/Hartree^2: the same for the biases (per-element shifts); 0 leaves them free
    budget_bytes : memory for the AEV Jacobian of one chunk of conformations
    """
    b = labels.batch
    if b.size == 0 or b[0] != 0 or np.any(np.diff(b) < 0) or np.any(np.diff(b) > 1) or b[-1] != labels.n_conf - 1:
        raise ValueError("labels.batch must number the conformations 0..n_conf-1 in order, atoms grouped")
    free = free_columns(model, frozen)
    if not free.any():
        raise ValueError("every read-out parameter is frozen: nothing to refit")
    H, off = _layout(model.members[0])
    is_bias = np.zeros(off[-1], bool)
    is_bias[off[1:] - 1] = True
    lam = np.where(is_bias, shift_l2sp, l2sp)[free]
    P = off[-1]
    d = np.zeros((len(model.members), P))
    before, after = np.empty(len(model.members)), np.empty(len(model.members))
    # BLAS on one thread: OpenBLAS's threaded QR and lstsq of these narrow blocks and its GEMMs of a few
    # thousand rows were much slower than one thread while the cores were shared, and two threads gained
    # little on an idle machine (timings: BENCHMARKS.md)
    from threadpoolctl import ThreadpoolController

    with ThreadpoolController().limit(limits=1, user_api="blas"):
        for m, Ra in enumerate(_factors(model, labels, budget_bytes)):
            R, q, rho2 = Ra[:P, :P][:, free], Ra[:P, P], Ra[P, P] ** 2
            A = np.vstack([R, np.diag(np.sqrt(lam))])
            d[m, free] = np.linalg.lstsq(A, np.concatenate([q, np.zeros(lam.size)]), rcond=None)[0]
            before[m] = q @ q + rho2
            res = R @ d[m, free] - q
            after[m] = res @ res + rho2 + lam @ d[m, free] ** 2
    return Refit(_write_back(model, d, H, off), before, after, int(free.sum()))


def _write_back(model: ANIModel, d, H, off) -> ANIModel:
    """The model with theta + d (members' mean shift change moved into the self energies)."""
    db = d[:, off[1:] - 1]  # (M, S) shift changes
    delta = db.mean(axis=0)
    members = []
    for m, nets in enumerate(model.members):
        new = []
        for s, net in enumerate(nets):
            block = d[:, off[s]:off[s + 1]]
            if not block.any():
                new.append(net)
                continue
            last = net.layers[-1]
            w = last.weight.astype(np.float64) + d[m, off[s]:off[s] + H[s]][None, :]
            b = last.bias.astype(np.float64) + (db[m, s] - delta[s])
            new.append(Network(net.layers[:-1] + (Layer(w, b, last.activation),)))
        members.append(tuple(new))
    return ANIModel(model.name, model.species, model.aev, model.self_energies + delta, tuple(members),
                    dict(model.provenance))
