"""The ANI model in JAX, for training: energies, forces by ``jax.grad``, and their parameter gradients.

The same equations as the inference engine (:mod:`rung.nnp._kernels.reference` for the AEV,
:mod:`rung.nnp.mlp` for the networks), written once more in ``jax.numpy`` so that the loss of
:mod:`rung.nnp.train.gradient` can be differentiated with respect to any layer (forces included:
their parameter gradient is a second derivative, which the engine's hand-written backward pass does
not give). The engine and this module are each other's oracle (tests: ANI-1x, 8 members, 1e-10
Hartree in float64). Inference never imports this module.

Radial features of centre i, neighbour species s, shift k; angular features of the unordered species
pair p, radial shift a, angle shift z (over unordered pairs of angular neighbours j < k)::

    G^R[s, k] = sum_j 0.25 exp(-EtaR (r_ij - ShfR_k)^2) fc(r_ij; Rcr),   fc(r) = 0.5 cos(pi r / Rc) + 0.5
    c = 0.95 cos(theta_ijk)
    G^A[p, a, z] = sum_{j<k} 2 ((1 + c cos ShfZ_z + sqrt(1 - c^2) sin ShfZ_z) / 2)^Zeta
                               exp(-EtaA ((r_ij + r_ik)/2 - ShfA_a)^2) fc(r_ij; Rca) fc(r_ik; Rca)

then ``E_c = sum_{i in c} (NN_{s_i}(G_i) + sae_{s_i})`` and ``F = -dE/dx``.

A :class:`Graph` holds a batch of conformations, padded to fixed sizes so that one compiled function
serves every batch (XLA compiles per shape): padded atoms sit in a dummy conformation, padded
neighbour entries point from the dummy atom to itself with a shift of 2 Rcr (finite distance, so
no NaN in any derivative), padded angular triples use a padded entry, and every padded term is
multiplied by a zero mask. Neighbour entries are built once (the positions of training data do not
move): ``vec_e = x[nbr_e] - x[centre_e] + shift_e``.

Units: Angstrom and Hartree (the model's). Parameters are a flat dict ``{"<species>.<layer>.weight":
(out, in), "<species>.<layer>.bias": (out,)}`` (the names of :func:`rung.nnp.train.readout.parameter_names`).
Reference: J. S. Smith, O. Isayev, A. E. Roitberg, Chem. Sci. 8, 3192 (2017).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from rung.nnp.model import ANIModel


@dataclass(frozen=True)
class Graph:
    """A padded batch of open or periodic conformations (NumPy arrays, moved to JAX by :meth:`arrays`).

    x : (A, 3) float64, Angstrom (row A-1 and the other padded rows: the dummy atom at 0)
    species : (A,) int64 model species index (padded: 0); conf : (A,) int64 (padded: C, the dummy conformation)
    centre, nbr : (E,) int64; shift : (E, 3) float64, Angstrom; ent_mask : (E,) float64
    ent_seg : (E,) int64, ``centre * S + species[nbr]`` (the radial block an entry adds to)
    e1, e2 : (T,) int64 entries of an angular triple; tri_seg : (T,) int64 ``centre * n_pairs + pair``; tri_mask : (T,)
    by_species : tuple over species of (n_s,) int64 atom indices (padded: the dummy atom); species_mask : same, float64
    n_conf : C, conformations (the padded ones included); n_real : the real ones (the first n_real);
    :meth:`arrays` adds ``cmask`` (C,), 1 for the real ones (its shape gives C to the jitted functions)
    """

    x: np.ndarray
    species: np.ndarray
    conf: np.ndarray
    centre: np.ndarray
    nbr: np.ndarray
    shift: np.ndarray
    ent_mask: np.ndarray
    ent_seg: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    tri_seg: np.ndarray
    tri_mask: np.ndarray
    by_species: tuple
    species_mask: tuple
    n_conf: int
    n_real: int

    def arrays(self) -> dict:
        """The pytree passed to the jitted functions (sizes are static: they come from the shapes)."""
        cmask = np.zeros(self.n_conf)
        cmask[:self.n_real] = 1.0
        return dict({k: getattr(self, k) for k in ("x", "species", "conf", "centre", "nbr", "shift", "ent_mask", "ent_seg",
                                                    "e1", "e2", "tri_seg", "tri_mask", "by_species", "species_mask")},
                    cmask=cmask)


@dataclass(frozen=True)
class Architecture:
    """What the JAX functions close over, hashable (a static argument of jax.jit, so every model of the
    same architecture shares one compiled function): species, activations per layer, AEV constants."""

    species: tuple
    activations: tuple
    Rcr: float
    Rca: float
    EtaR: float
    ShfR: tuple
    Zeta: float
    ShfZ: tuple
    EtaA: float
    ShfA: tuple


def architecture(model: ANIModel) -> Architecture:
    p = model.aev
    return Architecture(tuple(model.species), activations(model), float(p.Rcr), float(p.Rca), float(p.EtaR[0]),
                        tuple(map(float, p.ShfR)), float(p.Zeta[0]), tuple(map(float, p.ShfZ)), float(p.EtaA[0]),
                        tuple(map(float, p.ShfA)))


def params_of(model: ANIModel, member: int = 0) -> dict:
    """One member's parameters as a flat dict of float64 NumPy arrays (names as parameter_names)."""
    return {f"{sp}.{k}.{kind}": np.asarray(getattr(layer, kind), np.float64)
            for sp, net in zip(model.species, model.members[member])
            for k, layer in enumerate(net.layers) for kind in ("weight", "bias")}


