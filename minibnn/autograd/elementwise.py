"""Elementwise primitives, each a `Function` with a hand-written backward on plain ndarrays.

The primitives are this module (elementwise), reductions.py (sum, mean, max, var, std, matmul)
and shape.py (reshape, transpose, indexing, concatenate, stack); everything else in minibnn is
composed from them (minibnn.functional). Elementwise ops broadcast like NumPy; their backward
returns gradients in the broadcast shape and `Function.apply` sums them back to each input's
shape. Two smooth ops, tanh and sigmoid, are fused primitives because their derivative is
cheapest from the output (1 - y^2, y(1 - y)).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .function import Function
from .tensor import Tensor

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "abs", "sqrt", "maximum", "tanh",
    "sigmoid", "clip", "cast", "where",
]


def _check_broadcast(name: str, a: Any, b: Any) -> None:
    try:
        np.broadcast_shapes(np.shape(a), np.shape(b))
    except ValueError:
        raise ValueError(f"{name}: cannot broadcast shapes {np.shape(a)} and {np.shape(b)}") from None


def _lift(x: Any, like: Any) -> Any:
    """Python scalars take the dtype of the floating tensor they meet (2.0 * float32 stays
    float32); next to an integer tensor a Python float becomes float32, as in torch."""
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        like_dtype = like.dtype if isinstance(like, Tensor) else np.dtype(np.float32)
        if np.issubdtype(like_dtype, np.floating):
            return np.asarray(x, dtype=like_dtype)
        return np.asarray(x, dtype=np.float32 if isinstance(x, float) else like_dtype)
    return x


def _binary(fn, a: Any, b: Any) -> Tensor:
    a, b = _lift(a, b), _lift(b, a)
    _check_broadcast(fn.__name__.lower(), getattr(a, "data", a), getattr(b, "data", b))
    return fn.apply(a, b)


# ------------------------------------------------------------------------ elementwise, binary
class Add(Function):
    """y = a + b;  da = dy, db = dy."""

    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, dy):
        return dy, dy


class Sub(Function):
    """y = a - b;  da = dy, db = -dy."""

    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, dy):
        return dy, -dy


class Mul(Function):
    """y = a * b;  da = dy * b, db = dy * a."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a * b

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved_tensors
        da = dy * b if ctx.needs_input_grad[0] else None
        db = dy * a if ctx.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """y = a / b;  da = dy / b, db = -dy * a / b^2."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return a / b

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved_tensors
        da = dy / b
        return da, -da * a / b


class Pow(Function):
    """y = a ** b;  da = dy * b * a^(b-1),  db = dy * y * log(a) (only computed when needed)."""

    @staticmethod
    def forward(ctx, a, b):
        y = np.power(a, b)
        ctx.save_for_backward(a, b, y)
        return y

    @staticmethod
    def backward(ctx, dy):
        a, b, y = ctx.saved_tensors
        da = dy * b * np.power(a, b - 1) if ctx.needs_input_grad[0] else None
        db = None
        if ctx.needs_input_grad[1]:
            with np.errstate(divide="ignore", invalid="ignore"):
                db = dy * y * np.log(a)
            db = np.where((a == 0) & (b >= 0), 0, db)   # the limit a^b log a -> 0, as torch
        return da, db


class Maximum(Function):
    """y = max(a, b) elementwise. Ties split the gradient equally (dy/2 each), as torch.maximum."""

    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.maximum(a, b)

    @staticmethod
    def backward(ctx, dy):
        a, b = ctx.saved_tensors
        share_a = (a > b) + 0.5 * (a == b)
        return dy * share_a, dy * (1.0 - share_a)


def add(a, b) -> Tensor: return _binary(Add, a, b)
def sub(a, b) -> Tensor: return _binary(Sub, a, b)
def mul(a, b) -> Tensor: return _binary(Mul, a, b)
def div(a, b) -> Tensor: return _binary(Div, a, b)
def pow(a, b) -> Tensor: return _binary(Pow, a, b)  # noqa: A001 (mirrors torch.pow)
def maximum(a, b) -> Tensor: return _binary(Maximum, a, b)


# ------------------------------------------------------------------------- elementwise, unary
class Neg(Function):
    """y = -x;  dx = -dy."""

    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, dy):
        return -dy


class Exp(Function):
    """y = exp(x);  dx = dy * y."""

    @staticmethod
    def forward(ctx, x):
        y = np.exp(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        return dy * ctx.saved_tensors[0]


class Log(Function):
    """y = log(x);  dx = dy / x."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.log(x)

    @staticmethod
    def backward(ctx, dy):
        return dy / ctx.saved_tensors[0]


class Abs(Function):
    """y = |x|;  dx = dy * sign(x), with sign(0) = 0 (the subgradient torch uses)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return np.abs(x)

    @staticmethod
    def backward(ctx, dy):
        return dy * np.sign(ctx.saved_tensors[0])


class Sqrt(Function):
    """y = sqrt(x);  dx = dy / (2 y)."""

    @staticmethod
    def forward(ctx, x):
        y = np.sqrt(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        return dy / (2 * ctx.saved_tensors[0])


class Tanh(Function):
    """y = tanh(x);  dx = dy * (1 - y^2)."""

    @staticmethod
    def forward(ctx, x):
        y = np.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return dy * (1 - y * y)


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x)), computed without overflow;  dx = dy * y * (1 - y)."""

    @staticmethod
    def forward(ctx, x):
        e = np.exp(-np.abs(x))  # <= 1, never overflows
        y = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, dy):
        (y,) = ctx.saved_tensors
        return dy * y * (1 - y)


class Clip(Function):
    """y = min(max(x, lo), hi);  dx = dy * 1[lo <= x <= hi] (edges pass, as torch.clamp)."""

    @staticmethod
    def forward(ctx, x, lo=None, hi=None):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return np.clip(x, lo, hi)

    @staticmethod
    def backward(ctx, dy):
        (x,) = ctx.saved_tensors
        inside = np.ones(x.shape, dtype=bool)
        if ctx.lo is not None:
            inside &= x >= ctx.lo
        if ctx.hi is not None:
            inside &= x <= ctx.hi
        return dy * inside


class Cast(Function):
    """y = x converted to another floating dtype;  dx = dy converted back."""

    @staticmethod
    def forward(ctx, x, dtype=None):
        return x.astype(dtype)

    @staticmethod
    def backward(ctx, dy):
        return dy


def neg(x) -> Tensor: return Neg.apply(x)
def exp(x) -> Tensor: return Exp.apply(x)
def log(x) -> Tensor: return Log.apply(x)
def abs(x) -> Tensor: return Abs.apply(x)  # noqa: A001 (mirrors torch.abs)
def sqrt(x) -> Tensor: return Sqrt.apply(x)
def tanh(x) -> Tensor: return Tanh.apply(x)
def sigmoid(x) -> Tensor: return Sigmoid.apply(x)
def clip(x, lo=None, hi=None) -> Tensor: return Clip.apply(x, lo=lo, hi=hi)
def cast(x, dtype) -> Tensor: return Cast.apply(x, dtype=np.dtype(dtype))


# ------------------------------------------------------------------------- elementwise, select
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
