"""J/K kernels: ``reference`` (NumPy oracle), ``cpu`` (BLAS + numba), ``gpu`` (CuPy, imported lazily)."""
