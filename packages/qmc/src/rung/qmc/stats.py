"""Error bars of serially correlated Monte Carlo series by reblocking.

Flyvbjerg-Petersen blocking: average neighbouring pairs repeatedly; the standard error of the mean
computed from the blocked series rises and plateaus once blocks are longer than the correlation time.
The block level is picked by the criterion of Lee, Drummond, Needs (Phys. Rev. E 83, 066706 (2011)),
the smallest block size B with ``B^3 > 2 n (sigma_B / sigma_1)^4`` (n data, sigma_B the naive error
at block size B).
Reference: H. Flyvbjerg, H. G. Petersen, J. Chem. Phys. 91, 461 (1989).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reblocked:
    """mean, error (standard error of the mean), block_size used, and the table of (block size, error)."""

    mean: float
    error: float
    block_size: int
    table: tuple


def reblock(x) -> Reblocked:
    """Reblocking analysis of a 1-D series x (n,) float64."""
    x = np.asarray(x, dtype=np.float64).ravel()
    n = x.size
    if n < 2:
        raise ValueError(f"need at least 2 samples for an error bar, got {n}")
    mean = float(x.mean())
    table = []
    y, b = x, 1
    while y.size >= 2:
        table.append((b, float(y.std(ddof=1) / np.sqrt(y.size))))
        m = y.size // 2
        y = 0.5 * (y[: 2 * m : 2] + y[1 : 2 * m : 2])
        b *= 2
    s1 = table[0][1]
    chosen = table[-1]
    for bs, err in table:
        if s1 == 0.0 or bs**3 > 2 * n * (err / s1) ** 4:
            chosen = (bs, err)
            break
    # need a few blocks for the error of the error to be sane; never report less than the plain error
    return Reblocked(mean, max(chosen[1], s1), chosen[0], tuple(table))


def format_value(mean: float, error: float) -> str:
    """'-17.1654(12)' style: error in the last two digits."""
    if not np.isfinite(error) or error <= 0:
        return f"{mean:.6f}"
    digits = max(0, int(-np.floor(np.log10(error))) + 1)
    return f"{mean:.{digits}f}({int(round(error * 10**digits))})"
