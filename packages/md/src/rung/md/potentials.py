"""Potentials for the MD driver: a built-in Lennard-Jones, an ASE-calculator adapter, and the factories
that register md's input types (harmonic, lj, ase, muller-brown) with rung.core's potential registry
(:func:`rung.core.potential.make_potential`); other packages register theirs (nnp, dft) through the
``rung.potentials`` entry points. :func:`build_potential` makes any of them from an input entry.

All follow the :class:`rung.core.potential.Potential` protocol and take a batch of beads at once:
positions (P, n_atoms, 3) -> PotentialResult(energy (P,), forces (P, n_atoms, 3), virial (P, 3, 3)).
The driver sees every potential through :func:`rung.core.potential.in_atomic_units`.

Lennard-Jones (truncated and shifted, one species):

    E = sum_{pairs r < r_c} 4 eps [(sigma/r)^12 - (sigma/r)^6] - 4 eps [(sigma/r_c)^12 - (sigma/r_c)^6]

Pairs come from rung.core's cell list (periodic orthorhombic or triclinic cells, or open) with a
Verlet skin shared by all beads (:class:`BeadNeighbors`). The virial is ``W_ab = sum_pairs F_j,a d_b``.
"""

from __future__ import annotations

import numpy as np

from rung.core import units as U
from rung.core.neighbors import cell_heights, neighbor_list
from rung.core.errors import InputError
from rung.core.potential import (Harmonic, PotentialResult, check_options, load_attr, make_potential,
                                 register_potential)


class BeadNeighbors:
    """One Verlet neighbour list for all beads of a ring polymer (P = 1: the usual skin list).

    At a build, pairs of the bead-averaged positions (the centroid) are searched within
    ``cutoff + skin + 2 s0``, where ``s0`` is the largest distance of any bead of an atom from its
    centroid. The list is kept while every bead of every atom stays within ``skin/2 + s0`` of the
    centroid at the build: then a pair closer than ``cutoff`` in any bead was closer than the search
    radius at the build (triangle inequality), so no pair is missed. Pairs are stored sorted (i, j,
    shift), so energies do not depend on when the list was rebuilt (bit-for-bit restarts, MPI).
    """

    def __init__(self, cutoff: float, skin: float):
        if not cutoff > 0 or skin < 0:
            raise ValueError(f"need cutoff > 0 and skin >= 0, got cutoff {cutoff}, skin {skin}")
        self.cutoff, self.skin = float(cutoff), float(skin)
        self.builds = 0
        self.pairs = self._ref = self._cell = None
        self._s0 = 0.0

    def update(self, x, cell=None) -> bool:
        """x: (P, n, 3) positions; rebuild if needed; return True when rebuilt."""
        c = None if cell is None else np.asarray(cell, dtype=np.float64)
        if self.pairs is not None and self._ref.shape == x.shape[1:]:
            same = (c is None and self._cell is None) or (c is not None and self._cell is not None
                                                         and np.array_equal(c, self._cell))
            moved = np.max(np.sum((x - self._ref) ** 2, axis=-1), initial=0.0)
            if same and moved <= (0.5 * self.skin + self._s0) ** 2:
                return False
        cen = x.mean(axis=0)
        s0 = float(np.sqrt(np.max(np.sum((x - cen) ** 2, axis=-1), initial=0.0)))
        p = neighbor_list(cen, self.cutoff + self.skin + 2.0 * s0, c)
        order = np.lexsort((p.shifts[:, 2], p.shifts[:, 1], p.shifts[:, 0], p.j, p.i))
        self.pairs = (np.ascontiguousarray(p.i[order]), np.ascontiguousarray(p.j[order]),
                      np.ascontiguousarray(p.shifts[order]))
        self._ref, self._s0, self._cell = cen, s0, None if c is None else c.copy()
        self.builds += 1
        return True


