"""The per-epoch history of a run, written as history.json and history.csv after every epoch.

history.json is strict JSON: a value that is not a finite number is written as null (JSON has no
NaN), and reading checks that the file is a list of rows mapping names to numbers or null,
so a damaged or hand-edited file gives one line naming the file and the entry.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ..checkpoint import atomic_write_text
from .runfolder import resolve

__all__ = ["write_history", "read_history", "history_texts", "HistoryError"]


class HistoryError(ValueError):
    """history.json is not a list of rows of numbers (damaged or edited by hand)."""


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def history_texts(rows: list[dict]) -> tuple[str, str]:
    """(history.json text, history.csv text) of a list of rows."""
    rows = [{key: _clean(value) for key, value in row.items()} for row in rows]
    text = json.dumps(rows, indent=1, allow_nan=False) + "\n"
    columns = list(dict.fromkeys(key for row in rows for key in row))   # first-seen order
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text, buffer.getvalue()


def write_history(out_dir: str | Path, rows: list[dict]) -> None:
    out_dir = Path(out_dir)
    text, table = history_texts(rows)
    atomic_write_text(out_dir / "history.json", text)
    atomic_write_text(out_dir / "history.csv", table)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def read_history(run_dir: str | Path) -> list[dict]:
    """The rows of RUN/history.json, checked: a list of dicts of numbers and nulls."""
    path = resolve(run_dir, "history.json")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a minibnn run folder "
                                "(written by 'minibnn train')?")
    try:
        rows = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as err:
        raise HistoryError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except ValueError as err:
        raise HistoryError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(rows, list):
        raise HistoryError(f"{path}: expected a list of per-epoch rows, found "
                           f"{type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise HistoryError(f"{path}: row {i} must be an object of named values, found "
                               f"{type(row).__name__}")
        for key, value in row.items():
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)):
                raise HistoryError(f"{path}: row {i}, field {key!r} must be a number, found "
                                   f"{type(value).__name__}")
        if not isinstance(row.get("epoch"), int) or isinstance(row.get("epoch"), bool):
            raise HistoryError(f"{path}: row {i}, field 'epoch' must be an integer, found "
                               f"{row.get('epoch')!r}")
    return rows
