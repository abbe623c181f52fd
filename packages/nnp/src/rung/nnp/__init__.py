"""rung.nnp — NNP rung: fast inference for ANI-style neural network potentials."""

__version__ = "0.1.0"
