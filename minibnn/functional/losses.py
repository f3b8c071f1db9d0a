"""Losses: cross-entropy (labels or soft targets, label smoothing), negative log-likelihood,
KL divergence and mean squared error, composed from the autograd primitives.

Names and argument orders follow torch.nn.functional, with `axis` for torch's `dim`. Losses
take `reduction` in {"mean", "sum", "none"} (kl_div also "batchmean").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..autograd import Tensor, elementwise, reductions
from .activations import log_softmax

__all__ = ["cross_entropy", "nll_from_log_probs", "kl_div", "mse_loss"]


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
    return _reduce(-reductions.sum(log_probs * weights, axis=1), reduction)


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
        loss = elementwise.exp(target) * (target - input)
    else:
        safe_log = elementwise.log(elementwise.where(t_data > 0, target, 1.0))   # log 1 = 0 where target == 0
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
