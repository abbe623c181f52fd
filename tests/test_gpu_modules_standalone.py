"""The numba.cuda kernel modules load from their files alone (``make ptx-check`` compiles them in a venv
with numba-cuda and NumPy only): no module-level import of ``rung`` (a host-side import inside a function
is fine), checked from the source so that a machine without numba-cuda's compiler catches it too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_kernel_modules_import_no_rung_at_module_level():
    files = sorted(p for p in ROOT.glob("packages/*/src/rung/*/_kernels/*.py") if "cuda.jit" in p.read_text())
    assert len(files) >= 4  # nnp, sci, qmc AOs, qmc forces
    bad = []
    for path in files:
        for node in ast.parse(path.read_text()).body:  # module level only
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "rung"]
    assert not bad, "; ".join(bad)
