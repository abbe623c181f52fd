"""Array backend: NumPy on the CPU, CuPy on an NVIDIA GPU.

Array code is written once against ``xp = get_array_module(*arrays)``; results stay on the device the
inputs were on, and mixing host and device arrays raises. CuPy is imported lazily and only when asked
for, so nothing here needs a GPU. The choice of device is explicit: ``select("auto"|"cpu"|"gpu")``,
where ``"auto"`` honours the environment variable ``RUNG_DEVICE`` (``cpu`` or ``gpu``) and otherwise
takes the GPU only if CuPy and a device are present. Asking for the GPU when there is none raises
:class:`BackendUnavailable`; nothing falls back silently.
"""

from __future__ import annotations

import os
import types

import numpy as np

DEVICES = ("auto", "cpu", "gpu")


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
