"""The SCF of one conformation: DFT energy, dipole and nuclear gradient, as a pure function.

Contract. :func:`kernel` ``(molecule, index, config) -> DFTResult`` validates one conformation of a
:class:`rung.core.dataset.Molecule`, converges its density-fitted SCF and takes the analytic gradient;
the result depends only on its arguments (not on what was computed before, nor on the rank), so the
farm (:mod:`rung.dft_gpu.run`) gives the same numbers on 1 and N ranks, and after a resume. Bad input
raises :class:`ConformationError` (an :class:`~rung.core.errors.InputError`), an SCF that no strategy
converges :class:`SCFNotConverged`. :class:`DFTResult` maps its fields to the dataset's ``dft_*``
properties (:meth:`DFTResult.values`, units in :data:`UNITS`) and back, and to a file of its own
(:meth:`DFTResult.to_hdf5`).

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
(Newton) SCF [PySCF ``mf.newton()``].

Per-conformation validation before any integral: basis/ECP available for every element,
charge/multiplicity parity with the ECP core electrons removed and no two atoms closer than
``min_distance_bohr`` (:func:`rung.core.dataset.check_conformation`, the check every rung runs).

Properties (the dataset's ``dft_<name>``; units as stored): ``total_energy`` hartree,
``total_gradient`` (n_atoms, 3) hartree/bohr, ``dipole`` (3,) e*bohr, ``gradient_scf_energy``
hartree, ``scf_cycles`` / ``gradient_scf_cycles`` int, ``converged`` int (1), ``scf_strategy``
string, ``jk_backend`` string, ``wall_time`` s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rung.core.errors import InputError

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
STRATEGIES = ("diis", "level_shift", "damping", "newton")
JK_CHOICES = ("engine", "pyscf")
RESULT_SCHEMA = "rung.dft_result"
# Fields that decide the numbers (and which files exist): a resumed run must use the same.
_RESULT_FIELDS = ("xc", "basis", "ecp", "auxbasis", "energy_grid", "force_grid", "forces", "conv_tol",
                  "conv_tol_grad", "force_conv_tol_grad",
                  "save_orbitals", "save_fcidump", "fcidump_ncore", "fcidump_norb")


class ConformationError(InputError):
    """A conformation that cannot be computed as given (bad input); the message says why."""


class SCFNotConverged(RuntimeError):
    """No SCF strategy converged; the message lists what was tried."""


@dataclass(frozen=True)
class DFTConfig:
    """Options of the SCF of a conformation (the level of theory, how it converges, what is saved).

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
    save_orbitals, save_fcidump : the farm (:func:`rung.dft_gpu.run.run`) writes the orbitals / FCIDUMP
        files read by the rungs above (:mod:`rung.dft_gpu.outputs`); :func:`kernel` always returns the orbitals
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


