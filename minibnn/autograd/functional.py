"""Composite operations: built from the primitives in ops.py, so their gradients come for free.

Names and argument orders follow torch.nn.functional where the concept exists, with `axis` for
torch's `dim`. Losses take `reduction` in {"mean", "sum", "none"} (kl_div also "batchmean").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import ops
from .function import Function
from .tensor import Tensor

__all__ = [
    "relu", "leaky_relu", "prelu", "hardtanh", "tanh", "sigmoid", "softmax", "log_softmax",
    "logsumexp", "cross_entropy", "nll_from_log_probs", "kl_div", "mse_loss", "normalize",
    "var", "std", "linear", "dropout",
]

tanh = ops.tanh
sigmoid = ops.sigmoid


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
    return ops.where(x.data > 0, x, x * a)


def hardtanh(x: Tensor, min_val: float = -1.0, max_val: float = 1.0) -> Tensor:
    """clip(x, min_val, max_val) with gradient 1[min_val < x < max_val] (strict, as torch)."""
    inside = (x.data > min_val) & (x.data < max_val)
    return _MaskedIdentity.apply(x, y=np.clip(x.data, min_val, max_val), mask=inside)


# ---------------------------------------------------------------------- softmax and friends
def logsumexp(x: Tensor, axis: int = -1, keepdims: bool = False) -> Tensor:
    """log(sum(exp(x))) computed stably as m + log(sum(exp(x - m))), m = max(x) (a constant)."""
    m = Tensor(np.max(x.data, axis=axis, keepdims=True))
    out = ops.log(ops.sum(ops.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else ops.reshape(out, np.squeeze(out.data, axis=axis).shape)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return x - logsumexp(x, axis=axis, keepdims=True)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    e = ops.exp(x - Tensor(np.max(x.data, axis=axis, keepdims=True)))
    return e / ops.sum(e, axis=axis, keepdims=True)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _one_hot(labels: np.ndarray, n: int, c: int, dtype) -> np.ndarray:
    """Integer labels (N,) -> one-hot (N, C), with errors for float dtypes and bad values."""
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"cross_entropy: integer class labels expected, got dtype {labels.dtype} "
                        "(pass soft targets as an (N, C) float array)")
    if labels.shape[0] != n:
        raise ValueError(f"cross_entropy: {labels.shape[0]} labels for a batch of {n} rows")
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        raise ValueError(f"cross_entropy: labels must lie in [0, {c - 1}], "
                         f"found values from {labels.min()} to {labels.max()}")
    one_hot = np.zeros((n, c), dtype=dtype)
    one_hot[np.arange(n), labels] = 1.0
    return one_hot


def nll_from_log_probs(log_probs: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """-log p[target] from log-probabilities (N, C); target int labels (N,) or soft (N, C)."""
    n, c = log_probs.shape
    target = target.data if isinstance(target, Tensor) else np.asarray(target)
    if target.ndim == 1:
        weights = _one_hot(target, n, c, log_probs.dtype)
    elif target.shape == (n, c):
        weights = target.astype(log_probs.dtype, copy=False)
    else:
        raise ValueError(f"cross_entropy: target must be labels ({n},) or probabilities ({n}, {c}), "
                         f"got shape {target.shape}")
    return _reduce(-ops.sum(log_probs * weights, axis=1), reduction)


def cross_entropy(logits: Tensor, target: Any, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """-sum_c q_c log softmax(logits)_c, q = one-hot(target) or given soft targets.  (N, C) -> ()

    With label_smoothing e, q = (1 - e) q + e / C, as torch.nn.functional.cross_entropy.
    """
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, C), got shape {logits.shape}")
    log_probs = log_softmax(logits, axis=1)
    if label_smoothing:
        n, c = logits.shape
        t = target.data if isinstance(target, Tensor) else np.asarray(target)
        if t.ndim == 1:
            t = _one_hot(t, n, c, logits.dtype)
        target = (1 - label_smoothing) * t + label_smoothing / c
    return nll_from_log_probs(log_probs, target, reduction)


def kl_div(input: Tensor, target: Any, reduction: str = "mean", log_target: bool = False) -> Tensor:
    """KL(target || exp(input)) pointwise, with `input` log-probabilities, as torch's kl_div.

        l = target * (log(target) - input)     (0 where target == 0)

    reduction "batchmean" divides the sum by the batch size (the mathematically correct KL);
    "mean" (torch's default) divides by the number of elements.
    """
    if isinstance(target, Tensor):
        t_data = target.data
    else:
        t_data = np.asarray(target, dtype=input.dtype)
        target = Tensor(t_data)
    if t_data.shape != input.shape:
        raise ValueError(f"kl_div: input {input.shape} and target {t_data.shape} must have one shape")
    if log_target:
        loss = ops.exp(target) * (target - input)
    else:
        safe_log = ops.log(ops.where(t_data > 0, target, 1.0))   # log 1 = 0 where target == 0
        loss = target * (safe_log - input)
    if reduction == "batchmean":
        return loss.sum() * (1.0 / input.shape[0])
    return _reduce(loss, reduction)


def mse_loss(input: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    if np.shape(getattr(target, "data", target)) != input.shape:
        raise ValueError(f"mse_loss: input {input.shape} and target "
                         f"{np.shape(getattr(target, 'data', target))} must have one shape")
    diff = input - target
    return _reduce(diff * diff, reduction)


def normalize(x: Tensor, p: float = 2.0, axis: int = 1, eps: float = 1e-12) -> Tensor:
    """x / max(||x||_2, eps) along `axis`, as torch.nn.functional.normalize (p = 2 only).

    Written as x / sqrt(max(sum x^2, eps^2)) so a zero vector gets the finite gradient dy / eps
    (as in torch) rather than NaN: the path through the norm is cut by the maximum.
    """
    if p != 2:
        raise ValueError(f"normalize: only the L2 norm (p=2) is implemented, got p={p}")
    sq = ops.sum(x * x, axis=axis, keepdims=True)
    return x / ops.sqrt(ops.maximum(sq, eps * eps))


def var(x: Tensor, axis=None, unbiased: bool = True, keepdims: bool = False) -> Tensor:
    """Variance over `axis`; unbiased (divide by n - 1, torch's default) or population (n)."""
    axes = ops._normalize_axes(axis, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes]))
    if unbiased and n < 2:
        raise ValueError(f"var: the unbiased estimate needs at least 2 values, axis {axis} of "
                         f"{x.shape} has {n}")
    centred = x - ops.mean(x, axes, keepdims=True)
    return ops.sum(centred * centred, axes, keepdims) * (1.0 / (n - 1 if unbiased else n))


def std(x: Tensor, axis=None, unbiased: bool = True, keepdims: bool = False) -> Tensor:
    return ops.sqrt(var(x, axis=axis, unbiased=unbiased, keepdims=keepdims))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x @ W^T + b;  x (..., K), W (M, K), b (M,) -> y (..., M)."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input has {x.shape[-1]} features (shape {x.shape}), "
                         f"the weight {weight.shape} expects {weight.shape[-1]}")
    y = ops.matmul(x, ops.transpose(weight))
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
