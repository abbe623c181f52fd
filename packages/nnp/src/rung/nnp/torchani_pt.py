"""Reader of TorchANI state dicts of ANI architecture (``nnp convert model.pt model.h5``).

A ``.pt`` file here is ``torch.save(model.state_dict())`` of a TorchANI 2.x ``torchani.arch.ANI``
model as TorchANI's ``Assembler`` builds it (``torchani.models.ANI1x()``, ``ANI2x()``, ``ANI1ccx()``
and custom models of the same kind). Reading it needs torch (``torch.load(..., weights_only=True)``,
no pickled code is run); torch is optional: without it the reader says so in one line.
:func:`read_state_dict` maps the arrays alone (any mapping of names to arrays), without torch.

Keys read (TorchANI 2.9; ``<nn>`` is ``potentials.nnp.neural_networks.members.<m>`` for an
ensemble, ``potentials.nnp.neural_networks`` for one network set)::

    atomic_numbers                                   (n_species,) the species order
    energy_shifter.self_energies                     (n_species,) Hartree (absent: zeros)
    potentials.nnp.aev_computer.radial.eta, .shifts          EtaR, ShfR (Angstrom^-2, Angstrom)
    potentials.nnp.aev_computer.angular.eta, .zeta, .shifts, .sections   EtaA, Zeta, ShfA, ShfZ
    potentials.nnp.aev_computer.triu_index           (n_species, n_species) species-pair order
    <nn>.atomics.<symbol>.layers.<k>.weight|bias     (out, in), (out,): hidden layers
    <nn>.atomics.<symbol>.final_layer.weight|bias    (1, in), (1,): the atomic energy, Hartree

A Linear layer's weight is already rung's ``(out, in)``. A state dict does not record three things,
which are therefore assumed or given: the activation (TorchANI's ``TightCELU``, CELU with alpha 0.1,
as in every ANI model of its zoo), the cutoff function (cosine), and the two cutoffs, which are
inferred from the shifts when they are evenly spaced as TorchANI's ``cover_linearly`` makes them
(``shifts = linspace(start, cutoff, n + 1)[:-1]``, so ``cutoff = shifts[0] + n * step``; rounded to
1e-4 Angstrom: ANI-1x 5.2 and 3.5) and must be given otherwise (``radial_cutoff``,
``angular_cutoff``). Other terms (``potentials.<name>`` besides ``nnp``: repulsion, dispersion,
charges), networks without a ``final_layer`` of one output, another species-pair order, or keys of
an unknown layout (TorchANI < 2.3 wrote ``aev_computer.ShfR`` and ``neural_networks.<m>.<symbol>.<k>``)
are refused naming them.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from rung.nnp.model import AEVParams, ANIModel, Layer, ModelFileError, Network

AEV = "potentials.nnp.aev_computer."
NN = "potentials.nnp.neural_networks."
IGNORED = ("species_converter.conv_tensor",)  # derived from atomic_numbers
_LAYER = re.compile(r"^(?:members\.(\d+)\.)?atomics\.([A-Z][a-z]?)\.(?:layers\.(\d+)|(final_layer))\.(weight|bias)$")


def load_pt(path) -> dict:
    """The arrays of a ``torch.save``'d state dict as NumPy arrays (needs torch)."""
    path = Path(path)
    try:
        import torch
    except ImportError as err:
        raise ModelFileError(f"{path}: reading a TorchANI .pt state dict needs torch (pip install torch), "
                             "which rung-nnp does not install") from err
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds (pickle, zip, runtime)
        raise ModelFileError(f"{path}: not a torch state dict: {type(err).__name__}: {err}") from err
    if not isinstance(sd, dict) or not all(hasattr(v, "numpy") for v in sd.values()):
        raise ModelFileError(f"{path}: not a state dict (a mapping of names to tensors); "
                             "save model.state_dict(), not the model")
    return {str(k): v.detach().cpu().numpy() for k, v in sd.items()}


def _cutoff(shifts, given, what, where):
    if given is not None:
        if not given > shifts.max():
            raise ModelFileError(f"{where}: the {what} cutoff {given} Angstrom is not beyond its last shift {shifts.max()}")
        return float(given)
    step = np.diff(shifts)
    if shifts.size < 2 or not np.allclose(step, step[0], rtol=1e-5, atol=0) or not step[0] > 0:
        raise ModelFileError(f"{where}: the {what} shifts {shifts.tolist()} are not evenly spaced, so the cutoff "
                             f"(not stored in a state dict) cannot be inferred; give it (--{what}-cutoff)")
    return round(float(shifts[0] + shifts.size * step.mean()), 4)


