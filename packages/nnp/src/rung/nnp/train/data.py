"""Labelled conformations for training: read from rung datasets, split, weighted.

From each dataset (:mod:`rung.core.dataset`) every molecule's conformations (Bohr, converted to
Angstrom) and the stage's properties: an energy (n_conf,) and a gradient (n_conf, n_atoms, 3), or
forces, with 1-sigma error bars ``<property>_error`` shaped (n_conf,) or like the property, all
converted by their ``units`` attributes (rung.core.units) to the model's units: Hartree and
Hartree/Angstrom (force = -gradient). A label that is NaN or infinite, or whose rung's ``<rung>_status``
is not "done", is missing; a conformation with no label left is skipped. Both are counted. A kept
conformation with atoms closer than 0.1 Angstrom is refused (TrainInputError naming it).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rung.core import units as U
from rung.nnp.train.config import Stage, TrainInputError
from rung.nnp.train.readout import Labels

_info = logging.getLogger(__name__).info  # the default ``log`` of the long calls: library code prints only when asked

MIN_DISTANCE_ANGSTROM = 0.1  # rung.nnp.ani.ANIPotential's default


@dataclass(frozen=True)
class Frames:
    """Conformations with labels, atoms concatenated conformation by conformation.

    names : tuple of "<file>:<molecule>"; mol : (n_conf,) int, index into names; natoms : (n_conf,) int
    x : (n_atoms, 3) float64, Angstrom; numbers : (n_atoms,) int; batch : (n_atoms,) int conformation index
    energy, energy_error : (n_conf,) float64, Hartree (NaN: no label / no error bar)
    forces, forces_error : (n_atoms, 3) float64, Hartree/Angstrom (NaN: no label / no error bar)
    """

    names: tuple
    mol: np.ndarray
    natoms: np.ndarray
    x: np.ndarray
    numbers: np.ndarray
    batch: np.ndarray
    energy: np.ndarray
    energy_error: np.ndarray
    forces: np.ndarray
    forces_error: np.ndarray

    @property
    def n_conf(self) -> int:
        return self.mol.size

    def subset(self, conf) -> "Frames":
        """The conformations ``conf`` (sorted int indices), renumbered."""
        conf = np.asarray(conf, np.int64)
        start = np.concatenate([[0], np.cumsum(self.natoms)])
        n = self.natoms[conf]
        atoms = np.repeat(start[conf], n) + np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        return Frames(self.names, self.mol[conf], self.natoms[conf], self.x[atoms], self.numbers[atoms],
                      np.repeat(np.arange(conf.size), self.natoms[conf]), self.energy[conf], self.energy_error[conf],
                      self.forces[atoms], self.forces_error[atoms])

    def labels(self, stage: Stage) -> Labels:
        """Refit rows with weights alpha / sigma^2 (sigma: error bar floored, or the stage's default)."""
        force_unit = U.ANGSTROM_TO_BOHR  # Hartree/Bohr -> Hartree/Angstrom
        sE = np.where(np.isfinite(self.energy_error), np.maximum(self.energy_error, stage.energy_error_floor),
                      stage.energy_sigma)
        sF = np.where(np.isfinite(self.forces_error),
                      np.maximum(self.forces_error, stage.gradient_error_floor * force_unit),
                      stage.gradient_sigma * force_unit)
        if stage.weights == "uniform":
            sE = np.full_like(sE, stage.energy_sigma)
            sF = np.full_like(sF, stage.gradient_sigma * force_unit)
        wE = stage.energy_weight / sE**2
        if stage.per_atom:
            wE = wE / self.natoms**2
        hasE, hasF = np.isfinite(self.energy), np.isfinite(self.forces)
        return Labels(self.x, self.numbers, self.batch, np.where(hasE, self.energy, 0.0), np.where(hasE, wE, 0.0),
                      np.where(hasF, self.forces, 0.0), np.where(hasF, stage.forces_weight / sF**2, 0.0))


def _read(g, name, path, mol, shape):
    """A property of one molecule group in atomic units, or None when the group lacks it."""
    from rung.core.dataset import attr_text

    if not name or name not in g:
        return None
    d = g[name]
    v = np.asarray(d[()], np.float64)
    if v.shape != shape[:v.ndim] or v.ndim not in (1, len(shape)):
        raise TrainInputError(f"dataset {path}: {mol}/{name} has shape {v.shape}, expected {shape}")
    try:
        v = U.to_atomic(v, attr_text(d.attrs.get("units", "hartree")))
    except ValueError as err:
        raise TrainInputError(f"dataset {path}: {mol}/{name}: {err}") from err
    return v.reshape(v.shape + (1,) * (len(shape) - v.ndim))


def _done(g, prop):
    key = prop.split("_", 1)[0] + "_status"
    if not prop or key not in g:
        return None
    from rung.core.dataset import DONE

    return np.asarray(g[key][()]) == DONE


def load_frames(stage: Stage, model_numbers, log=_info) -> tuple[Frames, list[dict]]:
    """Read the stage's datasets; return the frames and one count record per dataset.

    Raises TrainInputError naming the file for: an unreadable dataset, a property no molecule has, an
    element the model lacks, or no finite label at all.
    """
    from rung.core.dataset import DatasetError, check_geometry, read_hdf5

    import h5py
    from ase.data import chemical_symbols

    grad = stage.gradient or stage.forces
    sign = 1.0 if stage.forces else -1.0  # forces = -gradient
    blocks, report = [], []
    for path in stage.datasets:
        try:
            mols = read_hdf5(path)
        except DatasetError as err:
            raise TrainInputError(f"dataset {err}") from err
        errE = stage.energy_error if stage.energy_error is not None else (stage.energy + "_error" if stage.energy else "")
        errG = stage.gradient_error if stage.gradient_error is not None else (grad + "_error" if grad else "")
        count = dict(dataset=str(path), conformations=0, used=0, skipped=0, no_energy=0, no_gradient=0)
        seen = {k: False for k in (stage.energy, grad, errE, errG) if k}
        with h5py.File(path, "r") as f:
            for m in mols:
                g = f[m.name]
                bad = sorted(set(m.atomic_numbers.tolist()) - set(np.asarray(model_numbers).tolist()))
                if bad:
                    raise TrainInputError(f"dataset {path}: molecule {m.name!r} has element(s) "
                                          f"{', '.join(chemical_symbols[z] for z in bad)} that the model does not cover")
                nc, na = m.n_conf, m.n_atoms
                for k in seen:
                    seen[k] |= k in g
                e = _read(g, stage.energy, path, m.name, (nc,))
                e = np.full(nc, np.nan) if e is None else e
                se = _read(g, errE, path, m.name, (nc,))
                gr = _read(g, grad, path, m.name, (nc, na, 3))
                gr = np.full((nc, na, 3), np.nan) if gr is None else np.broadcast_to(gr, (nc, na, 3))
                sg = _read(g, errG, path, m.name, (nc, na, 3))
                ok = _done(g, stage.energy)
                if ok is not None:
                    e = np.where(ok, e, np.nan)
                ok = _done(g, grad)
                if ok is not None:
                    gr = np.where(ok[:, None, None], gr, np.nan)
                hasE = np.isfinite(e)
                hasG = np.all(np.isfinite(gr), axis=(1, 2))
                keep = hasE | hasG
                count["conformations"] += nc
                count["used"] += int(keep.sum())
                count["skipped"] += int((~keep).sum())
                count["no_energy"] += int((~hasE).sum()) if stage.energy else 0
                count["no_gradient"] += int((~hasG).sum()) if grad else 0
                if not keep.any():
                    continue
                k = np.nonzero(keep)[0]
                for c in k:  # the engine refuses atoms closer than 0.1 Angstrom: refuse them before any work
                    try:
                        check_geometry(m.conformations[c], MIN_DISTANCE_ANGSTROM * U.ANGSTROM_TO_BOHR)
                    except DatasetError as err:
                        raise TrainInputError(f"dataset {path}: {m.name} conformation {c}: {err}") from err
                fscale = sign * U.ANGSTROM_TO_BOHR  # Hartree/Bohr -> Hartree/Angstrom
                se = np.full(nc, np.nan) if se is None else np.broadcast_to(se, (nc,))
                sg = np.full((nc, na, 3), np.nan) if sg is None else np.broadcast_to(sg, (nc, na, 3))
                blocks.append((f"{Path(path).name}:{m.name}", m.atomic_numbers, m.conformations[k] * U.BOHR_TO_ANGSTROM,
                               np.where(hasE, e, np.nan)[k], se[k],
                               np.where(hasG[:, None, None], gr, np.nan)[k] * fscale, np.abs(sg[k] * U.ANGSTROM_TO_BOHR)))
        for k, found in seen.items():
            if not found and (k in (stage.energy, grad) or k in (stage.energy_error, stage.gradient_error)):
                raise TrainInputError(f"dataset {path}: no molecule has the property {k!r}")
        report.append(count)
        log(f"{path}: {count['used']} of {count['conformations']} conformation(s) used, {count['skipped']} skipped "
            f"without labels" + (f", {count['no_energy']} without {stage.energy}" if stage.energy else "")
            + (f", {count['no_gradient']} without {grad}" if grad else ""))
    if not blocks:
        raise TrainInputError(f"{', '.join(map(str, stage.datasets))}: no conformation has a finite "
                              f"{' or '.join(p for p in (stage.energy, grad) if p)} label")
    return _concat(blocks), report


def _concat(blocks) -> Frames:
    names = tuple(b[0] for b in blocks)
    n_conf = [b[2].shape[0] for b in blocks]
    natoms = np.concatenate([np.full(n, b[1].size) for n, b in zip(n_conf, blocks)])
    return Frames(names, np.repeat(np.arange(len(blocks)), n_conf), natoms,
                  np.concatenate([b[2].reshape(-1, 3) for b in blocks]),
                  np.concatenate([np.tile(b[1], n) for n, b in zip(n_conf, blocks)]),
                  np.repeat(np.arange(natoms.size), natoms),
                  np.concatenate([b[3] for b in blocks]), np.concatenate([b[4] for b in blocks]),
                  np.concatenate([b[5].reshape(-1, 3) for b in blocks]),
                  np.concatenate([b[6].reshape(-1, 3) for b in blocks]))


def split(frames: Frames, fraction: float, by: str, seed: int) -> tuple[Frames, Frames]:
    """Seeded training/validation split by conformation or by molecule; TrainInputError if either is empty."""
    rng = np.random.default_rng(seed)
    if by == "molecule":
        mols = np.unique(frames.mol)
        val_mols = rng.permutation(mols)[:int(round(fraction * mols.size))]
        val = np.isin(frames.mol, val_mols)
        unit = f"{mols.size} molecule(s)"
    else:
        val = np.zeros(frames.n_conf, bool)
        val[rng.permutation(frames.n_conf)[:int(round(fraction * frames.n_conf))]] = True
        unit = f"{frames.n_conf} conformation(s)"
    for which, sel in (("validation", val), ("training", ~val)):
        if not sel.any():
            raise TrainInputError(f"the {which} set is empty ({unit}, validation_fraction={fraction}, split by {by}); "
                                  "change validation_fraction or add data")
    return frames.subset(np.nonzero(~val)[0]), frames.subset(np.nonzero(val)[0])
