"""The pipeline's one input file (TOML), read into frozen settings; a bad key or value is one clear line.

Sections (all optional but ``[input]``; units in the key names where they are not atomic):

- ``[input]``: ``path`` (xyz/extxyz in Angstrom, or a rung/SPICE HDF5 dataset) or ``perturb = {molecule
  = "H2O", n = 16, sigma_angstrom = 0.08, seed = 1}`` (random Gaussian displacements of an ASE G2
  molecule) or ``normal_modes = {molecule = "H2O", n = 40, temperature_K = 12000, seed = 1}`` (normal-mode
  sampling of an ASE G2 molecule on the base model's Hessian, ANI-1's method: harmonic energies up to
  (3/2) N_atoms k_B T) or ``internal = {molecule = "H2O", n = 40, bond_angstrom = [0.8, 1.45],
  angle_degrees = [70, 150], seed = 1}`` (a triatomic G2 molecule, uniform in a box of its two bond
  lengths and angle, atom 0 the apex: the embedded example).
- ``[dft]``: :class:`rung.dft_gpu.scf.DFTConfig` fields (``xc``, ``basis``, ``ecp``, ...).
- ``[select]``: which conformations climb to QMC: ``method`` ("spread": largest ensemble spread of the
  current model; "fps": farthest-point sampling of inverse interatomic distances; "random"),
  ``n_train``, ``n_holdout`` (a seeded random hold-out set, labelled too, never trained on), ``seed``.
- ``[qmc]``: walkers, VMC blocks/steps, Jastrow optimisation iterations, DMC on/off and its blocks,
  ``force_every`` (0: no forces); ``shared_jastrow = true``: the Jastrow is optimised once per molecule,
  on its first selected conformation (training ones first), and every conformation of the molecule is
  sampled with those parameters (recorded in each ``qmc_settings`` as ``optimize: {"shared": ...}``).
- ``[sci]`` (optional): selected CI and multideterminant QMC for the smallest molecules: the first
  ``conformations`` training conformations of molecules with at most ``max_atoms`` atoms get a CIPSI
  run (``max_det`` determinants, RHF orbitals; ``sci_*`` values in ``<out>/sci.h5``), then a DMC with the
  ``determinants`` largest of them after Jastrow + CI optimisation, beside a single-determinant DMC on
  the same orbitals (``dmc_blocks`` x ``dmc_steps``; walkers, tau, optimisation from ``[qmc]``).
- ``[refit]``: the model refit on the highest rung (QMC) with its error bars as weights; ``model`` is
  also the base model the selection and the report use; ``l2sp`` (1/Hartree^2, the prior precision of
  the read-out weights' change) is a number or ``"cv"``: the value of ``cv_l2sp`` with the lowest
  ``cv_folds``-fold cross-validated chi^2 on the training conformations alone (never the hold-out set).
- ``[md]``: a short (ring-polymer) MD run with the refit model: steps, ``dt_fs``, ``temperature_K``,
  ``beads``; ``adqtb_steps`` > 0 adds an adaptive-quantum-thermal-bath run (rung.md.qtb, segments of
  ``tseg_fs``) whose quantum kinetic energy is printed beside RPMD's.
- ``[loop]``: active learning: ``rounds`` (1: no new round) and ``frames``: each new round takes that
  many frames of the last MD run, labels them with DFT, selects ``[select] n_train`` of them by the
  spread of the latest refit model for QMC, refits on every round's QMC labels, and evaluates on the
  first round's held-out set.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from rung.core.errors import InputError


DFT_DEFAULTS = {"xc": "wb97m-d3bj", "basis": "ccecp-cc-pvdz", "ecp": "ccecp"}


class ConfigError(InputError):
    """The pipeline input file cannot be used as written (the message names the key)."""


@dataclass(frozen=True)
class InputConfig:
    path: str | None = None
    perturb: dict | None = None
    normal_modes: dict | None = None
    internal: dict | None = None


@dataclass(frozen=True)
class SelectConfig:
    method: str = "spread"
    n_train: int = 6
    n_holdout: int = 4
    seed: int = 7


@dataclass(frozen=True)
class QMCSettings:
    walkers: int = 100
    vmc_blocks: int = 10
    vmc_steps: int = 10
    optimize_iterations: int = 4
    dmc: bool = False
    dmc_blocks: int = 12
    dmc_steps: int = 25
    tau: float = 0.01
    force_every: int = 2
    seed: int = 1
    shared_jastrow: bool = False  # optimise once per molecule (its first selected conformation), reuse for all


@dataclass(frozen=True)
class SCIConfig:
    conformations: int = 1
    max_atoms: int = 3
    max_det: int = 1000
    determinants: int = 20  # Jastrow + CI optimisation of 100 went unstable at 8000 samples (qmc BENCHMARKS)
    dmc_blocks: int = 12
    dmc_steps: int = 25


@dataclass(frozen=True)
class RefitConfig:
    model: str = "ani-1x"
    l2sp: float | str = 1e2  # 1/Hartree^2, or "cv": chosen from cv_l2sp by k-fold CV on the training set
    force_weight: float = 1.0
    cv_folds: int = 4
    cv_l2sp: tuple = (1e1, 1e2, 1e3, 1e4, 1e5, 1e6)
    # the highest rung per conformation: conformations QMC did not label are trained on their DFT labels,
    # placed on the QMC energy scale, with the DFT rung's error against QMC as their error bar (estimated
    # on the conformations both rungs labelled, not below these floors); false: QMC labels only
    dft_labels: bool = True
    dft_energy_error_floor_mha: float = 0.5
    dft_gradient_error_floor_mha_per_bohr: float = 2.0
    # > 0: a third model, fine-tuned from the read-out one by gradient descent (rung.nnp.train's gradient
    # solver, jax: the [train] extra) on the same labels: every layer but the one reading the AEV, full-batch
    # Adam at finetune_learning_rate for this many epochs, no early stopping (the hold-out set is never
    # looked at), the read-out's l2sp towards its weights; it becomes the model the report judges and MD runs
    finetune_epochs: int = 0
    finetune_learning_rate: float = 1e-4


@dataclass(frozen=True)
class MDConfig:
    steps: int = 200
    dt_fs: float = 0.5
    temperature_K: float = 300.0
    beads: int = 4
    adqtb_steps: int = 0  # > 0: also a classical adQTB run (quantum thermal bath) beside the RPMD one
    tseg_fs: float = 25.0


@dataclass(frozen=True)
class LoopConfig:
    rounds: int = 1
    frames: int = 12


@dataclass(frozen=True)
class PipelineConfig:
    input: InputConfig
    dft: dict = field(default_factory=dict)
    select: SelectConfig = field(default_factory=SelectConfig)
    qmc: QMCSettings = field(default_factory=QMCSettings)
    refit: RefitConfig = field(default_factory=RefitConfig)
    md: MDConfig | None = field(default_factory=MDConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    source: str = ""
    sci: SCIConfig | None = None


def _section(cls, data, name):
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"[{name}]: unknown key(s) {unknown} (known: {sorted(known)})")
    try:
        return cls(**data)
    except TypeError as err:
        raise ConfigError(f"[{name}]: {err}") from err


def load(path) -> PipelineConfig:
    """Read and check a pipeline TOML file; relative input paths are relative to the file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from err
    return parse(data, base=path.parent, source=str(path))


