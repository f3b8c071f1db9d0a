"""Activations, the softmax family, linear, normalize and dropout: composites of the
autograd primitives (their gradients come from the graph), except relu, hardtanh and dropout,
which are small fused Functions with a mask for backward.

Names and argument orders follow torch.nn.functional where the concept exists, with `axis` for
torch's `dim`. tanh and sigmoid are autograd primitives (minibnn.autograd.elementwise).
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor, elementwise, reductions, shape

__all__ = ["relu", "leaky_relu", "prelu", "hardtanh", "softmax", "log_softmax", "logsumexp",
           "normalize", "linear", "dropout"]


# --------------------------------------------------------------------------- activations
class _MaskedIdentity(Function):
    """y = f(x) computed by the caller;  dx = dy * mask. The shared backward of relu/hardtanh."""

    @staticmethod
    def forward(ctx, x, y=None, mask=None):
        ctx.save_for_backward(mask)
        return y

    @staticmethod
    def backward(ctx, dy):
        return dy * ctx.saved_tensors[0]


# relu and hardtanh are fused (np.maximum / np.clip plus a mask) rather than composed from
# `where`: np.where is an order of magnitude slower than these on large float arrays.
def relu(x: Tensor) -> Tensor:
    """max(x, 0) with gradient 1[x > 0] (0 at x = 0, as torch)."""
    return _MaskedIdentity.apply(x, y=np.maximum(x.data, 0), mask=x.data > 0)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    slope = np.where(x.data > 0, 1, negative_slope).astype(x.dtype)
    return x * slope


def prelu(x: Tensor, weight: Tensor) -> Tensor:
    """x if x > 0 else a_c * x, with one slope per channel (axis 1) or a single shared slope."""
    if weight.size != 1 and (x.ndim < 2 or weight.shape != (x.shape[1],)):
        raise ValueError(f"prelu: weight of shape {weight.shape} does not match the {x.shape[1] if x.ndim > 1 else 1} "
                         f"channels (axis 1) of input {x.shape}")
    a = weight.reshape((1, -1) + (1,) * (x.ndim - 2)) if weight.size != 1 else weight.reshape(())
    return elementwise.where(x.data > 0, x, x * a)


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """clip(x, min_val, max_val) with gradient 1[min_val < x < max_val] (strict, as torch)."""
    inside = (x.data > min_val) & (x.data < max_val)
    return _MaskedIdentity.apply(x, y=np.clip(x.data, min_val, max_val), mask=inside)


# ---------------------------------------------------------------------- softmax and friends
def logsumexp(x: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) computed stably as m + log(sum(exp(x - m))), m = max(x) (a constant)."""
    m = Tensor(np.max(x.data, axis=axis, keepdims=True))
    out = elementwise.log(reductions.sum(elementwise.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else shape.reshape(out, np.squeeze(out.data, axis=axis).shape)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    e = elementwise.exp(x - Tensor(np.max(x.data, axis=axis, keepdims=True)))
    return e / reductions.sum(e, axis=axis, keepdims=True)


# ------------------------------------------------------------- normalize, linear, dropout
def normalize(x: Tensor, p: float = 2.0, axis: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_2, eps) along `axis`, as torch.nn.functional.normalize (p = 2 only).

    Written as x / sqrt(max(sum x^2, eps^2)) so a zero vector gets the finite gradient dy / eps
    (as in torch) rather than NaN: the path through the norm is cut by the maximum.
    """
    if p != 2:
        raise ValueError(f"normalize: only the L2 norm (p=2) is implemented, got p={p}")
    sq = reductions.sum(x * x, axis=axis, keepdims=True)
    return x / elementwise.sqrt(elementwise.maximum(sq, eps * eps))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ W^T + b;  x (..., K), W (M, K), b (M,) -> y (..., M)."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input has {x.shape[-1]} features (shape {x.shape}), "
                         f"the weight {weight.shape} expects {weight.shape[-1]}")
    y = reductions.matmul(x, shape.transpose(weight))
    return y if bias is None else y + bias


class _DropoutMask(Function):
    """y = x * mask / (1 - p);  dx = dy * mask / (1 - p)."""

    @staticmethod
    def forward(ctx, x, mask=None):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, dy):
        return dy * ctx.saved_tensors[0]


def dropout(x: Tensor, p: float = 0.5, training: bool = True,
            rng: np.random.Generator | None = None) -> Tensor:
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (training only)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    if rng is None:
        raise ValueError("dropout: pass an explicit np.random.Generator (rng=...) in training mode")
    mask = (rng.random(x.shape) >= p).astype(x.dtype) / x.dtype.type(1 - p)
    return _DropoutMask.apply(x, mask=mask)
