"""AEV kernels: ``reference`` (NumPy oracle), ``cpu`` (numba), ``gpu`` (numba.cuda + CuPy, lazy)."""
