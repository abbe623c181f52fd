"""`sci run --from-dataset` never mixes two calculations in one property: a dataset whose sci_* values were
computed with another basis or other CIPSI settings is refused before any work (issue 19: a result is never
silently replaced by a different calculation); the same settings resume, --property-prefix writes beside."""

import h5py
import numpy as np
from click.testing import CliRunner

from rung.core.dataset import Molecule, create_dataset
from rung.core.testing import check_bad_input
from rung.sci.cli import main


def test_sci_values_of_other_settings_are_refused(tmp_path):
    ds = create_dataset(tmp_path / "lih.h5", [Molecule("lih", np.array([3, 1]), np.array([[[0, 0, 0], [0, 0, 3.0]]]))])
    args = ["run", "--from-dataset", str(ds), "--ecp", "", "--max-det", "1e4"]
    r = CliRunner().invoke(main, [*args, "--basis", "sto-3g"])
    assert r.exit_code == 0 and "1 conformations done" in r.output, r.output
    before = ds.read_bytes()
    r = CliRunner().invoke(main, [*args, "--basis", "6-31g"])
    check_bad_input(r, "lih.h5", "its sci_* values were computed with other settings",
                    "basis: 'sto-3g' there, '6-31g' now", "--property-prefix")
    r2 = CliRunner().invoke(main, [*args, "--basis", "sto-3g", "--pt2-threshold", "1e-3"])
    check_bad_input(r2, "lih.h5", "pt2_threshold: 1e-05 there, 0.001 now")
    assert ds.read_bytes() == before
    r = CliRunner().invoke(main, [*args, "--basis", "sto-3g"])  # the same settings: nothing left to do
    assert r.exit_code == 0 and "0 conformations done" in r.output, r.output
    r = CliRunner().invoke(main, [*args, "--basis", "6-31g", "--property-prefix", "big"])
    assert r.exit_code == 0 and "1 conformations done" in r.output, r.output
    with h5py.File(ds, "r") as f:
        small, big = f["lih/sci_total_energy"][0], f["lih/big_sci_total_energy"][0]
        assert np.isfinite(small) and big < small - 1e-3  # 6-31G below STO-3G: two calculations, kept apart
    # each calculation keeps its own wave function file (the prefixed one collided with the first before)
    assert (tmp_path / "lih.lih.0.sci.h5").exists() and (tmp_path / "lih.lih.0.big_sci.h5").exists()


def test_min_last_step_off_keeps_the_settings_recorded_before_the_option(tmp_path):
    """``min_last_step`` 0 (off: the growth of the code before the option) is left out of the recorded
    settings, so a dataset begun before the option resumes; any other value is a different calculation."""
    import json

    import pytest

    from rung.core.dataset import DatasetError
    from rung.sci.cipsi import CIPSIConfig
    from rung.sci.workflow import run_dataset

    ds = create_dataset(tmp_path / "lih.h5", [Molecule("lih", np.array([3, 1]), np.array([[[0, 0, 0], [0, 0, 3.0]]]))])
    kw = dict(basis="sto-3g", ecp=None, log=lambda line: None)
    assert len(run_dataset(ds, CIPSIConfig(max_det=10**4), **kw)) == 1
    with h5py.File(ds, "r") as f:
        recorded = json.loads(f.attrs["sci_settings"])
    assert "min_last_step" not in recorded and recorded["max_det"] == 10**4
    assert run_dataset(ds, CIPSIConfig(max_det=10**4, min_last_step=0.0), **kw) == {}  # the same: nothing to do
    with pytest.raises(DatasetError, match="min_last_step: None there, 0.5 now"):
        run_dataset(ds, CIPSIConfig(max_det=10**4, min_last_step=0.5), **kw)