def read_state_dict(sd, *, name: str = "torchani", radial_cutoff: float | None = None,
                    angular_cutoff: float | None = None, where: str = "state dict") -> ANIModel:
    """An ANIModel from a TorchANI ANI state dict ``{name: array}`` (see the module for the layout).

    Parameters
    ----------
    sd : mapping of str to array-like
    radial_cutoff, angular_cutoff : float, Angstrom, optional
        The AEV cutoffs; inferred from evenly spaced shifts when not given.
    where : str
        Names the source in error messages.
    """
    from ase.data import atomic_numbers as Z_OF, chemical_symbols

    sd = {k: np.asarray(v) for k, v in sd.items()}

    def get(key):
        if key not in sd:
            legacy = " (a TorchANI < 2.3 layout, not read)" if any(k.startswith("aev_computer.") for k in sd) else ""
            raise ModelFileError(f"{where}: not a TorchANI ANI state dict: no {key!r}{legacy}")
        return sd[key].astype(np.float64)

    others = sorted({k.split(".")[1] for k in sd if k.startswith("potentials.") and not k.startswith("potentials.nnp.")})
    if others:
        raise ModelFileError(f"{where}: terms besides the ANI networks ({', '.join(others)}) are not read")
    EtaR, ShfR = get(AEV + "radial.eta").ravel(), get(AEV + "radial.shifts").ravel()
    EtaA, Zeta = get(AEV + "angular.eta").ravel(), get(AEV + "angular.zeta").ravel()
    ShfA, ShfZ = get(AEV + "angular.shifts").ravel(), get(AEV + "angular.sections").ravel()
    layers, unknown = {}, []
    for k, v in sd.items():
        if k.startswith(NN):
            m = _LAYER.match(k[len(NN):])
            if m is None:
                unknown.append(k)
                continue
            member, sym, idx, final, kind = m.groups()
            pos = np.inf if final else int(idx)
            layers.setdefault(int(member or 0), {}).setdefault(sym, {}).setdefault(pos, {})[kind] = v
        elif not (k.startswith(AEV) or k in IGNORED or k in ("atomic_numbers", "energy_shifter.self_energies")):
            unknown.append(k)
    if unknown:
        raise ModelFileError(f"{where}: keys of an unknown layout: {', '.join(unknown[:4])}"
                             + (f" and {len(unknown) - 4} more" if len(unknown) > 4 else ""))
    if not layers:
        raise ModelFileError(f"{where}: no networks ({NN}...)")
    if "atomic_numbers" in sd:
        species = tuple(chemical_symbols[int(z)] for z in sd["atomic_numbers"].ravel())
    else:
        species = tuple(layers[min(layers)])
    n = len(species)
    if AEV + "triu_index" in sd:
        expected = np.zeros((n, n), np.int64)
        iu = np.triu_indices(n)
        expected[iu] = np.arange(iu[0].size)
        expected[iu[1], iu[0]] = np.arange(iu[0].size)
        if not np.array_equal(sd[AEV + "triu_index"], expected):
            raise ModelFileError(f"{where}: another species-pair order (triu_index) than ANI's")
    if sorted(layers) != list(range(len(layers))):
        raise ModelFileError(f"{where}: ensemble members {sorted(layers)} are not numbered 0..{len(layers) - 1}")
    aev = AEVParams(Rcr=_cutoff(ShfR, radial_cutoff, "radial", where), Rca=_cutoff(ShfA, angular_cutoff, "angular", where),
                    EtaR=EtaR, ShfR=ShfR, Zeta=Zeta, ShfZ=ShfZ, EtaA=EtaA, ShfA=ShfA, n_species=n)
    members = []
    for mi in sorted(layers):
        nets = []
        for s in species:
            if s not in layers[mi]:
                raise ModelFileError(f"{where}: member {mi} has no network for {s}")
            by_pos = layers[mi][s]
            if np.inf not in by_pos:
                raise ModelFileError(f"{where}: member {mi}, {s}: no final_layer")
            out = []
            for pos in sorted(by_pos):
                W = np.ascontiguousarray(by_pos[pos]["weight"])
                b = by_pos[pos].get("bias", np.zeros(W.shape[0], W.dtype))  # TorchANI may build networks without biases
                out.append(Layer(W, np.asarray(b, W.dtype).copy(), "identity" if pos == np.inf else "celu0.1"))
            try:
                nets.append(Network(tuple(out)))
            except ModelFileError as err:
                raise ModelFileError(f"{where}: member {mi}, {s}: {err}") from err
        if nets[0].layers[0].weight.shape[1] != aev.length:
            raise ModelFileError(f"{where}: the networks take {nets[0].layers[0].weight.shape[1]} inputs, "
                                 f"the AEV has {aev.length}")
        members.append(tuple(nets))
    self_e = get("energy_shifter.self_energies").ravel() if "energy_shifter.self_energies" in sd else np.zeros(n)
    if self_e.size != n:
        raise ModelFileError(f"{where}: {self_e.size} self energies for {n} species")
    unknown_z = [s for s in species if s not in Z_OF]
    if unknown_z:
        raise ModelFileError(f"{where}: unknown species {unknown_z}")
    return ANIModel(name, species, aev, self_e, tuple(members),
                    {"source": "torchani state dict", "path": where, "activation": "assumed CELU(0.1) (TorchANI TightCELU)",
                     "cutoffs": {"radial": aev.Rcr, "angular": aev.Rca,
                                 "how": "given" if radial_cutoff is not None and angular_cutoff is not None
                                 else "inferred from evenly spaced shifts where not given"}})


def read_pt(path, *, name: str = "", radial_cutoff: float | None = None, angular_cutoff: float | None = None) -> ANIModel:
    """A TorchANI ``.pt`` state dict (needs torch) as an ANIModel; see :func:`read_state_dict`."""
    path = Path(path)
    return read_state_dict(load_pt(path), name=name or path.stem, radial_cutoff=radial_cutoff,
                           angular_cutoff=angular_cutoff, where=str(path))
