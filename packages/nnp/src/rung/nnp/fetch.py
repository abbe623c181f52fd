"""Model weights: where they are cached, how to fetch them, how a model name resolves to files.

The public ANI-1x ensemble (8 networks, NeuroChem format) ships inside the ``torchani==2.2.4``
wheel on the Python package index (``torchani/resources/ani-1x_8x/``). ``fetch("ani-1x")`` downloads
that wheel with pip (``pip download --no-deps``; torch is not needed), extracts the folder into the
cache and converts it to rung's HDF5 model file ``ani-1x.h5`` beside it. When no pip is at hand the
wheel is taken straight from PyPI's JSON API and checked against the published SHA-256.

Cache folder: ``$RUNG_CACHE/nnp`` when ``RUNG_CACHE`` is set, else ``$XDG_CACHE_HOME/rung/nnp``,
else ``~/.cache/rung/nnp``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from rung.core.errors import InputError

_info = logging.getLogger(__name__).info  # the default ``log`` of the long calls: library code prints only when asked

KNOWN = {
    "ani-1x": {"package": "torchani", "version": "2.2.4", "folder": "torchani/resources/ani-1x_8x/",
               "cache_name": "ani-1x_8x"},
}


class WeightsMissing(InputError, FileNotFoundError):
    """The model's weights are not in the cache; the message says how to fetch them.

    A :class:`rung.core.errors.InputError` (CLIs: one line, exit 2) and still a ``FileNotFoundError``."""


def cache_dir() -> Path:
    """The folder holding fetched models (not created here)."""
    if os.environ.get("RUNG_CACHE"):
        return Path(os.environ["RUNG_CACHE"]) / "nnp"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rung" / "nnp"


def model_file(name: str) -> Path:
    """Path of the converted HDF5 model of a known model name (may not exist yet)."""
    _known(name)
    return cache_dir() / f"{name}.h5"


def _known(name: str) -> dict:
    if name not in KNOWN:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(KNOWN)} (or give a path)")
    return KNOWN[name]


def resolve(name: str) -> Path:
    """The model file of a known name in the cache, or :class:`WeightsMissing` with fetch instructions."""
    path = model_file(name)
    if path.exists():
        return path
    folder = cache_dir() / _known(name)["cache_name"]
    if folder.is_dir():
        return folder
    raise WeightsMissing(
        f"model {name!r} is not in the cache {cache_dir()}; fetch it once with `nnp fetch {name}` "
        f"(or `python -c \"from rung.nnp.fetch import fetch; fetch('{name}')\"`), set RUNG_CACHE to a "
        "folder that has it, or pass the path of a model file/NeuroChem folder to load_model"
    )


def _download_wheel(package: str, version: str, dest: Path, log=_info) -> Path:
    pip = [sys.executable, "-m", "pip"]
    probe = subprocess.run([*pip, "--version"], capture_output=True)
    if probe.returncode != 0 and shutil.which("pip"):
        pip = [shutil.which("pip")]
        probe = subprocess.run([*pip, "--version"], capture_output=True)
    if probe.returncode == 0:
        log(f"downloading {package}=={version} with {' '.join(pip)} download --no-deps")
        r = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:",
                            f"{package}=={version}", "-d", str(dest)], capture_output=True, text=True)
        wheels = sorted(dest.glob(f"{package}-{version}-*.whl"))
        if r.returncode == 0 and wheels:
            return wheels[0]
        log(f"pip download failed ({r.stderr.strip().splitlines()[-1:] or r.returncode}); trying PyPI directly")
    url = f"https://pypi.org/pypi/{package}/{version}/json"
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            meta = json.load(resp)
        info = next(u for u in meta["urls"] if u["filename"].endswith(".whl"))
        target = dest / info["filename"]
        log(f"downloading {info['url']}")
        with urllib.request.urlopen(info["url"], timeout=300) as resp, open(target, "wb") as fh:
            shutil.copyfileobj(resp, fh)
    except Exception as err:  # network errors of every kind end in the same advice
        raise RuntimeError(f"could not download {package}=={version} (no network or package index?): {err}") from err
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != info["digests"]["sha256"]:
        raise RuntimeError(f"{target.name}: SHA-256 mismatch ({digest} != {info['digests']['sha256']})")
    return target


def fetch(name: str = "ani-1x", *, force: bool = False, log=_info) -> Path:
    """Download, extract and convert a known model into the cache; return the HDF5 model file."""
    from rung.nnp.model import save_model
    from rung.nnp.neurochem import read_ensemble

    spec = _known(name)
    out = model_file(name)
    if out.exists() and not force:
        log(f"{name}: already in {out}")
        return out
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    folder = cache / spec["cache_name"]
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tmp = Path(tmp)
        wheel = _download_wheel(spec["package"], spec["version"], tmp, log)
        with zipfile.ZipFile(wheel) as zf:
            members = [m for m in zf.namelist() if m.startswith(spec["folder"]) and not m.endswith("/")]
            if not members:
                raise RuntimeError(f"{wheel.name} holds no {spec['folder']}")
            zf.extractall(tmp / "x", members)
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(tmp / "x" / spec["folder"]), folder)
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    model = read_ensemble(folder, name=name)
    prov = dict(model.provenance, wheel=f"{spec['package']}=={spec['version']}", wheel_sha256=sha,
                folder_in_wheel=spec["folder"])
    from dataclasses import replace

    save_model(replace(model, provenance=prov), out)
    log(f"{name}: {len(model.members)} networks, species {','.join(model.species)} -> {out}")
    return out
