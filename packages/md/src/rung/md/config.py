"""The input file of ``nnp-md run``: a TOML file, parsed into a frozen :class:`MDConfig`.

Example (units in the key names; lengths in Angstrom, times in fs)::

    structure = "water.xyz"          # any file ASE reads (xyz, extxyz, pdb, ...); relative to this file
    steps = 2000
    dt_fs = 0.5
    temperature_K = 300
    beads = 8                        # P; 1 = classical
    thermostat = "langevin"          # none (NVE) | langevin (BAOAB; PILE-L for P > 1) | bussi (PILE-G)
                                     # | qtb | adqtb (quantum thermal bath, beads = 1; options in [qtb])
    tau_fs = 100                     # thermostat / centroid time constant
    propagator = "exact"             # free ring-polymer step: exact | cayley
    seed = 1
    potential = {type = "nnp", model = "ani-1x"}
    # cell_angstrom = [[a, 0, 0], [0, b, 0], [0, 0, c]]   # periodic cell (else taken from the structure)
    # trust_units = false            # true: run a structure whose bond lengths look like Bohr or nm as it is
                                     # (ASE reads Angstrom; the check: rung.core.dataset.check_length_unit)

    [qtb]                            # only with thermostat = "qtb" | "adqtb" (rung.md.qtb.QTBConfig)
    gamma_fs = 0.02                  # friction in fs^-1 (default 1 / tau_fs)
    tseg_fs = 1000                   # noise segment
    omegacut_cm1 = 15000             # cut-off frequency
    agamma = 0.1                     # adqtb gain per segment ("simple"; adaptation = "ratio" also exists)

    [output]
    prefix = "md"                    # md.h5 (H5MD), md.xyz, md.log, md.chk.h5 (and md.qtb.h5 for QTB runs)
    trajectory_every = 10
    log_every = 10
    checkpoint_every = 1000
    all_beads = false                # also store every bead in the H5MD file
    xyz = true

Python 3.11+ reads TOML with the standard ``tomllib``; on 3.10 the ``tomli`` package is used.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rung.core.errors import InputError  # the shared bad-input base, re-exported: rung.md.config.InputError

THERMOSTATS = {"none": None, "nve": None, "langevin": "pile-l", "pile-l": "pile-l", "baoab": "pile-l",
               "bussi": "pile-g", "svr": "pile-g", "pile-g": "pile-g", "qtb": "qtb", "adqtb": "adqtb"}
QTB_THERMOSTATS = ("qtb", "adqtb")  # rung.md.qtb: classical trajectories (beads = 1) with quantum noise


@dataclass(frozen=True)
class OutputConfig:
    prefix: str = "md"
    trajectory_every: int = 10
    log_every: int = 10
    checkpoint_every: int = 1000
    all_beads: bool = False
    xyz: bool = True


@dataclass(frozen=True)
class MDConfig:
    structure: str
    potential: dict
    steps: int
    dt_fs: float
    temperature_K: float = 300.0
    beads: int = 1
    thermostat: str = "langevin"
    tau_fs: float = 100.0
    pile_lambda: float | None = None
    propagator: str = "exact"
    seed: int = 0
    cell_angstrom: list | None = None
    masses_amu: list | None = None
    trust_units: bool = False
    qtb: dict | None = None
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 0:
            raise InputError(f"steps must be a non-negative integer, got {self.steps!r}")
        if not (isinstance(self.dt_fs, (int, float)) and self.dt_fs > 0):
            raise InputError(f"dt_fs must be positive, got {self.dt_fs!r}")
        if not (isinstance(self.temperature_K, (int, float)) and self.temperature_K > 0):
            raise InputError(f"temperature_K must be positive, got {self.temperature_K!r}")
        if not isinstance(self.beads, int) or self.beads < 1:
            raise InputError(f"beads must be an integer >= 1, got {self.beads!r}")
        if str(self.thermostat).lower() not in THERMOSTATS:
            raise InputError(f"unknown thermostat {self.thermostat!r}; use one of {sorted(THERMOSTATS)}")
        if not self.tau_fs > 0:
            raise InputError(f"tau_fs must be positive, got {self.tau_fs!r}")
        if self.propagator not in ("exact", "cayley"):
            raise InputError(f"propagator must be 'exact' or 'cayley', got {self.propagator!r}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise InputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if not isinstance(self.trust_units, bool):
            raise InputError(f"trust_units must be true or false, got {self.trust_units!r}")
        if self.rp_thermostat in QTB_THERMOSTATS:
            from rung.md.qtb import check_config

            try:
                check_config(self)
            except ValueError as err:
                raise InputError(str(err)) from err
        elif self.qtb is not None:
            raise InputError(f"a [qtb] table needs thermostat = 'qtb' or 'adqtb', got {self.thermostat!r}")
        if not isinstance(self.potential, dict) or "type" not in self.potential:
            raise InputError("the input needs a potential, e.g. potential = {type = \"lj\", ...}; "
                             f"types: {_potential_types()}")
        o = self.output
        for name in ("trajectory_every", "log_every", "checkpoint_every"):
            v = getattr(o, name)
            if not isinstance(v, int) or v < 1:
                raise InputError(f"output.{name} must be an integer >= 1, got {v!r}")

    @property
    def rp_thermostat(self) -> str | None:
        return THERMOSTATS[str(self.thermostat).lower()]

    def to_dict(self) -> dict:
        return asdict(self)


def _potential_types() -> str:
    """The known potential types (md's own are registered by importing rung.md.potentials)."""
    import rung.md.potentials  # noqa: F401
    from rung.core.potential import potential_types

    return ", ".join(potential_types())


def _toml():
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    return tomllib


def parse_config(data: dict, base: Path | None = None) -> MDConfig:
    """An :class:`MDConfig` from a parsed TOML dict; relative structure paths are taken from ``base``."""
    data = dict(data)
    out = data.pop("output", {})
    known = {f for f in MDConfig.__dataclass_fields__ if f != "output"}
    unknown = set(data) - known
    if unknown:
        raise InputError(f"unknown input key(s) {sorted(unknown)}; known: {sorted(known | {'output'})}")
    bad = set(out) - set(OutputConfig.__dataclass_fields__)
    if bad:
        raise InputError(f"unknown [output] key(s) {sorted(bad)}; known: {sorted(OutputConfig.__dataclass_fields__)}")
    for key in ("structure", "steps", "dt_fs"):
        if key not in data:
            raise InputError(f"the input needs {key!r}")
    if "potential" not in data:
        raise InputError("the input needs a potential, e.g. potential = {type = \"lj\", ...}; "
                         f"types: {_potential_types()}")
    structure = Path(str(data["structure"]))
    if base is not None and not structure.is_absolute():
        structure = Path(base).resolve() / structure
    data["structure"] = str(structure)
    for k in ("dt_fs", "temperature_K", "tau_fs"):
        if isinstance(data.get(k), int):
            data[k] = float(data[k])
    return MDConfig(**data, output=OutputConfig(**out))


def config_from_dict(data: dict) -> MDConfig:
    """Rebuild an :class:`MDConfig` stored in a checkpoint (``dataclasses.asdict`` form)."""
    data = dict(data)
    output = OutputConfig(**data.pop("output", {}))
    return MDConfig(**data, output=output)


def read_toml(path) -> dict:
    """The parsed TOML input file at ``path``; InputError when it cannot be read or parsed."""
    try:
        with open(path, "rb") as fh:
            return _toml().load(fh)
    except OSError as err:
        raise InputError(f"cannot read input file {path}: {err}") from err
    except ValueError as err:
        raise InputError(f"input file {path} is not valid TOML: {err}") from err


def load_config(path) -> MDConfig:
    """Read and validate a TOML input file."""
    path = Path(path)
    return parse_config(read_toml(path), path.parent)