def activations(model: ANIModel) -> tuple:
    """Per species, the activation names of its layers (static structure of the networks)."""
    return tuple(tuple(layer.activation for layer in net.layers) for net in model.members[0])


def triples(ang_start, ang):
    """Unordered pairs of angular entries of each centre: (centre (T,), e1 (T,), e2 (T,)) int64,
    grouped by centre (vectorised over centres with the same number of angular entries)."""
    counts = np.diff(ang_start)
    n_pair = counts * (counts - 1) // 2
    out_start = np.concatenate([[0], np.cumsum(n_pair)])
    T = int(out_start[-1])
    c, e1, e2 = np.empty(T, np.int64), np.empty(T, np.int64), np.empty(T, np.int64)
    for n in np.unique(counts[counts >= 2]):
        atoms = np.nonzero(counts == n)[0]
        a, b = np.triu_indices(n, 1)  # (n(n-1)/2,)
        rows = out_start[atoms][:, None] + np.arange(a.size)  # (n_atoms_n, n_pairs)
        c[rows] = atoms[:, None]
        e1[rows] = ang[ang_start[atoms][:, None] + a]
        e2[rows] = ang[ang_start[atoms][:, None] + b]
    return c, e1, e2


@dataclass(frozen=True)
class Structures:
    """Neighbour entries and triples of a set of conformations, built once, cut into batches by :meth:`graph`.

    x : (n_atoms, 3) float64 Angstrom; species : (n_atoms,) int64; batch : (n_atoms,) int64, non-decreasing
    centre, nbr : (n_ent,) int64; shift : (n_ent, 3) float64 Angstrom; tc, te1, te2 : (n_tri,) int64
    atom_start, ent_start, tri_start : (n_conf + 1,) int64 offsets of each conformation's rows
    """

    x: np.ndarray
    species: np.ndarray
    batch: np.ndarray
    centre: np.ndarray
    nbr: np.ndarray
    shift: np.ndarray
    tc: np.ndarray
    te1: np.ndarray
    te2: np.ndarray
    atom_start: np.ndarray
    ent_start: np.ndarray
    tri_start: np.ndarray
    n_species: int
    Rcr: float

    @property
    def n_conf(self) -> int:
        return self.atom_start.size - 1

    @functools.cached_property
    def _sizes(self) -> np.ndarray:
        per_species = np.zeros((self.n_conf, self.n_species), np.int64)
        np.add.at(per_species, (self.batch, self.species), 1)
        return np.column_stack([np.diff(self.atom_start), np.diff(self.ent_start), np.diff(self.tri_start), per_species])

    def sizes(self, conf) -> np.ndarray:
        """(len(conf), 3 + n_species) rows: atoms, entries, triples, atoms of each species per conformation."""
        return self._sizes[np.asarray(conf, np.int64)]

    def bound(self, batch_size: int) -> np.ndarray:
        """Padded sizes that hold any batch of ``batch_size`` conformations: per size column, the sum of
        its ``batch_size`` largest values, plus one dummy row each."""
        s = self.sizes(np.arange(self.n_conf))
        k = min(batch_size, self.n_conf)
        return np.concatenate([[k], np.sort(s, axis=0)[::-1][:k].sum(axis=0) + 1])

    def batch_sizes(self, orders, batch_size: int) -> np.ndarray:
        """(n_batches, 3 + n_species) sizes of every batch of ``batch_size`` conformations cut from each
        order in ``orders`` (arrays of conformation indices)."""
        s = self._sizes
        out = []
        for order in orders:
            cuts = np.arange(0, len(order), batch_size)
            out.append(np.add.reduceat(s[order], cuts, axis=0))
        return np.concatenate(out) if out else np.zeros((0, s.shape[1]), np.int64)

    def graph(self, conf, bound) -> Graph:
        """The padded Graph of conformations ``conf`` (int indices) with sizes ``bound`` (from :meth:`bound`
        or the largest of :meth:`batch_sizes` plus one). Costs O(atoms of the batch)."""
        conf = np.asarray(conf, np.int64)
        C, A, E, T = (int(v) for v in bound[:4])
        nsp = bound[4:]
        if conf.size > C:
            raise ValueError(f"{conf.size} conformations in a graph padded for {C}")
        a_lo, a_hi = self.atom_start[conf], self.atom_start[conf + 1]
        e_lo, e_hi = self.ent_start[conf], self.ent_start[conf + 1]
        t_lo, t_hi = self.tri_start[conf], self.tri_start[conf + 1]
        atoms, ents, tris = _ranges(a_lo, a_hi), _ranges(e_lo, e_hi), _ranges(t_lo, t_hi)
        if atoms.size >= A or ents.size >= E or tris.size >= T:
            raise ValueError("a batch exceeds its padded sizes")
        # old index -> new index within the batch: a shift per conformation
        na, ne = a_hi - a_lo, e_hi - e_lo
        a_shift = np.cumsum(na) - na - a_lo  # (B,)
        e_shift = np.cumsum(ne) - ne - e_lo
        k_ent = np.repeat(np.arange(conf.size), ne)
        k_tri = np.repeat(np.arange(conf.size), t_hi - t_lo)
        dummy_atom, dummy_ent = A - 1, E - 1
        x = np.zeros((A, 3))
        x[:atoms.size] = self.x[atoms]
        species = np.zeros(A, np.int64)
        species[:atoms.size] = self.species[atoms]
        cf = np.full(A, C, np.int64)
        cf[:atoms.size] = np.repeat(np.arange(conf.size), na)
        centre = np.full(E, dummy_atom, np.int64)
        nbr = np.full(E, dummy_atom, np.int64)
        shift = np.zeros((E, 3))
        shift[:, 0] = 2.0 * self.Rcr
        centre[:ents.size] = self.centre[ents] + a_shift[k_ent]
        nbr[:ents.size] = self.nbr[ents] + a_shift[k_ent]
        shift[:ents.size] = self.shift[ents]
        ent_mask = np.zeros(E)
        ent_mask[:ents.size] = 1.0
        S = self.n_species
        n_pairs = S * (S + 1) // 2
        e1 = np.full(T, dummy_ent, np.int64)
        e2 = np.full(T, dummy_ent, np.int64)
        e1[:tris.size] = self.te1[tris] + e_shift[k_tri]
        e2[:tris.size] = self.te2[tris] + e_shift[k_tri]
        from rung.nnp._kernels.reference import pair_index

        pidx = pair_index(S)
        tri_seg = centre[e1] * n_pairs + pidx[species[nbr[e1]], species[nbr[e2]]]
        tri_mask = np.zeros(T)
        tri_mask[:tris.size] = 1.0
        by, masks = [], []
        real = species[:atoms.size]
        for s in range(S):
            idx = np.nonzero(real == s)[0]
            if idx.size >= nsp[s]:
                raise ValueError("a batch exceeds its padded sizes")
            full = np.full(int(nsp[s]), dummy_atom, np.int64)
            full[:idx.size] = idx
            m = np.zeros(int(nsp[s]))
            m[:idx.size] = 1.0
            by.append(full)
            masks.append(m)
        return Graph(x, species, cf, centre, nbr, shift, ent_mask, centre * S + species[nbr], e1, e2, tri_seg,
                     tri_mask, tuple(by), tuple(masks), C, int(conf.size))


