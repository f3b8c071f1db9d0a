"""Checkpoints: one `.npz` holding every array, plus the rest of the state as JSON inside it.

A training state is a nested structure of dicts, lists, numbers, strings and ndarrays (model
state dict, optimizer state, loader and generator states, epoch, history). `save_state` stores
each ndarray under its path ("model/features.0.weight") and the remaining structure as JSON in
the entry "__state__", with each array replaced by a reference. Writes are atomic: the file is
written to a temporary name in the same folder, flushed to disk, then renamed over the target,
so an interruption leaves the previous checkpoint intact (a run folder goes further and writes
all files of an epoch as one transaction, see runfolder.py).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..npzio import atomic_write_text, load_npz, npz_writer, save_npz

__all__ = ["save_state", "load_state", "state_writer", "atomic_write_text", "CheckpointError"]

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
            if obj[_ARRAY_TAG] not in arrays:
                raise KeyError(obj[_ARRAY_TAG])
            return arrays[obj[_ARRAY_TAG]]
        return {k: _unflatten(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_unflatten(v, arrays) for v in obj]
    return obj


def state_writer(state: dict):
    """write(f) storing a nested state, for atomic_write or a run folder's epoch transaction."""
    arrays: dict = {}
    structure = _flatten(state, "", arrays)
    return npz_writer(_STATE_KEY, structure, arrays)


def save_state(path: str | os.PathLike, state: dict) -> None:
    """Save a nested state (dicts, lists, scalars, strings, ndarrays) atomically to `path`."""
    arrays: dict = {}
    structure = _flatten(state, "", arrays)
    save_npz(path, _STATE_KEY, structure, arrays)


def load_state(path: str | os.PathLike) -> dict:
    """Load what save_state wrote; a clear CheckpointError for missing or damaged files."""
    structure, arrays = load_npz(path, _STATE_KEY, CheckpointError, "minibnn checkpoint")
    try:
        return _unflatten(structure, arrays)
    except KeyError as err:
        raise CheckpointError(f"{path}: the header refers to the array {err.args[0]!r}, which the "
                              f"file does not hold") from None
