"""ANI inference: energies, analytic forces and virials for batches of molecules and periodic cells.

Pipeline for one call (FeNNol's layout: all atoms of all structures concatenated, with a batch index)::

    neighbour entries (rung.core cell lists, cutoff Rcr)  ->  AEV kernel (radial + angular)
    -> species MLPs (ensemble, mean energy)  ->  dE/dG  ->  AEV backward kernel  ->  dE/d(pair vectors)
    -> forces F = -dE/dx and virial W = -sum_e g_e (x) d_e

The energy of a structure is ``E = mean_m sum_i (NN_m,s_i(G_i) + E_self(s_i))``; the ensemble spread
is the sample standard deviation (ddof=1) of the member energies. Self energies and all energy sums
are float64; the MLPs run in the chosen dtype (float32 by default); AEVs and their derivatives are
accumulated in float64 inside the CPU kernels and stored in that dtype.

Periodic structures: the neighbour search gives every image within the cutoff (cells smaller than
the cutoff included), pair vectors ``d = x_j - x_i + S @ cell``; the virial follows rung.core's
convention ``W_ab = -dE/d(eps_ab)``. Separate open structures in one batch are placed on a grid far
apart for the neighbour search only; their pair vectors come from the original positions.

Units: positions and cells in Angstrom, energies in Hartree, forces in Hartree/Angstrom, virial in
Hartree (the model's native units, declared as ``energy_unit``/``length_unit`` for rung.core).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from rung.core.backend import resolve as resolve_backend
from rung.core.neighbors import neighbor_list
from rung.core.potential import PotentialResult
from rung.nnp.model import ANIModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NNPResult:
    """Result of :meth:`ANIPotential.evaluate` for a batch of ``n_batch`` structures.

    energy : (n_batch,) float64, Hartree, ensemble mean
    forces : (n_atoms, 3) float64, Hartree/Angstrom, or None
    virial : (n_batch, 3, 3) float64, Hartree, or None
    energy_members : (n_members, n_batch) float64, Hartree
    spread : (n_batch,) float64, Hartree, sample standard deviation over members (0 for one network)
    atomic_energies : (n_atoms,) float64, Hartree, ensemble mean, self energies included
    backend : str
    """

    energy: np.ndarray
    forces: np.ndarray | None
    virial: np.ndarray | None
    energy_members: np.ndarray
    spread: np.ndarray
    atomic_energies: np.ndarray
    backend: str


@dataclass(frozen=True)
class Entries:
    """Directed neighbour entries grouped by centre atom (see _kernels/reference.py)."""

    start: np.ndarray  # (n_atoms + 1,) int64
    centre: np.ndarray  # (n_entries,) int64
    nbr: np.ndarray  # (n_entries,) int64
    vec: np.ndarray  # (n_entries, 3) float64, Angstrom
    dist: np.ndarray  # (n_entries,) float64, Angstrom
    ang_start: np.ndarray  # (n_atoms + 1,) int64
    ang: np.ndarray  # (n_ang,) int64, entries with dist < Rca


# Open structures of at most this many atoms (each; the atoms of a structure together) are searched by
# testing all pairs (numba), larger ones and periodic cells with rung.core's cell lists: for a small molecule
# the cell list's grid set-up (NumPy) costs more than testing every pair (timings: BENCHMARKS.md).
ALL_PAIRS_MAX_ATOMS = 200


def build_entries(x, batch, n_batch, cells, Rcr, Rca, min_distance=0.1) -> Entries:
    """Directed neighbour entries within Rcr for all structures (half pairs: all pairs tested for small
    open structures, see ALL_PAIRS_MAX_ATOMS, else rung.core cell lists).

    Parameters
    ----------
    x : (n_atoms, 3) float64, Angstrom; batch : (n_atoms,) int64 structure index
    cells : None, or (n_batch, 3, 3) float64 Angstrom (rows are lattice vectors)
    min_distance : float, Angstrom; closer atom pairs raise ValueError
    """
    from rung.nnp._kernels.cpu import directed, open_pairs

    n = x.shape[0]
    bstart = None
    if cells is None and (n_batch == 1 or bool(np.all(batch[1:] >= batch[:-1]))):
        bstart = np.array([0, n]) if n_batch == 1 else np.searchsorted(batch, np.arange(n_batch + 1))
        if np.max(np.diff(bstart), initial=0) > ALL_PAIRS_MAX_ATOMS:
            bstart = None
    if bstart is not None:  # small open structures, atoms of each together: all pairs, no cell list
        i, j, d, r = open_pairs(x, bstart, float(Rcr))
    elif cells is None:
        if n_batch == 1:
            xs = x
        else:  # structures on a grid, far apart, for the neighbour search only
            lo = np.full((n_batch, 3), np.inf)
            hi = np.full((n_batch, 3), -np.inf)
            np.minimum.at(lo, batch, x)
            np.maximum.at(hi, batch, x)
            spacing = float(np.max(hi - lo)) + Rcr + 1.0
            side = int(np.ceil(n_batch ** (1 / 3)))
            b = np.arange(n_batch)
            grid = np.stack([b % side, (b // side) % side, b // (side * side)], axis=1) * spacing
            xs = x - lo[batch] + grid[batch]
        p = neighbor_list(xs, Rcr, None, half=True)
        i, j = p.i, p.j
        d = x[j] - x[i]
    else:
        parts = []
        for b in range(n_batch):
            idx = np.nonzero(batch == b)[0] if n_batch > 1 else np.arange(n)
            p = neighbor_list(x[idx], Rcr, cells[b], half=True)
            parts.append((idx[p.i], idx[p.j], x[idx[p.j]] - x[idx[p.i]] + p.shifts @ cells[b]))
        i = np.concatenate([q[0] for q in parts])
        j = np.concatenate([q[1] for q in parts])
        d = np.concatenate([q[2] for q in parts])
    if bstart is None:
        r = np.sqrt(np.einsum("ij,ij->i", d, d))
    if r.size and r.min() < min_distance:
        e = int(np.argmin(r))
        raise ValueError(f"atoms {i[e]} and {j[e]} are {r[e]:.3g} Angstrom apart (overlapping atoms; "
                         f"minimum allowed {min_distance} Angstrom)")
    return Entries(*directed(n, i, j, np.ascontiguousarray(d), r, float(Rca)))


class ANIPotential:
    """An ANI model ready to evaluate (a rung.core :class:`~rung.core.potential.Potential`).

    Parameters
    ----------
    model : ANIModel
    dtype : "float32" (default) or "float64": precision of the networks and stored AEVs
    backend : "auto" | "numpy" | "numba" | "cupy"; "auto" takes CuPy when rung.core selects the GPU,
        numba otherwise. An explicit backend that is unavailable raises.
    min_distance_angstrom : atoms closer than this raise ValueError
    """

    energy_unit = "hartree"
    length_unit = "angstrom"

    def __init__(self, model: ANIModel, *, dtype="float32", backend: str = "auto", min_distance_angstrom: float = 0.1):
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        backend = resolve_backend(backend)
        self.model, self.dtype, self.backend = model, np.dtype(dtype), backend
        self.min_distance = float(min_distance_angstrom)
        self._z_to_species = np.full(119, -1, np.int64)
        self._z_to_species[model.atomic_numbers] = np.arange(len(model.species))
        if backend == "cupy":
            from rung.nnp._kernels import gpu

            self._gpu = gpu.GPUEngine(model, self.dtype)
        else:
            from rung.nnp.mlp import PackedNetworks

            self._nets = PackedNetworks(model, self.dtype)
        log.info("rung.nnp: %s, %d network(s), %s, backend %s", model.name, len(model.members), self.dtype, backend)

    @property
    def n_members(self) -> int:
        return len(self.model.members)

    def species_index(self, numbers) -> np.ndarray:
        """Model species index of each atomic number; ValueError naming any element not covered."""
        z = np.asarray(numbers, dtype=np.int64).ravel()
        bad = (z < 1) | (z > 118)
        s = np.full(z.shape, -1, np.int64)
        s[~bad] = self._z_to_species[z[~bad]]
        if np.any(s < 0):
            from ase.data import chemical_symbols

            k = int(np.argmax(s < 0))
            el = chemical_symbols[z[k]] if 0 < z[k] < 119 else f"Z={z[k]}"
            raise ValueError(f"element {el} (atom {k}) is not covered by model {self.model.name!r}, "
                             f"which knows {', '.join(self.model.species)}")
        return s

    def evaluate(self, positions, numbers, *, batch=None, cell=None, forces: bool = True,
                 virial: bool = False) -> NNPResult:
        """Energies (and forces, virials) of one or many structures, atoms concatenated.

        Parameters
        ----------
        positions : (n_atoms, 3) float, Angstrom
        numbers : (n_atoms,) int, atomic numbers
        batch : (n_atoms,) int, structure index 0..n_batch-1 of each atom; None: one structure
        cell : None (open), (3, 3) shared by all structures, or (n_batch, 3, 3); Angstrom, rows are
            lattice vectors; periodic in all three directions
        """
        x = np.ascontiguousarray(positions, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != 3:
            raise ValueError(f"positions must have shape (n_atoms, 3), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("positions contain NaN or infinite values")
        species = self.species_index(numbers)
        if species.size != x.shape[0]:
            raise ValueError(f"{species.size} atomic numbers for {x.shape[0]} positions")
        if batch is None:
            batch = np.zeros(x.shape[0], np.int64)
        batch = np.asarray(batch, dtype=np.int64)
        if batch.shape != species.shape or (batch.size and batch.min() < 0):
            raise ValueError("batch must hold one non-negative structure index per atom")
        n_batch = int(batch.max()) + 1 if batch.size else 0
        cells = None
        if cell is not None:
            c = np.asarray(cell, dtype=np.float64)
            cells = np.broadcast_to(c, (n_batch, 3, 3)) if c.shape == (3, 3) else c
            if cells.shape != (n_batch, 3, 3):
                raise ValueError(f"cell must be (3, 3) or ({n_batch}, 3, 3), got {c.shape}")
        p = self.model.aev
        need_grad = forces or virial
        if self.backend == "cupy":  # neighbour entries, AEVs, networks and forces on the device
            out, f, w = self._gpu.run(x, species, batch, n_batch, cells, need_grad, self.min_distance)
        else:
            ent = build_entries(x, batch, n_batch, cells, p.Rcr, p.Rca, self.min_distance)
            kern = _kernels(self.backend)
            G = kern.aev_forward(species, ent.start, ent.nbr, ent.vec, ent.dist, ent.ang_start, ent.ang, p, self.dtype)
            out, dG = self._nets(species, G, grad=need_grad)
            f = w = gvec = None
            if need_grad:
                gvec = kern.aev_backward(species, ent.start, ent.nbr, ent.vec, ent.dist, ent.ang_start, ent.ang, p, dG)
        sae = self.model.self_energies[species]
        atomic = out + sae  # (M, n_atoms) float64
        e_members = np.stack([np.bincount(batch, weights=a, minlength=n_batch) for a in atomic])
        spread = e_members.std(axis=0, ddof=1) if self.n_members > 1 else np.zeros(n_batch)
        if need_grad and self.backend != "cupy":
            kern = _kernels("numpy" if self.backend == "numpy" else "numba")
            f, w = kern.scatter(ent.start, ent.nbr, ent.vec, gvec, batch, n_batch)
        return NNPResult(energy=e_members.mean(axis=0), forces=f if forces else None, virial=w if virial else None,
                         energy_members=e_members, spread=spread, atomic_energies=atomic.mean(axis=0),
                         backend=self.backend)

    def compute(self, positions, numbers, cell=None, *, forces: bool = True, virial: bool = False) -> PotentialResult:
        """rung.core Potential protocol: positions (n_atoms, 3) or (batch, n_atoms, 3) Angstrom.

        Returns energy (float or (batch,)) Hartree, forces (like positions) Hartree/Angstrom, virial
        ((3, 3) or (batch, 3, 3)) Hartree. ``cell``: None, (3, 3) or (batch, 3, 3) Angstrom.
        """
        x = np.asarray(positions, dtype=np.float64)
        z = np.asarray(numbers)
        if x.ndim == 2:
            r = self.evaluate(x, z, cell=cell, forces=forces, virial=virial)
            return PotentialResult(energy=float(r.energy[0]), forces=r.forces,
                                   virial=None if r.virial is None else r.virial[0],
                                   energies={"energy_members": r.energy_members[:, 0], "energy_spread": float(r.spread[0])})
        if x.ndim != 3 or x.shape[2] != 3:
            raise ValueError(f"positions must have shape (n_atoms, 3) or (batch, n_atoms, 3), got {x.shape}")
        nb, na = x.shape[:2]
        if z.shape != (na,):
            raise ValueError(f"numbers must have shape ({na},) for positions {x.shape}")
        batch = np.repeat(np.arange(nb), na)
        r = self.evaluate(x.reshape(-1, 3), np.tile(z, nb), batch=batch, cell=cell, forces=forces, virial=virial)
        return PotentialResult(energy=r.energy, forces=None if r.forces is None else r.forces.reshape(nb, na, 3),
                               virial=r.virial)


def _kernels(backend):
    if backend == "numpy":
        from rung.nnp._kernels import reference

        return reference
    from rung.nnp._kernels import cpu

    return cpu


def load_model(name_or_path="ani-1x", *, member: int | None = None, dtype="float32", backend: str = "auto",
               min_distance_angstrom: float = 0.1) -> ANIPotential:
    """Load an ANI model as a potential.

    Parameters
    ----------
    name_or_path : a known name ("ani-1x", fetched into the cache by ``nnp fetch ani-1x``), a rung
        HDF5 model file, or a NeuroChem ensemble folder
    member : evaluate only this ensemble member (0-based); None: the whole ensemble
    dtype, backend, min_distance_angstrom : see :class:`ANIPotential`
    """
    from pathlib import Path

    from rung.nnp.fetch import KNOWN, resolve
    from rung.nnp.model import read_model
    from rung.nnp.neurochem import read_ensemble

    key = str(name_or_path)
    path = resolve(key) if key in KNOWN else Path(name_or_path)
    name = key if key in KNOWN else path.stem
    if path.is_dir():
        model = read_ensemble(path, name=name, member=member)
    else:
        model = read_model(path, member=member)
    if member is not None and not model.name.endswith("]"):
        model = ANIModel(f"{model.name}[{member}]", model.species, model.aev, model.self_energies, model.members,
                         model.provenance)
    return ANIPotential(model, dtype=dtype, backend=backend, min_distance_angstrom=min_distance_angstrom)
