"""Per-block traces (append-only HDF5) and DMC checkpoints (atomic replace).

Trace file layout (``schema = "rung.qmc.trace"``): root attributes schema, schema_version,
package_version, backend, method; resizable datasets appended once per block, each with a ``units``
attribute: ``energy`` (nblocks,) hartree, ``<component>`` (nblocks,) hartree, ``weight`` (nblocks,),
``neff`` (nblocks,), ``tau_eff`` (nblocks,) a.u. time, ``variance`` (nblocks,) hartree^2, and
``equilibration`` (nblocks,): 1.0 for an equilibration block (left out of every average), 0.0 otherwise,
so a plot or a re-analysis of the trace drops the same blocks the run did (DMC with forces adds
``force_<atom>_<x|y|z>``, NaN in equilibration blocks). A restarted run reopens the same file and first
truncates it to the blocks its checkpoint holds (rows a killed run appended after its last checkpoint).

Checkpoint: one HDF5 file written to ``<name>.tmp`` and moved into place with ``os.replace``, so a kill
leaves either the previous or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np

from rung.core.errors import InputError
from rung.qmc import __version__

TRACE_SCHEMA = "rung.qmc.trace"
CHECKPOINT_SCHEMA = "rung.qmc.checkpoint"
SCHEMA_VERSION = 1


class CheckpointError(InputError):
    """A checkpoint that cannot be used (corrupt, or from a different run setup)."""


class Trace:
    """Append-only per-block trace. ``fields``: {name: unit}."""

    def __init__(self, path, method: str, fields: dict, backend: str, keep_blocks: int | None = None):
        self.path = Path(path)
        self.fields = dict(fields)
        with h5py.File(self.path, "a") as f:
            f.attrs.update(schema=TRACE_SCHEMA, schema_version=SCHEMA_VERSION, package_version=__version__,
                           backend=backend, method=method)
            for name, unit in self.fields.items():
                if name not in f:
                    d = f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(256,))
                    d.attrs["units"] = unit
                if keep_blocks is not None and f[name].shape[0] > keep_blocks:
                    f[name].resize((keep_blocks,))

    def append(self, values: dict) -> None:
        with h5py.File(self.path, "a") as f:
            for name in self.fields:
                d = f[name]
                d.resize((d.shape[0] + 1,))
                d[-1] = float(values[name])

    @staticmethod
    def read(path) -> dict:
        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in f}


def write_checkpoint(path, state: dict, meta: dict) -> None:
    """state: {name: array}; meta: JSON-able dict (setup, RNG state). Atomic."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(schema=CHECKPOINT_SCHEMA, schema_version=SCHEMA_VERSION, package_version=__version__,
                       meta=json.dumps(meta))
        for k, v in state.items():
            f.create_dataset(k, data=v)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_checkpoint(path, expect: dict) -> tuple[dict, dict]:
    """Read (state, meta); raise CheckpointError if corrupt or if meta['setup'] differs from ``expect``."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("schema") != CHECKPOINT_SCHEMA:
                raise CheckpointError(f"{path}: not a rung.qmc checkpoint")
            meta = json.loads(f.attrs["meta"])
            state = {k: f[k][()] for k in f}
    except (OSError, KeyError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({err}); delete it to start over") from err
    if meta.get("setup") != expect:
        diff = {k: (meta.get("setup", {}).get(k), v) for k, v in expect.items() if meta.get("setup", {}).get(k) != v}
        raise CheckpointError(f"{path}: checkpoint belongs to a different run setup (checkpoint vs now: {diff})")
    return state, meta
