"""rung.core's potential registry: register_potential / make_potential, entry-point discovery, errors."""

import numpy as np
import pytest

from rung.core import potential as P
from rung.core.errors import InputError
from rung.core.potential import Harmonic, check_options, make_potential, potential_types, register_potential


@pytest.fixture
def registry(monkeypatch):
    """An empty registry and no installed entry points, restored afterwards."""
    monkeypatch.setattr(P, "_REGISTRY", {})
    monkeypatch.setattr(P, "_entry_points", lambda: {})
    return P._REGISTRY


class _EntryPoint:  # the part of importlib.metadata.EntryPoint the registry reads
    def __init__(self, name, value):
        self.name, self.value = name, value


def _harmonic(options, *, positions=None, **context):
    check_options("well", options, ("k",), required=("k",))
    return Harmonic(options["k"], positions)


def test_a_registered_factory_gets_the_options_and_the_context(registry):
    register_potential("Well", _harmonic)
    x0 = np.ones((2, 3))
    pot = make_potential({"type": "WELL", "k": 2.0}, positions=x0, masses=np.ones(2))
    r = pot.compute(x0 + 0.5, None)
    assert float(r.energy) == pytest.approx(0.5 * 2.0 * 6 * 0.25, rel=1e-15)
    assert potential_types() == ("well",)


def test_unknown_or_missing_type_is_one_input_error_listing_the_known_types(registry):
    register_potential("well", _harmonic)
    register_potential("other", _harmonic)
    with pytest.raises(InputError, match=r"unknown potential type 'morse'; known: other, well$"):
        make_potential({"type": "morse"})
    with pytest.raises(InputError, match=r"needs a 'type', one of: other, well"):
        make_potential({"k": 1.0})
    with pytest.raises(InputError, match="needs a 'type'"):
        make_potential("well")


def test_options_are_checked(registry):
    register_potential("well", _harmonic)
    with pytest.raises(InputError, match=r"unknown option\(s\) \['kk'\] for potential type 'well'"):
        make_potential({"type": "well", "k": 1.0, "kk": 2.0})
    with pytest.raises(InputError, match="'well' needs k"):
        make_potential({"type": "well"})


def test_entry_points_are_found_and_imported_only_when_asked_for(registry, monkeypatch):
    import sys

    eps = {"well": _EntryPoint("well", f"{__name__}:_harmonic"),
           "absent": _EntryPoint("absent", "rung.nothere.potential:make")}
    monkeypatch.setattr(P, "_entry_points", lambda: eps)
    assert potential_types() == ("absent", "well")
    assert isinstance(make_potential({"type": "well", "k": 1.0}), Harmonic)
    assert "rung.nothere" not in sys.modules
    with pytest.raises(InputError, match=r"potential type 'absent' \(needs the rung.nothere engine\) "
                                         r"'rung.nothere.potential:make'"):
        make_potential({"type": "absent"})


@pytest.mark.parametrize("spec,match", [
    ("numpy.linalg", "must be given as 'module:attr', got 'numpy.linalg'"),
    ("numpy:", "must be given as 'module:attr', got 'numpy:'"),
    ("rung.nothere:X", "cannot import thing 'rung.nothere:X': No module named 'rung.nothere'"),
    ("numpy.linalg:nothere", "cannot import thing 'numpy.linalg:nothere': .*nothere"),
])
def test_load_attr_names_the_bad_spec(spec, match):
    with pytest.raises(InputError, match=match):
        P.load_attr(spec, "thing")


def test_load_attr_returns_the_named_object():
    import numpy.linalg

    assert P.load_attr("numpy.linalg:norm") is numpy.linalg.norm


def test_the_registry_takes_precedence_and_refuses_a_second_factory(registry, monkeypatch):
    monkeypatch.setattr(P, "_entry_points", lambda: {"well": _EntryPoint("well", "rung.nothere:x")})
    register_potential("well", _harmonic)
    register_potential("well", _harmonic)  # the same again: fine
    assert isinstance(make_potential({"type": "well", "k": 1.0}), Harmonic)
    with pytest.raises(ValueError, match="already registered"):
        register_potential("well", lambda options, **context: None)
    register_potential("lazy", f"{__name__}:_harmonic")  # "module:attr", imported when asked for
    assert isinstance(make_potential({"type": "lazy", "k": 1.0}), Harmonic)


def test_the_installed_entry_point_group_is_read():
    """_entry_points reads importlib.metadata's group (whatever is installed: a dict of EntryPoints)."""
    from importlib.metadata import entry_points

    assert set(P._entry_points()) == {ep.name.lower() for ep in entry_points(group=P.ENTRY_POINT_GROUP)}
