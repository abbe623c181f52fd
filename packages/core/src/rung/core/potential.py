"""The force-provider protocol every rung potential implements, its ASE adapter and its registry.

A potential maps positions (one structure, or a batch of structures with the same atoms, e.g. the
beads of a ring polymer) to energies, forces and, for periodic cells, the virial. It declares the
units it works in (``energy_unit``, ``length_unit``: keys of :data:`rung.core.units.TO_ATOMIC`);
:func:`in_atomic_units` wraps any potential so that callers (the MD driver) see Hartree and Bohr, and
:class:`PotentialCalculator` presents it to ASE in eV and Angstrom (ASE's own CODATA 2014 factors, from
:mod:`ase.units`, so that ASE-side conversions give back the potential's numbers). Conversions happen
only here.

Input entries ``{type = ..., <options>}`` become potentials through a registry
(:func:`make_potential`): a package declares its types in the ``rung.potentials`` entry-point group of
its pyproject (``name = "module:factory"``, imported only when that type is asked for), or calls
:func:`register_potential`.

Conventions: forces are ``-dE/dx``; the virial is ``W_ab = -dE/d(eps_ab)`` for a homogeneous strain
``x -> (1 + eps) x`` of positions and cell (``W_ab = sum_i F_ia x_ib`` for an open system), in energy
units, so that ``stress = -W / volume``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from rung.core import units as U


@dataclass(frozen=True)
class PotentialResult:
    """Energies, forces and virial of one structure or a batch.

    Attributes
    ----------
    energy : float, or (batch,) float64, energy_unit
    forces : (n_atoms, 3) or (batch, n_atoms, 3) float64, energy_unit / length_unit
    virial : (3, 3) or (batch, 3, 3) float64, energy_unit, or None when not asked for
    energies : {name: float or array} other energies of one structure, energy_unit (e.g. an
        ensemble's members and spread); unit conversions and the ASE adapter pass them on
    """

    energy: np.ndarray
    forces: np.ndarray | None = None
    virial: np.ndarray | None = None
    energies: dict = field(default_factory=dict)


@runtime_checkable
class Potential(Protocol):
    """What the MD driver and the ASE adapter need from a potential."""

    energy_unit: str
    length_unit: str

    def compute(self, positions, numbers, cell=None, *, forces: bool = True, virial: bool = False) -> PotentialResult:
        """positions: (n_atoms, 3) or (batch, n_atoms, 3), length_unit; numbers: (n_atoms,) int;
        cell: (3, 3) rows are lattice vectors in length_unit, or None for an open system."""
        ...


class _Scaled:
    """A potential seen in other units (energy * e_factor, length * l_factor)."""

    def __init__(self, inner: Potential, energy_unit: str, length_unit: str):
        self.inner = inner
        self.energy_unit, self.length_unit = energy_unit, length_unit
        e_in, l_in = U.to_atomic(1.0, inner.energy_unit), U.to_atomic(1.0, inner.length_unit)
        e_out, l_out = U.to_atomic(1.0, energy_unit), U.to_atomic(1.0, length_unit)
        self._e = e_in / e_out  # inner energy -> outer energy
        self._l = l_out / l_in  # outer length -> inner length

    def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
        cell_in = None if cell is None else np.asarray(cell) * self._l
        r = self.inner.compute(np.asarray(positions) * self._l, numbers, cell_in, forces=forces, virial=virial)
        return PotentialResult(
            energy=np.asarray(r.energy) * self._e,
            forces=None if r.forces is None else np.asarray(r.forces) * (self._e * self._l),
            virial=None if r.virial is None else np.asarray(r.virial) * self._e,
            energies={k: np.asarray(v) * self._e for k, v in r.energies.items()},
        )


def in_atomic_units(potential: Potential) -> Potential:
    """Return ``potential`` seen in Hartree and Bohr (itself when it already is)."""
    if potential.energy_unit.lower() == "hartree" and potential.length_unit.lower() == "bohr":
        return potential
    return _Scaled(potential, "hartree", "bohr")


def ase_unit_factors(energy_unit: str, length_unit: str) -> tuple[float, float]:
    """Factors between a potential's units and ASE's, taken from :mod:`ase.units` (CODATA 2014).

    Returns ``(e, l)``: ``e`` multiplies an energy in ``energy_unit`` to give ASE's eV, ``l`` multiplies
    a length in Angstrom to give ``length_unit``. ASE's own table is used at this boundary, not
    rung.core's CODATA 2018, so that ``atoms.get_potential_energy() / ase.units.Hartree`` gives back the
    potential's Hartree (to rounding) and a user's ASE-side conversions agree with ours. Units ASE's
    table lacks go through Hartree (rung.core's factor into Hartree, then ASE's Hartree).
    """
    import ase.units as A

    energies = {"ev": 1.0, "hartree": A.Hartree, "kcal/mol": A.kcal / A.mol, "kj/mol": A.kJ / A.mol}
    lengths = {"angstrom": 1.0, "bohr": 1.0 / A.Bohr, "nm": 0.1}
    ek, lk = energy_unit.strip().lower(), length_unit.strip().lower()
    e = energies[ek] if ek in energies else U.to_atomic(1.0, ek) * A.Hartree
    l = lengths[lk] if lk in lengths else 1.0 / (U.to_atomic(1.0, lk) * A.Bohr)
    return e, l


def PotentialCalculator(potential: Potential, **kwargs):
    """An ASE ``Calculator`` for any :class:`Potential` (energy, forces, stress for periodic atoms, and
    the result's other ``energies`` under their own names).

    eV and Angstrom in ASE's own units (:func:`ase_unit_factors`).
    """
    from ase.calculators.calculator import Calculator, all_changes

    e_f, l_f = ase_unit_factors(potential.energy_unit, potential.length_unit)

    class _Calc(Calculator):
        implemented_properties = ["energy", "free_energy", "forces", "stress"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            periodic = bool(np.any(self.atoms.pbc))
            if periodic and not np.all(self.atoms.pbc):
                raise ValueError("mixed periodic/open boundaries are not supported; set pbc all True or all False")
            cell = np.asarray(self.atoms.cell) * l_f if periodic else None
            r = potential.compute(self.atoms.positions * l_f, self.atoms.numbers, cell, forces=True, virial=periodic)
            e = float(r.energy) * e_f
            self.results = {"energy": e, "free_energy": e, "forces": np.asarray(r.forces) * (e_f * l_f),
                            **{k: np.asarray(v) * e_f if np.ndim(v) else float(v) * e_f for k, v in r.energies.items()}}
            if periodic:
                from ase.stress import full_3x3_to_voigt_6_stress

                w = np.asarray(r.virial) * e_f  # eV
                self.results["stress"] = full_3x3_to_voigt_6_stress(-w / self.atoms.get_volume())

    return _Calc(**kwargs)


class Harmonic:
    """Isotropic harmonic wells ``E = 1/2 k sum_i |x_i - x0_i|^2`` (atomic units): a test potential.

    Parameters
    ----------
    k : float, Hartree / Bohr^2
    x0 : (n_atoms, 3) float64, Bohr, or None for the origin
    """

    energy_unit, length_unit = "hartree", "bohr"

    def __init__(self, k: float, x0=None):
        self.k, self.x0 = float(k), None if x0 is None else np.asarray(x0, dtype=np.float64)

    def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
        x = np.asarray(positions, dtype=np.float64)
        d = x - (0.0 if self.x0 is None else self.x0)
        e = 0.5 * self.k * np.sum(d * d, axis=(-2, -1))
        f = -self.k * d
        w = np.einsum("...ia,...ib->...ab", f, x) if virial else None
        return PotentialResult(energy=e, forces=f if forces else None, virial=w)


# ------------------------------------------------------------------------------------ the registry
ENTRY_POINT_GROUP = "rung.potentials"
_REGISTRY: dict = {}  # type name -> factory, or "module:attr" of one (imported when first asked for)


def register_potential(name: str, factory) -> None:
    """Make ``{type = name, ...}`` input entries build potentials with ``factory``.

    Parameters
    ----------
    name : the ``type`` of the entry (case-insensitive)
    factory : ``factory(options: dict, **context) -> Potential``, or its ``"module:attr"`` (imported
        when the type is first asked for). ``options`` is the entry without ``type``; ``context`` holds
        what the caller knows about the system (the MD driver passes ``masses`` (n,) m_e,
        ``positions`` (n, 3) Bohr, ``numbers`` (n,) int and ``cell`` (3, 3) Bohr or None); a factory
        takes what it needs and ignores the rest.

    A package registers its potentials without being imported through the entry-point group
    ``rung.potentials`` of its pyproject (``[project.entry-points."rung.potentials"]``,
    ``name = "module:attr"``); a name registered here takes precedence over an entry point.
    Registering a name again with another factory raises ``ValueError``.
    """
    key = str(name).strip().lower()
    old = _REGISTRY.get(key)
    if old is not None and old != factory:
        raise ValueError(f"potential type {key!r} is already registered ({old!r})")
    _REGISTRY[key] = factory


def _entry_points() -> dict:
    """Installed ``rung.potentials`` entry points, name -> EntryPoint."""
    from importlib.metadata import entry_points

    return {ep.name.lower(): ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def potential_types() -> tuple:
    """The potential types known here (registered or installed), sorted."""
    return tuple(sorted(set(_REGISTRY) | set(_entry_points())))


def load_attr(spec: str, what: str = "object"):
    """The object a ``"package.module:attr"`` string names (a factory, a calculator class), imported now.

    Parameters
    ----------
    spec : str
        ``"package.module:attr"``.
    what : str
        What the object is, for the error message (``"ASE calculator"``).

    Raises
    ------
    InputError
        For a spec without ``module:attr`` form, a module that cannot be imported or an attribute it
        lacks; the one-line message names ``what`` and the spec.
    """
    import importlib

    from rung.core.errors import InputError

    module, sep, attr = str(spec).partition(":")
    if not (sep and module and attr):
        raise InputError(f"{what} must be given as 'module:attr', got {spec!r}")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as err:
        raise InputError(f"cannot import {what} {spec!r}: {err}") from err


def make_potential(spec: dict, **context):
    """The potential of an input entry ``{type = ..., <options>}`` (a dict), in its own units.

    The factory of ``type`` (:func:`register_potential`, or an installed ``rung.potentials`` entry
    point) gets the other keys and ``context``. Raises :class:`~rung.core.errors.InputError` for an
    entry without ``type``, with an unknown one (the message lists the known types), or whose package
    cannot be imported here (:func:`load_attr`). Wrap the result with :func:`in_atomic_units` to see
    Hartree and Bohr.
    """
    from rung.core.errors import InputError

    if not isinstance(spec, dict) or "type" not in spec:
        raise InputError(f"the potential entry needs a 'type', one of: {', '.join(potential_types())}")
    name = str(spec["type"]).strip().lower()
    factory = _REGISTRY.get(name)
    if factory is None:
        ep = _entry_points().get(name)
        if ep is None:
            raise InputError(f"unknown potential type {spec['type']!r}; known: {', '.join(potential_types())}")
        factory = ep.value
    if isinstance(factory, str):  # a package's factory, imported now: its engine must be installed
        engine = ".".join(factory.split(".")[:2])
        factory = load_attr(factory, f"potential type {name!r} (needs the {engine} engine)")
    return factory({k: v for k, v in spec.items() if k != "type"}, **context)


def check_options(kind: str, options: dict, allowed, required=()) -> None:
    """InputError for an option of a ``kind`` entry not in ``allowed``, or a ``required`` one missing."""
    from rung.core.errors import InputError

    unknown = set(options) - set(allowed)
    if unknown:
        raise InputError(f"unknown option(s) {sorted(unknown)} for potential type {kind!r}; allowed: {tuple(allowed)}")
    missing = [k for k in required if k not in options]
    if missing:
        raise InputError(f"potential type {kind!r} needs {', '.join(missing)}")
