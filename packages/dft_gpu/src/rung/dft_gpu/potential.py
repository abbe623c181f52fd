"""The SCF of rung.dft_gpu as a force provider: ab-initio MD and DFT-level RPMD through ``nnp-md``.

:class:`DFTPotential` follows the :class:`rung.core.potential.Potential` protocol (Hartree, Bohr):
for each structure of a batch (the beads of a ring polymer) it builds the molecule and the
density-fitted SCF of the farm (:func:`rung.dft_gpu.scf.build_mol`, :func:`~rung.dft_gpu.scf.make_scf`,
the J/K engine of :mod:`rung.dft_gpu.jk`), converges it with the farm's fallback strategies
(:func:`~rung.dft_gpu.scf.converge`) and takes the analytic nuclear gradient (PySCF's DF gradient with
:func:`rung.dft_gpu.gradients.speed_up`). Forces are ``F = -dE/dR``; the virial of the open system is
``W_ab = sum_i F_ia x_ib``.

Unlike the farm, which is a pure function of each conformation, the SCF of a bead starts from its
converged density matrices D of the previous calls, extrapolated to the new step as ab-initio MD codes
do: ``3 D(t) - 3 D(t-1) + D(t-2)`` (quadratic in time; linear and constant while fewer are known; the
first call: bead b from bead b - 1's, bead 0 from PySCF's guess). Along a trajectory this saves SCF
cycles (measured: PBE/def2-SVP water, 0.01 Bohr steps: 4 cycles against 6 from D(t) alone and 8-9 from
PySCF's guess). The energy then depends on the history only within the SCF tolerance, so a restarted
MD run is not bit-for-bit the uninterrupted one (it is for the other potentials).

Consistency of energy and forces, which energy conservation needs: one grid for both (``grid``), the
orbital-gradient tolerance ``conv_tol_grad`` (the forces' error is linear in it, the energy's
quadratic) and, for DFT, the grid-response term of the gradient (``grid_response``; PySCF's
``grids_response_cc``): without it the forces miss the derivative of the atom-centred grid
weights, and are not the gradient of the energy to ~1e-5 Hartree/Bohr on a level-3 grid.

Input entry (``nnp-md``): ``potential = {type = "dft", xc = "pbe", basis = "def2-svp", ecp = "...",
charge = 0, spin = 0, ...}``, see :func:`dft_potential`.
"""

from __future__ import annotations

import numpy as np

from rung.core.errors import InputError
from rung.core.potential import PotentialResult, check_options
from rung.dft_gpu.scf import DFTConfig


class DFTPotential:
    """DFT (or Hartree-Fock) energies and analytic forces of molecules, batched over beads.

    Parameters
    ----------
    config : DFTConfig, the level of theory and SCF settings (``energy_grid`` is the one grid;
        ``forces``, ``force_grid`` and the output options are not used)
    charge : int, total charge, elementary charges
    spin : int, 2S = n_alpha - n_beta (PySCF's ``spin``); 0 gives RKS/RHF, else UKS/UHF
    grid_response : add the grid-weight derivative to DFT forces (exact gradient of the energy)

    Attributes
    ----------
    scf_cycles : list of int, SCF cycles of each structure of the last call
    """

    energy_unit, length_unit = "hartree", "bohr"

    def __init__(self, config: DFTConfig, charge: int = 0, spin: int = 0, *, grid_response: bool = True):
        if int(spin) < 0:
            raise InputError(f"dft potential: spin (2S) must be >= 0, got {spin}")
        self.config, self.charge, self.spin = config, int(charge), int(spin)
        self.grid_response = bool(grid_response)
        self.scf_cycles: list = []
        self._dm: dict = {}  # structure index in the batch -> converged density matrices of the last calls, newest last
        self._x: dict = {}  # structure index -> its positions at the newest of them
        self._numbers = None  # (n_atoms,) int of the history

    def _molecule(self, x, numbers):
        from rung.core.dataset import DatasetError, Molecule

        try:
            return Molecule("md", np.asarray(numbers, dtype=np.int64), x, self.charge, self.spin + 1)
        except DatasetError as err:
            raise InputError(f"dft potential: {err}") from None

    def compute(self, positions, numbers, cell=None, *, forces=True, virial=False):
        """positions : (n_atoms, 3) or (batch, n_atoms, 3) float64, Bohr; numbers : (n_atoms,) int;
        cell must be None (molecules only). Returns energies Hartree, forces Hartree/Bohr."""
        from rung.dft_gpu.scf import build_mol, converge, make_scf, nuclear_gradient

        if cell is not None:
            raise InputError("potential type 'dft' is for molecules (open boundaries); the input has a periodic cell")
        x = np.asarray(positions, dtype=np.float64)
        single = x.ndim == 2
        xb = x[None] if single else x  # (P, n, 3) Bohr
        molecule = self._molecule(xb, numbers)
        if self._numbers is None or not np.array_equal(self._numbers, molecule.atomic_numbers):
            self._dm, self._x, self._numbers = {}, {}, molecule.atomic_numbers  # another molecule: no history
        P = xb.shape[0]
        e, f = np.zeros(P), np.zeros(xb.shape)
        self.scf_cycles = []
        for b in range(P):
            mol = build_mol(molecule, b, self.config)
            mf = make_scf(mol, self.config)
            same = b in self._x and np.array_equal(self._x[b], xb[b])
            history = self._dm.get(b) or self._dm.get(b - 1, [])[-1:]
            if history and history[-1].shape[-1] != mol.nao:
                history = []
            _, cycles = converge(mf, extrapolate(history[-1:] if same else history), self.config)
            self.scf_cycles.append(cycles)
            e[b] = mf.e_tot
            kept = self._dm.get(b, [])[:-1] if same else self._dm.get(b, [])
            self._dm[b] = (kept + [np.asarray(mf.make_rdm1())])[-3:]
            self._x[b] = xb[b].copy()
            if forces or virial:
                f[b] = -nuclear_gradient(mf, self.config, self.grid_response)
        w = np.einsum("pia,pib->pab", f, xb) if virial else None  # (P, 3, 3) Hartree
        if single:
            e, f = float(e[0]), f[0]
            w = None if w is None else w[0]
        return PotentialResult(energy=e, forces=f if forces else None, virial=w)


