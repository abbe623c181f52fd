"""ANI model description and rung's own model file (HDF5).

An ANI model (Smith, Isayev, Roitberg, Chem. Sci. 8, 3192 (2017)) is

- the AEV constants (:class:`AEVParams`): radial cutoff ``Rcr``, angular cutoff ``Rca`` (Angstrom),
  ``EtaR``, ``ShfR`` (radial Gaussians), ``Zeta``, ``ShfZ`` (angular sections), ``EtaA``, ``ShfA``
  (angular radial Gaussians);
- one multilayer perceptron per species (:class:`Network`, layers ``z = W h + b``, activation);
- self energies per species (Hartree), added to the network outputs;
- an ensemble of such network sets (``members``) sharing AEV constants and self energies.

Units: energies Hartree, lengths Angstrom (the model's native units; the potential declares them).

The file format (``schema="rung.nnp.model"``, ``schema_version=1``)::

    / attrs: schema, schema_version, package_version, kind="ani", name, species (JSON list),
             energy_unit="hartree", length_unit="angstrom", provenance (JSON)
    /aev attrs Rcr, Rca (Angstrom); datasets EtaR, ShfR, Zeta, ShfZ, EtaA, ShfA (float64)
    /self_energies (n_species,) float64, units "hartree"
    /members/<m>/<species>/<k>/weight (out, in) float32, bias (out,) float32, attrs activation
        (float64 where rung.nnp.train changed the array; each read back in the dtype stored)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rung.core.errors import InputError

SCHEMA = "rung.nnp.model"
SCHEMA_VERSION = 1
ACTIVATIONS = ("identity", "gaussian", "celu0.1")


class ModelFileError(InputError):
    """A model file or folder that cannot be read (missing, truncated, corrupt, inconsistent).

    A :class:`rung.core.errors.InputError` (so a ``ValueError``): CLIs print it as one line, exit 2."""


@dataclass(frozen=True)
class AEVParams:
    """ANI atomic environment vector constants (Angstrom, Angstrom^-2, dimensionless).

    Radial features: ``len(EtaR) * len(ShfR)`` per neighbour species; angular features:
    ``len(EtaA) * len(Zeta) * len(ShfA) * len(ShfZ)`` per unordered neighbour-species pair.
    """

    Rcr: float
    Rca: float
    EtaR: np.ndarray
    ShfR: np.ndarray
    Zeta: np.ndarray
    ShfZ: np.ndarray
    EtaA: np.ndarray
    ShfA: np.ndarray
    n_species: int

    def __post_init__(self):
        for k in ("EtaR", "Zeta", "EtaA"):
            if np.asarray(getattr(self, k)).size != 1:
                raise ModelFileError(f"only a single {k} value is supported, got {getattr(self, k)}")
        if not (0 < self.Rca <= self.Rcr):
            raise ModelFileError(f"cutoffs must satisfy 0 < Rca <= Rcr, got Rca={self.Rca}, Rcr={self.Rcr}")

    @property
    def radial_length(self) -> int:
        return self.n_species * self.ShfR.size

    @property
    def n_pairs(self) -> int:
        return self.n_species * (self.n_species + 1) // 2

    @property
    def length(self) -> int:
        return self.radial_length + self.n_pairs * self.ShfA.size * self.ShfZ.size


@dataclass(frozen=True)
class Layer:
    """weight : (out, in) float32 (float64 where rung.nnp.train changed it); bias : (out,) float32 or float64;
    activation : one of ACTIVATIONS."""

    weight: np.ndarray
    bias: np.ndarray
    activation: str

    def __post_init__(self):
        if self.activation not in ACTIVATIONS:
            raise ModelFileError(f"unknown activation {self.activation!r} (known: {ACTIVATIONS})")
        if self.weight.ndim != 2 or self.bias.shape != (self.weight.shape[0],):
            raise ModelFileError(f"layer weight {self.weight.shape} and bias {self.bias.shape} do not fit")


@dataclass(frozen=True)
class Network:
    layers: tuple

    def __post_init__(self):
        for a, b in zip(self.layers[:-1], self.layers[1:]):
            if b.weight.shape[1] != a.weight.shape[0]:
                raise ModelFileError(f"layer sizes do not chain: {a.weight.shape} -> {b.weight.shape}")
        if self.layers[-1].weight.shape[0] != 1:
            raise ModelFileError("the last layer must have one output (the atomic energy)")


@dataclass(frozen=True)
class ANIModel:
    """A complete ANI ensemble. members: tuple over members of tuples over species of Network."""

    name: str
    species: tuple
    aev: AEVParams
    self_energies: np.ndarray
    members: tuple
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        if len(self.self_energies) != len(self.species):
            raise ModelFileError("one self energy per species is needed")
        for m in self.members:
            if len(m) != len(self.species):
                raise ModelFileError("every member needs one network per species")

    @property
    def atomic_numbers(self) -> np.ndarray:
        from ase.data import atomic_numbers

        return np.array([atomic_numbers[s] for s in self.species], dtype=np.int64)

    def select(self, member: int) -> "ANIModel":
        """The single-network model of one member (0-based)."""
        if not 0 <= member < len(self.members):
            raise ValueError(f"member {member} out of range: the ensemble has {len(self.members)} networks")
        prov = dict(self.provenance, member=member)
        return ANIModel(f"{self.name}[{member}]", self.species, self.aev, self.self_energies,
                        (self.members[member],), prov)


def save_model(model: ANIModel, path) -> Path:
    """Write ``model`` to rung's HDF5 model format (atomically: temporary file, then rename)."""
    import os

    import h5py

    from rung.nnp import __version__

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(schema=SCHEMA, schema_version=SCHEMA_VERSION, package_version=__version__, kind="ani",
                       name=model.name, species=json.dumps(list(model.species)), energy_unit="hartree",
                       length_unit="angstrom", provenance=json.dumps(model.provenance))
        g = f.create_group("aev")
        g.attrs["Rcr"], g.attrs["Rca"], g.attrs["units"] = model.aev.Rcr, model.aev.Rca, "angstrom"
        for k in ("EtaR", "ShfR", "Zeta", "ShfZ", "EtaA", "ShfA"):
            g.create_dataset(k, data=np.asarray(getattr(model.aev, k), dtype=np.float64))
        f.create_dataset("self_energies", data=model.self_energies).attrs["units"] = "hartree"
        for m, nets in enumerate(model.members):
            for s, net in zip(model.species, nets):
                for k, layer in enumerate(net.layers):
                    lg = f.create_group(f"members/{m}/{s}/{k}")
                    lg.create_dataset("weight", data=layer.weight)
                    lg.create_dataset("bias", data=layer.bias)
                    lg.attrs["activation"] = layer.activation
    os.replace(tmp, path)
    return path


