"""rung.core.cli.Group: bad input is one line on stderr with exit code 2; other failures are not touched."""

import click
import pytest
from click.testing import CliRunner

from rung.core.cli import Group
from rung.core.dataset import DatasetError
from rung.core.errors import InputError


@click.group(cls=Group)
def main():
    """A toy CLI."""


@main.command()
@click.argument("path")
@click.option("--n", type=click.IntRange(min=1), default=1)
@click.option("--fail", type=click.Choice(["input", "dataset", "run"]), default=None)
def go(path, n, fail):
    if fail == "input":
        raise InputError(f"{path}: empty file\n(no structure)")
    if fail == "dataset":
        raise DatasetError(f"{path}: not a rung dataset")
    if fail == "run":
        raise RuntimeError("the SCF did not converge")
    click.echo(f"ok {n}")


def one_line_error(result, *words):
    assert result.exit_code == 2, result.output
    assert result.stdout == "", result.stdout  # nothing on stdout: the message goes to stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in result.output


def test_errors_share_one_base():
    assert issubclass(DatasetError, InputError) and issubclass(InputError, ValueError)


def test_input_error_is_one_line_exit_2():
    one_line_error(CliRunner().invoke(main, ["go", "a.xyz", "--fail", "input"]), "a.xyz: empty file", "(no structure)")
    one_line_error(CliRunner().invoke(main, ["go", "b.h5", "--fail", "dataset"]), "b.h5: not a rung dataset")


@pytest.mark.parametrize("args, words", [
    (["go", "a.xyz", "--n", "0"], ["'--n'", "0"]),          # out of range
    (["go"], ["PATH"]),                                       # missing argument
    (["go", "a.xyz", "--bogus"], ["--bogus"]),                # unknown option
    (["nope"], ["nope"]),                                     # unknown command
    (["--bogus"], ["--bogus"]),                               # the group's own options
])
def test_usage_errors_are_one_line_exit_2(args, words):
    one_line_error(CliRunner().invoke(main, args), *words)


def test_other_failures_and_success_untouched():
    r = CliRunner().invoke(main, ["go", "a.xyz", "--fail", "run"])
    assert r.exit_code == 1 and isinstance(r.exception, RuntimeError)
    r = CliRunner().invoke(main, ["go", "a.xyz", "--n", "3"])
    assert r.exit_code == 0 and r.output == "ok 3\n"
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "A toy CLI" in r.output
