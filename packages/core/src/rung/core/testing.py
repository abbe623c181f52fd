"""Conformance kits that every new potential, kernel or backend passes (used from the test suites).

- :func:`check_forces_fd`: forces (and optionally the virial) against central finite differences of
  the energy.
- :func:`check_backend_agreement`: the same function under several backends gives the same numbers.
- :func:`drop_stale_numba_cache`: for a test session, a kernel package's numba cache older than its sources.
"""

from __future__ import annotations

import numpy as np


def check_forces_fd(potential, positions, numbers, cell=None, *, h: float = 1e-4, atol: float = 1e-6,
                    rtol: float = 1e-5, n_checks: int | None = None, virial: bool = False, seed: int = 0):
    """Assert ``forces == -dE/dx`` by central differences; return the largest absolute deviation.

    Parameters
    ----------
    potential : rung.core.potential.Potential
    positions : (n_atoms, 3) float64, the potential's length unit
    numbers : (n_atoms,) int
    cell : (3, 3) or None
    h : finite-difference step, length unit
    n_checks : check only this many randomly chosen coordinates (all when None)
    virial : also check the virial against strain derivatives ``W = -dE/d(eps)``
    """
    x = np.array(positions, dtype=np.float64)
    res = potential.compute(x, numbers, cell, forces=True, virial=virial)
    f = np.asarray(res.forces, dtype=np.float64)
    if f.shape != x.shape:
        raise AssertionError(f"forces have shape {f.shape}, positions {x.shape}")
    coords = [(a, k) for a in range(x.shape[0]) for k in range(3)]
    if n_checks is not None and n_checks < len(coords):
        rng = np.random.default_rng(seed)
        coords = [coords[c] for c in rng.choice(len(coords), n_checks, replace=False)]

    def energy(xx, cc=cell):
        return float(np.asarray(potential.compute(xx, numbers, cc, forces=False).energy))

    worst = 0.0
    for a, k in coords:
        xp, xm = x.copy(), x.copy()
        xp[a, k] += h
        xm[a, k] -= h
        fd = -(energy(xp) - energy(xm)) / (2 * h)
        err = abs(fd - f[a, k])
        worst = max(worst, err)
        if err > atol + rtol * abs(fd):
            raise AssertionError(f"force on atom {a}, axis {k}: analytic {f[a, k]:.10g}, finite difference {fd:.10g}")
    if virial:
        w = np.asarray(res.virial, dtype=np.float64)
        c = None if cell is None else np.asarray(cell, dtype=np.float64)
        for p in range(3):
            for q in range(3):
                eps = np.zeros((3, 3))
                eps[p, q] = h
                ep = energy(x @ (np.eye(3) + eps).T, None if c is None else c @ (np.eye(3) + eps).T)
                em = energy(x @ (np.eye(3) - eps).T, None if c is None else c @ (np.eye(3) - eps).T)
                fd = -(ep - em) / (2 * h)
                err = abs(fd - w[p, q])
                worst = max(worst, err)
                if err > atol + rtol * abs(fd):
                    raise AssertionError(f"virial[{p},{q}]: analytic {w[p, q]:.10g}, finite difference {fd:.10g}")
    return worst


def check_backend_agreement(fn, *args, backends=("numpy", "numba"), rtol: float = 1e-10, atol: float = 1e-12,
                            **kwargs):
    """Call ``fn(*args, backend=b, **kwargs)`` for each backend and assert the outputs agree.

    Outputs may be arrays, scalars, or tuples/lists/dicts/dataclasses of them; CuPy outputs are moved
    to the host. Returns the outputs, keyed by backend.
    """
    from dataclasses import asdict, is_dataclass

    from rung.core.backend import to_host

    def flat(o, prefix=""):
        if is_dataclass(o):
            o = asdict(o)
        if isinstance(o, dict):
            for k in sorted(o):
                yield from flat(o[k], f"{prefix}.{k}")
        elif isinstance(o, (tuple, list)):
            for k, v in enumerate(o):
                yield from flat(v, f"{prefix}[{k}]")
        elif o is not None and not isinstance(o, str):
            yield prefix, to_host(o)

    outs = {b: fn(*args, backend=b, **kwargs) for b in backends}
    ref_name = backends[0]
    ref = dict(flat(outs[ref_name]))
    for b in backends[1:]:
        got = dict(flat(outs[b]))
        if got.keys() != ref.keys():
            raise AssertionError(f"backend {b} returned fields {sorted(got)}, {ref_name} returned {sorted(ref)}")
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=rtol, atol=atol,
                                       err_msg=f"backend {b} vs {ref_name}, output {k or 'value'}")
    return outs


def check_bad_input(result, *words) -> None:
    """A CLI refused bad input as the house does: exit code 2, one line on stderr starting ``Error: ``
    and containing every one of ``words`` (the option or file named), no traceback.
    ``result``: a click ``CliRunner`` result (stderr kept apart)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in result.output


def drop_stale_numba_cache(package_dir, also=()) -> bool:
    """Delete the numba cache (``__pycache__/*.nbi``, ``*.nbc``) of a kernel package when one of its
    sources (or of ``also``) is newer than the oldest cache index; return whether it did.

    numba checks only the file of the kernel it loads, so a kernel calling a helper of another module of
    the same package keeps the helper's old machine code after an edit (a test session would run it).
    Called from the test suites' ``conftest.py`` of packages whose kernels span several modules.

    Parameters
    ----------
    package_dir : path of the kernel package (a folder of ``.py`` modules)
    also : paths of ``.py`` files outside the package whose functions its kernels compile in (e.g. a
        plain-Python body shared with a GPU kernel module)
    """
    from pathlib import Path

    src = Path(package_dir)
    index = list((src / "__pycache__").glob("*.nbi"))
    sources = [*src.glob("*.py"), *map(Path, also)]
    if not index or max(f.stat().st_mtime for f in sources) <= min(f.stat().st_mtime for f in index):
        return False
    for f in (src / "__pycache__").glob("*.nb[ic]"):
        f.unlink(missing_ok=True)
    return True
