"""Reductions and the matrix product: sum, mean, max, var and std over axes, and matmul.

sum, max and matmul are primitives, each a `Function` with a hand-written backward on plain
ndarrays; mean, var and std are composed from them and the elementwise ops (their gradients
come from the graph).
Axes follow NumPy: an int, a tuple of ints, or None for all axes, negative values counting
from the end.
"""

from __future__ import annotations

import numpy as np

from .elementwise import mul, sqrt, sub
from .function import Function
from .tensor import Tensor

__all__ = ["sum", "mean", "max", "var", "std", "matmul"]


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
    return mul(sum(x, axes, keepdims), 1.0 / count)


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


# ------------------------------------------------------------------------- variance
def var(x: Tensor, axis=None, unbiased: bool = True, keepdims: bool = False) -> Tensor:
    """Variance over `axis`; unbiased (divide by n - 1, torch's default) or population (n)."""
    axes = _normalize_axes(axis, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes]))
    if unbiased and n < 2:
        raise ValueError(f"var: the unbiased estimate needs at least 2 values, axis {axis} of "
                         f"{x.shape} has {n}")
    centred = sub(x, mean(x, axes, keepdims=True))
    return mul(sum(mul(centred, centred), axes, keepdims), 1.0 / (n - 1 if unbiased else n))


def std(x: Tensor, axis=None, unbiased: bool = True, keepdims: bool = False) -> Tensor:
    return sqrt(var(x, axis=axis, unbiased=unbiased, keepdims=keepdims))
