"""`dft-gpu run` never mixes two calculations in one output: an --out whose DFT results were computed with
other settings is refused before any work and left as it is (issue 19: a result is never silently
replaced by a different calculation); the same settings resume."""

from click.testing import CliRunner

from rung.core.testing import check_bad_input
from rung.dft_gpu.cli import main

FAST = ["--xc", "hf", "--ecp", "none", "--jk", "pyscf", "--no-forces", "--quiet"]
WATER = "3\nname=water\nO 0.0 0.0 0.1193\nH 0.0 0.7632 -0.4770\nH 0.0 -0.7632 -0.4770\n"  # Angstrom


def test_an_output_of_other_settings_is_refused_and_kept(tmp_path):
    src, out = tmp_path / "w.xyz", tmp_path / "w.h5"
    src.write_text(WATER)
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST, "--basis", "sto-3g"])
    assert r.exit_code == 0 and "1 done, 0 failed" in r.output, r.output
    before = out.read_bytes()
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST, "--basis", "6-31g"])
    check_bad_input(r, "w.h5", "holds DFT results computed with other settings", "'sto-3g' there, '6-31g' now")
    assert out.read_bytes() == before
    r = CliRunner().invoke(main, ["run", str(src), "--out", str(out), *FAST, "--basis", "sto-3g"])
    assert r.exit_code == 0 and "(0 computed now" in r.output, r.output
