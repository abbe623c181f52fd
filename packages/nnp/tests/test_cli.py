from click.testing import CliRunner

from rung.nnp.cli import main


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
