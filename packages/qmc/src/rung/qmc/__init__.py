"""rung.qmc — QMC rung: VMC/DMC with Slater-Jastrow trial functions and ccECPs."""

__version__ = "0.1.0"
