"""Potential energy: electron-electron, electron-nucleus and local ECP terms (numba, CPU)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def potential_terms(configs, atom_coords, charges, loc_R, loc_tstart, t_pow, t_a, t_c):
    """Electron-electron, electron-nucleus and local-ECP energies per walker (Hartree).

    configs (nw, ne, 3) Bohr; atom_coords (natom, 3) Bohr; charges (natom,) effective charges;
    loc_R (nloc, 3) Bohr, the ECP atoms, with local channels v(r) = sum_t c_t r^pow_t exp(-a_t r^2)
    (terms loc_tstart[k] .. loc_tstart[k+1] - 1). Returns ee, en, ecp_local, each (nw,) float64.
    Oracle: the NumPy expressions of :meth:`rung.qmc.hamiltonian.Hamiltonian.potential` (backend "numpy").
    """
    nw, ne = configs.shape[0], configs.shape[1]
    ee = np.zeros(nw)
    en = np.zeros(nw)
    loc = np.zeros(nw)
    for w in range(nw):
        acc = 0.0
        for i in range(ne):
            for j in range(i + 1, ne):
                d0 = configs[w, i, 0] - configs[w, j, 0]
                d1 = configs[w, i, 1] - configs[w, j, 1]
                d2 = configs[w, i, 2] - configs[w, j, 2]
                acc += 1.0 / np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        ee[w] = acc
        acc = 0.0
        for i in range(ne):
            for a in range(atom_coords.shape[0]):
                d0 = configs[w, i, 0] - atom_coords[a, 0]
                d1 = configs[w, i, 1] - atom_coords[a, 1]
                d2 = configs[w, i, 2] - atom_coords[a, 2]
                acc -= charges[a] / np.sqrt(d0 * d0 + d1 * d1 + d2 * d2)
        en[w] = acc
        acc = 0.0
        for i in range(ne):
            for k in range(loc_R.shape[0]):
                d0 = configs[w, i, 0] - loc_R[k, 0]
                d1 = configs[w, i, 1] - loc_R[k, 1]
                d2 = configs[w, i, 2] - loc_R[k, 2]
                s = d0 * d0 + d1 * d1 + d2 * d2
                r = np.sqrt(s)
                for t in range(loc_tstart[k], loc_tstart[k + 1]):
                    p = t_pow[t]
                    rp = 1.0 if p == 0 else (1.0 / r if p == -1 else (1.0 / s if p == -2 else r**p))
                    acc += t_c[t] * rp * np.exp(-t_a[t] * s)
        loc[w] = acc
    return ee, en, loc
