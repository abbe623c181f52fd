"""One way for every rung command line to refuse bad input: one line, exit code 2, no traceback.

:class:`Group` is a ``click.Group`` (use it as ``@click.group(cls=rung.core.cli.Group)``) whose
commands, when they raise :class:`rung.core.errors.InputError` or when click itself rejects the
command line (a missing argument, an option out of its range, an unknown option), print::

    Error: <the file or option>: <the problem>

on stderr as the only line, and exit with code 2 (click's code for a usage error). Any other
exception is left alone: a calculation that fails is not the user's input, and its traceback is
wanted. Exit codes: 0 success, 1 a failure of the run (``click.ClickException``), 2 bad input.

Options every CLI that reads the same kind of input shares, defined once here: :func:`trust_units`
(``--trust-units``: skip the length-unit plausibility check of input coordinates) and
:func:`property_prefix` (``--property-prefix``: the names a rung writes its properties under).
"""

from __future__ import annotations

from contextlib import contextmanager

import click

from rung.core.errors import InputError

EXIT_INPUT = 2


class BadInput(click.ClickException):
    """Bad input, shown as one line without the usage text."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str):
        lines = [s.strip() for s in str(message).splitlines() if s.strip()]
        super().__init__("; ".join(lines) or "invalid input")

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.format_message()}", err=True, file=file)


# click >= 8.2 shows a bare group's help through this usage error; it stays as click shows it
_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


@contextmanager
def _one_line():
    try:
        yield
    except _HELP:
        raise
    except click.UsageError as err:
        raise BadInput(err.format_message()) from None
    except InputError as err:
        raise BadInput(str(err)) from None


class Group(click.Group):
    """A click group whose commands report :class:`~rung.core.errors.InputError` and click's usage
    errors as one line with exit code 2 (module docstring)."""

    def make_context(self, info_name, args, parent=None, **extra):
        with _one_line():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx):
        with _one_line():
            return super().invoke(ctx)


def trust_units(f):
    """``--trust-units``: the option of every command that reads coordinates
    (:func:`rung.core.dataset.check_length_unit` is skipped when given)."""
    return click.option("--trust-units", is_flag=True,
                        help="compute the input coordinates as they are, even when their bond lengths look like "
                             "another length unit (the check compares nearest neighbours with covalent radii)")(f)


def _checked_prefix(ctx, param, value):
    from rung.core.dataset import property_prefix as checked

    try:
        return checked(value)
    except InputError as err:
        raise click.BadParameter(str(err).removeprefix("--property-prefix "), ctx=ctx, param=param) from None


def property_prefix(f):
    """``--property-prefix PREFIX``: the option of every command that writes a rung's properties into a
    dataset; the value reaches the command checked and ending with ``_`` (``""`` when not given), see
    :func:`rung.core.dataset.property_prefix`."""
    return click.option("--property-prefix", default="", callback=_checked_prefix, metavar="PREFIX",
                        help="write this rung's datasets as PREFIX<rung>_<property> (e.g. rung_ gives "
                             "rung_dft_total_energy), beside a property of the plain name that rung did not "
                             "write, such as SPICE's own dft_total_energy, which is never replaced")(f)


__all__ = ["BadInput", "EXIT_INPUT", "Group", "property_prefix", "trust_units"]