def _ranges(lo, hi):
    """Concatenated ranges lo[k]..hi[k]-1 (int64)."""
    n = hi - lo
    if n.sum() == 0:
        return np.zeros(0, np.int64)
    return np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(n.sum())


def structures(model: ANIModel, x, numbers, batch, cells=None) -> Structures:
    """Neighbour entries (cutoff Rcr, rung.core cell lists) and angular triples of conformations.

    Parameters
    ----------
    x : (n_atoms, 3) float64, Angstrom; numbers : (n_atoms,) int; batch : (n_atoms,) int, conformation
    index 0..n_conf-1, non-decreasing; cells : None (open) or (n_conf, 3, 3) Angstrom
    """
    from rung.nnp.ani import build_entries
    from rung.nnp.train.readout import species_index

    x = np.ascontiguousarray(x, np.float64)
    batch = np.asarray(batch, np.int64)
    n_conf = int(batch.max()) + 1 if batch.size else 0
    if batch.size and (batch[0] != 0 or np.any(np.diff(batch) < 0) or np.any(np.diff(batch) > 1)):
        raise ValueError("batch must number the conformations 0..n_conf-1 in order, atoms grouped")
    species = species_index(model, numbers)
    p = model.aev
    ent = build_entries(x, batch, n_conf, cells, p.Rcr, p.Rca)
    shift = ent.vec - (x[ent.nbr] - x[ent.centre])  # (n_ent, 3): 0 for open structures, S @ cell otherwise
    tc, te1, te2 = triples(ent.ang_start, ent.ang)
    atom_start = np.searchsorted(batch, np.arange(n_conf + 1))
    return Structures(x, species, batch, ent.centre, ent.nbr, shift, tc, te1, te2, atom_start,
                      ent.start[atom_start], np.searchsorted(tc, atom_start), len(model.species), float(p.Rcr))


