"""Anomaly detection: saved arrays modified before backward, and the first op to make NaN/inf.

NumPy arrays have no version counter (PyTorch bumps one on every in-place write and checks it
in backward). In anomaly mode each Function's context is fingerprinted when its forward
returns: every ndarray the forward left on the context (`save_for_backward` and plain
attributes such as a copied memory row block) is hashed with BLAKE2b. Backward re-hashes them
first and raises `SavedArrayModifiedError`, naming the Function and the array, if any changed.
The same mode checks values: a forward whose inputs are finite but whose output is not, or a
backward whose upstream gradient is finite but whose input gradients are not, raises
`FloatingPointError` naming the op. The check costs one hash of every saved array and one
`isfinite` pass over every output and gradient, so it is off by default; the test suite turns
it on for every method's training step.

    with minibnn.autograd.detect_anomaly():
        loss = step(...)
        loss.backward()

or, for a whole run, `MINIBNN_DETECT_ANOMALY=1 minibnn train ...`.

Reference: PyTorch's tensor version counters and torch.autograd.detect_anomaly().
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any, Iterator

import numpy as np

__all__ = ["detect_anomaly", "is_anomaly_enabled", "SavedArrayModifiedError", "fingerprint",
           "check_unchanged", "check_forward_finite", "check_backward_finite"]

_ENABLED = os.environ.get("MINIBNN_DETECT_ANOMALY", "") not in ("", "0")   # whole runs
_SKIP = frozenset({"inputs", "function", "needs_input_grad", "_anomaly"})


class SavedArrayModifiedError(RuntimeError):
    """An array saved for backward was modified in place before backward ran."""


def is_anomaly_enabled() -> bool:
    return _ENABLED


class detect_anomaly(contextlib.ContextDecorator):
    """`with detect_anomaly():` (or as a decorator) turns the checks on; `enabled=False` off."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._previous: list[bool] = []

    def _recreate_cm(self):
        return detect_anomaly(self.enabled)

    def __enter__(self):
        global _ENABLED
        self._previous.append(_ENABLED)
        _ENABLED = self.enabled
        return self

    def __exit__(self, *exc):
        global _ENABLED
        _ENABLED = self._previous.pop()
        return False


def _saved_arrays(ctx: Any) -> Iterator[tuple[str, np.ndarray]]:
    """(label, array) for every ndarray the forward left on `ctx`, in tuples and lists too."""
    for name, value in vars(ctx).items():
        if name in _SKIP:
            continue
        items = value if isinstance(value, (tuple, list)) else (value,)
        for i, item in enumerate(items):
            if isinstance(item, np.ndarray) and item.dtype != object:
                yield (f"{name}[{i}]" if items is value else name), item


def _digest(a: np.ndarray) -> bytes:
    data = np.ascontiguousarray(a)
    return hashlib.blake2b(data.view(np.uint8).reshape(-1) if data.size else b"",
                           digest_size=16).digest()


def fingerprint(ctx: Any) -> list:
    """The saved arrays of `ctx` with their shapes, dtypes and hashes, taken now."""
    return [(label, a, a.shape, a.dtype, _digest(a)) for label, a in _saved_arrays(ctx)]


def check_unchanged(ctx: Any, op: str) -> None:
    """Raise if an array fingerprinted at forward time changed before this backward."""
    for label, a, shape, dtype, digest in getattr(ctx, "_anomaly", ()):
        if a.shape != shape or a.dtype != dtype or _digest(a) != digest:
            raise SavedArrayModifiedError(
                f"{op}.backward: the array {label} {shape} {dtype} saved by its forward was "
                "modified in place before backward ran; gradients would use the new values. "
                "Copy it before changing it, or change it after backward")


def _finite(a: Any) -> bool:
    a = np.asarray(a)
    return not np.issubdtype(a.dtype, np.inexact) or bool(np.isfinite(a).all())


def check_forward_finite(op: str, inputs: list, out: np.ndarray) -> None:
    """Raise if `op` turned finite inputs into a NaN or infinite output."""
    if not _finite(out) and all(_finite(a) for a in inputs if isinstance(a, np.ndarray)):
        bad = int(np.size(out) - np.count_nonzero(np.isfinite(out)))
        raise FloatingPointError(f"{op}.forward produced {bad} NaN/inf values of "
                                 f"{np.size(out)} from finite inputs")


def check_backward_finite(op: str, dy: np.ndarray, grads: Any) -> None:
    """Raise if `op`'s backward turned a finite upstream gradient into NaN/inf gradients."""
    if not _finite(dy):
        return
    items = grads if isinstance(grads, (tuple, list)) else (grads,)
    for i, g in enumerate(items):
        if g is not None and not _finite(g):
            raise FloatingPointError(f"{op}.backward produced NaN/inf in the gradient of input "
                                     f"{i} from a finite upstream gradient")
