"""rung.core.testing.drop_stale_numba_cache: the cache goes only when a source is newer than it."""

import os

from rung.core.testing import drop_stale_numba_cache


def test_stale_cache_dropped_fresh_cache_kept(tmp_path):
    (tmp_path / "__pycache__").mkdir()
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("")
    b.write_text("")
    index, data = tmp_path / "__pycache__" / "a.k-1.py311.nbi", tmp_path / "__pycache__" / "a.k-1.py311.1.nbc"
    index.write_text("")
    data.write_text("")
    for f in (a, b):
        os.utime(f, (100, 100))
    os.utime(index, (200, 200))
    assert not drop_stale_numba_cache(tmp_path) and index.exists() and data.exists()  # cache newer: kept
    os.utime(b, (300, 300))  # a helper module edited after the cache was written
    assert drop_stale_numba_cache(tmp_path) and not index.exists() and not data.exists()
    assert not drop_stale_numba_cache(tmp_path)  # no cache: nothing to do


def test_stale_cache_dropped_for_a_source_outside_the_package(tmp_path):
    """``also``: a file beside the package (a shared kernel body) edited after the cache counts too."""
    pkg = tmp_path / "cpu"
    (pkg / "__pycache__").mkdir(parents=True)
    a, body = pkg / "a.py", tmp_path / "body.py"
    a.write_text("")
    body.write_text("")
    index = pkg / "__pycache__" / "a.k-1.py311.nbi"
    index.write_text("")
    os.utime(a, (100, 100))
    os.utime(body, (300, 300))
    os.utime(index, (200, 200))
    assert not drop_stale_numba_cache(pkg) and index.exists()  # the package alone: fresh
    assert drop_stale_numba_cache(pkg, also=[body]) and not index.exists()