def make_atomic_fn(arch: Architecture):
    """``atomic(params, g, x) -> (A,)`` network energy of every atom of the graph (Hartree, self
    energies not included; 0 for padded atoms) as a pure JAX function; g is :meth:`Graph.arrays`, x (A, 3) Angstrom.

    Constant model data (AEV constants, activations) are closed over; call under ``jax.enable_x64``
    for float64 (the parameters' dtype sets the networks' precision, the AEV follows x)."""
    import jax
    import jax.numpy as jnp

    a = arch if isinstance(arch, Architecture) else architecture(arch)
    S = len(a.species)
    nR, nA, nZ = len(a.ShfR), len(a.ShfA), len(a.ShfZ)
    n_pairs = S * (S + 1) // 2
    etaR, etaA, zeta = a.EtaR, a.EtaA, a.Zeta
    ShfR, ShfA = np.array(a.ShfR), np.array(a.ShfA)
    cz, sz = np.cos(np.array(a.ShfZ)), np.sin(np.array(a.ShfZ))
    Rcr, Rca = a.Rcr, a.Rca
    acts, species = a.activations, a.species

    def fc(r, rc):
        return 0.5 * jnp.cos(jnp.pi * r / rc) + 0.5

    def act(name, z):
        if name == "celu0.1":
            return jnp.maximum(z, 0.0) + 0.1 * jnp.expm1(10.0 * jnp.minimum(z, 0.0))
        if name == "gaussian":
            return jnp.exp(-z * z)
        return z

    def aev(g, x):
        A = x.shape[0]
        ShfR_, ShfA_, cz_, sz_ = (jnp.asarray(c, x.dtype) for c in (ShfR, ShfA, cz, sz))  # NumPy constants would promote float32 to float64
        vec = x[g["nbr"]] - x[g["centre"]] + g["shift"]  # (E, 3)
        r = jnp.sqrt(jnp.sum(vec * vec, axis=1))  # (E,)
        rad = 0.25 * jnp.exp(-etaR * (r[:, None] - ShfR_) ** 2) * (fc(r, Rcr) * g["ent_mask"])[:, None]  # (E, nR)
        GR = jax.ops.segment_sum(rad, g["ent_seg"], num_segments=A * S).reshape(A, S * nR)
        v1, v2, r1, r2 = vec[g["e1"]], vec[g["e2"]], r[g["e1"]], r[g["e2"]]
        cos = 0.95 * jnp.sum(v1 * v2, axis=1) / (r1 * r2)  # (T,)
        sin = jnp.sqrt(1.0 - cos * cos)
        f1 = (0.5 * (1.0 + cos[:, None] * cz_ + sin[:, None] * sz_)) ** zeta  # (T, nZ)
        f2 = jnp.exp(-etaA * (0.5 * (r1 + r2)[:, None] - ShfA_) ** 2)  # (T, nA)
        w = 2.0 * fc(r1, Rca) * fc(r2, Rca) * g["tri_mask"]
        term = (f2 * w[:, None])[:, :, None] * f1[:, None, :]  # (T, nA, nZ)
        GA = jax.ops.segment_sum(term.reshape(-1, nA * nZ), g["tri_seg"], num_segments=A * n_pairs)
        return jnp.concatenate([GR, GA.reshape(A, n_pairs * nA * nZ)], axis=1)  # (A, L)

    def atomic_energies(params, g, x):
        G = aev(g, x)
        atomic = jnp.zeros(x.shape[0], dtype=params[f"{species[0]}.0.weight"].dtype)
        for s, sp in enumerate(species):
            idx = g["by_species"][s]
            if idx.shape[0] == 0:
                continue
            h = G[idx].astype(atomic.dtype)  # (n_s, L)
            for k, a in enumerate(acts[s]):
                h = act(a, h @ params[f"{sp}.{k}.weight"].T + params[f"{sp}.{k}.bias"])
            atomic = atomic.at[idx].add(h[:, 0] * g["species_mask"][s])
        return atomic

    return atomic_energies