@dataclass(frozen=True, eq=False)
class DFTResult:
    """One conformation's converged SCF (what :func:`kernel` returns).

    Attributes
    ----------
    energy : float, Hartree; the total energy of the SCF on ``energy_grid`` (``dft_total_energy``)
    dipole : (3,) float64, e*Bohr; of that SCF's density
    scf_cycles : int, SCF cycles of that SCF, summed over the strategies tried
    strategy : str, the strategy that converged it (:data:`STRATEGIES`), ``"<energy>+<gradient>"`` when
        the gradient's SCF needed another one
    jk_backend : str, how J/K were computed (``"pyscf-df"`` or ``"engine:<backend>"``)
    wall_time_s : float, s; the whole conformation (``dft_wall_time``)
    mol : pyscf.gto.Mole of the conformation (coordinates in Bohr)
    mo_coeff : (nao, nmo) float64, or (2, nao, nmo) unrestricted (alpha, beta); of the energy SCF
    mo_occ : (nmo,) or (2, nmo) float64
    mo_energy : (nmo,) or (2, nmo) float64, Hartree
    gradient : (n_atoms, 3) float64, Hartree/Bohr, dE/dR from the SCF on ``force_grid``
        (``dft_total_gradient``); None without forces
    gradient_scf_energy : float, Hartree; the energy of that SCF (None without forces)
    gradient_scf_cycles : int, its SCF cycles (0: the energy SCF itself; None without forces)
    """

    energy: float
    dipole: np.ndarray
    scf_cycles: int
    strategy: str
    jk_backend: str
    wall_time_s: float
    mol: object
    mo_coeff: np.ndarray
    mo_occ: np.ndarray
    mo_energy: np.ndarray
    gradient: np.ndarray | None = None
    gradient_scf_energy: float | None = None
    gradient_scf_cycles: int | None = None

    @property
    def orbitals(self) -> dict:
        """``mo_coeff``, ``mo_occ``, ``mo_energy`` and ``e_tot`` (Hartree), as the orbitals file stores
        them (:func:`rung.dft_gpu.outputs.write_orbital_part`)."""
        return {"mo_coeff": self.mo_coeff, "mo_occ": self.mo_occ, "mo_energy": self.mo_energy, "e_tot": self.energy}

    def values(self) -> dict:
        """The dataset's ``dft_<name>`` properties of this conformation: {name: value}, units in
        :data:`UNITS` (the force properties only with a gradient)."""
        values = {"total_energy": self.energy, "dipole": self.dipole, "scf_cycles": self.scf_cycles, "converged": 1}
        if self.gradient is not None:
            values.update(total_gradient=self.gradient, gradient_scf_energy=self.gradient_scf_energy,
                          gradient_scf_cycles=self.gradient_scf_cycles)
        values.update(scf_strategy=self.strategy, jk_backend=self.jk_backend, wall_time=self.wall_time_s)
        return values

    @classmethod
    def from_values(cls, values: dict, mol, mo_coeff, mo_occ, mo_energy) -> "DFTResult":
        """The inverse of :meth:`values` (``converged`` is implied: a result is a converged SCF)."""
        forces = "total_gradient" in values
        return cls(energy=float(values["total_energy"]), dipole=np.asarray(values["dipole"], dtype=np.float64),
                   scf_cycles=int(values["scf_cycles"]), strategy=str(values["scf_strategy"]),
                   jk_backend=str(values["jk_backend"]), wall_time_s=float(values["wall_time"]), mol=mol,
                   mo_coeff=mo_coeff, mo_occ=mo_occ, mo_energy=mo_energy,
                   gradient=np.asarray(values["total_gradient"], dtype=np.float64) if forces else None,
                   gradient_scf_energy=float(values["gradient_scf_energy"]) if forces else None,
                   gradient_scf_cycles=int(values["gradient_scf_cycles"]) if forces else None)

    def to_hdf5(self, path) -> None:
        """Write the result to an HDF5 file: root attributes ``schema`` (``rung.dft_result``),
        ``schema_version``, ``package_version``, ``backend`` (the J/K backend) and ``mol``
        (``mol.dumps()``, Bohr); one dataset per :meth:`values` property, named as the property, with
        its ``units``; ``mo_coeff``, ``mo_occ``, ``mo_energy``."""
        import h5py

        from rung.dft_gpu import __version__

        with h5py.File(path, "w") as f:
            f.attrs.update(schema=RESULT_SCHEMA, schema_version=1, package_version=__version__,
                           backend=self.jk_backend, mol=self.mol.dumps())
            for name, value in self.values().items():
                f.create_dataset(name, data=value).attrs["units"] = UNITS[name]
            for name in ("mo_coeff", "mo_occ", "mo_energy"):
                unit = "hartree" if name == "mo_energy" else "dimensionless"
                f.create_dataset(name, data=getattr(self, name)).attrs["units"] = unit

    @classmethod
    def from_hdf5(cls, path) -> "DFTResult":
        """The result :meth:`to_hdf5` wrote."""
        import h5py
        from pyscf import gto

        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != RESULT_SCHEMA:
                raise InputError(f"{path}: not a {RESULT_SCHEMA} file (schema {f.attrs.get('schema')!r})")
            values = {k: f[k].asstr()[()] if f[k].dtype.kind == "O" else f[k][()] for k in UNITS if k in f}
            orbitals = [f[k][()] for k in ("mo_coeff", "mo_occ", "mo_energy")]
            mol = gto.loads(f.attrs["mol"])
        return cls.from_values(values, mol, *orbitals)


