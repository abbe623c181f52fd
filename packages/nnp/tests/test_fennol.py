"""FeNNol .fnx files of ANI architecture (rung.nnp.fennol, `nnp convert`) against FeNNol's own numbers.

Oracle: tests/data/fennol_ani_small.fnx was written by FeNNol 2026.6.29 (FENNIX.save) and
fennol_ani_small_ref.npz holds FeNNol's float64 energies and forces of those conformations
(tests/data/make_fennol_ani.py); neither fennol nor flax is needed here.
"""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rung.core import units as U
from rung.nnp.ani import ANIPotential, load_model
from rung.nnp.cli import main

pytest.importorskip("msgpack")

DATA = Path(__file__).parent / "data"
FNX = DATA / "fennol_ani_small.fnx"


def test_fnx_is_fennol():
    """Energies and forces of the converted model (numba engine, float64) = FeNNol's, kcal/mol folded into Hartree."""
    from rung.nnp.fennol import read_fnx

    model = read_fnx(FNX)
    ref = np.load(DATA / "fennol_ani_small_ref.npz")
    r = ANIPotential(model, dtype="float64").evaluate(ref["x"], ref["z"], batch=ref["batch"])
    k = U.KCAL_PER_MOL_TO_HARTREE
    np.testing.assert_allclose(r.energy, ref["energy_kcal_mol"] * k, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.forces, ref["forces_kcal_mol_angstrom"][:ref["z"].size] * k, rtol=0, atol=1e-12)
    assert model.species == ("H", "C", "N", "O") and model.aev.Rca == 3.5


def test_convert_cli(tmp_path):
    """`nnp convert a.fnx b.fnx out.h5`: a two-member ensemble that loads; a non-ANI FeNNol model is refused."""
    out = tmp_path / "m.h5"
    r = CliRunner().invoke(main, ["convert", str(FNX), str(FNX), str(out)])
    assert r.exit_code == 0, r.output
    pot = load_model(out, dtype="float64")
    ref = np.load(DATA / "fennol_ani_small_ref.npz")
    res = pot.evaluate(ref["x"], ref["z"], batch=ref["batch"])
    np.testing.assert_allclose(res.energy, ref["energy_kcal_mol"] * U.KCAL_PER_MOL_TO_HARTREE, rtol=0, atol=1e-12)
    assert np.all(res.spread == 0)
    import msgpack

    from rung.nnp.fennol import load_fnx

    state = load_fnx(FNX)
    state["energy_terms"] = ["energy", "repulsion"]
    bad = tmp_path / "bad.fnx"

    def pack(o):
        if isinstance(o, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((o.shape, o.dtype.name, o.tobytes()), use_bin_type=True))
        return o

    bad.write_bytes(msgpack.packb(state, default=pack, use_bin_type=True))
    r = CliRunner().invoke(main, ["convert", str(bad), str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and "not an ANI-architecture FeNNol model" in r.output and "repulsion" in r.output
    assert not (tmp_path / "x.h5").exists()
    (tmp_path / "junk.fnx").write_bytes(b"\x00\x01 not msgpack")
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "junk.fnx"), str(tmp_path / "x.h5")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output


def _pack(o):
    import msgpack

    if isinstance(o, np.ndarray):
        return msgpack.ExtType(1, msgpack.packb((o.shape, o.dtype.name, o.tobytes()), use_bin_type=True))
    return o


def test_self_energies_of_a_chemical_constant_module(tmp_path):
    """FeNNol's model zoo (FeNNol-PMC ANI/ANI1X/*.fnx) adds the per-element self energies as a
    CHEMICAL_CONSTANT module (a trained constant per atomic number) beside the networks' energy term:
    the converted model's energy is the networks' plus the sum of those constants over the atoms (the
    file's energy unit folded in), its forces unchanged; a second member with other constants cannot
    join the ensemble."""
    import msgpack

    from rung.nnp.fennol import ensemble_of_fnx, load_fnx, read_fnx

    state = load_fnx(FNX)
    constant = np.zeros(119, dtype=np.float32)
    constant[[1, 6, 7, 8]] = [-0.5, -38.0, -54.5, -75.0]
    state["modules"].append(["self_energy", {"module_name": "CHEMICAL_CONSTANT", "trainable": True}])
    state["variables"]["params"]["self_energy"] = {"constant": constant}
    state["energy_terms"] = ["energy", "self_energy"]
    path = tmp_path / "with_self_energies.fnx"
    path.write_bytes(msgpack.packb(state, default=_pack, use_bin_type=True))
    ref = np.load(DATA / "fennol_ani_small_ref.npz")
    base = ANIPotential(read_fnx(FNX), dtype="float64").evaluate(ref["x"], ref["z"], batch=ref["batch"])
    model = read_fnx(path)
    r = ANIPotential(model, dtype="float64").evaluate(ref["x"], ref["z"], batch=ref["batch"])
    unit = U.KCAL_PER_MOL_TO_HARTREE  # the small model's energy unit is kcal/mol
    shift = np.bincount(ref["batch"], weights=constant[ref["z"]].astype(np.float64)) * unit
    np.testing.assert_allclose(r.energy, base.energy + shift, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(r.forces, base.forces)
    assert model.self_energies.tolist() == (constant[[1, 6, 7, 8]].astype(np.float64) * unit).tolist()
    constant[8] += 1.0
    other = tmp_path / "other.fnx"
    other.write_bytes(msgpack.packb(state, default=_pack, use_bin_type=True))
    from rung.nnp.model import ModelFileError

    with pytest.raises(ModelFileError, match="self energies"):
        ensemble_of_fnx([path, other])
