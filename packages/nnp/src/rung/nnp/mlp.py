"""Species networks of an ANI ensemble: batched forward pass and the hand-written backward pass.

For atoms of species s and ensemble member m, the atomic energy is an MLP of the AEV ``G``::

    h_0 = G,  z_l = h_{l-1} W_l^T + b_l,  h_l = act_l(z_l),  e = h_L  (the last layer is linear)

The first layers of all members read the same input, so they are stacked into one matrix
(``M * h1`` rows) and applied in one GEMM; deeper layers run per member. The backward pass returns
``dE/dG`` of the ensemble-mean energy: ``delta_L = 1/M``, ``g_{l-1} = (g_l * act_l'(z_l)) W_l``, and
the first layer's deltas of all members go through one GEMM again. Activations: CELU with alpha 0.1
(``x`` for x > 0, ``0.1 (exp(x / 0.1) - 1)`` otherwise; ANI-1x), Gaussian ``exp(-x^2)`` (ANI-1),
identity. Arrays may be NumPy or CuPy (``xp``); the MLP runs in the dtype it was packed in.
"""

from __future__ import annotations

import numpy as np

from rung.nnp.model import ANIModel, ModelFileError


def _act(xp, name, z):
    """Activation value and derivative, both shaped like z."""
    if name == "celu0.1":
        neg = xp.expm1(xp.minimum(z, 0.0) * 10.0) * 0.1
        pos = z > 0
        return xp.where(pos, z, neg), xp.where(pos, 1.0, neg * 10.0 + 1.0).astype(z.dtype)
    if name == "gaussian":
        h = xp.exp(-z * z)
        return h, -2.0 * z * h
    return z, None


class PackedNetworks:
    """The ensemble's weights, arranged for batched evaluation in one dtype on one device.

    Parameters
    ----------
    model : ANIModel
    dtype : numpy dtype of the MLP (float32 or float64)
    xp : numpy or cupy
    """

    def __init__(self, model: ANIModel, dtype, xp=np):
        self.xp, self.dtype, self.n_members = xp, np.dtype(dtype), len(model.members)
        self.per_species = []
        for s in range(len(model.species)):
            nets = [m[s] for m in model.members]
            first = [n.layers[0] for n in nets]
            acts = {layer.activation for layer in first}
            if len(acts) != 1 or any(len(n.layers) != len(nets[0].layers) for n in nets):
                raise ModelFileError(f"species {model.species[s]}: members differ in architecture; cannot stack")
            W1 = np.concatenate([layer.weight for layer in first], axis=0)  # (M*h1, L)
            b1 = np.concatenate([layer.bias for layer in first])
            rest = [[(xp.asarray(np.ascontiguousarray(layer.weight.T), dtype=dtype),
                      xp.asarray(layer.weight, dtype=dtype), xp.asarray(layer.bias, dtype=dtype), layer.activation)
                     for layer in n.layers[1:]] for n in nets]
            self.per_species.append(dict(
                W1T=xp.asarray(np.ascontiguousarray(W1.T), dtype=dtype), W1=xp.asarray(W1, dtype=dtype),
                b1=xp.asarray(b1, dtype=dtype), act1=acts.pop(), h1=first[0].weight.shape[0], rest=rest))

    def __call__(self, species, G, *, grad: bool = True):
        """Atomic network outputs and dE_mean/dG.

        Parameters
        ----------
        species : (n_atoms,) int, model species index (host or device, like G)
        G : (n_atoms, L) AEVs in the packed dtype

        Returns
        -------
        out : (n_members, n_atoms) float64, Hartree (network outputs, self energies not included)
        dG : (n_atoms, L) packed dtype, gradient of the ensemble-mean energy, or None
        """
        xp, M = self.xp, self.n_members
        n = G.shape[0]
        out = xp.zeros((M, n), dtype=np.float64)
        dG = xp.empty_like(G) if grad else None
        order = xp.argsort(species, kind="stable")
        counts = np.bincount(np.asarray(species if xp is np else species.get()), minlength=len(self.per_species))
        pos = 0
        for s, cnt in enumerate(counts):
            if cnt == 0:
                continue
            idx = order[pos:pos + cnt]
            pos += cnt
            P = self.per_species[s]
            X = G[idx]
            z1 = X @ P["W1T"] + P["b1"]  # (n_s, M*h1)
            h1, d1 = _act(xp, P["act1"], z1)
            deltas = xp.empty_like(z1) if grad else None
            h1w = P["h1"]
            for m, layers in enumerate(P["rest"]):
                h = h1[:, m * h1w:(m + 1) * h1w]
                saved = []
                for WT, _, b, act in layers:
                    z = h @ WT + b
                    h, d = _act(xp, act, z)
                    saved.append(d)
                out[m, idx] = h[:, 0].astype(np.float64)
                if grad:
                    g = xp.full((cnt, 1), 1.0 / M, dtype=self.dtype)
                    for (WT, W, _, act), d in zip(reversed(layers), reversed(saved)):
                        if d is not None:
                            g = g * d
                        g = g @ W
                    deltas[:, m * h1w:(m + 1) * h1w] = g
            if grad:
                if d1 is not None:
                    deltas *= d1
                dG[idx] = deltas @ P["W1"]
        return out, dG
