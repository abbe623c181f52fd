"""rung.nnp — NNP rung: fast inference for ANI-style neural network potentials.

Public names::

    from rung.nnp import load_model, NNPCalculator
    pot = load_model("ani-1x")             # 8-network ensemble (fetch once: `nnp fetch ani-1x`)
    pot = load_model("ani-1x", member=0)   # one network
    res = pot.compute(positions_angstrom, numbers)          # rung.core Potential, Hartree / Angstrom
    atoms.calc = NNPCalculator("ani-1x")                    # ASE: eV, eV/Angstrom, stress

Modules: ``model`` (model description, HDF5 model file), ``neurochem`` (NeuroChem reader),
``fetch`` (weight cache), ``ani`` (the inference pipeline), ``mlp`` (species networks),
``calculator`` (ASE), ``_kernels`` (NumPy reference, numba CPU, numba.cuda/CuPy GPU), ``cli``.
Heavy modules are imported on first use, so ``import rung.nnp`` is cheap.
"""

__version__ = "0.1.0"
__all__ = ["load_model", "NNPCalculator", "__version__"]


def __getattr__(name):
    if name == "load_model":
        from rung.nnp.ani import load_model

        return load_model
    if name == "NNPCalculator":
        from rung.nnp.calculator import NNPCalculator

        return NNPCalculator
    raise AttributeError(f"module 'rung.nnp' has no attribute {name!r}")
