"""Emulated kills for the restart tests, without test hooks in the public signatures.

Inside ``kill_after_steps(n)`` a :func:`rung.md.simulation.run` stops after ``n`` steps of its invocation;
inside ``kill_after_replicas(n)`` a :func:`rung.md.adaptive.run_adaptive` stops before its (n+1)-th replica
run. Both raise :class:`Killed` at that point through the code's own cleanup (files closed, no final
checkpoint), which is what a killed process leaves behind its last flush; the block ends there. A block
whose call finishes before the kill fails the test.
"""

from contextlib import contextmanager

import pytest

from rung.md import adaptive, simulation


class Killed(Exception):
    """Stands for the SIGKILL."""


@contextmanager
def _killed(what):
    try:
        yield
    except Killed:
        return
    raise AssertionError(f"the call finished before the kill ({what})")


@contextmanager
def kill_after_steps(n):
    """``run`` raises Killed after ``n`` steps of its invocation (after that step's outputs and checkpoint)."""

    class Bar(simulation.Progress):
        def update(self, done, step):
            super().update(done, step)
            if done >= n:
                raise Killed(step)

    with pytest.MonkeyPatch.context() as mp, _killed(f"{n} steps"):
        mp.setattr(simulation, "Progress", Bar)
        yield


@contextmanager
def kill_after_replicas(n):
    """``run_adaptive`` raises Killed when it is about to run a replica after ``n`` replica runs of this
    invocation (replicas already finished on disk are skipped, not run, and do not count)."""
    original = adaptive._run_replica
    ran = 0

    def replica(*args, **kwargs):
        nonlocal ran
        if ran >= n:
            raise Killed(ran)
        did_run = original(*args, **kwargs)
        ran += did_run
        return did_run

    with pytest.MonkeyPatch.context() as mp, _killed(f"{n} replica runs"):
        mp.setattr(adaptive, "_run_replica", replica)
        yield
