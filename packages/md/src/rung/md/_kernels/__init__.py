"""Lennard-Jones pair kernels: ``reference`` (NumPy, the oracle) and ``cpu`` (numba)."""
