"""md's potential types through rung.core's registry: the pyprojects' ``rung.potentials`` entry points
resolve to the factories md registers, and md's types build from their input entries."""

import importlib
from pathlib import Path

import pytest

import rung.md.potentials  # noqa: F401  (registers md's types, and the other rungs' as "module:attr")
from rung.core import potential as P
from rung.core.potential import make_potential
from rung.md.config import _toml

PACKAGES = Path(__file__).resolve().parents[2]


def _declared() -> dict:
    """name -> "module:attr" from the rung.potentials tables of the workspace's pyprojects."""
    out = {}
    for path in sorted(PACKAGES.glob("*/pyproject.toml")):
        with open(path, "rb") as f:
            table = _toml().load(f)["project"].get("entry-points", {}).get(P.ENTRY_POINT_GROUP, {})
        for name, value in table.items():
            assert name not in out, f"potential type {name!r} declared twice"
            out[name] = value
    return out


def test_entry_points_resolve_to_the_registered_factories():
    declared = _declared()
    assert {"harmonic", "lj", "ase", "muller-brown", "nnp", "dft"} <= set(declared)
    for name, value in declared.items():
        module, _, attr = value.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        assert callable(factory)
        registered = P._REGISTRY[name]  # md's own as functions, nnp/dft as the same "module:attr"
        assert registered == (value if isinstance(registered, str) else factory), name


def test_installed_entry_points_agree_with_the_pyprojects():
    """After the workspace is synced (make setup) the installed group is the pyprojects' one."""
    installed = {name: ep.value for name, ep in P._entry_points().items()}
    if not installed:
        pytest.skip("no rung.potentials entry points installed (workspace not re-synced)")
    assert installed == _declared()


def test_md_types_build_from_their_entries():
    import numpy as np

    x = np.zeros((2, 3))
    assert make_potential({"type": "harmonic", "k": 0.1}, positions=x).compute(x + 1, None).energy == pytest.approx(0.3)
    assert make_potential({"type": "Muller-Brown"}).energy_unit == "hartree"
    with pytest.raises(ValueError, match="unknown potential type 'morse'; known: .*dft.*harmonic.*nnp"):
        make_potential({"type": "morse"})
