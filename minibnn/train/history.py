"""The per-epoch history of a run, written as history.json and history.csv after every epoch."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from .checkpoint import atomic_write_text

__all__ = ["write_history", "read_history"]


def write_history(out_dir: str | Path, rows: list[dict]) -> None:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "history.json", json.dumps(rows, indent=1) + "\n")
    columns = list(dict.fromkeys(key for row in rows for key in row))   # first-seen order
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out_dir / "history.csv", buffer.getvalue())


def read_history(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "history.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a minibnn run folder "
                                "(written by 'minibnn train')?")
    return json.loads(path.read_text())
