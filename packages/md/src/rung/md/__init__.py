"""rung.md — MD rung: classical and ring-polymer molecular dynamics over rung potentials."""

__version__ = "0.1.0"
