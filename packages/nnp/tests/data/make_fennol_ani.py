"""Writes fennol_ani_small.fnx and fennol_ani_small_ref.npz (the oracle of test_fennol.py) with FeNNol itself.

A small ANI-architecture FeNNol model (ANI_AEV with 4 radial, 2 angular-radial and 2 angle sections,
species H, C, N, O; SPECIES_INDEX_NET 8-6-1 with CELU 0.1; energy unit kcal/mol; FeNNol's random
initial weights, biases randomised too), saved by ``FENNIX.save`` (flax msgpack), and FeNNol's own
float64 energies (kcal/mol) and forces (kcal/mol/Angstrom) of perturbed G2 molecules. Run once with
fennol installed (``pip install fennol``; 2026.6.29 was used):

    python packages/nnp/tests/data/make_fennol_ani.py
"""

from collections import OrderedDict
from pathlib import Path

import jax
import numpy as np
from fennol import FENNIX

from rung.nnp.testing import conformations

HERE = Path(__file__).parent


def main():
    with jax.enable_x64(True):
        sp = ["H", "C", "N", "O"]
        modules = OrderedDict(
            embedding={"module_name": "ANI_AEV", "species_order": sp, "graph_angle_key": "graph_angle",
                       "radial_dist_divisions": 4, "angular_dist_divisions": 2, "angle_sections": 2,
                       "radial_start": 0.9, "angular_start": 0.9},
            energy={"module_name": "SPECIES_INDEX_NET", "output_dim": 1, "hidden_neurons": [8, 6],
                    "species_order": sp, "activation": "partial(celu, alpha=0.1)", "input_key": "embedding",
                    "squeeze": True})
        preproc = OrderedDict(
            graph_angle={"module_name": "GRAPH_FILTER", "cutoff": 3.5, "parent_graph": "graph", "graph_key": "graph_angle"},
            angle_extension={"module_name": "GRAPH_ANGULAR_EXTENSION", "graph_key": "graph_angle"},
            species_indexer={"module_name": "SPECIES_INDEXER", "output_key": "species_index"})
        model = FENNIX(cutoff=5.2, modules=modules, preprocessing=preproc, rng_key=jax.random.PRNGKey(7),
                       energy_terms=["energy"], energy_unit="kcal/mol")
        rng = np.random.default_rng(7)
        params = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), dict(model.variables["params"]))
        for s in sp:
            for layer in params["energy"][s].values():
                layer["bias"] = rng.normal(scale=0.5, size=layer["bias"].shape)
        model.variables = {**model.variables, "params": params}
        model.save(HERE / "fennol_ani_small.fnx")
        mols = conformations(("H2O", "CH3OH", "HCOOH", "H3CNH2"), 2, amplitude=0.05, seed=3)
        x = np.concatenate([m[2].reshape(-1, 3) for m in mols])
        z = np.concatenate([np.tile(m[1], 2) for m in mols])
        natoms = np.concatenate([[m[1].size] * 2 for m in mols])
        b = np.repeat(np.arange(natoms.size), natoms)
        e, f, _ = model.energy_and_forces(species=z, coordinates=x, natoms=natoms, batch_index=b)
        np.savez(HERE / "fennol_ani_small_ref.npz", x=x, z=z, batch=b, energy_kcal_mol=np.asarray(e),
                 forces_kcal_mol_angstrom=np.asarray(f))


if __name__ == "__main__":
    main()
