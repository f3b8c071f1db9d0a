"""Primitive operations that reduce, multiply or rearrange: sum/mean/max over axes, matmul,
reshape, transpose, indexing, concatenate, stack and where. Each is a `Function` with a
hand-written backward; ops.py re-exports them, so callers use `ops.sum`, `ops.matmul`, ...
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .function import Function
from .tensor import Tensor

__all__ = ["sum", "mean", "max", "matmul", "reshape", "flatten", "transpose", "getitem",
           "concatenate", "stack", "where"]


def _lift(x: Any, like: Any) -> Any:
    from .ops import _lift as lift  # the scalar rule lives with the elementwise ops

    return lift(x, like)


# -------------------------------------------------------------------------------- reductions
def _normalize_axes(axis, ndim: int) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    axes = (int(axis),) if isinstance(axis, (int, np.integer)) else tuple(int(a) for a in axis)
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axes))


class Sum(Function):
    """y = sum of x over `axes`;  dx = dy broadcast back over the reduced axes."""

    @staticmethod
    def forward(ctx, x, axes=(), keepdims=False):
        ctx.shape, ctx.axes = x.shape, axes
        return np.sum(x, axis=axes, keepdims=keepdims)

    @staticmethod
    def backward(ctx, dy):
        dy = np.expand_dims(dy, ctx.axes) if dy.ndim != len(ctx.shape) else dy
        return np.broadcast_to(dy, ctx.shape)


class Max(Function):
    """y = max of x over `axes`;  dx = dy spread evenly over the maxima (torch.amax's rule)."""

    @staticmethod
    def forward(ctx, x, axes=(), keepdims=False):
        y = np.max(x, axis=axes, keepdims=True)
        ctx.save_for_backward(x, y)
        ctx.axes = axes
        return y if keepdims else np.squeeze(y, axis=axes)

    @staticmethod
    def backward(ctx, dy):
        x, y = ctx.saved_tensors
        dy = np.expand_dims(dy, ctx.axes) if dy.ndim != x.ndim else dy
        is_max = x == y
        return dy * is_max / np.sum(is_max, axis=ctx.axes, keepdims=True)


def sum(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 (mirrors torch.sum)
    return Sum.apply(x, axes=_normalize_axes(axis, x.ndim), keepdims=keepdims)


def mean(x, axis=None, keepdims: bool = False) -> Tensor:
    axes = _normalize_axes(axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes]))
    return sum(x, axes, keepdims) * (1.0 / count)


def max(x, axis=None, keepdims: bool = False) -> Tensor:  # noqa: A001 (mirrors torch.max)
    return Max.apply(x, axes=_normalize_axes(axis, x.ndim), keepdims=keepdims)


# --------------------------------------------------------------------------------- matmul
class MatMul(Function):
    """y = a @ b with NumPy's batching rules (1-D operands are promoted, then squeezed).

        da = dy @ b^T,  db = a^T @ dy    (transposes over the last two axes)
    """

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a @ b

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved_tensors
        a2 = a[None, :] if a.ndim == 1 else a        # (..., M, K)
        b2 = b[:, None] if b.ndim == 1 else b        # (..., K, N)
        dy2 = np.asarray(dy)
        if a.ndim == 1:
            dy2 = dy2[..., None, :] if dy2.ndim else dy2.reshape(1, 1)[..., :1, :]
        if b.ndim == 1:
            dy2 = dy2[..., None]                     # (..., M, N)
        da = dy2 @ np.swapaxes(b2, -1, -2)
        db = np.swapaxes(a2, -1, -2) @ dy2
        da = da.reshape(da.shape[:-2] + (da.shape[-1],)) if a.ndim == 1 else da
        db = db.reshape(db.shape[:-1]) if b.ndim == 1 else db
        return da, db


def matmul(a, b) -> Tensor:
    sa, sb = np.shape(getattr(a, "data", a)), np.shape(getattr(b, "data", b))
    if len(sa) == 0 or len(sb) == 0:
        raise ValueError(f"matmul: operands must have at least one dimension, got {sa} and {sb}")
    k_a, k_b = sa[-1], (sb[0] if len(sb) == 1 else sb[-2])
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {sa} and {sb} do not align: "
                         f"inner dimensions {k_a} (last of the first) != {k_b} (the second's)")
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {sa} and {sb} do not broadcast") from None
    return MatMul.apply(a, b)


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


class Where(Function):
    """y = a where cond else b;  da = dy * cond, db = dy * (1 - cond). cond gets no gradient."""

    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return np.where(cond, a, b)

    @staticmethod
    def backward(ctx, dy):
        # dy * mask rather than np.where(mask, dy, 0): the same values (for finite dy) and
        # several times faster; branches that need no gradient are skipped.
        (cond,) = ctx.saved_tensors
        da = dy * cond if ctx.needs_input_grad[1] else None
        db = dy * ~cond if ctx.needs_input_grad[2] else None
        return None, da, db


def where(cond, a, b) -> Tensor:
    cond = cond.data if isinstance(cond, Tensor) else np.asarray(cond)
    if cond.dtype != bool:
        raise TypeError(f"where: the condition must be boolean, got {cond.dtype}")
    a, b = _lift(a, b), _lift(b, a)
    try:
        np.broadcast_shapes(cond.shape, np.shape(getattr(a, "data", a)), np.shape(getattr(b, "data", b)))
    except ValueError:
        raise ValueError(f"where: cannot broadcast condition {cond.shape} with "
                         f"{np.shape(getattr(a, 'data', a))} and {np.shape(getattr(b, 'data', b))}") from None
    return Where.apply(cond, a, b)
