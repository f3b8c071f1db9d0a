"""Checkpoints: one `.npz` holding every array, plus the rest of the state as JSON inside it.

A training state is a nested structure of dicts, lists, numbers, strings and ndarrays (model
state dict, optimizer state, loader and generator states, epoch, history). `save_state` stores
each ndarray under its path ("model/features.0.weight") and the remaining structure as JSON in
the entry "__state__", with each array replaced by a reference. Writes are atomic: the file is
written to a temporary name in the same folder, flushed to disk, then renamed over the target,
so an interruption leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["save_state", "load_state", "atomic_write_text", "CheckpointError"]

_STATE_KEY = "__state__"
_ARRAY_TAG = "__array__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, or not a minibnn checkpoint."""


def _flatten(obj: Any, path: str, arrays: dict) -> Any:
    """Replace every ndarray in `obj` by {"__array__": key}, collecting it in `arrays`."""
    if isinstance(obj, np.ndarray):
        arrays[path] = obj
        return {_ARRAY_TAG: path}
    if isinstance(obj, dict):
        return {str(k): _flatten(v, f"{path}/{k}", arrays) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_flatten(v, f"{path}/{i}", arrays) for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _unflatten(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY_TAG}:
            return arrays[obj[_ARRAY_TAG]]
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def _atomic_write(path: Path, write) -> None:
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
    _atomic_write(Path(path), lambda f: f.write(text.encode("utf-8")))


def save_state(path: str | os.PathLike, state: dict) -> None:
    """Save a nested state (dicts, lists, scalars, strings, ndarrays) atomically to `path`."""
    arrays: dict = {}
    structure = _flatten(state, "", arrays)
    payload = {key: value for key, value in arrays.items()}
    payload[_STATE_KEY] = np.array(json.dumps(structure))
    _atomic_write(Path(path), lambda f: np.savez(f, **payload))


def load_state(path: str | os.PathLike) -> dict:
    """Load what save_state wrote; a clear CheckpointError for missing or damaged files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _STATE_KEY not in npz.files:
                raise CheckpointError(f"{path} is an .npz file but not a minibnn checkpoint "
                                      f"(no {_STATE_KEY!r} entry; found {npz.files[:5]}...)")
            structure = json.loads(str(npz[_STATE_KEY]))
            arrays = {key: npz[key] for key in npz.files if key != _STATE_KEY}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:
        if isinstance(err, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path} is damaged or truncated ({err})") from err
    return _unflatten(structure, arrays)
