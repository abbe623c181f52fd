"""The numba.cuda kernel modules load with numba-cuda and NumPy only (``make ptx-check`` compiles them in
such a venv, with the packages' ``src`` folders on the path): at module level they import nothing from
``rung`` but the plain-Python kernel bodies they share with the CPU kernels (``rung.<pkg>._kernels.*_body``),
and those bodies, and the package ``__init__`` files that importing them runs, import nothing outside the
standard library's ``math`` (a host-side import inside a function is fine). Checked from the source, so
that a machine without numba-cuda's compiler catches it too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STDLIB_OK = {"__future__", "math"}


def _module_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every module-level absolute import of ``path`` ("pkg.mod.name" for ``from pkg.mod
    import name``, so that an imported submodule is named whole)."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _source(module: str) -> Path | None:
    """The file of ``rung.<pkg>.<...>`` in this checkout (a module or a package's ``__init__``)."""
    parts = module.split(".")
    base = ROOT / "packages" / parts[1] / "src" / Path(*parts)
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.exists():
            return p
    return None


def test_gpu_kernel_modules_import_no_rung_at_module_level():
    files = sorted(p for p in ROOT.glob("packages/*/src/rung/*/_kernels/*.py") if "cuda.jit" in p.read_text())
    assert len(files) >= 4  # nnp, sci, qmc AOs, qmc forces
    bad, bodies = [], set()
    for path in files:
        for line, name in _module_imports(path):
            if name.split(".")[0] != "rung":
                continue
            parts = name.split(".")
            if len(parts) == 4 and parts[2] == "_kernels" and parts[3].endswith("_body"):
                bodies.add(name)
            else:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "; ".join(bad)
    assert bodies, "no shared kernel body found (the check of the bodies below would be empty)"
    for body in sorted(bodies):  # the body and the __init__ files its import runs
        parts = body.split(".")
        for mod in (body, ".".join(parts[:2]), ".".join(parts[:3])):
            src = _source(mod)
            assert src is not None, f"{body}: no source for {mod}"
            heavy = [f"{src.relative_to(ROOT)}:{line} imports {name}" for line, name in _module_imports(src)
                     if name.split(".")[0] not in STDLIB_OK]
            assert not heavy, "; ".join(heavy)
