"""The input file of ``nnp train``: one TOML file, the base model and an ordered list of stages.

Example (labels in atomic units, as rung datasets store them)::

    model = "ani-1x"                 # a known name (nnp fetch) or a rung model file, relative to this file
    output = "ani-1x-qmc.h5"         # the refit model; the log goes to ani-1x-qmc.log.jsonl beside it
    name = "ani-1x-qmc"              # model name stored in the file (default: the output's stem)

    [training]                       # defaults of every stage
    datasets = ["water_qmc.h5"]      # rung.core datasets, relative to this file
    energy = "qmc_total_energy"      # Hartree; its error bars are read from "<energy>_error" when present
    gradient = "qmc_total_gradient"  # Hartree/Bohr (or forces = "..."); errors from "<gradient>_error"
    validation_fraction = 0.2
    split = "conformation"           # or "molecule"
    seed = 0

    [[stages]]
    name = "shifts"
    frozen = ["*.weight"]            # only the per-element shifts (last-layer biases) move

    [[stages]]
    name = "readout"
    frozen = []                      # last-layer weights and shifts; everything else stays frozen
    l2sp = 1.0e3                     # 1/Hartree^2: prior precision of the weight change (L2-SP)

Each stage inherits every key it does not set from the stage before (the first from ``[training]``,
then the defaults in :data:`DEFAULTS`), as in FeNNol. Stage keys:

- data: ``datasets``, ``energy``, ``gradient`` or ``forces`` (property names; "" for none),
  ``energy_error``, ``gradient_error`` (property names of the 1-sigma error bars; default
  ``<property>_error`` where present, "" to ignore them);
- split: ``validation_fraction`` in (0, 1), ``split`` ("conformation" | "molecule"), ``seed``; or
  ``validation`` (datasets read with the same labels as the validation set; then every conformation
  of ``datasets`` is trained on and the fraction is ignored);
- solver: ``solver`` ("readout": the exact last-layer refit; "gradient": fine-tuning of any layer
  with jax + optax, the optional ``[train]`` extra; :mod:`rung.nnp.train.gradient`), ``frozen``
  (fnmatch patterns of parameter names ``<species>.<layer>.weight|bias``, layer 0 reads the AEV; the
  readout solver keeps every layer but the last frozen anyway);
- gradient solver only: ``loss`` ("mse" | "mae" | "log-cosh" | "nll" | "crps", :mod:`rung.nnp.train.losses`;
  the readout solver takes "mse" only), ``optimizer`` ("adabelief" | "adam" | "adamw"),
  ``learning_rate``, ``schedule`` ("constant" | "cosine_onecycle" | "reduce_on_plateau" with
  ``plateau_factor``, ``plateau_patience`` epochs and ``min_learning_rate``, below which the stage
  ends), ``epochs`` (at most), ``batch_size`` (conformations per step), ``gradient_clip`` (global
  norm; 0: none), ``weight_decay`` (decoupled, towards the stage's starting weights; per step
  ``p -= lr * weight_decay * (p - p_start)``), ``patience`` (early stopping: epochs without a lower
  validation loss, then the best weights are kept; 0: off), ``dtype`` ("float64" | "float32"),
  ``checkpoint_every`` (epochs between checkpoints);
- loss: ``energy_weight``, ``forces_weight`` (factors of the two terms), ``per_atom`` (energy
  residuals per atom), ``weights`` ("error": 1/sigma^2 from the error bars, floored, with
  ``energy_sigma``/``gradient_sigma`` where a label has none; "uniform": those sigmas for all),
  ``energy_sigma`` (Hartree), ``gradient_sigma`` (Hartree/Bohr), ``energy_error_floor`` (Hartree),
  ``gradient_error_floor`` (Hartree/Bohr), ``l2sp`` and ``shift_l2sp`` (1/Hartree^2, prior precision
  of the last-layer weight and bias changes; see :mod:`rung.nnp.train.readout`; the gradient solver
  applies ``l2sp`` to every free weight and hidden bias, ``shift_l2sp`` to the last biases).

Top-level keys besides ``model``, ``output``, ``name``: ``plots`` (default true: a learning curve
and a validation parity plot as PNG beside the output, when matplotlib is installed).

Python 3.11+ reads TOML with ``tomllib``; on 3.10 the ``tomli`` package is used.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from pathlib import Path

from rung.core.errors import InputError
from rung.nnp.train.losses import LOSSES  # NumPy only at import; jax when a loss is evaluated on jax arrays

SOLVERS = ("readout", "gradient")
OPTIMIZERS = ("adabelief", "adam", "adamw")
SCHEDULES = ("constant", "cosine_onecycle", "reduce_on_plateau")


class TrainInputError(InputError):
    """The training input is unusable (config, dataset, model); the message names the file or key."""


@dataclass(frozen=True)
class Stage:
    """One stage, every key resolved (units: Hartree, Hartree/Bohr, 1/Hartree^2; see the module)."""

    name: str
    datasets: tuple
    energy: str = ""
    gradient: str = ""
    forces: str = ""
    energy_error: str | None = None
    gradient_error: str | None = None
    validation_fraction: float = 0.1
    validation: tuple = ()
    split: str = "conformation"
    seed: int = 0
    solver: str = "readout"
    frozen: tuple = ()
    energy_weight: float = 1.0
    forces_weight: float = 1.0
    per_atom: bool = False
    weights: str = "error"
    energy_sigma: float = 1.6e-3
    gradient_sigma: float = 8.0e-4
    energy_error_floor: float = 1.0e-4
    gradient_error_floor: float = 1.0e-4
    l2sp: float = 1.0e3
    shift_l2sp: float = 0.0
    loss: str = "mse"
    optimizer: str = "adabelief"
    learning_rate: float = 1.0e-3
    schedule: str = "constant"
    epochs: int = 100
    batch_size: int = 32
    gradient_clip: float = 0.0
    weight_decay: float = 0.0
    patience: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 10
    min_learning_rate: float = 0.0
    dtype: str = "float64"
    checkpoint_every: int = 1

    def __post_init__(self):
        where = f"stage {self.name!r}"
        if self.solver not in SOLVERS:
            raise TrainInputError(f"{where}: unknown solver {self.solver!r}; use one of {list(SOLVERS)}")
        if self.loss not in LOSSES:
            raise TrainInputError(f"{where}: unknown loss {self.loss!r}; use one of {list(LOSSES)}")
        if self.solver == "readout" and self.loss != "mse":
            raise TrainInputError(f"{where}: loss {self.loss!r} needs solver = \"gradient\"; the readout solver "
                                  "solves weighted least squares (loss = \"mse\")")
        for key, known in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("dtype", ("float64", "float32"))):
            if getattr(self, key) not in known:
                raise TrainInputError(f"{where}: unknown {key} {getattr(self, key)!r}; use one of {list(known)}")
        for key in ("epochs", "batch_size", "plateau_patience", "checkpoint_every"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise TrainInputError(f"{where}: {key} must be a positive integer, got {v!r}")
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 0:
            raise TrainInputError(f"{where}: patience must be an integer >= 0 (0: no early stopping), got {self.patience!r}")
        for key in ("learning_rate", "gradient_clip", "weight_decay", "min_learning_rate"):
            if not getattr(self, key) >= 0:
                raise TrainInputError(f"{where}: {key} must be >= 0, got {getattr(self, key)}")
        if not 0.0 < self.plateau_factor < 1.0:
            raise TrainInputError(f"{where}: plateau_factor must be in (0, 1), got {self.plateau_factor}")
        if not self.datasets:
            raise TrainInputError(f"{where}: no datasets (key 'datasets')")
        if self.gradient and self.forces:
            raise TrainInputError(f"{where}: give either 'gradient' or 'forces', not both")
        if not (self.energy or self.gradient or self.forces):
            raise TrainInputError(f"{where}: no labels: set 'energy' and/or 'gradient' (or 'forces')")
        if not 0.0 < self.validation_fraction < 1.0:
            raise TrainInputError(f"{where}: validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if self.split not in ("conformation", "molecule"):
            raise TrainInputError(f"{where}: split must be 'conformation' or 'molecule', got {self.split!r}")
        if self.weights not in ("error", "uniform"):
            raise TrainInputError(f"{where}: weights must be 'error' or 'uniform', got {self.weights!r}")
        for k in ("energy_sigma", "gradient_sigma", "energy_error_floor", "gradient_error_floor"):
            if not getattr(self, k) > 0:
                raise TrainInputError(f"{where}: {k} must be positive, got {getattr(self, k)}")
        for k in ("energy_weight", "forces_weight", "l2sp", "shift_l2sp"):
            if not getattr(self, k) >= 0:
                raise TrainInputError(f"{where}: {k} must be >= 0, got {getattr(self, k)}")
        if self.energy_weight == 0 and self.forces_weight == 0:
            raise TrainInputError(f"{where}: energy_weight and forces_weight are both 0")


STAGE_KEYS = {f.name for f in fields(Stage)}
DEFAULTS = {f.name: f.default for f in fields(Stage) if f.name not in ("name", "datasets")}


@dataclass(frozen=True)
class TrainConfig:
    """model : known name or path; output : Path of the refit model; name : model name; stages : tuple of Stage;
    source : the config file; text : its content (stored in the provenance); plots : write the PNGs."""

    model: str
    output: Path
    name: str
    stages: tuple
    source: Path
    text: str
    plots: bool = True


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli

    return tomli


def load_config(path) -> TrainConfig:
    """Read and validate a training TOML file (paths in it are relative to its folder)."""
    path = Path(path)
    try:
        text = path.read_text()
        data = _toml().loads(text)
    except OSError as err:
        raise TrainInputError(f"cannot read config file {path}: {err}") from err
    except ValueError as err:
        raise TrainInputError(f"{path}: not valid TOML: {err}") from err
    return parse_config(data, path.parent, source=path.resolve(), text=text)


def _stage_table(table, where):
    unknown = sorted(set(table) - STAGE_KEYS)
    if unknown:
        raise TrainInputError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(STAGE_KEYS))}")
    return dict(table)


def parse_config(data: dict, base: Path, *, source=Path("<dict>"), text: str = "") -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed TOML; relative paths are taken from ``base``."""
    unknown = sorted(set(data) - {"model", "output", "name", "training", "stages", "plots"})
    if unknown:
        raise TrainInputError(f"{source}: unknown key(s) {', '.join(unknown)}")
    for key in ("model", "output", "stages"):
        if key not in data:
            raise TrainInputError(f"{source}: missing key '{key}'")
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise TrainInputError(f"{source}: 'stages' must be a non-empty list of tables ([[stages]])")
    model = str(data["model"])
    from rung.nnp.fetch import KNOWN

    if model not in KNOWN:
        model = str((base / model).resolve())
    output = (base / str(data["output"])).resolve()
    settings = dict(DEFAULTS, **_stage_table(data.get("training", {}), f"{source}: [training]"))
    stages = []
    for k, table in enumerate(data["stages"]):
        where = f"{source}: stage {k}"
        if not isinstance(table, dict):
            raise TrainInputError(f"{where}: must be a table")
        settings = dict(settings, **_stage_table(table, where))
        settings["name"] = table.get("name", f"stage{k}")
        if "datasets" not in settings:
            raise TrainInputError(f"{where}: missing key 'datasets'")
        ds = settings["datasets"]
        ds = [ds] if isinstance(ds, str) else ds
        try:
            val = settings.get("validation", ())
            val = [val] if isinstance(val, str) else val
            stage = Stage(**dict(settings, datasets=tuple(str((base / d).resolve()) for d in ds),
                                 validation=tuple(str((base / d).resolve()) for d in val),
                                 frozen=tuple(settings["frozen"])))
        except TrainInputError as err:
            raise TrainInputError(f"{source}: {err}") from err
        except TypeError as err:
            raise TrainInputError(f"{where}: {err}") from err
        stages.append(stage)
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise TrainInputError(f"{source}: stage names must be unique, got {names}")
    plots = data.get("plots", True)
    if not isinstance(plots, bool):
        raise TrainInputError(f"{source}: plots must be true or false, got {plots!r}")
    return TrainConfig(model, output, str(data.get("name", output.stem)), tuple(stages), Path(source), text, plots)
