"""Local energy E_L = (H psi)/psi of a molecule with optional ccECPs, batched over walkers.

    E_L = -1/2 sum_i lap_i psi / psi + sum_{i<j} 1/r_ij - sum_{i,A} Z_A / r_iA + sum_{A<B} Z_A Z_B / R_AB
          + sum_{i,A} v_loc,A(r_iA) + sum_i V_NL,i psi / psi

with Z_A the effective charge (Z minus ECP core electrons). Components are returned separately.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rung.qmc.ecp import ECP

COMPONENTS = ("kinetic", "ee", "en", "nn", "ecp_local", "ecp_nonlocal")


@dataclass(frozen=True)
class Hamiltonian:
    """atom_coords (natom, 3) Bohr; atom_charges (natom,) effective charges; ecp: ECP."""

    atom_coords: np.ndarray
    atom_charges: np.ndarray
    ecp: ECP

    @classmethod
    def from_mol(cls, mol) -> "Hamiltonian":
        return cls(mol.atom_coords().copy(), mol.atom_charges().astype(np.float64), ECP.from_mol(mol))

    @property
    def nuclear_repulsion(self) -> float:
        R, Z = self.atom_coords, self.atom_charges
        e = 0.0
        for a in range(len(Z)):
            for b in range(a):
                e += Z[a] * Z[b] / np.linalg.norm(R[a] - R[b])
        return e

    def potential(self, configs, backend: str = "numba") -> dict:
        """{"ee", "en", "nn", "ecp_local": (nwalkers,)} Hartree at configs (nwalkers, nelec, 3) Bohr; the
        "numba" kernel (:func:`rung.qmc._kernels.cpu.potential_terms`) or its NumPy oracle ("numpy")."""
        nw, ne, _ = configs.shape
        if backend == "numba":
            from rung.qmc._kernels.cpu import potential_terms

            ee, en, loc = potential_terms(np.ascontiguousarray(configs, dtype=np.float64), self.atom_coords,
                                          self.atom_charges, *self.ecp.local_tables())
            return {"ee": ee, "en": en, "nn": np.full(nw, self.nuclear_repulsion), "ecp_local": loc}
        if backend != "numpy":
            raise ValueError(f"backend must be 'numba' or 'numpy', got {backend!r}")
        r = np.linalg.norm(configs[:, :, None] - configs[:, None], axis=-1)
        iu = np.triu_indices(ne, 1)
        ree = r[:, iu[0], iu[1]]
        ren = np.linalg.norm(configs[:, :, None] - self.atom_coords, axis=-1)  # (nw, ne, natom)
        return {
            "ee": (1.0 / ree).sum(-1),
            "en": -(self.atom_charges / ren).sum((-1, -2)),
            "nn": np.full(nw, self.nuclear_repulsion),
            "ecp_local": self.ecp.local(configs),
        }

    def kinetic(self, wf, configs):
        """(kinetic energy (nw,), grad log psi (nw, ne, 3)) at the walkers' current positions."""
        grad, lap = wf.gradient_laplacian_all()
        return -0.5 * lap.sum(-1), grad

    def local_energy(self, wf, configs, rng, return_grad: bool = False, nonlocal_terms=None):
        """{component: (nwalkers,)} Hartree, with "total"; ``wf`` must be in the state of ``configs``.

        With ``return_grad`` also grad log psi (nwalkers, nelec, 3), Bohr^-1 (the DMC drift). With
        ``nonlocal_terms`` (a list) each electron's nonlocal quadrature (terms, points) is appended to it
        (:meth:`rung.qmc.ecp.ECP.nonlocal_`; the DMC T-moves reuse it).
        """
        out = self.potential(configs)
        out["kinetic"], grad = self.kinetic(wf, configs)
        out["ecp_nonlocal"] = self.ecp.nonlocal_(wf, configs, rng, keep=nonlocal_terms)
        out["total"] = sum(out[k] for k in COMPONENTS)
        return (out, grad) if return_grad else out
