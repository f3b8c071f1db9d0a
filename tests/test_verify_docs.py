"""docs/golden.md stays true: its quick start runs as written, and the folder sizes it states
are what `minibnn golden` writes."""

import re
from pathlib import Path

import pytest

from minibnn.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "golden.md"


def _quick_start() -> str:
    text = DOC.read_text()
    section = text[text.index("## Quick start"):text.index("## Writing and running")]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.torch
def test_quick_start_runs(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    exec(compile(_quick_start(), str(DOC) + ":quick-start", "exec"), {"__name__": "quick"})
    out = capsys.readouterr().out
    assert "4 cases: 4 OK" in out and "forward: every paired layer agrees" in out
    assert "backward: every output gradient agrees" in out


def test_stated_folder_sizes_match_what_is_written(tmp_path, capsys):
    text = DOC.read_text()
    stated_all = int(re.search(r"every case: 34 files \+ manifest, (\d+) KB", text).group(1))
    assert main(["golden", str(tmp_path / "all")]) == 0
    written = int(re.search(r"(\d+) KB in all", capsys.readouterr().out).group(1))
    assert abs(written - stated_all) <= 0.03 * stated_all, (written, stated_all)
    stated_committed = int(re.search(r"engine\), (\d+) KB with", text).group(1))
    committed = Path(__file__).resolve().parent / "golden"
    size = sum(f.stat().st_size for f in committed.iterdir()) / 1024
    assert abs(size - stated_committed) <= 0.05 * stated_committed, (size, stated_committed)
