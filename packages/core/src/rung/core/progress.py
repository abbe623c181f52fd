"""Progress of long jobs, one way for every package: count, rate and ETA.

On a terminal a tqdm bar (rate, ETA, a short status after it); otherwise, or without tqdm, one plain
line every ``every`` of the work (10 % by default) and at the end, written to ``stream`` when one is
given and to ``logging`` (logger ``log``, level INFO) when not, so library code prints nothing unless a
caller asks. Under MPI (``rank``, ``size``) only rank 0 draws a bar; plain lines of several ranks say
which rank they come from. A resumed job counts only the work left to this process (rate and ETA are
this process's).

    with Progress(len(tasks), "dft-gpu run", unit="conf") as bar:
        for k, task in enumerate(tasks, 1):
            ...
            bar.update(k, f"{name}[{i}] E = {e:.6f} Ha")
"""

from __future__ import annotations

import logging
import sys
import time


def format_seconds(s: float) -> str:
    """``73`` -> ``"1:13"``, ``4000`` -> ``"1:06:40"`` (``"?"`` when unknown)."""
    if not s == s or s in (float("inf"), float("-inf")) or s < 0:
        return "?"
    s = int(round(s))
    h, m = divmod(s, 3600)
    m, sec = divmod(m, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Progress of ``total`` units of work (module docstring).

    Parameters
    ----------
    total : int, the units of work (steps, conformations, blocks)
    desc : str, what is running (first word of each line)
    unit : str, the unit's name in the rate
    enabled : bool, False: nothing at all
    stream : text stream for the plain lines (default: ``logging``); a terminal stream gets the bar
    log : logging.Logger or its name, for the plain lines without a stream
    rank, size : int, this process's MPI rank and the number of ranks
    every : float, fraction of ``total`` between plain lines
    """

    def __init__(self, total: int, desc: str, *, unit: str = "it", enabled: bool = True, stream=None,
                 log: logging.Logger | str = "rung", rank: int = 0, size: int = 1, every: float = 0.1):
        self.total, self.desc, self.unit = int(total), desc, unit
        self.enabled = bool(enabled) and self.total > 0
        self.stream, self.rank, self.size = stream, int(rank), int(size)
        self.log = logging.getLogger(log) if isinstance(log, str) else log
        self.every = float(every)
        self.t0 = time.perf_counter()
        self.done = 0
        self._next = self.every
        self.bar = None
        tty = self.stream if self.stream is not None else sys.stderr
        if self.enabled and self.rank == 0 and hasattr(tty, "isatty") and tty.isatty():
            try:
                from tqdm import tqdm
            except ImportError:  # plain lines then
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.total, desc=desc, unit=unit, file=tty,
                                dynamic_ncols=True)

    def rate(self) -> float:
        """Units per second so far."""
        el = time.perf_counter() - self.t0
        return self.done / el if el > 0 else 0.0

    def eta(self) -> float:
        """Seconds left at the current rate (inf before any work)."""
        r = self.rate()
        return (self.total - self.done) / r if r > 0 else float("inf")

    def line(self, info: str = "") -> str:
        """The plain line for the present state."""
        who = f"[rank {self.rank}] " if self.size > 1 else ""
        text = (f"{who}{self.desc} {self.done}/{self.total} ({100 * self.done / self.total:.0f}%)  "
                f"{self.rate():.3g} {self.unit}/s  elapsed {format_seconds(time.perf_counter() - self.t0)}  "
                f"ETA {format_seconds(self.eta())}")
        return f"{text}  {info}" if info else text

    def update(self, done: int, info: str = "") -> None:
        """``done`` units finished in all (absolute, not an increment); ``info``: a short status."""
        if not self.enabled:
            return
        self.done = min(int(done), self.total)
        if self.bar is not None:
            if info:
                self.bar.set_postfix_str(info, refresh=False)
            self.bar.update(self.done - self.bar.n)
            return
        if self.done / self.total + 1e-12 >= self._next or self.done == self.total:
            self._next = (int(self.done / self.total / self.every + 1e-9) + 1) * self.every
            if self.stream is not None:
                print(self.line(info), file=self.stream, flush=True)
            else:
                self.log.info(self.line(info))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
