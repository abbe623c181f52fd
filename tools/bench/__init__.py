"""The rung kernel benchmark suite.

Each package registers its benchmarks as a module ``tools/bench/suites/<package>.py`` with a function
``cases(quick: bool) -> Iterable[Case]``. ``python -m tools.bench`` runs every registered case (on
the GPU too when a case says so and a device is present), times ours and the peer (PySCF, PyQMC,
TorchANI, scipy, ...) side by side in the same process, and writes ``bench.json`` and ``bench.md``.

Timing: ``warmup`` untimed calls, then ``repeats`` timed calls; the median is reported. GPU cases pass
``sync`` (e.g. ``rung.core.backend.synchronize``), called before the clock stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class Case:
    """One benchmark: our callable and, when installed, the peer's, on the same input.

    name : "<package>.<kernel>", size : human-readable problem size, flop : floating-point operations
    per call (gives GFLOP/s), work / work_unit : throughput per call (e.g. 8000, "atoms").
    """

    name: str
    size: str
    ours: Callable[[], object]
    peer: Callable[[], object] | None = None
    peer_name: str = ""
    flop: float | None = None
    work: float | None = None
    work_unit: str = ""
    device: str = "cpu"
    repeats: int = 5
    warmup: int = 1
    sync: Callable[[], None] | None = None
    note: str = ""


__all__ = ["Case"]