class LennardJones:
    """Truncated and shifted Lennard-Jones for one species, atomic units, batched over beads.

    Parameters
    ----------
    epsilon : float, Hartree
    sigma : float, Bohr
    cutoff : float, Bohr (default 2.5 sigma)
    skin : float, Bohr, Verlet skin of the neighbour list
    images : allow a periodic cell thinner than twice the cutoff (pairs with several images of an
        atom, which the cell list supports); False raises for such a cell
    backend : "numba" (default) or "numpy" (the reference kernel)
    """

    energy_unit, length_unit = "hartree", "bohr"

    def __init__(self, epsilon: float, sigma: float, cutoff: float | None = None, *, skin: float = 0.0,
                 images: bool = True, backend: str = "numba"):
        if not (epsilon > 0 and sigma > 0):
            raise ValueError(f"Lennard-Jones needs epsilon > 0 and sigma > 0, got {epsilon}, {sigma}")
        if backend not in ("numba", "numpy"):
            raise ValueError(f"backend must be 'numba' or 'numpy', got {backend!r}")
        self.epsilon, self.sigma = float(epsilon), float(sigma)
        self.cutoff = float(cutoff) if cutoff is not None else 2.5 * self.sigma
        self.images, self.backend = bool(images), backend
        self.neighbors = BeadNeighbors(self.cutoff, skin)

    def check_cell(self, cell) -> None:
        """ValueError when a periodic cell is thinner than twice the cutoff and images are off."""
        if cell is None or self.images:
            return
        h = cell_heights(cell)
        if h.min() < 2 * self.cutoff:
            raise ValueError(f"cell is smaller than twice the cutoff: height {h.min() * U.BOHR_TO_ANGSTROM:.4g} A "
                             f"< 2 x {self.cutoff * U.BOHR_TO_ANGSTROM:.4g} A; enlarge the cell or set images = true")

    def compute(self, positions, numbers=None, cell=None, *, forces=True, virial=False):
        x = np.asarray(positions, dtype=np.float64)
        single = x.ndim == 2
        xb = x[None] if single else x
        self.check_cell(cell)
        c = None if cell is None else np.asarray(cell, dtype=np.float64)
        self.neighbors.update(xb, c)
        i, j, s = self.neighbors.pairs
        if self.backend == "numba":
            from rung.md._kernels import cpu as kern
        else:
            from rung.md._kernels import reference as kern
        e, f, w = kern.lj(xb, c, i, j, s, self.epsilon, self.sigma, self.cutoff)
        if single:
            e, f, w = float(e[0]), f[0], w[0]
        return PotentialResult(energy=e, forces=f if forces else None, virial=w if virial else None)


class ASECalculatorPotential:
    """Any ASE calculator as a batched potential (eV, Angstrom): loops over beads.

    The calculator sees one ``ase.Atoms`` per bead (periodic in all directions when a cell is given);
    the virial comes from ASE's stress, ``W = -stress * volume``.
    """

    energy_unit, length_unit = "ev", "angstrom"

    def __init__(self, calculator):
        self.calculator = calculator

    def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
        from ase import Atoms

        x = np.asarray(positions, dtype=np.float64)
        single = x.ndim == 2
        xb = x[None] if single else x
        P = xb.shape[0]
        e, f, w = np.zeros(P), np.zeros(xb.shape), np.zeros((P, 3, 3))
        for b in range(P):
            atoms = Atoms(numbers=numbers, positions=xb[b], cell=cell, pbc=cell is not None)
            atoms.calc = self.calculator
            e[b] = atoms.get_potential_energy()
            if forces:
                f[b] = atoms.get_forces()
            if virial:
                if cell is None:
                    w[b] = np.einsum("ia,ib->ab", atoms.get_forces(), xb[b])
                else:
                    w[b] = -atoms.get_stress(voigt=False) * atoms.get_volume()
        if single:
            e, f, w = float(e[0]), f[0], w[0]
        return PotentialResult(energy=e, forces=f if forces else None, virial=w if virial else None)


def harmonic_potential(options: dict, *, masses=None, positions=None, **context):
    """``{type = "harmonic", k = ...}`` (Hartree/Bohr^2) or ``frequency_cm = ...`` (k_i = m_i w^2 per
    atom, needs ``masses`` (n,) m_e); wells centred at the initial ``positions`` (n, 3) Bohr unless
    ``center = "origin"``. Without ``positions`` (and centred at them) the result waits for them:
    call its ``bind(positions)``."""
    check_options("harmonic", options, ("k", "frequency_cm", "center"))
    if ("k" in options) == ("frequency_cm" in options):
        raise InputError("harmonic potential: give exactly one of k (Hartree/Bohr^2) or frequency_cm")
    if "k" in options:
        k = float(options["k"])
    else:
        if masses is None:
            raise InputError("harmonic potential with frequency_cm needs the masses")
        w = float(options["frequency_cm"]) * U.INV_CM_TO_HARTREE
        k = np.asarray(masses, dtype=np.float64)[:, None] * w * w
        if np.all(k == k.flat[0]):
            k = float(k.flat[0])
    if np.any(np.asarray(k) < 0):
        raise InputError("harmonic force constant must be >= 0")
    spec = _HarmonicSpec(k, str(options.get("center", "initial")))
    return spec if positions is None else spec.bind(positions)