def read_model(path, *, member: int | None = None) -> ANIModel:
    """Read a model written by :func:`save_model`; errors name the file and what is wrong with it."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ModelFileError(f"{path}: not a readable HDF5 model file (truncated or corrupt?): {err}") from err
    try:
        with f:
            if f.attrs.get("schema") != SCHEMA:
                raise ModelFileError(f"{path}: not a rung.nnp model (schema {f.attrs.get('schema')!r})")
            if int(f.attrs["schema_version"]) > SCHEMA_VERSION:
                raise ModelFileError(f"{path}: schema version {f.attrs['schema_version']} is newer than this reader")
            if f.attrs["energy_unit"] != "hartree" or f.attrs["length_unit"] != "angstrom":
                raise ModelFileError(f"{path}: unsupported units {f.attrs['energy_unit']}/{f.attrs['length_unit']}")
            species = tuple(json.loads(f.attrs["species"]))
            g = f["aev"]
            aev = AEVParams(Rcr=float(g.attrs["Rcr"]), Rca=float(g.attrs["Rca"]), n_species=len(species),
                            **{k: np.asarray(g[k][()], dtype=np.float64)
                               for k in ("EtaR", "ShfR", "Zeta", "ShfZ", "EtaA", "ShfA")})
            sae = np.asarray(f["self_energies"][()], dtype=np.float64)
            ids = sorted(f["members"].keys(), key=int)
            if member is not None:
                if not 0 <= member < len(ids):
                    raise ValueError(f"member {member} out of range: the ensemble has {len(ids)} networks")
                ids = [ids[member]]
            members = []
            for m in ids:
                nets = []
                for s in species:
                    sg = f[f"members/{m}/{s}"]
                    layers = []
                    for k in sorted(sg.keys(), key=int):
                        lg = sg[k]
                        w, b = lg["weight"], lg["bias"]  # each in its own dtype: a trained bias may be float64
                        layers.append(Layer(np.asarray(w[()], dtype=np.float64 if w.dtype == np.float64 else np.float32),
                                            np.asarray(b[()], dtype=np.float64 if b.dtype == np.float64 else np.float32),
                                            str(lg.attrs["activation"])))
                    nets.append(Network(tuple(layers)))
                members.append(tuple(nets))
            prov = json.loads(f.attrs.get("provenance", "{}"))
            if member is not None:
                prov["member"] = member
            model = ANIModel(str(f.attrs["name"]), species, aev, sae, tuple(members), prov)
    except ModelFileError:
        raise
    except (KeyError, OSError, ValueError, TypeError) as err:
        raise ModelFileError(f"{path}: corrupt or incomplete model file: {err!r}") from err
    for nets in model.members:
        if nets[0].layers[0].weight.shape[1] != aev.length:
            raise ModelFileError(f"{path}: networks take {nets[0].layers[0].weight.shape[1]} inputs, the AEV has {aev.length}")
    return model
