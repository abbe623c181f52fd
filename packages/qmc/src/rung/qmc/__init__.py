"""rung.qmc — QMC rung: VMC/DMC with Slater-Jastrow trial functions and ccECPs.

Data flow (one module per step):

- :mod:`~rung.qmc.system`        molecule (PySCF), orbitals (DFT rung's file, or SCF), trial function
- :mod:`~rung.qmc.orbitals`      Gaussian AOs batched over positions and centres (by species), MOs by GEMM
- :mod:`~rung.qmc.cusp`          electron-nucleus cusp correction of the orbitals (all-electron atoms)
- :mod:`~rung.qmc.determinants`  up/down Slater determinants, Sherman-Morrison updates
- :mod:`~rung.qmc.multideterminant` CI expansions from the sci rung's QMCPACK ``/MultiDet`` files
- :mod:`~rung.qmc.jastrow`, :mod:`~rung.qmc.jastrow3`  one/two-body (exact e-e cusp) and three-body terms
- :mod:`~rung.qmc.wavefunction`  the component protocol and the product wave function
- :mod:`~rung.qmc.ecp`, :mod:`~rung.qmc.hamiltonian`  ccECPs in real space, local energy
- :mod:`~rung.qmc.vmc`, :mod:`~rung.qmc.optimize`, :mod:`~rung.qmc.dmc`  the methods
- :mod:`~rung.qmc.forces`       interatomic forces (ZVZB estimator, space warp) for VMC and DMC
- :mod:`~rung.qmc.stats`, :mod:`~rung.qmc.traces`  reblocking; per-block traces and checkpoints
- :mod:`~rung.qmc.run`, :mod:`~rung.qmc.cli`, :mod:`~rung.qmc.ladder`  end to end, dataset output
- ``_kernels/``: ``reference`` (NumPy oracle), ``cpu`` (numba), ``gpu`` (numba.cuda, lazily imported)

Atomic units throughout (Bohr, Hartree, a.u. of time).
"""

__version__ = "0.1.0"
