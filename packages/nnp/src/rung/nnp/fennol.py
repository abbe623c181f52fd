"""Reader of FeNNol ``.fnx`` model files of ANI architecture (``nnp convert model.fnx model.h5``).

A ``.fnx`` file is flax's msgpack serialisation (``flax.serialization.msgpack_serialize``) of
``FENNIX.to_dict()``: ``cutoff`` (Angstrom), ``modules`` and ``preprocessing`` (lists of
``[name, parameters]``), ``energy_unit``, ``energy_terms`` and ``variables`` (``{"params": ...}``).
Arrays are msgpack extension type 1 holding ``(shape, dtype name, C-order bytes)`` (type 3: a NumPy
scalar the same way). Only ``msgpack`` is needed to read it, not flax or FeNNol.

Accepted (the layout of FeNNol's ANI examples, T. Plé et al., J. Chem. Phys. 161, 042502 (2024)):
one ``ANI_AEV`` module (its radial graph the model's ``cutoff``; its angular graph a ``GRAPH_FILTER``
of that graph with the default cosine switch) and one ``SPECIES_INDEX_NET`` reading the AEV with
activation ``partial(celu, alpha=0.1)`` and biases, whose output is an energy term, and optionally one
``CHEMICAL_CONSTANT`` module, the per-element self energies (its trained ``constant``, indexed by
atomic number), as the other energy term (the layout of FeNNol's model zoo, FeNNol-PMC ``ANI/``).
FeNNol's AEV constants are ``ShfR = linspace(radial_start, Rcr, n + 1)[:-1]``,
``ShfA = linspace(angular_start, Rca, n + 1)[:-1]``, ``ShfZ = (k + 1/2) pi / sections`` and the
same radial and angular terms as ANI (0.95 cos theta, cosine cutoffs). Dense layers are
``x @ kernel + bias`` (kernel (in, out)), so rung's weight is the transposed kernel. The energy unit
(``Ha``, ``eV``, ``kcal/mol``, ``kJ/mol``) is folded into the last layer and the self energies so the
model speaks Hartree; without a ``CHEMICAL_CONSTANT`` the self energies are zero (the networks then
output the whole atomic energy). Anything else (other
modules or energy terms, another activation, a switch of another shape) is refused naming it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rung.nnp.model import AEVParams, ANIModel, Layer, ModelFileError, Network

FENNOL_DEFAULTS = {"radial_eta": 16.0, "angular_eta": 8.0, "radial_dist_divisions": 16, "angular_dist_divisions": 4,
                   "zeta": 32.0, "angle_sections": 4, "radial_start": 0.8, "angular_start": 0.8,
                   "graph_key": "graph", "embedding_key": "embedding"}
ENERGY_UNITS = {"ha": "hartree", "hartree": "hartree", "au": "hartree", "ev": "ev", "kcalpermol": "kcal/mol",
                "kcal/mol": "kcal/mol", "kjpermol": "kj/mol", "kj/mol": "kj/mol"}


def load_fnx(path) -> dict:
    """The state dict of a .fnx file, arrays as NumPy arrays."""
    try:
        import msgpack
    except ImportError as err:
        raise ModelFileError(f"{path}: reading FeNNol .fnx files needs the msgpack package (pip install msgpack)") from err

    def array(data):
        shape, dtype, buf = msgpack.unpackb(data, raw=False)
        return np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape).copy()

    def hook(code, data):
        if code == 1:
            return array(data)
        if code == 3:
            return array(data)[()]
        if code == 2:
            re_, im = msgpack.unpackb(data)
            return complex(re_, im)
        return msgpack.ExtType(code, data)

    path = Path(path)
    try:
        state = msgpack.unpackb(path.read_bytes(), ext_hook=hook, raw=False, strict_map_key=False)
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read: {err}") from err
    except Exception as err:  # msgpack's errors have no common base class
        raise ModelFileError(f"{path}: not a FeNNol .fnx (msgpack) file: {err}") from err
    if not isinstance(state, dict) or not {"modules", "variables", "cutoff"} <= set(state):
        raise ModelFileError(f"{path}: not a FeNNol model (keys modules, variables, cutoff expected)")
    return state


def _kind(name, params):
    return str(params.get("module_name", params.get("FID", name))).upper()


def _species(order):
    return [s.strip() for s in order.split(",")] if isinstance(order, str) else [str(s) for s in order]


def read_fnx(path, *, name: str = "") -> ANIModel:
    """An ANI-architecture FeNNol model as a one-member rung ANIModel (see the module for what is accepted)."""
    from rung.core import units as U

    path = Path(path)
    state = load_fnx(path)

    def refuse(why):
        raise ModelFileError(f"{path}: not an ANI-architecture FeNNol model: {why}")

    modules = [(str(n), dict(p)) for n, p in state["modules"]]
    prep = [(str(n), dict(p)) for n, p in state.get("preprocessing", [])]
    aevs = [(n, p) for n, p in modules if _kind(n, p) == "ANI_AEV"]
    nets = [(n, p) for n, p in modules if _kind(n, p) == "SPECIES_INDEX_NET"]
    consts = [(n, p) for n, p in modules if _kind(n, p) == "CHEMICAL_CONSTANT"]
    others = [f"{n} ({_kind(n, p)})" for n, p in modules if (n, p) not in aevs + nets + consts]
    if len(aevs) != 1 or len(nets) != 1 or len(consts) > 1 or others:
        refuse("expected one ANI_AEV, one SPECIES_INDEX_NET and at most one CHEMICAL_CONSTANT module, found "
               f"{[f'{n} ({_kind(n, p)})' for n, p in modules]}")
    (_, a), (net_name, net) = aevs[0], nets[0]
    a = {**FENNOL_DEFAULTS, **a}
    if net.get("input_key") != a["embedding_key"]:
        refuse(f"module {net_name} reads {net.get('input_key')!r}, not the AEV {a['embedding_key']!r}")
    act = re.sub(r"\s", "", str(net.get("activation", "silu")))
    if act not in ("partial(celu,alpha=0.1)", "partial(jax.nn.celu,alpha=0.1)"):
        refuse(f"module {net_name} has activation {net.get('activation')!r}; only partial(celu, alpha=0.1) (ANI) is read")
    if not net.get("use_bias", True):
        refuse(f"module {net_name} has no biases")
    out_key = net.get("output_key") or net_name
    const_key = (consts[0][1].get("output_key") or consts[0][0]) if consts else None
    terms = list(state.get("energy_terms") or [])
    if sorted(terms) != sorted([out_key] + ([const_key] if consts else [])):
        refuse(f"energy terms {terms}; only the species networks' output {out_key!r}"
               + (f" and the self energies {const_key!r}" if consts else "") + " are read")
    Rcr = float(state["cutoff"])
    graphs = {}
    for n, p in prep:
        k = _kind(n, p)
        if k == "GRAPH":  # settings of the main graph
            if p.get("switch_params"):
                refuse(f"the main graph has switch_params {p['switch_params']}; only the cosine switch is read")
            Rcr = float(p.get("cutoff", Rcr))
        if k == "GRAPH_FILTER":
            if p.get("switch_params"):
                refuse(f"graph filter {n} has switch_params {p['switch_params']}; only the cosine switch is read")
            graphs[p["graph_key"]] = (str(p.get("parent_graph")), float(p["cutoff"]))
    if a["graph_key"] != "graph":
        refuse(f"the AEV's radial graph is {a['graph_key']!r}, not the model's main graph")
    angle_key = a.get("graph_angle_key")
    if angle_key not in graphs or graphs[angle_key][0] != "graph":
        refuse(f"the AEV's angular graph {angle_key!r} is not a GRAPH_FILTER of the main graph")
    Rca = graphs[angle_key][1]
    species = _species(a["species_order"])
    nR, nA, nZ = int(a["radial_dist_divisions"]), int(a["angular_dist_divisions"]), int(a["angle_sections"])
    aev = AEVParams(Rcr=Rcr, Rca=Rca, EtaR=np.array([float(a["radial_eta"])]),
                    ShfR=np.linspace(float(a["radial_start"]), Rcr, nR + 1)[:-1], Zeta=np.array([float(a["zeta"])]),
                    ShfZ=np.linspace(0.0, np.pi, nZ + 1)[:-1] + np.pi / (2 * nZ), EtaA=np.array([float(a["angular_eta"])]),
                    ShfA=np.linspace(float(a["angular_start"]), Rca, nA + 1)[:-1], n_species=len(species))
    unit = ENERGY_UNITS.get(str(state.get("energy_unit", "Ha")).strip().lower())
    if unit is None:
        refuse(f"energy unit {state.get('energy_unit')!r} is not one of {sorted(ENERGY_UNITS)}")
    to_hartree = U.TO_ATOMIC[unit]
    try:
        params = state["variables"]["params"][net_name]
    except (KeyError, TypeError):
        refuse(f"no parameters for module {net_name}")
    networks = []
    for s in species:
        if s not in params:
            refuse(f"module {net_name} has no network for species {s}")
        layers = params[s]
        keys = sorted(layers, key=lambda k: int(k.split("_")[-1]))
        out = []
        for i, k in enumerate(keys):
            W = np.asarray(layers[k]["kernel"]).T
            b = np.asarray(layers[k]["bias"])
            last = i == len(keys) - 1
            if last:
                W, b = W * to_hartree, b * to_hartree
            out.append(Layer(np.ascontiguousarray(W), b.copy(), "identity" if last else "celu0.1"))
        networks.append(Network(tuple(out)))
    if networks and networks[0].layers[0].weight.shape[1] != aev.length:
        refuse(f"the networks take {networks[0].layers[0].weight.shape[1]} inputs, the AEV has {aev.length}")
    self_energies = np.zeros(len(species))
    if consts:
        from ase.data import atomic_numbers

        try:
            constant = np.asarray(state["variables"]["params"][consts[0][0]]["constant"], dtype=np.float64).ravel()
        except (KeyError, TypeError):
            refuse(f"no parameters for module {consts[0][0]}")
        if constant.size <= max(atomic_numbers[s] for s in species):
            refuse(f"module {consts[0][0]} has {constant.size} constants, not one per atomic number")
        self_energies = np.array([constant[atomic_numbers[s]] for s in species]) * to_hartree
    return ANIModel(name or path.stem, tuple(species), aev, self_energies, (tuple(networks),),
                    {"source": "fennol .fnx", "path": str(path), "energy_unit": str(state.get("energy_unit", "Ha"))})


def ensemble_of_fnx(paths, *, name: str = "") -> ANIModel:
    """Several .fnx files of one ANI architecture (same AEV, species, layer shapes) as one ensemble."""
    models = [read_fnx(p) for p in paths]
    first = models[0]
    for p, m in zip(paths[1:], models[1:]):
        same = (m.species == first.species and m.aev.length == first.aev.length
                and all(np.array_equal(getattr(m.aev, k), getattr(first.aev, k)) for k in ("ShfR", "ShfA", "ShfZ", "EtaR", "EtaA", "Zeta"))
                and (m.aev.Rcr, m.aev.Rca) == (first.aev.Rcr, first.aev.Rca)
                and np.array_equal(m.self_energies, first.self_energies)
                and [[la.weight.shape for la in n.layers] for n in m.members[0]]
                == [[la.weight.shape for la in n.layers] for n in first.members[0]])
        if not same:
            raise ModelFileError(f"{p}: another architecture than {paths[0]}; an ensemble needs the same AEV, species, self energies and layers")
    return ANIModel(name or Path(paths[0]).stem, first.species, first.aev, first.self_energies,
                    tuple(m.members[0] for m in models),
                    {"source": "fennol .fnx", "paths": [str(p) for p in paths], "energy_unit": first.provenance["energy_unit"]})
