"""The repository travels: no tracked text file names a path of one machine or one user's home.

A reference file read from a folder of the author's machine (the work area, a user's home) works there
only; a fresh clone elsewhere cannot run it. Test data live in the repository (``packages/*/tests/data``,
``rung.sci``'s ``data/``) and are found relative to ``__file__``.
"""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The machine and user-home folders at the filesystem root (after a start, quote, space, ... -- not inside
# a word or a relative path such as ``docs/work``), or a Windows drive letter and backslash (upper case).
ROOT_FOLDERS = ("work", "home", "root", "Users")
ABSOLUTE = re.compile(r"(?<![\w./-])/(?:" + "|".join(ROOT_FOLDERS) + r")/|(?<!\w)[A-Z]:\\{1,2}[\w.$]")

# Documented exceptions: {tracked path: reason}. Keep this empty unless a path is the point of the file.
ALLOWED: dict[str, str] = {}


def absolute_paths(text, needles=()):
    """Machine-specific paths in ``text``.

    Parameters
    ----------
    text : str
        File content.
    needles : sequence of str
        Extra literal strings that count as hits (the folder this checkout sits in).

    Returns
    -------
    list of str
        ``"line N: <line>"`` for each line with a hit.
    """
    hits = []
    for number, line in enumerate(text.splitlines(), start=1):
        if ABSOLUTE.search(line) or any(n in line for n in needles):
            hits.append(f"line {number}: {line.strip()[:120]}")
    return hits


def _tracked_text_files():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in names.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():  # deleted in the work tree but still in the index
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:  # binary (npz, png, pt, h5)
            continue
        yield name, data.decode(errors="replace")


def test_detector_finds_machine_paths():
    """The scanner itself: each kind of absolute path is found, relative paths and prose are not (the
    paths are assembled here, so that this file holds none itself)."""
    work, home, root, users = (f"/{name}/" for name in ROOT_FOLDERS)
    drive = "C:" + "\\"
    for bad in [
        f'open("{work}shared/seeds/FCIDUMP")',
        f"DATA = '{home}alice/rung/data'",
        f"see {root}.cache/x",
        f"    {users}bob/ref.npz",
        f'path = "{drive}\\Users\\\\bob\\\\ref.npz"',  # as a Python source line writes it
        f"{drive}data\\ref.npz",
    ]:
        assert absolute_paths(bad), bad
    for fine in [
        "Path(__file__).parent / 'data'",
        f"packages/md/docs{work}notes.md",
        "~/.cache/rung/nnp",
        "/tmp/fennol-site",
        "the home/root directory",
        "ratio a:b, 'x:\\n', f'{key}:\\t'",
    ]:
        assert not absolute_paths(fine), fine
    assert absolute_paths("x = '/opt/clone/rung/f.py'", needles=["/opt/clone/rung/"])


def test_no_machine_path_in_tracked_files():
    """No tracked text file (this one included) names a machine or user-home folder at the filesystem
    root, a Windows drive, or the folder of this checkout."""
    needles = [str(ROOT) + "/", str(ROOT.parent / "shared") + "/"]
    hits = []
    for name, text in _tracked_text_files():
        if name in ALLOWED:
            continue
        hits += [f"{name} {h}" for h in absolute_paths(text, needles)]
    assert not hits, "machine-specific paths (vendor the data or find it relative to __file__):\n" + "\n".join(hits)
