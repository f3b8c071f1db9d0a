"""The shape of the engine: autograd and functional import one way (checked by import-linter's
contracts in pyproject.toml), have no imports inside functions, keep no second module under an
old name, and attach the primitives to Tensor in one place, as the primitives themselves."""

import ast
import importlib.util
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import minibnn
from minibnn import Tensor
from minibnn import functional as F
from minibnn.autograd import elementwise, reductions, shape, tensor_methods

ROOT = pathlib.Path(minibnn.__file__).parent


def _function_level_imports(folder: pathlib.Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found += [f"{path.name}:{node.lineno}" for node in ast.walk(fn)
                          if isinstance(node, (ast.Import, ast.ImportFrom))]
    return found


@pytest.mark.parametrize("package", ["autograd", "functional"])
def test_no_imports_inside_functions(package):
    assert _function_level_imports(ROOT / package) == []


def test_the_function_level_import_scan_finds_one():
    """The scan above can fail: it sees an import placed inside a function."""
    tree = "def f():\n    from . import ops\n    return ops\n"
    nodes = [n for fn in ast.walk(ast.parse(tree)) if isinstance(fn, ast.FunctionDef)
             for n in ast.walk(fn) if isinstance(n, ast.ImportFrom)]
    assert len(nodes) == 1


@pytest.mark.parametrize("old", ["minibnn.autograd.functional", "minibnn.autograd.conv",
                                 "minibnn.autograd.batchnorm", "minibnn.autograd.kernels",
                                 "minibnn.autograd.ops", "minibnn.autograd.ops_structure"])
def test_moved_modules_are_gone_from_their_old_paths(old):
    assert importlib.util.find_spec(old) is None


def test_import_contracts_of_autograd_and_functional_are_kept():
    pytest.importorskip("importlinter")
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("lint-imports is not on PATH")
    result = subprocess.run([exe, "--no-cache", "--no-logo", "--contract", "autograd-inside",
                             "--contract", "functional-inside"],
                            cwd=ROOT.parent, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("KEPT") == 2


def test_tensor_methods_are_the_primitives_themselves():
    for name, value in tensor_methods.METHODS.items():
        assert Tensor.__dict__[name] is value, name
    assert Tensor.sum is reductions.sum and Tensor.reshape is shape.reshape
    assert Tensor.__add__ is elementwise.add and Tensor.astype is elementwise.cast


def test_reflected_operators_swap_their_arguments():
    x = Tensor(np.array([1.0, 2.0, 4.0]), requires_grad=True)
    a = np.arange(6.0).reshape(2, 3)
    for got, want in ((2.0 - x, [1.0, 0.0, -2.0]), (8.0 / x, [8.0, 4.0, 2.0]),
                      (2.0 ** x, [2.0, 4.0, 16.0]), (a @ x, a @ [1.0, 2.0, 4.0])):
        np.testing.assert_allclose(got.data, want)
    (8.0 / x).sum().backward()
    np.testing.assert_allclose(x.grad, [-8.0, -2.0, -0.5])


def test_functional_exports_resolve_to_callables():
    assert all(callable(getattr(F, name)) for name in F.__all__)
    assert F.var is reductions.var and F.where is elementwise.where
