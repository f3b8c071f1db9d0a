"""`.npz` files with a JSON header, written atomically: the one file format of checkpoints and
packed models.

An entry `header_key` holds a JSON document; every other entry is an array. Writes go to a
temporary file in the same folder, are flushed to disk, then renamed over the target, so an
interruption leaves the previous file intact. Files get the mode a plain `open()` would give
them (0666 minus the user's umask), not mkstemp's private 0600. No pickle is ever read. NumPy only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

__all__ = ["atomic_write", "atomic_write_text", "replace_folder", "save_npz", "npz_writer", "load_npz", "fsync_dir",
           "file_mode"]


def file_mode() -> int:
    """The mode open() gives a new file: 0o666 without the bits of the current umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (renames, new files) to disk where the OS allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def replace_folder(new: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the finished folder `new` in place of `target` (which may not exist): two renames
    and a removal. A kill between the renames leaves both complete folders beside `target`
    (`.NAME.old-PID` and `new`), never a half-written one under its name."""
    new, target = Path(new), Path(target)
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    fsync_dir(target.parent)
    if old.exists():
        shutil.rmtree(old)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file so that readers see either the old or the new content, never half."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def npz_writer(header_key: str, header, arrays: dict) -> Callable[[BinaryIO], None]:
    """write(f) storing `arrays` plus `header` (JSON, no NaN) under `header_key`, for atomic_write."""
    payload = dict(arrays)
    payload[header_key] = np.array(json.dumps(header, allow_nan=False))
    return lambda f: np.savez(f, **payload)


def save_npz(path: str | os.PathLike, header_key: str, header, arrays: dict) -> None:
    """Atomically write `arrays` plus `header` (JSON-serialisable) under `header_key`."""
    atomic_write(path, npz_writer(header_key, header, arrays))


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
            header = json.loads(str(npz[header_key]), parse_constant=_no_constant)
            arrays = {key: npz[key] for key in npz.files if key != header_key}
    except error:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, UnicodeError) as err:
        raise error(f"{what} {path} is damaged or truncated ({err})") from err
    return header, arrays


def _no_constant(name: str):
    raise ValueError(f"the JSON header holds the non-standard constant {name}")
