"""rung.dft_gpu — DFT rung: PySCF with a density-fitted J/K engine (CPU/GPU), energies and forces for many conformations."""

from rung.dft_gpu.jk import JKEngine, accelerate

__version__ = "0.1.0"
__all__ = ["JKEngine", "accelerate"]
