"""The one exception base of the rung packages for input that cannot be used as given.

Every rung raises a subclass of :class:`InputError` (itself a ``ValueError``) for a problem with what
the user handed it: a missing, empty, truncated or foreign file, an option out of range, a structure
that no calculation should run on. The message names the file or option and says what is wrong, in
one sentence, so that :mod:`rung.core.cli` can print it as the program's only line. Failures of the
calculation itself (an SCF that does not converge, a walker population that collapses) are not input
errors and keep their own ``RuntimeError`` types.

Subclasses: :class:`rung.core.dataset.DatasetError` (dataset and structure files),
``rung.sci.fcidump.FCIDUMPError``, ``rung.qmc.traces.CheckpointError``, ``rung.dft_gpu.scf.ConformationError``;
``rung.qmc.system.InputError`` and ``rung.md.config.InputError`` are this class.
"""


class InputError(ValueError):
    """Input that cannot be used as given; the message names the file or option and the problem."""


__all__ = ["InputError"]
