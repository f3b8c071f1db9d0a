"""Checkpoints: one `.npz` holding every array, plus the rest of the state as JSON inside it.

A training state is a nested structure of dicts, lists, numbers, strings and ndarrays (model
state dict, optimizer state, loader and generator states, epoch, history). `save_state` stores
each ndarray under its path ("model/features.0.weight") and the remaining structure as JSON in
the entry "__state__", with each array replaced by a reference. Writes are atomic: the file is
written to a temporary name in the same folder, flushed to disk, then renamed over the target,
so an interruption leaves the previous checkpoint intact (a run folder goes further and writes
all files of an epoch as one transaction, see train/runfolder.py).

This module sits at the bottom of the package (it imports only npzio), so every layer reads
checkpoints the same way: `checkpoint_file(path)` is THE rule that turns a run folder into its
model checkpoint (best.npz, else last.npz, looking into a committed but not yet applied epoch
first, see `resolve`), and `check_header` the checks every reader of a training checkpoint makes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .npzio import atomic_write_text, load_npz, npz_writer, save_npz

__all__ = ["save_state", "load_state", "state_writer", "atomic_write_text", "CheckpointError",
           "CHECKPOINT_FORMAT", "COMMIT_PATTERN", "resolve", "checkpoint_file", "check_header"]

CHECKPOINT_FORMAT = "minibnn-checkpoint-1"
COMMIT_PATTERN = re.compile(r"^\.epoch-(\d+)\.commit$")   # a committed epoch of a run folder

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


def resolve(run_dir: str | os.PathLike, name: str) -> Path:
    """The current version of `name` in a run folder, without writing anything: a committed but
    not yet applied epoch (train/runfolder.py) holds the newest copy."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        commits = sorted((int(m.group(1)), p) for p in run_dir.iterdir()
                         if (m := COMMIT_PATTERN.match(p.name)))
        for _, path in reversed(commits):
            if (path / name).is_file():
                return path / name
    return run_dir / name


def checkpoint_file(path: str | os.PathLike) -> Path:
    """A model checkpoint: a file is itself; a run folder gives its best.npz, else last.npz."""
    path = Path(path)
    if path.is_dir():
        best = resolve(path, "best.npz")
        return best if best.exists() else resolve(path, "last.npz")
    return path


def check_header(state: Any, path: str | os.PathLike) -> dict:
    """The header fields every training checkpoint has (format, epoch, config, model, history),
    each of its type, and finite model arrays; one CheckpointError line naming the field."""
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a minibnn training checkpoint "
                              f"(format {found!r}, expected {CHECKPOINT_FORMAT!r})")
    expected = {"epoch": int, "config": dict, "model": dict, "history": list}
    for key, kind in expected.items():
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{path}: header field {key!r} must be a {kind.__name__}, "
                                  f"found {value!r:.60}")
    if state["epoch"] < 0 or len(state["history"]) != state["epoch"]:
        raise CheckpointError(f"{path}: header field 'epoch' is {state['epoch']} but the history "
                              f"holds {len(state['history'])} rows")
    for name, value in state["model"].items():
        if not isinstance(value, np.ndarray):
            raise CheckpointError(f"{path}: model entry {name!r} must be an array, found "
                                  f"{type(value).__name__}")
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            raise CheckpointError(f"{path}: model entry {name!r} holds NaN or infinite values; "
                                  f"the checkpoint is unusable")
    for key in ("architecture", "data"):          # written since 0.2: the model's description
        if key in state and not isinstance(state[key], dict):
            raise CheckpointError(f"{path}: header field {key!r} must be a dict, found "
                                  f"{state[key]!r:.60}")
    return state
