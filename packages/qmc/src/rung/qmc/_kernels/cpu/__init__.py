"""numba kernels (CPU) for the hot loops; :mod:`rung.qmc._kernels.reference` and the NumPy paths of the
callers are their oracles.

Modules, each importing only those above it:

* :mod:`.aos` -- cartesian Gaussian AOs at a batch of positions (``eval_cart``);
* :mod:`.jastrow` -- the one/two-body Jastrow factor: J_e of one electron, the total J;
* :mod:`.potential` -- electron-electron, electron-nucleus and local-ECP energies;
* :mod:`.ecp` -- the nonlocal ECP quadrature of one electron, determinant and Jastrow ratios (uses :mod:`.jastrow`);
* :mod:`.sweep` -- the drift-diffusion move of one electron, proposal and acceptance (uses :mod:`.jastrow`
  and, for the table-method multi-Slater expansion, :mod:`rung.qmc._kernels.table`);
* :mod:`.forces` -- the analytic nuclear derivatives of :mod:`rung.qmc.force_derivs`: determinant,
  Jastrow/Coulomb/local-ECP and nonlocal-ECP terms (uses :mod:`.aos` and :mod:`.ecp`).

numba's cache (``cache=True``) checks only the source file of the kernel it loads: after editing a
helper in one module (e.g. :mod:`.jastrow`), a kernel of another module that calls it (:mod:`.ecp`,
:mod:`.sweep`) keeps its cached machine code until the cache files (``__pycache__/*.nbi``, ``*.nbc``)
are removed (the qmc tests' conftest does so when a source is newer than the cache).
"""

from .aos import eval_cart
from .ecp import Centres, Channels, ecp_nonlocal
from .jastrow import JastrowArguments, jastrow_electron, jastrow_total
from .potential import potential_terms
from .sweep import sweep_accept, sweep_accept_table, sweep_propose