def conformation_energies(atomic, conf, n_conf):
    """(n_conf,) sums of atomic energies per conformation (the padded dummy conformation dropped)."""
    import jax

    return jax.ops.segment_sum(atomic, conf, num_segments=n_conf + 1)[:n_conf]


def make_predict_fn(arch: Architecture):
    """``predict(params, g) -> (energies (C,), forces (A, 3))``: network energies (Hartree, self
    energies not included) and forces (Hartree/Angstrom) by ``jax.grad`` of the total energy."""
    import jax

    atomic_fn = make_atomic_fn(arch)

    def predict(params, g):
        def total(x):
            e = conformation_energies(atomic_fn(params, g, x), g["conf"], g["cmask"].shape[0])
            return e.sum(), e

        (_, e), dEdx = jax.value_and_grad(total, has_aux=True)(g["x"])
        return e, -dEdx

    return predict


@functools.lru_cache(maxsize=None)
def compiled_predict(arch: Architecture):
    """jax.jit of :func:`make_predict_fn`, one per architecture and process (XLA compiles per shape)."""
    import jax

    return jax.jit(make_predict_fn(arch))


def evaluate(model: ANIModel, x, numbers, batch, *, member: int = 0, cells=None):
    """Energies (n_conf,) Hartree (self energies included) and forces (n_atoms, 3) Hartree/Angstrom of
    one member, in float64 with JAX (the oracle of the engine and of this module)."""
    import jax

    st = structures(model, x, numbers, batch, cells)
    g = st.graph(np.arange(st.n_conf), st.bound(st.n_conf))
    with jax.enable_x64(True):
        import jax.numpy as jnp

        fn = compiled_predict(architecture(model))
        params = {k: jnp.asarray(v) for k, v in params_of(model, member).items()}
        e, f = fn(params, jax.tree_util.tree_map(jnp.asarray, g.arrays()))
        e, f = np.asarray(e), np.asarray(f)
    sae = np.bincount(st.batch, weights=model.self_energies[st.species], minlength=st.n_conf)
    return e + sae, f[:st.x.shape[0]]