def build_mol(molecule, index: int, config: DFTConfig):
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


def engine_accelerate():
    """The J/K engine's ``accelerate`` (:mod:`rung.dft_gpu.jk`), or one clear RuntimeError when this
    installation lacks the engine (before any file is touched)."""
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


def make_scf(mol, config: DFTConfig, grid_level: int | None = None):
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
        mf = engine_accelerate()(mf, auxbasis=config.auxbasis, backend=config.backend,
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


def jk_backend_name(mf, config: DFTConfig) -> str:
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


def converge(mf, dm0, config: DFTConfig):
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


def nuclear_gradient(mf, config: DFTConfig, grid_response: bool | None = None) -> np.ndarray:
    """dE/dR (n_atoms, 3) float64, Hartree/Bohr, of the converged SCF ``mf``: PySCF's (DF) gradient, through
    :func:`rung.dft_gpu.gradients.speed_up` when ``config.fast_paths``; ``grid_response`` (DFT only; None:
    PySCF's default, off) adds the derivative of the grid weights."""
    g = mf.nuc_grad_method()
    g.verbose = 0
    if grid_response is not None and hasattr(g, "grid_response"):
        g.grid_response = grid_response
    if config.fast_paths:
        from rung.dft_gpu.gradients import speed_up

        speed_up(g)  # leaves the XC term to PySCF when the grid response is on
    return np.asarray(g.kernel(), dtype=np.float64)


def kernel(molecule, index: int, config: DFTConfig = DFTConfig()) -> DFTResult:
    """DFT energy (and gradient) of one conformation: a pure function of its arguments.

    Parameters
    ----------
    molecule : rung.core.dataset.Molecule (conformations in Bohr)
    index : conformation index
    config : DFTConfig

    Returns
    -------
    DFTResult (``gradient`` None unless ``config.forces``)

    Raises :class:`ConformationError` for bad input and :class:`SCFNotConverged`.
    """
    t0 = time.perf_counter()
    mol = build_mol(molecule, index, config)
    mf = make_scf(mol, config)
    strategy, cycles = converge(mf, None, config)
    e_tot = float(mf.e_tot)
    dipole = np.asarray(mf.dip_moment(mol, mf.make_rdm1(), unit="AU", verbose=0), dtype=np.float64)
    orbitals = {k: np.array(getattr(mf, k), dtype=np.float64) for k in ("mo_coeff", "mo_occ", "mo_energy")}
    forces = {}
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
        gradient = nuclear_gradient(mf, config)
        forces = dict(gradient=gradient, gradient_scf_energy=e_grad, gradient_scf_cycles=grad_cycles)
        if grad_strategy != strategy:
            strategy = f"{strategy}+{grad_strategy}"
    jk_backend = jk_backend_name(mf, config)
    return DFTResult(energy=e_tot, dipole=dipole, scf_cycles=cycles, strategy=strategy, jk_backend=jk_backend,
                     wall_time_s=time.perf_counter() - t0, mol=mol, **orbitals, **forces)


__all__ = ["DFTConfig", "DFTResult", "ConformationError", "SCFNotConverged", "STRATEGIES", "UNITS",
           "build_mol", "make_scf", "converge", "set_grid", "jk_backend_name", "nuclear_gradient", "kernel"]