def parse(data: dict, base: Path = Path("."), source: str = "") -> PipelineConfig:
    unknown = sorted(set(data) - {"input", "dft", "select", "qmc", "sci", "refit", "md", "loop"})
    if unknown:
        raise ConfigError(f"unknown section(s) {unknown}")
    inp = _section(InputConfig, data.get("input"), "input")
    if sum(v is not None for v in (inp.path, inp.perturb, inp.normal_modes, inp.internal)) != 1:
        raise ConfigError("[input] needs exactly one of path = \"...\", perturb, normal_modes or internal = {...}")
    if inp.path is not None:
        p = Path(inp.path)
        inp = InputConfig(path=str(p if p.is_absolute() else base / p))
        if not Path(inp.path).exists():
            raise ConfigError(f"[input] path: {inp.path} does not exist")
    sel = _section(SelectConfig, data.get("select"), "select")
    if sel.method not in ("spread", "fps", "random"):
        raise ConfigError(f"[select] method must be spread, fps or random, got {sel.method!r}")
    if sel.n_train < 1 or sel.n_holdout < 1:
        raise ConfigError("[select] n_train and n_holdout must be >= 1 (the report needs held-out conformations)")
    qmc = _section(QMCSettings, data.get("qmc"), "qmc")
    if qmc.walkers < 1 or qmc.vmc_blocks < 2 or qmc.vmc_steps < 1 or qmc.force_every < 0 or not qmc.tau > 0:
        raise ConfigError("[qmc]: need walkers >= 1, vmc_blocks >= 2, vmc_steps >= 1, force_every >= 0, tau > 0")
    dft = data.get("dft", {})
    if not isinstance(dft, dict):
        raise ConfigError("[dft] must be a table")
    dft = {**DFT_DEFAULTS, **dft}  # QMC uses the same basis and ECP
    md = None if data.get("md") is False else _section(MDConfig, data.get("md"), "md")
    loop = _section(LoopConfig, data.get("loop"), "loop")
    if loop.rounds < 1 or loop.frames < 1:
        raise ConfigError("[loop]: rounds and frames must be >= 1")
    if loop.rounds > 1 and (md is None or sel.method != "spread" or loop.frames < sel.n_train):
        raise ConfigError("[loop] rounds > 1 needs [md] (its frames are the next round's conformations), "
                          "[select] method = \"spread\" and frames >= n_train")
    sci = None if data.get("sci") is None else _section(SCIConfig, data["sci"], "sci")
    if sci is not None and (min(sci.conformations, sci.max_atoms, sci.max_det, sci.determinants, sci.dmc_steps) < 1
                            or sci.dmc_blocks < 3):
        raise ConfigError("[sci]: conformations, max_atoms, max_det, determinants, dmc_steps must be >= 1 and "
                          "dmc_blocks >= 3")
    refit = _section(RefitConfig, data.get("refit"), "refit")
    grid = refit.cv_l2sp
    if not (refit.l2sp == "cv" or (isinstance(refit.l2sp, (int, float)) and refit.l2sp >= 0)) or \
            refit.cv_folds < 2 or not isinstance(grid, (list, tuple)) or not grid or \
            not all(isinstance(v, (int, float)) and v >= 0 for v in grid):
        raise ConfigError("[refit]: l2sp must be a number >= 0 or \"cv\", cv_folds >= 2, cv_l2sp a list of numbers >= 0")
    if refit.finetune_epochs < 0 or not refit.finetune_learning_rate > 0:
        raise ConfigError("[refit]: finetune_epochs must be >= 0 and finetune_learning_rate > 0")
    if not (refit.dft_energy_error_floor_mha > 0 and refit.dft_gradient_error_floor_mha_per_bohr > 0):
        raise ConfigError("[refit]: dft_energy_error_floor_mha and dft_gradient_error_floor_mha_per_bohr must be > 0")
    refit = replace(refit, l2sp=refit.l2sp if refit.l2sp == "cv" else float(refit.l2sp),
                    cv_l2sp=tuple(float(v) for v in grid))
    return PipelineConfig(inp, dft, sel, qmc, refit, md, loop, source, sci)
