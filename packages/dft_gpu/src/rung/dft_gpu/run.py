"""The conformation farm: DFT energies and forces for every conformation of a rung.core dataset.

Contract. :func:`run` reads structures (rung or SPICE-layout HDF5, or any file ASE reads), writes
them to a rung.core dataset (:func:`rung.core.dataset.create_dataset`) and records, for each
conformation, the ``dft_*`` properties below through :class:`rung.core.dataset.ResultWriter`, which
journals every finished conformation durably before the next starts. Killing the run at any point and
running it again finishes the rest without recomputing or losing anything. :func:`compute_conformation`
is a pure function of (molecule, conformation index, config): nothing depends on which rank computed a
conformation or in which order, so 1 and N ranks, or an interrupted and an uninterrupted run, give the
same file (except ``dft_wall_time``).

Level of theory (defaults, the SPICE2(+)-ccECP protocol of the seed paper, sec. 5.1.1-5.1.2):
ωB97M-D3BJ [Mardirossian & Head-Gordon, JCP 144, 214110 (2016); D3BJ: Najibi & Goerigk, JCTC 14,
5725 (2018)], ccECP pseudopotentials with the ccecp-aug-cc-pVTZ basis [Bennett et al., JCP 147, 224106
(2017)], density-fitted Coulomb and exchange through the J/K engine (:mod:`rung.dft_gpu.jk`), grid
level 3 for the energy and level 4 for the forces:

1. SCF on grid ``energy_grid`` (3) from PySCF's MINAO guess  ->  E, dipole, orbitals;
2. the same SCF object moved to grid ``force_grid`` (4) and re-converged from the step-1 density
   (a warm start: a few cycles instead of a full SCF), to the orbital-gradient tolerance
   ``force_conv_tol_grad`` (1e-6)  ->  dE/dR.

``dft_total_energy`` is the step-1 energy and ``dft_total_gradient`` the step-2 gradient (as in the
paper); the step-2 energy is kept as ``dft_gradient_scf_energy``, consistent with the gradient.

Speed (``fast_paths``, on by default; the numbers are PySCF's to round-off): restricted SCFs evaluate
the XC quadrature from AO values cached on the grid across SCF cycles (:mod:`rung.dft_gpu.xc`), the
SCF on the force grid reuses the energy SCF's core Hamiltonian, the grid points are ordered by
:class:`rung.dft_gpu.xc.Grids` (PySCF's order, found faster), and the gradient takes its XC term
per atom from orbital-width GEMMs over grid slabs, its ECP term from one set of per-centre integrals and, for closed
shells, its J/K terms from the J/K engine's cached tensors (:mod:`rung.dft_gpu.gradients`).
Starting a conformation from the converged density of a neighbouring one was measured and not adopted: with small displacements it saved no SCF cycles
(10 vs 10 for acetaldehyde) and it would make a conformation's result depend on which one was computed
before it (different last digits for 1 and 2 ranks, or after a resume).

SCF fallbacks, tried in order until one converges, each from where the previous one stopped (a fixed
sequence, so the result depends only on the conformation): plain DIIS; DIIS with a level shift of ``level_shift`` Hartree on
the virtual orbitals; damping (``damping`` of the old Fock matrix) with late DIIS; second-order
(Newton) SCF [PySCF ``mf.newton()``]. A conformation none of them converges, or any exception while
computing it, is recorded as failed with the reason; it never stops the run and never gets a number.

Per-conformation validation before any integral: basis/ECP available for every element,
charge/multiplicity parity with the ECP core electrons removed and no two atoms closer than
``min_distance_bohr`` (:func:`rung.core.dataset.check_conformation`, the check every rung runs). A
conformation with NaN or infinite coordinates is recorded as failed with that reason before the run
starts (its coordinates are stored as zeros, since the dataset holds finite structures only); the other
conformations of its molecule are computed. A molecule the reader rejects as a whole (every
conformation NaN, unknown atomic number) is left out of the output and listed, with the reason, in the
root attribute ``dft_rejected`` (JSON).

MPI: every rank takes the next pending conformation from a shared counter (one-sided
``MPI_Fetch_and_op`` on rank 0), so fast and slow molecules balance; each rank journals its own
results; rank 0 merges when all are done. Properties (units as stored): ``total_energy`` hartree,
``total_gradient`` (n_atoms, 3) hartree/bohr, ``dipole`` (3,) e*bohr, ``gradient_scf_energy``
hartree, ``scf_cycles`` / ``gradient_scf_cycles`` int, ``converged`` int (1), ``scf_strategy``
string, ``jk_backend`` string, ``wall_time`` s.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rung.core.errors import InputError
from rung.core.progress import Progress

log = logging.getLogger("rung.dft_gpu.run")

RUNG = "dft"
UNITS = {
    "total_energy": "hartree",
    "total_gradient": "hartree/bohr",
    "dipole": "e*bohr",
    "gradient_scf_energy": "hartree",
    "scf_cycles": "dimensionless",
    "gradient_scf_cycles": "dimensionless",
    "converged": "dimensionless",
    "scf_strategy": "dimensionless",
    "jk_backend": "dimensionless",
    "wall_time": "s",
}
# Per-conformation kind and shape of each property: the first merge lays out every dataset of every
# molecule at once (one copy of the file), so the merges while the farm runs write in place only.
SHAPES = {
    "total_energy": ("f", ()), "total_gradient": ("f", ("n_atoms", 3)), "dipole": ("f", (3,)),
    "gradient_scf_energy": ("f", ()), "scf_cycles": ("i", ()), "gradient_scf_cycles": ("i", ()),
    "converged": ("i", ()), "scf_strategy": ("s", ()), "jk_backend": ("s", ()), "wall_time": ("f", ()),
}
_FORCE_PROPERTIES = ("total_gradient", "gradient_scf_energy", "gradient_scf_cycles")
STRATEGIES = ("diis", "level_shift", "damping", "newton")
JK_CHOICES = ("engine", "pyscf")
# Fields that decide the numbers (and which files exist): a resumed run must use the same.
_RESULT_FIELDS = ("xc", "basis", "ecp", "auxbasis", "energy_grid", "force_grid", "forces", "conv_tol",
                  "conv_tol_grad", "force_conv_tol_grad",
                  "save_orbitals", "save_fcidump", "fcidump_ncore", "fcidump_norb")


class ConformationError(InputError):
    """A conformation that cannot be computed as given (bad input); the message says why."""


class SCFNotConverged(RuntimeError):
    """No SCF strategy converged; the message lists what was tried."""


@dataclass(frozen=True)
class RunConfig:
    """Options of a DFT farm run (the level of theory and how the work is done).

    Parameters
    ----------
    xc : exchange-correlation functional as PySCF names it (``"hf"`` for Hartree-Fock); a ``-d3bj``
        suffix adds the D3(BJ) dispersion through pyscf-dispersion
    basis, ecp : PySCF basis and ECP names (``ecp=None`` for all-electron)
    auxbasis : density-fitting basis; None lets the J/K engine (or PySCF) choose
    energy_grid, force_grid : PySCF grid levels for the energy SCF and for the gradient SCF
        (``force_grid=None`` or equal to ``energy_grid``: gradient from the energy SCF)
    forces : compute the nuclear gradient
    conv_tol : SCF energy convergence, Hartree; conv_tol_grad defaults to PySCF's sqrt(conv_tol)
    force_conv_tol_grad : orbital-gradient convergence of the SCF the nuclear gradient is taken from
        (None: the same as the energy SCF). The gradient is linear in the density error: with PySCF's
        default sqrt(1e-9) = 3.2e-5 the forces of a 9-atom molecule were off by 3e-6 (from PySCF's guess)
        to 7e-6 Hartree/Bohr (warm-started on grid 4, 1 cycle) against a tightly converged SCF; 1e-6
        keeps them within ~2e-8 (BENCHMARKS.md). The energy (quadratic in the error) is unaffected.
    max_cycle : SCF cycles per strategy
    strategies : SCF strategies tried in order (subset of ``STRATEGIES``)
    level_shift : Hartree; damping : fraction of the previous Fock matrix mixed in
    jk : ``"engine"`` (rung.dft_gpu.jk) or ``"pyscf"`` (PySCF's own density fitting)
    backend : J/K engine backend (``"auto"|"numpy"|"numba"|"cupy"``); must be "auto" with jk="pyscf"
    max_memory_mb : memory cap handed to PySCF and the engine
    fast_paths : the XC quadrature on AO values cached across SCF cycles (:mod:`rung.dft_gpu.xc`,
        restricted SCFs whose AO values fit in half of the memory cap), one core Hamiltonian for both
        grids, PySCF's grid ordering found faster, the per-centre ECP gradient integrals and the closed-shell gradient's J/K terms from the
        engine's tensors (:mod:`rung.dft_gpu.gradients`); all give PySCF's numbers to round-off
    save_orbitals, save_fcidump : write the orbitals / FCIDUMP files read by the rungs above
        (:mod:`rung.dft_gpu.outputs`)
    fcidump_ncore : doubly occupied orbitals frozen out of the FCIDUMP (0 with ccECP: no core left)
    fcidump_norb : active orbitals in the FCIDUMP (None: all above the frozen core)
    min_distance_bohr : closest allowed approach of two atoms
    """

    xc: str = "wb97m-d3bj"
    basis: str = "ccecp-aug-cc-pvtz"
    ecp: str | None = "ccecp"
    auxbasis: str | None = None
    energy_grid: int = 3
    force_grid: int | None = 4
    forces: bool = True
    conv_tol: float = 1e-9
    conv_tol_grad: float | None = None
    force_conv_tol_grad: float | None = 1e-6
    max_cycle: int = 100
    strategies: tuple = STRATEGIES
    level_shift: float = 0.25
    damping: float = 0.5
    jk: str = "engine"
    backend: str = "auto"
    max_memory_mb: int | None = None
    fast_paths: bool = True
    save_orbitals: bool = False
    save_fcidump: bool = False
    fcidump_ncore: int = 0
    fcidump_norb: int | None = None
    min_distance_bohr: float = 0.1  # rung.core.dataset.MIN_DISTANCE_BOHR

    def __post_init__(self):
        if self.jk not in JK_CHOICES:
            raise InputError(f"jk must be one of {JK_CHOICES}, got {self.jk!r}")
        if self.jk == "pyscf" and self.backend != "auto":
            raise InputError(f"backend={self.backend!r} applies to the J/K engine only (jk='engine')")
        bad = [s for s in self.strategies if s not in STRATEGIES]
        if bad or not self.strategies:
            raise InputError(f"strategies must be a non-empty subset of {STRATEGIES}, got {self.strategies!r}")
        object.__setattr__(self, "strategies", tuple(self.strategies))
        for name in ("energy_grid", "force_grid"):
            level = getattr(self, name)
            if level is not None and not 0 <= int(level) <= 9:
                raise InputError(f"{name} must be a PySCF grid level 0..9, got {level}")
        if not self.conv_tol > 0 or self.max_cycle < 1:
            raise InputError("conv_tol must be > 0 and max_cycle >= 1")
        for name in ("conv_tol_grad", "force_conv_tol_grad"):
            tol = getattr(self, name)
            if tol is not None and not tol > 0:  # a tolerance <= 0 is never met: every SCF would fail
                raise InputError(f"{name} must be > 0 (or None), got {tol}")
        if self.fcidump_ncore < 0 or (self.fcidump_norb is not None and self.fcidump_norb < 1):
            raise InputError("fcidump_ncore must be >= 0 and fcidump_norb >= 1")

    @property
    def gradient_grid(self) -> int:
        return self.energy_grid if self.force_grid is None else self.force_grid

    def result_settings(self) -> dict:
        """The settings that determine the stored numbers (checked when a run resumes)."""
        return {k: getattr(self, k) for k in _RESULT_FIELDS}


@dataclass(frozen=True)
class RunSummary:
    """What a :func:`run` call found and did (counts over the whole dataset after the run)."""

    out_path: Path
    n_conformations: int
    n_done: int
    n_failed: int
    n_pending: int
    computed: int  # conformations computed by this call (all ranks)
    failed_now: int  # of those, recorded as failed
    rejected: dict = field(default_factory=dict)  # molecule -> reason (left out of the output)
    wall_time_s: float = 0.0


# ------------------------------------------------------------------------------------ one conformation
def build_mol(molecule, index: int, config: RunConfig):
    """Validate one conformation and build its PySCF ``Mole`` (coordinates in Bohr).

    Raises :class:`ConformationError` naming the problem: an element the basis or ECP lacks, a
    charge/multiplicity that does not fit the valence electron count, atoms on top of each other.
    """
    from pyscf import gto
    from pyscf.lib.exceptions import BasisNotFoundError

    from rung.core.dataset import DatasetError, check_conformation

    if not 0 <= index < molecule.n_conf:
        raise ConformationError(f"{molecule.name}: no conformation {index} (has {molecule.n_conf})")
    x = molecule.conformations[index]  # (n_atoms, 3) Bohr
    z = molecule.atomic_numbers
    atoms = [(int(zi), tuple(xi)) for zi, xi in zip(z, x)]
    nelec_all = int(z.sum()) - molecule.charge
    kw = dict(atom=atoms, unit="Bohr", basis=config.basis, charge=molecule.charge, verbose=0)
    if config.ecp:
        kw["ecp"] = config.ecp
    if config.max_memory_mb:
        kw["max_memory"] = config.max_memory_mb
    try:
        # ECP core electrons are even, so nelec_all % 2 is a consistent spin to learn them with.
        mol = gto.M(spin=nelec_all % 2, **kw)
    except BasisNotFoundError as err:
        raise ConformationError(f"basis {config.basis!r}: {err}") from None
    except (KeyError, RuntimeError) as err:
        raise ConformationError(f"cannot build the molecule with basis {config.basis!r}, ecp {config.ecp!r}: {err}") from None
    with_basis = set(mol._bas[:, 0].tolist())  # atoms that carry basis functions
    missing = sorted({mol.atom_symbol(i) for i in range(mol.natm) if i not in with_basis})
    if missing:
        raise ConformationError(f"basis {config.basis!r} has no functions for {', '.join(missing)}")
    core = sum(mol.atom_nelec_core(i) for i in range(mol.natm))
    try:
        check_conformation(z, x, molecule.charge, molecule.multiplicity, core_electrons=core,
                           min_distance_bohr=config.min_distance_bohr)
    except DatasetError as err:
        raise ConformationError(f"{err}" + (f" (after removing {core} ECP core electrons)" if core else "")) from None
    mol.spin = molecule.multiplicity - 1
    mol.build()
    return mol


def _engine_accelerate():
    try:
        from rung.dft_gpu.jk import accelerate
    except ModuleNotFoundError as err:
        if err.name != "rung.dft_gpu.jk":
            raise
        raise RuntimeError(
            "jk='engine' needs the J/K engine module rung.dft_gpu.jk, which is not available in this "
            "installation; choose jk='pyscf' (--jk pyscf) for PySCF's own density fitting"
        ) from None
    return accelerate


def make_scf(mol, config: RunConfig, grid_level: int | None = None):
    """The SCF object of ``config`` for ``mol`` (RKS/UKS, or RHF/UHF for ``xc="hf"``), density-fitted."""
    from pyscf import dft, scf

    restricted = mol.spin == 0
    if config.xc.lower() == "hf":
        mf = scf.RHF(mol) if restricted else scf.UHF(mol)
    else:
        mf = dft.RKS(mol, xc=config.xc) if restricted else dft.UKS(mol, xc=config.xc)
        mf.grids.level = config.energy_grid if grid_level is None else grid_level
    mf.verbose = 0
    mf.conv_tol = config.conv_tol
    if config.conv_tol_grad is not None:
        mf.conv_tol_grad = config.conv_tol_grad
    mf.max_cycle = config.max_cycle
    if config.max_memory_mb:
        mf.max_memory = config.max_memory_mb
    if config.jk == "pyscf":
        mf = mf.density_fit(auxbasis=config.auxbasis)
    else:
        mf = _engine_accelerate()(mf, auxbasis=config.auxbasis, backend=config.backend,
                                  max_memory_mb=config.max_memory_mb)
    if config.fast_paths and hasattr(mf, "_numint") and restricted:
        from rung.dft_gpu.xc import CachedNumInt

        mf._numint = CachedNumInt(max_cache_mb=0.5 * mf.max_memory)
    if config.fast_paths and hasattr(mf, "grids"):
        from rung.dft_gpu.xc import Grids

        grids = Grids(mol)  # PySCF's grid, its points ordered faster (bit-identical)
        grids.__dict__.update(mf.grids.__dict__)
        mf.grids = grids
    if config.fast_paths:
        _keep_hcore(mf)
    return mf


def _keep_hcore(mf) -> None:
    """Make ``mf.get_hcore`` compute the core Hamiltonian once per molecule (kinetic, nuclear and ECP
    integrals; the ECP part costs about two grid-3 SCF cycles for ωB97M/ccECP) so that the SCF on the
    force grid reuses the energy SCF's. The kept matrix is read-only; another geometry recomputes it."""
    from pyscf import gto

    compute, kept = mf.get_hcore, {}

    def get_hcore(mol=None):
        mol = mf.mol if mol is None else mol
        # _env without its header (PySCF's ECP integrals write bookkeeping there), but with omega
        key = (mol._atm.tobytes(), mol._bas.tobytes(), mol._ecpbas.tobytes(), mol._env[gto.PTR_ENV_START:].tobytes(),
               float(mol._env[gto.PTR_RANGE_OMEGA]))
        if key not in kept:
            kept.clear()
            kept[key] = np.asarray(compute(mol))
            kept[key].flags.writeable = False
        return kept[key]

    mf.get_hcore = get_hcore


def jk_backend_name(mf, config: RunConfig) -> str:
    """How J/K were computed, for the output file: ``"pyscf-df"`` or ``"engine:<backend>"``."""
    if config.jk == "pyscf":
        return "pyscf-df"
    engines = getattr(mf, "jk_engines", None) or {}  # the engine's per-omega JKEngine objects
    used = sorted({str(e.backend) for e in engines.values()})
    return "engine:" + ("+".join(used) if used else str(config.backend))


def set_grid(mf, level: int) -> None:
    """Move a DFT object to another grid level (rebuilt at the next SCF); no-op for Hartree-Fock."""
    if hasattr(mf, "grids") and mf.grids.level != level:
        mf.grids.level = level
        mf.grids.reset()


def converge(mf, dm0, config: RunConfig):
    """Converge ``mf`` with the fallback strategies of ``config``.

    The first strategy starts from ``dm0`` (None: PySCF's initial guess), each later one from the
    density where the previous attempt stopped, so the sequence, and the result, is the same every
    time. Returns ``(strategy, cycles)``, cycles summed over all attempts; ``mf`` holds the converged
    state. Raises :class:`SCFNotConverged` listing the attempts.
    """
    tried, total = [], 0
    dm = mf.get_init_guess() if dm0 is None else dm0
    for strategy in config.strategies:
        mf.level_shift, mf.damp, mf.diis_start_cycle = 0, 0, 1
        if strategy == "level_shift":
            mf.level_shift = config.level_shift
        elif strategy == "damping":
            mf.damp, mf.diis_start_cycle = config.damping, 8
        solver = mf.newton() if strategy == "newton" else mf
        solver.kernel(dm0=dm)
        cycles = int(getattr(solver, "cycles", 0))
        total += cycles
        if solver.converged:
            if solver is not mf:
                for key in ("mo_coeff", "mo_occ", "mo_energy", "e_tot", "converged"):
                    setattr(mf, key, getattr(solver, key))
            mf.level_shift, mf.damp = 0, 0
            return strategy, total
        tried.append(f"{strategy} ({cycles} cycles, E={solver.e_tot:.8f})")
        dm = solver.make_rdm1()
    raise SCFNotConverged(f"SCF not converged (conv_tol {config.conv_tol:g}) with: " + "; ".join(tried))


def compute_conformation(molecule, index: int, config: RunConfig) -> dict:
    """DFT energy (and gradient) of one conformation: a pure function of its arguments.

    Parameters
    ----------
    molecule : rung.core.dataset.Molecule (conformations in Bohr)
    index : conformation index
    config : RunConfig

    Returns
    -------
    dict with ``values`` (property name -> value, units in :data:`UNITS`; ``total_gradient`` is
    (n_atoms, 3) float64 Hartree/Bohr, ``dipole`` (3,) float64 e*Bohr), ``mol`` (the PySCF Mole) and
    ``orbitals`` (``mo_coeff`` (nao, nmo) or (2, nao, nmo), ``mo_occ``, ``mo_energy`` Hartree, and
    ``e_tot``, of the energy SCF).

    Raises :class:`ConformationError` for bad input and :class:`SCFNotConverged`.
    """
    t0 = time.perf_counter()
    mol = build_mol(molecule, index, config)
    mf = make_scf(mol, config)
    strategy, cycles = converge(mf, None, config)
    e_tot = float(mf.e_tot)
    dipole = np.asarray(mf.dip_moment(mol, mf.make_rdm1(), unit="AU", verbose=0), dtype=np.float64)
    orbitals = {k: np.array(getattr(mf, k), dtype=np.float64) for k in ("mo_coeff", "mo_occ", "mo_energy")}
    orbitals["e_tot"] = e_tot
    values = {"total_energy": e_tot, "dipole": dipole, "scf_cycles": cycles, "converged": 1}
    if config.forces:
        grad_strategy, grad_cycles, e_grad = strategy, 0, e_tot
        new_grid = config.gradient_grid != config.energy_grid and hasattr(mf, "grids")
        tol = config.force_conv_tol_grad
        tighter = tol is not None and tol < (mf.conv_tol_grad or np.sqrt(mf.conv_tol))
        if new_grid or tighter:  # re-converge from the energy SCF's density
            if new_grid:
                set_grid(mf, config.gradient_grid)
            if tol is not None:
                mf.conv_tol_grad = tol
            grad_strategy, grad_cycles = converge(mf, mf.make_rdm1(), config)
            e_grad = float(mf.e_tot)
        g = mf.nuc_grad_method()
        g.verbose = 0
        if config.fast_paths:
            from rung.dft_gpu.gradients import speed_up

            speed_up(g)
        values["total_gradient"] = np.asarray(g.kernel(), dtype=np.float64)  # (n_atoms, 3) Hartree/Bohr
        values["gradient_scf_energy"] = e_grad
        values["gradient_scf_cycles"] = grad_cycles
        if grad_strategy != strategy:
            strategy = f"{strategy}+{grad_strategy}"
    values["scf_strategy"] = strategy
    values["jk_backend"] = jk_backend_name(mf, config)
    values["wall_time"] = time.perf_counter() - t0
    return {"values": values, "mol": mol, "orbitals": orbitals}


# ------------------------------------------------------------------------------------ the farm
def _without_bad_conformations(path, name, units=None, check_units=True):
    """Read group ``name`` whose coordinates are partly NaN/infinite: the molecule with those
    conformations' coordinates set to zero, and ``{index: reason}`` for them; None if all are bad."""
    from dataclasses import replace

    from rung.core.dataset import read_hdf5

    (m,) = read_hdf5(path, names=[name], units=units, allow_nonfinite=True, check_units=check_units)
    bad = [int(i) for i in np.flatnonzero(~np.isfinite(m.conformations).all(axis=(1, 2)))]
    if not bad or len(bad) == m.n_conf:
        return None
    x = m.conformations.copy()
    x[bad] = 0.0  # placeholder; these conformations are recorded as failed
    reasons = {i: f"input conformation {i} has NaN or infinite coordinates (stored as zeros, not computed)"
               for i in bad}
    return replace(m, conformations=x, allow_nonfinite=False), reasons


def _read_input(input_path, units=None, name_key="name", check_units=True):
    """Molecules of the input file, {name: reason} of HDF5 groups rejected as a whole (a wrong length
    unit among the reasons: :func:`rung.core.dataset.check_length_unit`, unless not ``check_units``), and
    {name: {index: reason}} of single conformations rejected (NaN/infinite coordinates)."""
    import h5py

    from rung.core.dataset import DatasetError, open_hdf5, read_hdf5, read_structures

    path = Path(input_path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file")
    if not h5py.is_hdf5(path):
        return read_structures(path, units=units, name_key=name_key, check_units=check_units), {}, {}
    with open_hdf5(path) as f:
        names = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
    molecules, rejected, bad_conformations = [], {}, {}
    for name in names:
        try:
            molecules += read_hdf5(path, names=[name], units=units, check_units=check_units)
        except DatasetError as err:
            try:
                partly = (_without_bad_conformations(path, name, units, check_units) if "NaN or infinite" in str(err)
                          else None)
            except DatasetError as other:  # NaN rows and another problem of the whole molecule: reject it
                partly, err = None, other
            if partly is None:
                rejected[name] = str(err)
            else:
                molecules.append(partly[0])
                bad_conformations[name] = partly[1]
    if not molecules and rejected:
        raise DatasetError(f"{path}: no usable molecule; first problem: {next(iter(rejected.values()))}")
    return molecules, rejected, bad_conformations


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("pyscf", "rung-dft-gpu", "rung-core", "pyscf-dispersion"):
        try:
            out[dist.replace("-", "_") + "_version"] = version(dist)
        except PackageNotFoundError:
            out[dist.replace("-", "_") + "_version"] = "not installed"
    return out


def _auxbasis_used(config: RunConfig) -> str:
    if config.auxbasis is not None:
        return str(config.auxbasis)
    if config.jk == "engine":
        from rung.dft_gpu.jk import DEFAULT_AUXBASIS

        return str(DEFAULT_AUXBASIS)
    return "pyscf default (pyscf.df.make_auxbasis)"


def _metadata(config: RunConfig) -> dict:
    meta = {k: ("none" if v is None else v) for k, v in config.result_settings().items()}
    meta["auxbasis"] = _auxbasis_used(config)
    meta.update(jk=config.jk, level_of_theory=f"{config.xc}/{config.basis}" + (f"/{config.ecp}" if config.ecp else ""))
    meta.update(_versions())
    return meta


def _shapes(config: RunConfig) -> dict:
    return {k: v for k, v in SHAPES.items() if config.forces or k not in _FORCE_PROPERTIES}


def _writer(out_path, config: RunConfig, rank: int = 0, rung: str = RUNG):
    from rung.core.dataset import ResultWriter

    return ResultWriter(out_path, rung, UNITS, _metadata(config), rank=rank, shapes=_shapes(config))


def _prepare(input_path, out_path, config: RunConfig, rejected_out: dict, input_units=None,
             name_key: str = "name", check_units: bool = True, rung: str = RUNG) -> set:
    """Rank 0: create (or reopen) the output, check the settings match, fold leftover journals.
    Returns the conformations the input itself makes impossible (NaN coordinates): never retried."""
    import h5py

    from rung.core.dataset import PENDING, DatasetError, ResultWriter, atomic_update, create_dataset

    molecules, rejected, bad_conformations = _read_input(input_path, input_units, name_key, check_units)
    rejected_out.update(rejected)
    create_dataset(out_path, molecules)
    # the auxbasis as resolved: the engine's and PySCF's defaults differ (and so do the energies)
    settings = json.dumps({**config.result_settings(), "auxbasis": _auxbasis_used(config)}, sort_keys=True)
    with h5py.File(out_path, "r") as f:
        have = f.attrs.get(f"{rung}_settings")
        have_rejected = json.loads(f.attrs.get(f"{rung}_rejected", "{}"))
    if have is None:
        _refuse_foreign(out_path, rung)
    if have is not None and have != settings:
        old, new = json.loads(have), json.loads(settings)
        diff = ", ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in new if old.get(k) != new.get(k))
        raise DatasetError(f"{out_path} holds DFT results computed with other settings ({diff}); "
                           "rerun with the same options or choose another --out")
    if have is None or have_rejected != rejected:
        def write(f):
            f.attrs[f"{rung}_settings"] = settings
            f.attrs[f"{rung}_rejected"] = json.dumps(rejected, sort_keys=True)
            f.attrs["package_version"] = _versions()["rung_dft_gpu_version"]
            f.attrs["backend"] = config.jk if config.jk == "pyscf" else f"engine:{config.backend}"

        atomic_update(Path(out_path), write)
    if bad_conformations:  # rejected one by one: failed with the reason, never computed
        status = ResultWriter(out_path, rung, UNITS).status()
        writer = _writer(out_path, config, rung=rung)
        try:
            for name, reasons in bad_conformations.items():
                for index, reason in reasons.items():
                    if status[(name, index)] == PENDING:
                        writer.record(name, index, error=reason)
        finally:
            writer.close()
    _finalize(out_path, config, rung)  # a killed run's journals and orbital parts
    return {(name, index) for name, reasons in bad_conformations.items() for index in reasons}


def _refuse_foreign(out_path, rung: str = RUNG) -> None:
    """Refuse an output whose ``<rung>_*`` data rung did not write (no ``<rung>_settings``: e.g. SPICE's
    own ``dft_total_energy`` when the input is given as ``--out``): it is never replaced or mixed with
    ours. ``--property-prefix`` writes ours under other names beside it."""
    import h5py

    from rung.core.dataset import DatasetError

    with h5py.File(out_path, "r") as f:
        for name, g in f.items():
            foreign = sorted(k for k in g if k.startswith(f"{rung}_")) if isinstance(g, h5py.Group) else []
            if foreign:
                more = f" and {len(foreign) - 1} more {rung}_* datasets" if len(foreign) > 1 else ""
                raise DatasetError(
                    f"{out_path} holds {name}/{foreign[0]}{more} that rung did not write (no {rung}_settings "
                    "provenance); they are never replaced: choose another --out, or write rung's results beside "
                    "them under other names with --property-prefix (e.g. rung_)")


def _finalize(out_path, config: RunConfig, rung: str = RUNG) -> None:
    """Rank 0, nobody computing: fold orbital parts and journals into the files, set file references."""
    from rung.dft_gpu import outputs

    if config.save_orbitals:
        outputs.merge_orbital_parts(out_path)
    _writer(out_path, config, rung=rung).merge()
    outputs.set_references(out_path, orbitals=config.save_orbitals, fcidump=config.save_fcidump)


class _Counter:
    """A shared work counter: ``next()`` returns 0, 1, 2, ... across all ranks (MPI one-sided atomics)."""

    def __init__(self, comm):
        self.comm = comm
        if comm is None or comm.Get_size() == 1:
            self.win, self._value = None, 0
            return
        from mpi4py import MPI

        self._MPI = MPI
        size = MPI.INT64_T.Get_size()
        self.win = MPI.Win.Allocate(size if comm.Get_rank() == 0 else 0, size, comm=comm)
        if comm.Get_rank() == 0:
            self.win.Lock(0, MPI.LOCK_EXCLUSIVE)
            np.frombuffer(self.win.tomemory(), dtype=np.int64)[:] = 0
            self.win.Unlock(0)
        comm.Barrier()

    def next(self) -> int:
        if self.win is None:
            self._value += 1
            return self._value - 1
        MPI = self._MPI
        one, out = np.ones(1, np.int64), np.zeros(1, np.int64)
        self.win.Lock(0, MPI.LOCK_SHARED)
        self.win.Fetch_and_op([one, MPI.INT64_T], [out, MPI.INT64_T], 0, 0, MPI.SUM)
        self.win.Unlock(0)
        return int(out[0])

    def free(self):
        if self.win is not None:
            self.win.Free()


def _comm_info(comm):
    return (0, 1) if comm is None else (comm.Get_rank(), comm.Get_size())


def _wait_all(comm) -> None:
    """Barrier that sleeps instead of spinning (a spinning rank would steal a core from the workers)."""
    if comm is None or comm.Get_size() == 1:
        return
    req = comm.Ibarrier()
    while not req.Test():
        time.sleep(0.02)


def _bcast(comm, value):
    if comm is None or comm.Get_size() == 1:
        return value
    _wait_all(comm)
    return comm.bcast(value, root=0)


def run(input_path, out_path, config: RunConfig = RunConfig(), comm=None, *, progress: bool = True,
        input_units: str | None = None, retry_failed: bool = False, merge_every: int = 100,
        merge_every_s: float = 600.0, name_key: str = "name", check_units: bool = True,
        property_prefix: str = "") -> RunSummary:
    """Compute every pending conformation of ``input_path`` into the dataset ``out_path``.

    Parameters
    ----------
    input_path : rung/SPICE-layout HDF5, or a structure file ASE reads (xyz: Angstrom)
    out_path : rung.core dataset to create, or to resume (same input and settings)
    config : RunConfig
    comm : mpi4py communicator (None: serial); every rank calls ``run`` with the same arguments
    progress : show a progress bar (terminal) or log lines (``logging``, logger ``rung.dft_gpu.run``)
    input_units : length unit of input coordinates whose file does not say (an HDF5 group without a
        ``units`` attribute is rejected otherwise; xyz: Angstrom unless given)
    retry_failed : compute again the conformations recorded as failed (not those the input makes
        impossible: NaN coordinates); each retried result replaces the failure record
    merge_every, merge_every_s : results are folded into ``out_path`` while the run goes on, whenever a
        rank has journalled ``merge_every`` results or ``merge_every_s`` seconds have passed since its
        last merge (in place, no copy of the file: :meth:`rung.core.dataset.ResultWriter.merge`); the
        other ranks' results arrive at rank 0's next merge after they seal their journal segment
    name_key : structure files: the extxyz comment-line key naming each frame's molecule (frames of one
        molecule are grouped wherever they are; without it, the formula names it)
    check_units : refuse input molecules whose bond lengths say their length unit is wrong
        (:func:`rung.core.dataset.check_length_unit`); off for ``--trust-units``
    property_prefix : written before every dataset and attribute name of this rung (``rung_`` writes
        ``rung_dft_total_energy``, ``rung_dft_status``, ``rung_dft_settings``...), so that results go
        beside a property of the same name that rung did not write (SPICE's ``dft_total_energy``),
        which is never replaced (:func:`rung.core.dataset.property_prefix`)

    Returns
    -------
    RunSummary (the same on every rank)
    """
    import h5py

    from rung.core.dataset import DONE, FAILED, PENDING, ResultWriter, read_hdf5

    from rung.dft_gpu import outputs

    from rung.core.dataset import property_prefix as checked

    t0 = time.perf_counter()
    out_path = Path(out_path)
    rung = checked(property_prefix) + RUNG
    rank, size = _comm_info(comm)
    if config.jk == "engine":
        _engine_accelerate()  # fail before touching any file if the engine is absent
    rejected: dict = {}
    error = None
    impossible: set = set()
    if rank == 0:
        try:
            impossible = _prepare(input_path, out_path, config, rejected, input_units, name_key, check_units, rung)
        except Exception as err:  # handed to every rank, so all of them stop with the same error
            error = err
    error = _bcast(comm, error)
    if error is not None:
        raise error
    molecules = {m.name: m for m in read_hdf5(out_path)}
    pending = None
    if rank == 0:
        status = ResultWriter(out_path, rung, UNITS).status()
        nelec = {name: int(m.atomic_numbers.sum()) for name, m in molecules.items()}
        todo = {PENDING, FAILED} if retry_failed else {PENDING}
        # Largest first: the slow conformations start early, the small ones fill the gaps at the end.
        pending = sorted(((*k, v == FAILED) for k, v in status.items() if v in todo and k not in impossible),
                         key=lambda k: (-nelec[k[0]], k))
    pending = _bcast(comm, pending)

    writer = _writer(out_path, config, rank, rung)
    last_merge = time.monotonic()
    counter = _Counter(comm)
    bar = Progress(len(pending), "dft-gpu run", unit="conf", enabled=progress, log=log, rank=rank, size=size)
    computed = failed = 0
    try:
        while (k := counter.next()) < len(pending):
            name, index, retry = pending[k]
            try:
                res = compute_conformation(molecules[name], index, config)
                if config.save_fcidump:
                    outputs.write_fcidump(out_path, name, index, res["mol"], res["orbitals"]["mo_coeff"], config)
                if config.save_orbitals:
                    outputs.write_orbital_part(out_path, name, index, res["mol"], res["orbitals"], config)
                writer.record(name, index, res["values"], replace=retry)
                msg = f"E = {res['values']['total_energy']:.8f} Ha, {res['values']['wall_time']:.1f} s"
            except Exception as err:  # recorded, never fatal: the run goes on with the next conformation
                reason = f"{type(err).__name__}: {err}"
                writer.record(name, index, error=reason, replace=retry)
                failed += 1
                msg = f"FAILED {reason}"
            computed += 1
            bar.update(k + 1, f"{name}[{index}] {msg}")  # k + 1: handed out by all ranks
            if writer.unsealed >= merge_every or time.monotonic() - last_merge >= merge_every_s:
                # results visible while the farm runs: every rank seals its journal segment, rank 0
                # folds the sealed ones (its own and the others') into the file, in place
                if rank == 0:
                    writer.merge(sealed_only=True)
                else:
                    writer.seal()
                last_merge = time.monotonic()
    finally:
        writer.close()
        bar.close()
    counter.free()
    if comm is not None and size > 1:
        _wait_all(comm)
        computed, failed = comm.allreduce(computed), comm.allreduce(failed)
    summary = None
    if rank == 0:
        _finalize(out_path, config, rung)
        st = ResultWriter(out_path, rung, UNITS).status()
        with h5py.File(out_path, "r") as f:
            rejected = json.loads(f.attrs.get(f"{rung}_rejected", "{}"))
        summary = RunSummary(
            out_path=out_path, n_conformations=len(st),
            n_done=sum(v == DONE for v in st.values()), n_failed=sum(v == FAILED for v in st.values()),
            n_pending=sum(v == PENDING for v in st.values()), computed=computed, failed_now=failed,
            rejected=rejected, wall_time_s=time.perf_counter() - t0,
        )
    return _bcast(comm, summary)


# ------------------------------------------------------------------------------------ status
def status(path, property_prefix: str = "") -> dict:
    """Done / failed / pending counts, wall-time statistics and failure reasons of a dataset's DFT rung.

    Returns ``{"counts": {...}, "molecules": {name: {"done", "failed", "pending"}}, "failures":
    [(molecule, index, reason)], "wall_time_s": {"total", "mean", "max"} or None, "settings": dict,
    "rejected": dict, "other_prefixes": [prefix]}``; journals of a run in progress count too.
    ``property_prefix``: as given to :func:`run`; ``other_prefixes``: the other ``--property-prefix``
    (``""``: none) under which DFT results were written into this file (their ``<prefix>dft_settings``).
    """
    from rung.core.dataset import DONE, FAILED, STATUS_NAMES, ResultWriter, open_hdf5, prefixed
    from rung.core.dataset import property_prefix as checked

    rung = checked(property_prefix) + RUNG
    st = ResultWriter(path, rung, UNITS).status()
    counts = {n: 0 for n in STATUS_NAMES.values()}
    per_mol: dict = {}
    for (name, _), v in st.items():
        counts[STATUS_NAMES[v]] += 1
        per_mol.setdefault(name, {n: 0 for n in STATUS_NAMES.values()})[STATUS_NAMES[v]] += 1
    reasons, times = {}, []
    with open_hdf5(path) as f:
        for name, g in f.items():
            if f"{rung}_status" in g:
                s = g[f"{rung}_status"][()]
                errs = g[f"{rung}_error"][()]
                reasons.update({(name, int(i)): errs[i].decode() if isinstance(errs[i], bytes) else str(errs[i])
                                for i in np.flatnonzero(s == FAILED)})
                if f"{rung}_wall_time" in g:
                    times += list(g[f"{rung}_wall_time"][()][s == DONE])
        settings = json.loads(f.attrs.get(f"{rung}_settings", "{}"))
        rejected = json.loads(f.attrs.get(f"{rung}_rejected", "{}"))
        found = (prefixed(RUNG, "settings").fullmatch(k) for k in f.attrs)
        others = sorted(m.group(1) for m in found if m and m.group(1) + RUNG != rung)
    for rec in ResultWriter(path, rung, UNITS).journal_records():  # newer than the file
        reasons[(rec["molecule"], rec["index"])] = rec["error"]
    # failed now (a retried conformation that succeeded is no failure any more), in file order
    failures = [(name, index, reasons.get((name, index), "")) for (name, index), v in st.items() if v == FAILED]
    times = np.asarray(times, dtype=np.float64)
    wall = None if times.size == 0 else {"total": float(times.sum()), "mean": float(times.mean()), "max": float(times.max())}
    return {"counts": counts, "molecules": per_mol, "failures": failures, "wall_time_s": wall,
            "settings": settings, "rejected": rejected, "other_prefixes": others}


__all__ = ["RunConfig", "RunSummary", "ConformationError", "SCFNotConverged", "STRATEGIES", "UNITS",
           "build_mol", "make_scf", "converge", "compute_conformation", "run", "status"]
