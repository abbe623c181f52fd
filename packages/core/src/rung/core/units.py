"""Physical constants and unit factors: one pinned table, CODATA 2018, every factor derived from it.

The rung packages work in Hartree atomic units inside (Bohr, Hartree, electron mass, a.u. of time).
A quantity in another unit carries the unit in its name (``dt_fs``, ``temperature_K``,
``cutoff_angstrom``) and is converted at the boundary with the factors below.

Source: E. Tiesinga, P. J. Mohr, D. B. Newell, B. N. Taylor, "CODATA recommended values of the
fundamental physical constants: 2018", Rev. Mod. Phys. 93, 025010 (2021). SI exact values since 2019
are marked (exact). PySCF (CODATA 2014-ish) and ASE (CODATA 2014) use slightly different tables; code
that hands numbers to or from them converts through this module only, with one exception: the ASE
calculator boundary uses ASE's own factors (:func:`rung.core.potential.ase_unit_factors`), so that
ASE-side conversions give back the potential's numbers.

Naming: ``X_TO_Y`` multiplies a value in X to give it in Y. ``HARTREE_TO_EV * e`` turns Hartree into eV.
"""

import math

CODATA_VERSION = "CODATA 2018"

# --- the pinned table (SI) ---------------------------------------------------------------------------
SPEED_OF_LIGHT = 299792458.0  # m s^-1 (exact)
PLANCK = 6.62607015e-34  # J s (exact)
ELEMENTARY_CHARGE = 1.602176634e-19  # C (exact)
BOLTZMANN = 1.380649e-23  # J K^-1 (exact)
AVOGADRO = 6.02214076e23  # mol^-1 (exact)
ELECTRON_MASS = 9.1093837015e-31  # kg
BOHR_RADIUS = 5.29177210903e-11  # m
HARTREE_ENERGY = 4.3597447222071e-18  # J
ATOMIC_MASS_CONSTANT = 1.66053906660e-27  # kg (1 Da)
CALORIE = 4.184  # J (thermochemical, exact by definition)

# --- derived ------------------------------------------------------------------------------------------
HBAR = PLANCK / (2.0 * math.pi)  # J s

BOHR_TO_ANGSTROM = BOHR_RADIUS * 1e10
ANGSTROM_TO_BOHR = 1.0 / BOHR_TO_ANGSTROM
BOHR_TO_NM = BOHR_RADIUS * 1e9

HARTREE_TO_EV = HARTREE_ENERGY / ELEMENTARY_CHARGE
EV_TO_HARTREE = 1.0 / HARTREE_TO_EV
HARTREE_TO_KCAL_PER_MOL = HARTREE_ENERGY * AVOGADRO / (1000.0 * CALORIE)
KCAL_PER_MOL_TO_HARTREE = 1.0 / HARTREE_TO_KCAL_PER_MOL
HARTREE_TO_KJ_PER_MOL = HARTREE_ENERGY * AVOGADRO / 1000.0
KJ_PER_MOL_TO_HARTREE = 1.0 / HARTREE_TO_KJ_PER_MOL
HARTREE_TO_INV_CM = HARTREE_ENERGY / (PLANCK * SPEED_OF_LIGHT * 100.0)  # wavenumber, cm^-1
INV_CM_TO_HARTREE = 1.0 / HARTREE_TO_INV_CM

HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM = HARTREE_TO_EV / BOHR_TO_ANGSTROM
EV_PER_ANGSTROM_TO_HARTREE_PER_BOHR = 1.0 / HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM

BOLTZMANN_HARTREE_PER_K = BOLTZMANN / HARTREE_ENERGY  # k_B in Hartree / K

AMU_TO_ELECTRON_MASS = ATOMIC_MASS_CONSTANT / ELECTRON_MASS  # Dalton in units of m_e

AU_TIME_TO_S = HBAR / HARTREE_ENERGY  # one atomic unit of time, s
AU_TIME_TO_FS = AU_TIME_TO_S * 1e15
FS_TO_AU_TIME = 1.0 / AU_TIME_TO_FS

HARTREE_PER_BOHR3_TO_PA = HARTREE_ENERGY / BOHR_RADIUS**3
HARTREE_PER_BOHR3_TO_GPA = HARTREE_PER_BOHR3_TO_PA * 1e-9
EV_PER_ANGSTROM3_TO_GPA = ELEMENTARY_CHARGE / 1e-30 * 1e-9

DEBYE_TO_AU = 1e-21 / SPEED_OF_LIGHT / (ELEMENTARY_CHARGE * BOHR_RADIUS)  # e*Bohr per Debye
AU_TO_DEBYE = 1.0 / DEBYE_TO_AU

# Unit strings used in HDF5 ``units`` attributes, and their factor to atomic units.
TO_ATOMIC = {
    "hartree": 1.0,
    "bohr": 1.0,
    "hartree/bohr": 1.0,
    "e*bohr": 1.0,
    "dimensionless": 1.0,
    "ev": EV_TO_HARTREE,
    "angstrom": ANGSTROM_TO_BOHR,
    "å": ANGSTROM_TO_BOHR,  # "Å" (and the Angstrom sign) after lower()
    "ang": ANGSTROM_TO_BOHR,
    "nm": 1.0 / BOHR_TO_NM,  # H5MD's length unit
    "ev/angstrom": EV_PER_ANGSTROM_TO_HARTREE_PER_BOHR,
    "kcal/mol": KCAL_PER_MOL_TO_HARTREE,
    "kj/mol": KJ_PER_MOL_TO_HARTREE,
    "debye": DEBYE_TO_AU,
    "s": 1.0 / AU_TIME_TO_S,
}


# The length units among them (coordinates, cells): every spelling a file of the field may use
LENGTH_UNITS = ("bohr", "angstrom", "å", "ang", "nm")


def _key(unit: str) -> str:
    import unicodedata

    return unicodedata.normalize("NFKC", str(unit)).strip().lower()  # NFKC: the Angstrom sign U+212B is Å


def to_atomic(value, unit: str):
    """Convert ``value`` given in ``unit`` (a key of :data:`TO_ATOMIC`, case-insensitive) to atomic units."""
    key = _key(unit)
    if key not in TO_ATOMIC:
        raise ValueError(f"unknown unit {unit!r}; known: {sorted(TO_ATOMIC)}")
    return value * TO_ATOMIC[key]


def length_to_bohr(unit: str) -> float:
    """The factor from a length unit (``bohr``, ``angstrom``/``Å``/``ang``, ``nm``; any case) to Bohr.

    Raises ``ValueError`` for anything else, an energy unit included (a coordinate in Hartree is a
    mistake, not a conversion)."""
    if _key(unit) not in LENGTH_UNITS:
        raise ValueError(f"unknown unit {unit!r} for a length; known: bohr, angstrom (Å), nm")
    return TO_ATOMIC[_key(unit)]