def lj_potential(options: dict, **context):
    """``{type = "lj", epsilon_eV, sigma_angstrom, cutoff_angstrom = 2.5 sigma, skin_angstrom = 1.0,
    images = true}``: :class:`LennardJones`."""
    check_options("lj", options, ("epsilon_eV", "sigma_angstrom", "cutoff_angstrom", "skin_angstrom", "images"),
                  required=("epsilon_eV", "sigma_angstrom"))
    sigma = float(options["sigma_angstrom"]) * U.ANGSTROM_TO_BOHR
    cut = float(options.get("cutoff_angstrom", 2.5 * options["sigma_angstrom"])) * U.ANGSTROM_TO_BOHR
    return LennardJones(float(options["epsilon_eV"]) * U.EV_TO_HARTREE, sigma, cut,
                        skin=float(options.get("skin_angstrom", 1.0)) * U.ANGSTROM_TO_BOHR,
                        images=bool(options.get("images", True)))


def ase_potential(options: dict, **context):
    """``{type = "ase", calculator = "module:Class", kwargs = {...}}``: :class:`ASECalculatorPotential`."""
    check_options("ase", options, ("calculator", "kwargs"))
    if "calculator" not in options:
        raise InputError("ASE potential needs calculator = 'module:Class'")
    cls = load_attr(str(options["calculator"]), "ASE calculator")
    return ASECalculatorPotential(cls(**dict(options.get("kwargs", {}))))


def muller_brown_potential(options: dict, **context):
    """``{type = "muller-brown", energy_scale_Ha = 1e-4, length_scale_bohr = 1.0}``: every atom on the
    2D Müller–Brown surface (:mod:`rung.md.model_potentials`)."""
    check_options("muller-brown", options, ("energy_scale_Ha", "length_scale_bohr"))
    from rung.md.model_potentials import MullerBrown

    return MullerBrown(float(options.get("energy_scale_Ha", 1e-4)), float(options.get("length_scale_bohr", 1.0)))


for _name, _factory in (("harmonic", harmonic_potential), ("lj", lj_potential), ("ase", ase_potential),
                        ("muller-brown", muller_brown_potential),
                        # the other rungs' types, as in their pyprojects' entry points: found (and a clear
                        # error naming the package when it is absent) also where those are not installed
                        ("nnp", "rung.nnp.potential:nnp_potential"), ("dft", "rung.dft_gpu.potential:dft_potential")):
    register_potential(_name, _factory)


def build_potential(spec: dict, masses=None, **context):
    """A potential from an input-file entry (a dict with ``type``) through the registry of
    :func:`rung.core.potential.make_potential`; units in the key names. ``masses`` (n,) m_e and
    ``context`` (``positions`` (n, 3) Bohr, ``numbers``, ``cell``) go to the type's factory.

    md's own types: ``harmonic`` (:func:`harmonic_potential`; without positions it waits for
    ``bind``), ``lj``, ``ase``, ``muller-brown``; ``nnp`` comes from rung.nnp and ``dft`` from
    rung.dft_gpu (see the md README for every type's options). Bad entries raise
    :class:`~rung.core.errors.InputError` (a ``ValueError``); a type whose package cannot be
    imported raises ``RuntimeError``.

    Returns the potential in its own units; wrap it with :func:`rung.core.potential.in_atomic_units`.
    """
    return make_potential(spec, masses=masses, **context)


class _HarmonicSpec:
    """A harmonic entry waiting for the initial positions (its centre)."""

    energy_unit, length_unit = "hartree", "bohr"

    def __init__(self, k, center):
        if center not in ("initial", "origin"):
            raise InputError(f"harmonic center must be 'initial' or 'origin', got {center!r}")
        self.k, self.center = k, center

    def bind(self, positions):
        """The rung.core Harmonic (k scalar) or a per-atom variant, centred as asked. positions: (n, 3) Bohr."""
        x0 = np.asarray(positions, dtype=np.float64) if self.center == "initial" else None
        if np.ndim(self.k) == 0:
            return Harmonic(self.k, x0)
        return _PerAtomHarmonic(self.k, x0)


class _PerAtomHarmonic:
    """E = 1/2 sum_i k_i |x_i - x0_i|^2 with per-atom k (n, 1), Hartree/Bohr^2."""

    energy_unit, length_unit = "hartree", "bohr"

    def __init__(self, k, x0):
        self.k, self.x0 = np.asarray(k), x0

    def compute(self, positions, numbers=None, cell=None, *, forces=True, virial=False):
        x = np.asarray(positions, dtype=np.float64)
        d = x - (0.0 if self.x0 is None else self.x0)
        f = -self.k * d
        e = 0.5 * np.sum(self.k * d * d, axis=(-2, -1))
        w = np.einsum("...ia,...ib->...ab", f, x) if virial else None
        return PotentialResult(energy=e, forces=f if forces else None, virial=w)
