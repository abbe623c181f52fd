"""Array backend: NumPy on the CPU, CuPy on an NVIDIA GPU.

Array code is written once against ``xp = get_array_module(*arrays)``; results stay on the device the
inputs were on, and mixing host and device arrays raises. CuPy is imported lazily and only when asked
for, so nothing here needs a GPU. The choice of device is explicit: ``select("auto"|"cpu"|"gpu")``,
where ``"auto"`` honours the environment variable ``RUNG_DEVICE`` (``cpu`` or ``gpu``) and otherwise
takes the GPU only if CuPy and a device are present. Asking for the GPU when there is none raises
:class:`BackendUnavailable`; nothing falls back silently.

Kernels are named by one vocabulary in every package (:data:`BACKENDS`): ``"numpy"`` (the reference
kernels), ``"numba"`` (the CPU kernels), ``"cupy"`` (CuPy arrays and numba.cuda kernels on the GPU);
``"auto"`` is resolved by :func:`resolve`, the one place that maps a request (and ``RUNG_DEVICE``) to the
kernels that run. Outputs record the resolved name.
"""

from __future__ import annotations

import os
import types

import numpy as np

DEVICES = ("auto", "cpu", "gpu")
BACKENDS = ("auto", "numpy", "numba", "cupy")


class BackendUnavailable(RuntimeError):
    """The requested backend (CuPy, a CUDA device) is not available on this machine."""


def _cupy():
    """Import CuPy, or return None when it (or a usable device) is missing."""
    try:
        import cupy
    except Exception:  # ImportError, or CUDA libraries missing at import
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:
        return None
    return cupy


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    return _cupy() is not None


def select(device: str = "auto") -> types.ModuleType:
    """Return the array module (``numpy`` or ``cupy``) for a device request.

    Parameters
    ----------
    device : {"auto", "cpu", "gpu"}
        ``"auto"`` reads ``RUNG_DEVICE`` when set, else uses the GPU if one is usable.

    Raises
    ------
    BackendUnavailable
        ``"gpu"`` was requested (directly or through ``RUNG_DEVICE``) and CuPy or a device is missing.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "auto":
        env = os.environ.get("RUNG_DEVICE", "").strip().lower()
        if env:
            if env not in ("cpu", "gpu"):
                raise ValueError(f"RUNG_DEVICE must be 'cpu' or 'gpu', got {env!r}")
            return select(env)
        return _cupy() or np
    if device == "cpu":
        return np
    cp = _cupy()
    if cp is None:
        raise BackendUnavailable(
            "the GPU backend was requested but CuPy is not installed or no CUDA device is visible; "
            "install the [cuda12] extra on a machine with an NVIDIA GPU, or use device='cpu'"
        )
    return cp


def resolve(backend: str = "auto", supported=("numpy", "numba", "cupy")) -> str:
    """The kernels that will run for a ``backend`` request: one of ``supported``.

    Parameters
    ----------
    backend : {"auto", "numpy", "numba", "cupy"}
        ``"auto"``: ``"cupy"`` when :func:`select` picks the GPU (``RUNG_DEVICE``, else a usable device)
        and ``"cupy"`` is supported, else ``"numba"`` (``"numpy"`` where there are no numba kernels).
    supported : the backends of the calling code path

    Raises
    ------
    ValueError
        an unknown name, or one the code path does not have (the message lists both).
    BackendUnavailable
        ``"cupy"`` (directly, or ``"auto"`` with ``RUNG_DEVICE=gpu``) without CuPy or a device.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "auto" and backend not in supported:
        raise ValueError(f"backend {backend!r} is not available here; choose one of {('auto', *supported)}")
    if backend == "auto":
        gpu = select("auto") is not np  # honours RUNG_DEVICE; raises for RUNG_DEVICE=gpu without a device
        if gpu and "cupy" in supported:
            return "cupy"
        return "numba" if "numba" in supported else supported[0]
    if backend == "cupy":
        select("gpu")
    return backend


def _is_cupy_array(a) -> bool:
    return type(a).__module__.startswith("cupy")


def get_array_module(*arrays) -> types.ModuleType:
    """Return ``cupy`` if the array inputs live on the GPU, else ``numpy``.

    Non-array arguments (None, Python scalars) are ignored. Mixing NumPy and CuPy arrays raises
    ``TypeError``: a transfer must be explicit (:func:`to_device`, :func:`to_host`).
    """
    kinds = {_is_cupy_array(a) for a in arrays if hasattr(a, "shape")}
    if kinds == {True, False}:
        raise TypeError("arrays live on different devices (NumPy and CuPy); move them explicitly")
    if kinds == {True}:
        import cupy

        return cupy
    return np


def to_device(a, xp: types.ModuleType | None = None):
    """Move an array to the device of module ``xp`` (default: the GPU, via :func:`select`)."""
    xp = xp or select("gpu")
    if xp is np:
        return to_host(a)
    return xp.asarray(a)


def to_host(a) -> np.ndarray:
    """Return a NumPy array (copying from the GPU when needed)."""
    if _is_cupy_array(a):
        return a.get()
    return np.asarray(a)


def synchronize(xp: types.ModuleType) -> None:
    """Wait for queued device work (no-op for NumPy); use it around GPU timings."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()
