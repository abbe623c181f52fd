"""The trial wave function as a product of components, all batched over walkers.

Component protocol (PyQMC's, kept small). ``configs`` are (nwalkers, nelec, 3) float64 Bohr, electron
``e`` an int, ``epos`` (nwalkers, 3) or, for ``testvalue``, also (nwalkers, npts, 3):

- ``recompute(configs) -> (sign, logval)``, each (nwalkers,): full evaluation, resets the state
- ``value() -> (sign, logval)`` of the current state
- ``testvalue(e, epos, mask=None) -> ratio`` psi(R')/psi(R), (nwalkers,) or (nwalkers, npts); with
  ``mask`` ((nwalkers,) bool or an index array, repeats allowed) epos and the result cover only
  those walkers
- ``gradient_value(e, epos) -> (grad, ratio, saved)``: grad log psi at R' (3, nwalkers), the ratio,
  and whatever ``accept`` can reuse
- ``gradient_laplacian(e, epos) -> (grad, lap)``: grad psi / psi (3, nwalkers), lap psi / psi (nwalkers,)
- ``gradient_laplacian_all() -> (grad, lap)`` for every electron at its current position:
  (nwalkers, nelec, 3), (nwalkers, nelec)
- ``accept(e, epos, mask, saved)``: move electron e where mask (nwalkers,) bool is set
- ``resample(idx)``: keep walkers idx (nwalkers,) int, copies allowed (population control)
- ``pgradient() -> {name: (nwalkers, *shape)}``: d log psi / d parameter; ``parameters`` the dict
  of arrays those names refer to

For a product psi = prod_c psi_c: ratios multiply, log-gradients add, and
lap psi / psi = sum_c lap psi_c / psi_c + 2 sum_{c<d} grad log psi_c . grad log psi_d.
"""

from __future__ import annotations

import numpy as np


class ProductWF:
    """psi = prod_c psi_c. ``components`` are protocol objects, e.g. (SlaterDeterminant, Jastrow)."""

    def __init__(self, components):
        self.components = list(components)

    @property
    def parameters(self) -> dict:
        return {f"{i}.{k}": v for i, c in enumerate(self.components) for k, v in c.parameters.items()}

    def set_parameters(self, params: dict) -> None:
        for key, v in params.items():
            i, k = key.split(".", 1)
            self.components[int(i)].parameters[k][...] = v

    def recompute(self, configs):
        sign, logval = np.ones(configs.shape[0]), np.zeros(configs.shape[0])
        for c in self.components:
            s, l = c.recompute(configs)
            sign, logval = sign * s, logval + l
        if not np.all(np.isfinite(logval)):
            raise FloatingPointError("the wave function is zero or not finite for some walkers")
        return sign, logval

    def value(self):
        sign, logval = 1.0, 0.0
        for c in self.components:
            s, l = c.value()
            sign, logval = sign * s, logval + l
        return sign, logval

    def testvalue(self, e, epos, mask=None):
        r = 1.0
        for c in self.components:
            r = r * c.testvalue(e, epos, mask)
        return r

    def gradient_value(self, e, epos):
        grad, ratio, saved = 0.0, 1.0, []
        for c in self.components:
            g, r, s = c.gradient_value(e, epos)
            grad, ratio = grad + g, ratio * r
            saved.append(s)
        return grad, ratio, saved

    def gradient_laplacian(self, e, epos):
        gs, lap = [], 0.0
        for c in self.components:
            g, l = c.gradient_laplacian(e, epos)
            gs.append(g)
            lap = lap + l
        for i in range(len(gs)):
            for j in range(i + 1, len(gs)):
                lap = lap + 2.0 * np.einsum("xw,xw->w", gs[i], gs[j])
        return sum(gs), lap

    def gradient_laplacian_all(self):
        """grad psi/psi (nwalkers, nelec, 3) and lap psi/psi (nwalkers, nelec), every electron at once."""
        gs, lap = [], 0.0
        for c in self.components:
            g, l = c.gradient_laplacian_all()
            gs.append(g)
            lap = lap + l
        for i in range(len(gs)):
            for j in range(i + 1, len(gs)):
                lap = lap + 2.0 * np.einsum("wex,wex->we", gs[i], gs[j])
        return sum(gs), lap

    def accept(self, e, epos, mask, saved=None):
        saved = saved if saved is not None else [None] * len(self.components)
        for c, s in zip(self.components, saved):
            c.accept(e, epos, mask, s)

    def resample(self, idx):
        for c in self.components:
            c.resample(idx)

    def pgradient(self):
        return {f"{i}.{k}": v for i, c in enumerate(self.components) for k, v in c.pgradient().items()}


def ratio_vector_parts(wf):
    """(determinant part, Jastrow or None) when ``wf`` is a determinant part [x exp(J)] whose ratio for a
    one-electron move is linear in the AOs at the new position (``ratio_vector``): a plain Slater
    determinant D_up D_down or a table-method multi-Slater expansion (:class:`rung.qmc.multideterminant.
    TableMultiSlater`), LCAO orbitals on the numba AO kernel without a cusp correction, times a numba
    one/two-body Jastrow. The fused numba kernels (nonlocal ECP term, drift-diffusion sweep) serve these;
    None for anything else, which takes the generic component-protocol path."""
    from rung.qmc.determinants import SlaterDeterminant
    from rung.qmc.jastrow import Jastrow
    from rung.qmc.multideterminant import TableMultiSlater

    if type(wf) is not ProductWF or not 1 <= len(wf.components) <= 2:
        return None
    det, *rest = wf.components
    if type(det) not in (SlaterDeterminant, TableMultiSlater) or any(o.cusp is not None or o.backend != "numba"
                                                                      for o in det.orbitals):
        return None
    if rest and (type(rest[0]) is not Jastrow or rest[0].backend != "numba"):
        return None
    return det, (rest[0] if rest else None)
