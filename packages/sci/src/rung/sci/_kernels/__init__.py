"""Kernels of the selected-CI rung: ``reference`` (NumPy/Python oracle), ``cpu`` (numba), ``gpu`` (CuPy, numba.cuda)."""
