import re
import sys
from pathlib import Path

import numpy as np
import pytest

from rung.core import units as U
from rung.md import ladder


def _dataset(tmp_path):
    from ase.collections import g2

    from rung.core.dataset import Molecule, create_dataset

    a = g2["H2O"]
    return create_dataset(tmp_path / "water.h5", [Molecule("water", a.numbers, a.positions[None] * U.ANGSTROM_TO_BOHR)])


def test_ladder_step_with_the_harmonic_test_potential(tmp_path, monkeypatch):
    monkeypatch.setattr(ladder, "_nnp_available", lambda: "forced off for the test")
    line = ladder.step(tmp_path, _dataset(tmp_path), "water")
    assert "\n" not in line and "harmonic" in line and "forced off" in line
    kcv = float(re.search(r"K_cv = ([\d.]+)", line).group(1))
    exact = float(re.search(r"exact P-bead ([\d.]+)", line).group(1))
    assert abs(kcv / exact - 1) < 0.25  # 100 ps would be needed for a sharp check; see test_integrators
    assert (tmp_path / "md" / "md.h5").exists()
    kq = float(re.search(r"adQTB .* K = ([\d.]+)", line).group(1))
    quantum = float(re.search(r"quantum ([\d.]+)", line).group(1))
    assert abs(kq / quantum - 1) < 0.25  # a short run; see test_qtb for sharp checks
    assert (tmp_path / "md" / "adqtb" / "md.qtb.h5").exists()


def test_harmonic_path_integral_energy_matches_the_test_oracle():
    sys.path.insert(0, str(Path(__file__).parent))
    from oracles import exact_path_integral_energy

    from rung.md.estimators import harmonic_path_integral_energy

    w, kT = 0.01, 1e-3
    for P in (1, 3, 8, 64):
        ours = harmonic_path_integral_energy(w, kT, P)
        assert ours == pytest.approx(exact_path_integral_energy(w, 1 / kT, P), rel=1e-13)
    assert harmonic_path_integral_energy(w, kT, 20000) == pytest.approx(w / 4 / np.tanh(w / (2 * kT)), rel=1e-6)
