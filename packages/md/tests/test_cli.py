from pathlib import Path

import pytest
from click.testing import CliRunner

from rung.md.cli import main
from rung.core.testing import check_bad_input

H2 = "2\n\nH 0 0 0\nH 0 0 0.74\n"


def _input(folder: Path, structure: str = "h2.xyz", xyz: str = H2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / structure).write_text(xyz)
    path = folder / "in.toml"
    path.write_text(f'structure = "{structure}"\nsteps = 4\ndt_fs = 0.5\nbeads = 1\nthermostat = "none"\n'
                    'potential = {type = "harmonic", k = 0.1}\n[output]\ncheckpoint_every = 2\n')
    return path


def test_help():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_missing_workdir_is_created(tmp_path):
    inp = _input(tmp_path / "in")
    work = tmp_path / "new" / "run1"
    r = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(work), "--quiet"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in work.iterdir()) == ["md.chk.h5", "md.h5", "md.log", "md.xyz"]


def test_empty_xyz_is_refused_and_no_workdir_made(tmp_path):
    inp = _input(tmp_path, "empty.xyz", "")
    r = CliRunner().invoke(main, ["run", str(inp), "--workdir", str(tmp_path / "out"), "--quiet"])
    check_bad_input(r, "empty.xyz")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, b"garbage"],
                         ids=["empty", "torn", "garbage"])
def test_corrupt_checkpoint_is_refused(tmp_path, content):
    chk = tmp_path / "md.chk.h5"
    chk.write_bytes(content)
    r = CliRunner().invoke(main, ["run", "--restart", "--checkpoint", str(chk), "--quiet"])
    check_bad_input(r, "md.chk.h5", "unreadable")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["md.chk.h5"] and chk.read_bytes() == content
