"""Reader for the NeuroChem model files that the public ANI models are distributed in.

A NeuroChem ensemble folder (e.g. ``ani-1x_8x/`` from the ``torchani==2.2.4`` wheel) holds

- ``*.params``: the AEV constants, one ``name = value`` per line (``Rcr``, ``Rca``, ``EtaR``,
  ``ShfR``, ``Zeta``, ``ShfZ``, ``EtaA``, ``ShfA`` as ``[v1,v2,...]``, ``Atyp = [H,C,N,O]``);
- ``sae_linfit.dat``: self (atomic reference) energies, lines ``H,0=-0.600952980000`` (Hartree);
- ``train<k>/networks/ANN-<X>.nnf``: per species the layer specification, a short ASCII length
  prefix ``<n>=\\n`` followed by a bzip2 stream of text blocks ``layer [ nodes=..; activation=..;
  blocksize=..; weights=FILE:<name>[size]; biases=FILE:<name>[size]; ]``;
- ``ANN-<X>.nnf-l<k>.wparam`` / ``.bparam``: raw little-endian float32 weights, shape
  (nodes, blocksize) row-major, and biases (nodes,).

Activation codes (NeuroChem): 6 identity, 5 Gaussian ``exp(-x^2)``, 9 CELU with alpha 0.1.

The constants are kept exactly as the float32 model used them: every array constant is rounded to
float32 (then held in float64); the cutoffs ``Rcr`` and ``Rca`` are read as plain numbers, as
TorchANI's NeuroChem reader does. Self energies stay float64.

Reference: J. S. Smith, O. Isayev, A. E. Roitberg, Chem. Sci. 8, 3192 (2017) (ANI-1);
J. S. Smith et al., J. Chem. Phys. 148, 241733 (2018) (ANI-1x).
"""

from __future__ import annotations

import bz2
import re
from pathlib import Path

import numpy as np

from rung.nnp.model import AEVParams, ANIModel, Layer, ModelFileError, Network

_ACTIVATION_CODES = {6: "identity", 5: "gaussian", 9: "celu0.1"}


def read_params(path) -> tuple[AEVParams, tuple[str, ...]]:
    """Parse a NeuroChem ``.params`` file into :class:`AEVParams` (and the species order)."""
    path = Path(path)
    values: dict[str, object] = {}
    for line in path.read_text().splitlines():
        if "=" not in line:
            continue
        name, value = (s.strip() for s in line.split("=", 1))
        if value.startswith("["):
            items = [v.strip() for v in value.strip("[]").split(",") if v.strip()]
            values[name] = items
        else:
            values[name] = value
    need = ["Rcr", "Rca", "EtaR", "ShfR", "Zeta", "ShfZ", "EtaA", "ShfA", "Atyp"]
    missing = [k for k in need if k not in values]
    if missing:
        raise ModelFileError(f"{path}: missing constants {missing}")

    def arr(key):
        return np.asarray(np.asarray([float(v) for v in values[key]], dtype=np.float32), dtype=np.float64)

    species = tuple(values["Atyp"])
    params = AEVParams(
        Rcr=float(values["Rcr"]), Rca=float(values["Rca"]),
        EtaR=arr("EtaR"), ShfR=arr("ShfR"), Zeta=arr("Zeta"), ShfZ=arr("ShfZ"), EtaA=arr("EtaA"), ShfA=arr("ShfA"),
        n_species=len(species),
    )
    return params, species


def read_self_energies(path, species) -> np.ndarray:
    """Self energies from ``sae_linfit.dat``, ordered as ``species``: (n_species,) float64, Hartree."""
    path = Path(path)
    sae = {}
    for line in path.read_text().splitlines():
        m = re.match(r"\s*([A-Za-z]+)\s*,\s*(\d+)\s*=\s*(\S+)", line)
        if m:
            sae[m.group(1)] = float(m.group(3))
    missing = [s for s in species if s not in sae]
    if missing:
        raise ModelFileError(f"{path}: no self energy for {missing}")
    return np.array([sae[s] for s in species], dtype=np.float64)


def _decompress_nnf(path: Path) -> str:
    raw = path.read_bytes()
    eq = raw.find(b"=")
    if eq < 0 or not raw[:eq].strip().isdigit():
        raise ModelFileError(f"{path}: not a NeuroChem .nnf file (no '<length>=' header)")
    try:
        return bz2.decompress(raw[eq + 2:]).rstrip(b"\x00").decode("ascii")
    except (OSError, ValueError, EOFError) as err:
        raise ModelFileError(f"{path}: corrupt bzip2 payload: {err}") from err


