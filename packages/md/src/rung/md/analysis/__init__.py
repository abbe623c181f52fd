"""Trajectory analyses: :mod:`rung.md.analysis.protons` (proton-transfer events)."""
