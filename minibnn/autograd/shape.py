"""Shape primitives: reshape, flatten, transpose, indexing, concatenate and stack.

Each is a `Function` with a hand-written backward on plain ndarrays that moves the gradient
back to where its values came from; none does arithmetic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .function import Function
from .tensor import Tensor

__all__ = ["reshape", "flatten", "transpose", "getitem", "concatenate", "stack"]


# ------------------------------------------------------------------------------ shape ops
class Reshape(Function):
    """y = x viewed with a new shape;  dx = dy reshaped back."""

    @staticmethod
    def forward(ctx, x, shape=()):
        ctx.shape = x.shape
        return x.reshape(shape)

    @staticmethod
    def backward(ctx, dy):
        return dy.reshape(ctx.shape)


class Transpose(Function):
    """y = x with axes permuted;  dx = dy with the inverse permutation."""

    @staticmethod
    def forward(ctx, x, axes=None):
        ctx.axes = axes
        return np.transpose(x, axes)

    @staticmethod
    def backward(ctx, dy):
        return np.transpose(dy, np.argsort(ctx.axes))


def reshape(x, *shape) -> Tensor:
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    known = int(np.prod([n for n in shape if n != -1]))
    free = [n for n in shape if n == -1]
    fits = (known == x.size) if not free else (len(free) == 1 and known > 0 and x.size % known == 0)
    if not fits:
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} "
                         f"({x.size} elements) into {shape}")
    return Reshape.apply(x, shape=shape)


def flatten(x, start_axis: int = 0) -> Tensor:
    if x.ndim == 0:
        return reshape(x, (1,))
    start_axis %= x.ndim
    return reshape(x, x.shape[:start_axis] + (-1,))


def transpose(x, *axes) -> Tensor:
    """transpose(x) reverses all axes (NumPy's .T); transpose(x, 0, 2, 1) permutes them."""
    axes = tuple(axes[0]) if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    in_range = all(-x.ndim <= a < x.ndim for a in axes)
    axes = tuple(reversed(range(x.ndim))) if not axes else tuple(a % x.ndim for a in axes)
    if not in_range or sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"transpose: {axes} is not a permutation of the {x.ndim} axes of {x.shape}")
    return Transpose.apply(x, axes=axes)


class GetItem(Function):
    """y = x[index] for slices, integers, integer arrays and boolean masks.

    dx = zeros with dy scattered back; repeated integer indices accumulate (np.add.at), while
    basic indexing (slices and integers only) uses a plain assignment, which is much faster.
    """

    @staticmethod
    def forward(ctx, x, index=None):
        ctx.shape, ctx.dtype, ctx.index = x.shape, x.dtype, index
        return x[index]

    @staticmethod
    def backward(ctx, dy):
        dx = np.zeros(ctx.shape, dtype=dy.dtype)
        parts = ctx.index if isinstance(ctx.index, tuple) else (ctx.index,)
        if any(isinstance(p, (np.ndarray, list)) for p in parts):
            np.add.at(dx, ctx.index, dy)
        else:
            dx[ctx.index] = dy
        return dx


def getitem(x, index) -> Tensor:
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(x, index=index)


class Concatenate(Function):
    """y = concatenate(xs, axis);  each dx is its slice of dy."""

    @staticmethod
    def forward(ctx, *xs, axis=0):
        ctx.axis = axis
        ctx.splits = np.cumsum([x.shape[axis] for x in xs])[:-1]
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def backward(ctx, dy):
        return tuple(np.split(dy, ctx.splits, axis=ctx.axis))


class Stack(Function):
    """y = stack(xs, axis);  each dx is dy taken at its position along the new axis."""

    @staticmethod
    def forward(ctx, *xs, axis=0):
        ctx.axis, ctx.n = axis, len(xs)
        return np.stack(xs, axis=axis)

    @staticmethod
    def backward(ctx, dy):
        return tuple(np.take(dy, i, axis=ctx.axis) for i in range(ctx.n))


def concatenate(tensors: Sequence, axis: int = 0) -> Tensor:
    shapes = [np.shape(getattr(t, "data", t)) for t in tensors]
    if not shapes:
        raise ValueError("concatenate: needs at least one tensor")
    ref = list(shapes[0])
    for s in shapes[1:]:
        if len(s) != len(ref) or any(a != b for i, (a, b) in enumerate(zip(s, ref)) if i != axis % len(ref)):
            raise ValueError(f"concatenate: shapes {shapes} differ outside axis {axis}")
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors: Sequence, axis: int = 0) -> Tensor:
    shapes = [np.shape(getattr(t, "data", t)) for t in tensors]
    if not shapes or len(set(shapes)) != 1:
        raise ValueError(f"stack: needs one or more tensors of equal shape, got {shapes}")
    return Stack.apply(*tensors, axis=axis)
