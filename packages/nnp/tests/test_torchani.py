"""TorchANI state dicts of ANI architecture (rung.nnp.torchani_pt, `nnp convert model.pt`) against TorchANI.

Oracle: tests/data/torchani_ani_small.pt was written by TorchANI 2.9.0 on torch 2.13.0+cpu
(``torch.save(model.state_dict())`` of a small ANI model its ``Assembler`` built, two members),
torchani_ani_small_sd.npz holds the same arrays, and torchani_ani_small_ref.npz TorchANI's own float64
energies and autograd forces of those conformations (tests/data/make_torchani_ani.py). The .npz tests
need neither torch nor torchani; reading the .pt needs torch and is skipped without it.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rung.nnp.ani import ANIPotential, load_model
from rung.nnp.cli import main
from rung.nnp.model import ModelFileError
from rung.nnp.torchani_pt import read_state_dict

DATA = Path(__file__).parent / "data"
PT = DATA / "torchani_ani_small.pt"


def _sd():
    return dict(np.load(DATA / "torchani_ani_small_sd.npz"))


def _check(model, atol_e=1e-12, atol_f=1e-9):
    ref = np.load(DATA / "torchani_ani_small_ref.npz")
    r = ANIPotential(model, dtype="float64").evaluate(ref["x"], ref["z"], batch=ref["batch"])
    np.testing.assert_allclose(r.energy, ref["energy_hartree"], rtol=0, atol=atol_e)
    np.testing.assert_allclose(r.forces, ref["forces_hartree_angstrom"], rtol=0, atol=atol_f)


def test_state_dict_is_torchani():
    """Energies (Hartree) and forces of the converted arrays (numba engine, float64) = TorchANI's; the
    cutoffs, absent from a state dict, are inferred from the evenly spaced shifts."""
    model = read_state_dict(_sd())
    assert model.species == ("H", "C", "N", "O") and len(model.members) == 2
    assert (model.aev.Rcr, model.aev.Rca) == (5.2, 3.5)
    _check(model)
    ref = np.load(DATA / "torchani_ani_small_ref.npz")
    assert np.ptp(ref["energy_hartree"]) > 1.0  # the molecules differ: a wrong map could not pass by accident


def test_state_dict_refusals_and_given_cutoffs():
    """Cutoffs given explicitly are used; uneven shifts without them, a missing final layer, other
    terms, the old TorchANI layout and unknown keys are refused naming the problem."""
    _check(read_state_dict(_sd(), radial_cutoff=5.2, angular_cutoff=3.5))
    other = read_state_dict(_sd(), radial_cutoff=5.5)
    assert other.aev.Rcr == 5.5 and other.aev.Rca == 3.5
    sd = _sd()
    sd["potentials.nnp.aev_computer.radial.shifts"] = np.array([0.9, 1.0, 2.0, 3.0])
    with pytest.raises(ModelFileError, match="--radial-cutoff"):
        read_state_dict(sd)
    assert read_state_dict(sd, radial_cutoff=5.2).aev.Rcr == 5.2
    sd = {k: v for k, v in _sd().items() if "members.1.atomics.O.final_layer" not in k}
    with pytest.raises(ModelFileError, match="member 1, O: no final_layer"):
        read_state_dict(sd)
    with pytest.raises(ModelFileError, match="repulsion"):
        read_state_dict({**_sd(), "potentials.repulsion.y_ab": np.zeros(3)})
    with pytest.raises(ModelFileError, match="< 2.3"):
        read_state_dict({"aev_computer.ShfR": np.zeros(16), "neural_networks.0.H.0.weight": np.zeros((2, 2))})
    with pytest.raises(ModelFileError, match="unknown layout"):
        read_state_dict({**_sd(), "potentials.nnp.neural_networks.members.0.embedding.weight": np.zeros(3)})


def test_pt_without_torch(monkeypatch, tmp_path):
    """Without torch, `nnp convert x.pt` is one line naming torch, exit code 2, nothing written."""
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(main, ["convert", str(PT), str(out)])
    assert r.exit_code == 2 and "needs torch" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not out.exists()


def test_pt_is_torchani(tmp_path):
    """`nnp convert small.pt out.h5` (torch.load) gives TorchANI's energies and forces."""
    pytest.importorskip("torch")
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(main, ["convert", str(PT), str(out)])
    assert r.exit_code == 0, r.output
    assert "5.2 and 3.5 Angstrom" in r.output
    _check(load_model(out, dtype="float64").model)
    (tmp_path / "junk.pt").write_bytes(b"not a zip file")
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "junk.pt"), str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "not a torch state dict" in r.output, r.output
