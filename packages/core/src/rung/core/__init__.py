"""rung.core — the protocol the rung packages share.

Modules (imported lazily, so ``import rung.core`` pulls in neither CuPy, PySCF, mpi4py nor numba):

- :mod:`rung.core.backend`   NumPy/CuPy array module selection and transfers
- :mod:`rung.core.units`     one pinned CODATA table (2018) and every factor derived from it
- :mod:`rung.core.dataset`   the HDF5 dataset schema (SPICE-compatible), readers, crash-safe writer
- :mod:`rung.core.potential` the force-provider protocol, its ASE calculator adapter and registry
- :mod:`rung.core.neighbors` cell-list neighbour search (numba) with a Verlet skin
- :mod:`rung.core.testing`   conformance kits: finite-difference forces, backend agreement
- :mod:`rung.core.multidet`  the ``/MultiDet`` multideterminant file (QMCPACK's layout): writer, reader, checks
- :mod:`rung.core.errors`    :class:`~rung.core.errors.InputError`, the base of every bad-input error
- :mod:`rung.core.cli`       the click group every rung CLI uses: bad input as one line, exit code 2
- :mod:`rung.core.mpi`       MPI helpers of the farms: rank/size, a sleeping barrier, a shared work counter
"""

from rung.core.backend import get_array_module, select, to_device, to_host

__version__ = "0.1.0"
__all__ = ["get_array_module", "select", "to_device", "to_host", "__version__"]
