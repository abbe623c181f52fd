"""rung.dft_gpu — DFT rung: PySCF with a density-fitted J/K engine (CPU/GPU), energies and forces for many conformations."""

__version__ = "0.1.0"
