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
    """Activation value and derivative, both shaped like z (z is overwritten with the value)."""
    if name == "celu0.1":
        # with m = expm1(10 min(z, 0)): celu = max(z, 0) + 0.1 m and celu' = m + 1, in SIMD array passes
        m = xp.minimum(z, 0)
        m *= 10
        xp.expm1(m, out=m)
        d = m + 1
        xp.maximum(z, 0, out=z)
        m *= 0.1
        z += m
        return z, d
    if name == "gaussian":
        h = xp.exp(-z * z)
        return h, -2.0 * z * h
    return z, None


class PackedNetworks:
    """The ensemble's weights, arranged for batched evaluation in one dtype on one device.

    Per species: the first layers of all members stacked, ``W1T`` (L, M*h1); deeper layers stacked
    over members, ``WT`` (M, h_in, h_out), so one batched matmul runs a layer of every member. Each
    weight is stored once: the backward pass multiplies by transposed views (BLAS transposes without
    copying), which halves the weights the caches hold (timings: BENCHMARKS.md).

    Atoms go through the networks in blocks of at most ``block`` rows, so that the activations and
    their derivatives stay in cache between the element-wise passes.

    Parameters
    ----------
    model : ANIModel
    dtype : numpy dtype of the MLP (float32 or float64)
    xp : numpy or cupy
    block : int, rows per block (numpy); None: all atoms of a species at once
    """

    def __init__(self, model: ANIModel, dtype, xp=np, block: int | None = 256):
        self.xp, self.dtype, self.n_members = xp, np.dtype(dtype), len(model.members)
        self.block = block if xp is np else None
        self.per_species = []
        for s in range(len(model.species)):
            nets = [m[s] for m in model.members]
            shapes = {tuple((layer.weight.shape, layer.activation) for layer in n.layers) for n in nets}
            if len(shapes) != 1:
                raise ModelFileError(f"species {model.species[s]}: members differ in architecture; cannot stack")
            first = [n.layers[0] for n in nets]
            W1 = np.concatenate([layer.weight for layer in first], axis=0)  # (M*h1, L)
            b1 = np.concatenate([layer.bias for layer in first])
            rest = []
            for k in range(1, len(nets[0].layers)):
                WT = np.stack([n.layers[k].weight.T for n in nets])  # (M, h_in, h_out)
                b = np.stack([n.layers[k].bias for n in nets])[:, None, :]  # (M, 1, h_out)
                rest.append((xp.asarray(np.ascontiguousarray(WT), dtype=dtype), xp.asarray(b, dtype=dtype),
                             nets[0].layers[k].activation))
            self.per_species.append(dict(
                W1T=xp.asarray(np.ascontiguousarray(W1.T), dtype=dtype), b1=xp.asarray(b1, dtype=dtype),
                act1=first[0].activation, h1=first[0].weight.shape[0], rest=rest))

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
        order = xp.argsort(species, kind="stable") if xp is np else xp.argsort(species)  # CuPy sorts stably
        counts = np.bincount(np.asarray(species if xp is np else species.get()), minlength=len(self.per_species))
        pos = 0
        for s, cnt in enumerate(counts):
            step = int(cnt) if self.block is None else self.block
            for a in range(pos, pos + int(cnt), max(step, 1)):
                idx = order[a:min(a + step, pos + int(cnt))]
                self._block(self.per_species[s], G, idx, out, dG)
            pos += int(cnt)
        return out, dG

    def _block(self, P, G, idx, out, dG):
        """Forward (and backward into dG, when given) for the atoms idx, all of one species."""
        xp, M = self.xp, self.n_members
        cnt = idx.shape[0]
        z1 = G[idx] @ P["W1T"]  # (n_s, M*h1)
        z1 += P["b1"]
        h1, d1 = _act(xp, P["act1"], z1)
        h = xp.ascontiguousarray(h1.reshape(cnt, M, P["h1"]).transpose(1, 0, 2))  # (M, n_s, h1)
        saved = []
        for WT, b, act in P["rest"]:
            z = xp.matmul(h, WT)  # (M, n_s, h_out)
            z += b
            h, d = _act(xp, act, z)
            saved.append(d)
        out[:, idx] = h[:, :, 0]
        if dG is not None:
            g = xp.full((M, cnt, 1), 1.0 / M, dtype=self.dtype)
            for (WT, _, _), d in zip(reversed(P["rest"]), reversed(saved)):
                if d is not None:
                    g = g * d
                g = xp.matmul(g, WT.transpose(0, 2, 1))  # (M, n_s, h_in)
            deltas = g.transpose(1, 0, 2).reshape(cnt, M * P["h1"])
            if d1 is not None:
                deltas = deltas * d1
            dG[idx] = deltas @ P["W1T"].T