def extrapolate(history):
    """The SCF guess from the density matrices of the last steps (oldest first; None when empty):
    ``D(t)``, ``2 D(t) - D(t-1)`` or ``3 D(t) - 3 D(t-1) + D(t-2)``, the polynomial through them at the
    next of equally spaced steps."""
    if not history:
        return None
    if len(history) == 1:
        return history[-1]
    if len(history) == 2:
        return 2 * history[-1] - history[-2]
    return 3 * history[-1] - 3 * history[-2] + history[-3]


DEFAULTS = {"ecp": None, "auxbasis": None, "charge": 0, "spin": 0, "grid": 3, "conv_tol": 1e-10,
            "conv_tol_grad": 1e-6, "grid_response": True, "jk": "engine", "backend": "auto",
            "max_memory_mb": None, "fast_paths": True}


def dft_potential(options: dict, **context) -> DFTPotential:
    """The ``dft`` potential type of rung's registry (entry point ``rung.potentials``).

    Options: ``xc`` (PySCF's name; ``"hf"`` for Hartree-Fock, ``-d3bj`` suffix for D3(BJ)), ``basis``
    (required), ``ecp`` (None: all-electron), ``auxbasis`` (None: the J/K engine's even-tempered set),
    ``charge`` (e), ``spin`` (2S), ``grid`` (PySCF grid level, 3), ``conv_tol`` (Hartree, 1e-10),
    ``conv_tol_grad`` (orbital gradient, 1e-6), ``grid_response`` (true), ``jk`` ("engine" or
    "pyscf"), ``backend`` ("auto", "numpy", "numba", "cupy"), ``max_memory_mb``, ``fast_paths`` (true).
    Raises :class:`~rung.core.errors.InputError` for an unknown or bad option.
    """
    check_options("dft", options, ("xc", *DEFAULTS, "basis"), required=("xc", "basis"))
    o = {**DEFAULTS, **options}
    try:
        grid, charge, spin = int(o["grid"]), int(o["charge"]), int(o["spin"])
        tol, tol_grad = float(o["conv_tol"]), float(o["conv_tol_grad"])
    except (TypeError, ValueError) as err:
        raise InputError(f"dft potential: grid, charge and spin must be integers and conv_tol(_grad) numbers: {err}")
    config = DFTConfig(xc=str(o["xc"]), basis=str(o["basis"]), ecp=o["ecp"] or None,
                     auxbasis=o["auxbasis"], energy_grid=grid, force_grid=None, conv_tol=tol,
                     conv_tol_grad=tol_grad, force_conv_tol_grad=None, jk=str(o["jk"]), backend=str(o["backend"]),
                     max_memory_mb=o["max_memory_mb"], fast_paths=bool(o["fast_paths"]))
    return DFTPotential(config, charge, spin, grid_response=bool(o["grid_response"]))


__all__ = ["DFTPotential", "dft_potential", "extrapolate"]
