import numpy as np
import pytest

from rung.core import backend


def test_cpu_and_arrays():
    assert backend.select("cpu") is np
    assert backend.get_array_module(np.ones(2), None, 3.0) is np
    assert backend.to_host([1, 2]).tolist() == [1, 2]


def test_bad_device_name():
    with pytest.raises(ValueError, match="device must be one of"):
        backend.select("tpu")


@pytest.mark.skipif(backend.gpu_available(), reason="checks the no-GPU error")
def test_gpu_without_device_is_a_clear_error(monkeypatch):
    with pytest.raises(backend.BackendUnavailable, match="CuPy"):
        backend.select("gpu")
    monkeypatch.setenv("RUNG_DEVICE", "gpu")
    with pytest.raises(backend.BackendUnavailable):
        backend.select("auto")
    monkeypatch.setenv("RUNG_DEVICE", "cpu")
    assert backend.select("auto") is np
    monkeypatch.setenv("RUNG_DEVICE", "banana")
    with pytest.raises(ValueError, match="RUNG_DEVICE"):
        backend.select("auto")


@pytest.mark.gpu
def test_gpu_round_trip():
    if not backend.gpu_available():
        pytest.skip("no CUDA device")
    cp = backend.select("gpu")
    a = backend.to_device(np.arange(3.0), cp)
    assert backend.get_array_module(a) is cp
    with pytest.raises(TypeError, match="different devices"):
        backend.get_array_module(a, np.ones(3))
    assert backend.to_host(a).tolist() == [0.0, 1.0, 2.0]


def test_resolve_one_vocabulary(monkeypatch):
    monkeypatch.delenv("RUNG_DEVICE", raising=False)
    monkeypatch.setattr(backend, "_cupy", lambda: None)  # a machine without a GPU
    assert backend.resolve("auto") == "numba"
    assert backend.resolve("auto", supported=("numpy",)) == "numpy"
    assert backend.resolve("numpy") == "numpy"
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.resolve("cuda")
    with pytest.raises(ValueError, match="not available here"):
        backend.resolve("numpy", supported=("numba", "cupy"))
    with pytest.raises(backend.BackendUnavailable):
        backend.resolve("cupy")
    monkeypatch.setenv("RUNG_DEVICE", "gpu")
    with pytest.raises(backend.BackendUnavailable):  # asked for through the environment: no silent CPU run
        backend.resolve("auto")
    fake_cupy = object()
    monkeypatch.setattr(backend, "_cupy", lambda: fake_cupy)  # a machine with one
    assert backend.resolve("auto") == "cupy"
    assert backend.resolve("auto", supported=("numpy", "numba")) == "numba"  # a path without GPU kernels
    monkeypatch.setenv("RUNG_DEVICE", "cpu")
    assert backend.resolve("auto") == "numba"
