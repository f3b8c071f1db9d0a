"""Every tutorial runs top to bottom, in fast mode, and its closing asserts hold; so does every
file of exercise solutions (tutorials/solutions/), whose asserts are the exercises' checks.

Each tutorial is a py:percent script (it also opens as a notebook with jupytext); it reads
MINIBNN_FAST=1 to shrink its training runs. Tutorials that need PyTorch skip without it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tutorials"
TUTORIALS = sorted(ROOT.glob("[0-9][0-9]_*.py"))
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_solutions.py"))
NEEDS_TORCH = {"09_verify_a_pytorch_port.py", "09_solutions.py"}


def test_there_are_tutorials():
    assert TUTORIALS, "no tutorials found"


def test_every_tutorial_has_exercises_with_solutions():
    lacking = [t.name for t in TUTORIALS if "## Exercises" not in t.read_text()
               or not (ROOT / "solutions" / f"{t.name[:2]}_solutions.py").exists()]
    assert lacking == [], f"no exercises or solutions: {lacking}"


@pytest.mark.parametrize("script", TUTORIALS + SOLUTIONS, ids=lambda p: p.name)
def test_tutorial_runs_in_fast_mode(script, tmp_path):
    if script.name in NEEDS_TORCH:
        pytest.importorskip("torch")
    env = dict(os.environ, MINIBNN_FAST="1", MPLBACKEND="Agg", MINIBNN_FIGURES=str(tmp_path))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (f"{script.name} failed:\n--- stdout\n{result.stdout[-3000:]}"
                                    f"\n--- stderr\n{result.stderr[-3000:]}")
