"""Layout declarations: how a framework stores a tensor that a golden case holds in minibnn's
layout (NCHW activations, (M, C, kh, kw) / (M, K) weights, (C,) biases, queues as (K, D) rows).

A Layout maps a case array to the framework's array (`to_framework`) and back (`to_case`); the
adapters apply `to_framework` to inputs and parameters they pass in and `to_case` to what they
read back (outputs, gradients, updated buffers, captured intermediates), so a gradient comes
back in the layout of the tensor it belongs to. Both directions are exact (transposes and
reshapes only).

    transpose(*axes)     the framework holds np.transpose(case, axes); e.g. QUEUE_COLUMNS
    reshape(*shape)      the framework holds case.reshape(shape); e.g. CHANNEL_BIAS (1, C, 1, 1)
    KERAS_KERNEL         conv kernels (M, C, kh, kw) -> (kh, kw, C, M)   (Keras, TF, larq)
    KERAS_DENSE          dense kernels (M, K) -> (K, M)
    NHWC                 activations (N, C, H, W) -> (N, H, W, C)
    QUEUE_COLUMNS        a queue (K, D) of K keys as rows -> (D, K) columns (MoCo's official code)
    CHANNEL_BIAS         a per-channel vector (C,) -> (1, C, 1, 1) (ReActNet's LearnableBias)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

__all__ = ["Layout", "transpose", "reshape", "KERAS_KERNEL", "KERAS_DENSE", "NHWC",
           "QUEUE_COLUMNS", "CHANNEL_BIAS", "as_layouts"]


@dataclass(frozen=True)
class Layout:
    """kind "transpose" (axes) or "reshape" (shape); see the module docstring."""

    kind: str
    spec: tuple
    name: str = ""

    def to_framework(self, array: np.ndarray) -> np.ndarray:
        array = np.asarray(array)
        if self.kind == "transpose":
            if array.ndim != len(self.spec):
                raise ValueError(f"layout {self}: expected a {len(self.spec)}-d array, got shape "
                                 f"{array.shape}")
            return np.ascontiguousarray(np.transpose(array, self.spec))
        return array.reshape(self.spec)

    def to_case(self, array: np.ndarray, shape: tuple | None = None) -> np.ndarray:
        """Back to the case's layout; `shape` (the case's shape, when known) restores a
        reshape exactly, otherwise a reshape layout flattens its non-unit axes."""
        array = np.asarray(array)
        if self.kind == "transpose":
            if array.ndim != len(self.spec):
                raise ValueError(f"layout {self}: the framework's array has shape "
                                 f"{array.shape}, expected {len(self.spec)} dimensions")
            return np.transpose(array, np.argsort(self.spec))
        if shape is not None:
            return array.reshape(shape)
        squeezed = [n for n in array.shape if n != 1]
        return array.reshape(squeezed or (1,))

    def __str__(self) -> str:
        return self.name or f"{self.kind}{self.spec}"


def transpose(*axes: int, name: str = "") -> Layout:
    """The framework holds np.transpose(case_array, axes)."""
    if sorted(axes) != list(range(len(axes))):
        raise ValueError(f"transpose layout: {axes} is not a permutation of 0..{len(axes) - 1}")
    return Layout("transpose", tuple(int(a) for a in axes), name)


def reshape(*shape: int, name: str = "") -> Layout:
    """The framework holds case_array.reshape(shape) (one -1 allowed)."""
    return Layout("reshape", tuple(int(n) for n in shape), name)


KERAS_KERNEL = transpose(2, 3, 1, 0, name="KERAS_KERNEL (kh, kw, C, M)")
KERAS_DENSE = transpose(1, 0, name="KERAS_DENSE (K, M)")
NHWC = transpose(0, 2, 3, 1, name="NHWC")
QUEUE_COLUMNS = transpose(1, 0, name="QUEUE_COLUMNS (D, K)")
CHANNEL_BIAS = reshape(1, -1, 1, 1, name="CHANNEL_BIAS (1, C, 1, 1)")


def as_layouts(layout: Mapping[str, Layout] | None) -> dict[str, Layout]:
    """Check a {tensor name: Layout} mapping; a TypeError names a wrong entry."""
    out = dict(layout or {})
    for name, value in out.items():
        if not isinstance(value, Layout):
            raise TypeError(f"layout of {name!r} must be a minibnn.verify Layout (transpose(...), "
                            f"reshape(...), KERAS_KERNEL, ...), got {type(value).__name__}")
    return out
