"""The package's shape: imports go only downward, no hidden imports, files a reader can hold.

- The import contracts in pyproject.toml ([tool.importlinter]: the layers of
  docs/architecture.md, the engine below the models) are checked with import-linter, which
  names both modules and the line of every import that breaks them.
- No import inside a function or class, except of optional dependencies (PyTorch, JAX, Keras,
  Dask, matplotlib), so the import graph the contract checks is the whole graph, and a module's
  dependencies are all at its top. (cli.py loads command modules with importlib, by name.)
- No module of the package is longer than 400 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

from import_contracts import lint_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minibnn"
OPTIONAL = {"torch", "jax", "jaxlib", "keras", "dask", "distributed", "matplotlib", "IPython"}
MAX_LINES = 400


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_import_contracts_hold():
    done = lint_imports()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and done.stdout.count("KEPT") >= 6, done.stdout


def _nested_imports(tree: ast.Module):
    """(line, imported module) of every import below the module's top level."""
    found = []
    for top in tree.body:
        if not isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for node in ast.walk(top):
            if isinstance(node, ast.Import):
                found += [(node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_no_imports_inside_functions_except_optional_dependencies():
    bad = []
    for path in _modules():
        for line, name in _nested_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if name.split(".")[0] not in OPTIONAL:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "imports inside functions (move them to the top of the module):\n" + \
        "\n".join(bad)


def test_no_module_is_longer_than_400_lines():
    long = [f"{p.relative_to(ROOT)}: {n} lines" for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines (split them by role):\n" + "\n".join(long)


def test_the_checks_see_a_violation(tmp_path):
    """The scan is not vacuous: a function-level import of a minibnn module is reported."""
    tree = ast.parse("import numpy\n\ndef f():\n    from .data import load_dataset\n")
    assert _nested_imports(tree) == [(4, ".data")]
