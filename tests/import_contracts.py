"""Run import-linter's contracts of pyproject.toml on this checkout (a helper for the tests).

import-linter is a test dependency; it is run through its command-line entry point in a fresh
interpreter, with this checkout first on the path, so the package it analyses is the one under
test and its report (which names both modules and the line of every broken import) becomes the
assertion message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_CODE = "from importlinter.cli import lint_imports_command\nlint_imports_command()\n"


def lint_imports(*contract_ids: str) -> subprocess.CompletedProcess:
    """lint-imports --no-cache [--contract ID ...]; skips the calling test without import-linter."""
    pytest.importorskip("importlinter")
    args = ["--no-cache", "--no-logo"] + [a for cid in contract_ids for a in ("--contract", cid)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", _CODE, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
