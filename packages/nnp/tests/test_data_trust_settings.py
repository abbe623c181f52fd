"""`nnp eval` never mixes two models' values in one property: a dataset whose nnp_* values were computed
with another model, member or precision is refused before any work (issue 19: a result is never silently
replaced by a different calculation); --property-prefix writes the other model's values beside them."""

import h5py
import numpy as np
from click.testing import CliRunner

from rung.core.testing import check_bad_input
from rung.nnp.cli import main

WATER = "3\nname=water\nO 0.0 0.0 0.1193\nH 0.0 0.7632 -0.4770\nH 0.0 -0.7632 -0.4770\n"  # Angstrom


def test_values_of_another_model_are_refused_and_the_prefix_writes_beside_them(ani1x_file, tmp_path):
    src, ds = tmp_path / "w.xyz", tmp_path / "w.h5"
    src.write_text(WATER)
    model = ["--model", str(ani1x_file)]
    r = CliRunner().invoke(main, ["eval", str(src), *model, "--out", str(ds)])
    assert r.exit_code == 0, r.output
    with h5py.File(ds, "r") as f:
        ensemble = f["water/nnp_energy"][0]
    before = ds.read_bytes()
    r = CliRunner().invoke(main, ["eval", str(ds), *model, "--member", "0"])
    check_bad_input(r, "w.h5", "its nnp_* values were computed with other settings", "'ani-1x' there, 'ani-1x[0]' now",
                    "networks: 8 there, 1 now", "--property-prefix")
    assert ds.read_bytes() == before
    r = CliRunner().invoke(main, ["eval", str(ds), *model])  # the same settings: nothing to do, no refusal
    assert r.exit_code == 0 and "0 conformation(s) evaluated" in r.output, r.output
    r = CliRunner().invoke(main, ["eval", str(ds), *model, "--member", "0", "--property-prefix", "m0"])
    assert r.exit_code == 0 and "1 conformation(s) evaluated" in r.output, r.output
    with h5py.File(ds, "r") as f:
        assert f["water/nnp_energy"][0] == ensemble and f["water/m0_nnp_energy"][0] != ensemble
        assert f["water/m0_nnp_energy"].attrs["method"] == "ani-1x[0]"
    # a file written before the settings were recorded: the values' own attributes say which model
    with h5py.File(ds, "a") as f:
        del f.attrs["nnp_settings"]
    r = CliRunner().invoke(main, ["eval", str(ds), *model, "--dtype", "float32"])
    check_bad_input(r, "w.h5", "its nnp_* values were computed with other settings", "dtype: 'float64' there, 'float32' now")
    with h5py.File(ds, "r") as f:
        assert "nnp_settings" not in f.attrs and np.isfinite(f["water/nnp_energy"][0])
