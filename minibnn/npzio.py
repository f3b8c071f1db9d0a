"""`.npz` files with a JSON header, written atomically: the one file format of checkpoints and
packed models.

An entry `header_key` holds a JSON document; every other entry is an array. Writes go to a
temporary file in the same folder, are flushed to disk, then renamed over the target, so an
interruption leaves the previous file intact. No pickle is ever read. NumPy only.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

__all__ = ["atomic_write", "atomic_write_text", "save_npz", "load_npz"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call write(f) on a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file so that readers see either the old or the new content, never half."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_npz(path: str | os.PathLike, header_key: str, header, arrays: dict) -> None:
    """Atomically write `arrays` plus `header` (JSON-serialisable) under `header_key`."""
    payload = dict(arrays)
    payload[header_key] = np.array(json.dumps(header))
    atomic_write(path, lambda f: np.savez(f, **payload))


def load_npz(path: str | os.PathLike, header_key: str, error: type[Exception], what: str,
             hint: str = "") -> tuple[object, dict]:
    """(header, arrays) of a file save_npz wrote. Raises `error` naming the file when it is
    missing, damaged or truncated, or an .npz without `header_key` (`what` names the kind of
    file expected, `hint` says how to make one)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if header_key not in npz.files:
                raise error(f"{path} is an .npz file but not a {what} (no {header_key!r} entry; "
                            f"found {npz.files[:5]}){hint}")
            header = json.loads(str(npz[header_key]))
            arrays = {key: npz[key] for key in npz.files if key != header_key}
    except error:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise error(f"{what} {path} is damaged or truncated ({err})") from err
    return header, arrays