def read_network(path) -> Network:
    """One species network from ``ANN-<X>.nnf`` and the weight files next to it."""
    path = Path(path)
    text = _decompress_nnf(path)
    layers = []
    for block in re.findall(r"layer\s*\[(.*?)\n\s*\]", text, flags=re.S):
        fields = dict(re.findall(r"(\w+)\s*=\s*([^;]+);", block))
        try:
            nodes, inputs, code = int(fields["nodes"]), int(fields["blocksize"]), int(fields["activation"])
            wname, wsize = re.match(r"FILE:(.+)\[(\d+)\]", fields["weights"]).groups()
            bname, bsize = re.match(r"FILE:(.+)\[(\d+)\]", fields["biases"]).groups()
        except (KeyError, AttributeError, ValueError) as err:
            raise ModelFileError(f"{path}: malformed layer block: {err!r}") from err
        if code not in _ACTIVATION_CODES:
            raise ModelFileError(f"{path}: unsupported activation code {code} (known: {sorted(_ACTIVATION_CODES)})")
        if int(wsize) != nodes * inputs or int(bsize) != nodes:
            raise ModelFileError(f"{path}: layer sizes disagree (nodes={nodes}, blocksize={inputs}, weights={wsize})")
        w = _read_floats(path.parent / wname, nodes * inputs).reshape(nodes, inputs)
        b = _read_floats(path.parent / bname, nodes)
        layers.append(Layer(weight=w, bias=b, activation=_ACTIVATION_CODES[code]))
    if not layers:
        raise ModelFileError(f"{path}: no layers found")
    return Network(tuple(layers))


def _read_floats(path: Path, count: int) -> np.ndarray:
    if not path.exists():
        raise ModelFileError(f"{path}: weight file missing")
    data = np.fromfile(path, dtype="<f4")
    if data.size != count:
        raise ModelFileError(f"{path}: expected {count} float32 values, found {data.size} (truncated?)")
    return data.astype(np.float32)


def _member_dirs(folder: Path) -> list[Path]:
    if (folder / "networks").is_dir():
        return [folder]
    dirs = sorted((d for d in folder.glob("train*") if (d / "networks").is_dir()),
                  key=lambda d: int(re.sub(r"\D", "", d.name) or 0))
    if not dirs:
        raise ModelFileError(f"{folder}: no NeuroChem networks (expected train*/networks/ or networks/)")
    return dirs


def read_ensemble(folder, *, name: str = "", member: int | None = None) -> ANIModel:
    """Read a NeuroChem ensemble folder (``train0..train7`` beside a ``.params`` file) into an ANIModel.

    Parameters
    ----------
    folder : path of the ensemble folder (``ani-1x_8x/``) or of one member (``train0/``)
    member : keep only this member (0-based); None keeps all
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelFileError(f"{folder}: no such model folder")
    params_files = sorted(folder.glob("*.params"))
    if not params_files:
        raise ModelFileError(f"{folder}: no .params constants file")
    aev, species = read_params(params_files[0])
    sae_file = folder / "sae_linfit.dat"
    if not sae_file.exists():
        raise ModelFileError(f"{folder}: no sae_linfit.dat self-energy file")
    sae = read_self_energies(sae_file, species)
    dirs = _member_dirs(folder)
    if member is not None:
        if not 0 <= member < len(dirs):
            raise ValueError(f"member {member} out of range: the ensemble has {len(dirs)} networks")
        dirs = [dirs[member]]
    members = []
    for d in dirs:
        nets = []
        for s in species:
            net = read_network(d / "networks" / f"ANN-{s}.nnf")
            if net.layers[0].weight.shape[1] != aev.length:
                raise ModelFileError(f"{d}: network {s} takes {net.layers[0].weight.shape[1]} inputs, the AEV has {aev.length}")
            nets.append(net)
        members.append(tuple(nets))
    provenance = {"source": "NeuroChem", "folder": str(folder.resolve()), "params": params_files[0].name,
                  "members": [d.name for d in dirs]}
    return ANIModel(name=name or folder.name, species=species, aev=aev, self_energies=sae, members=tuple(members),
                    provenance=provenance)


__all__ = ["read_params", "read_self_energies", "read_network", "read_ensemble"]
