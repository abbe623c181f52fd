"""rung.md — classical and ring-polymer molecular dynamics over rung potentials.

- :mod:`rung.md.normal_modes`  ring-polymer normal-mode transform, frequencies, exact/Cayley free propagators
- :mod:`rung.md.integrators`   pure step functions: velocity Verlet, BAOAB Langevin, Bussi, ring polymer (PILE-L/G)
- :mod:`rung.md.qtb`           quantum thermal bath and adaptive QTB: quantum noise for classical trajectories
- :mod:`rung.md.estimators`    temperature, energies, primitive/centroid-virial kinetic energy, conserved
  quantity, pressure
- :mod:`rung.md.potentials`    Lennard-Jones (cell lists + skin), ASE-calculator adapter, md's potential types in rung.core's registry
- :mod:`rung.md.parallel`      forces for all beads in one call per rank; beads over MPI ranks
- :mod:`rung.md.simulation`    the driver of ``nnp-md run`` (input -> outputs, checkpoints, restart): a loop over reporters
- :mod:`rung.md.reporters`     the run's outputs as reporters: trajectory, log, extxyz, checkpoint
- :mod:`rung.md.output`        H5MD file layout and writer, checkpoint files
- :mod:`rung.md.config`        the TOML input file

Notation: P is the number of beads; bead arrays are (P, n_atoms, 3). Atomic units inside.
"""

__version__ = "0.1.0"
