"""Compute kernels: ``reference`` (NumPy oracle), ``cpu`` (numba). See :mod:`rung.qmc.orbitals`."""
