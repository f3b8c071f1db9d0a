"""Batch normalisation over the channel axis (axis 1), as one fused Function.

Fused because its backward has a short closed form that is several times faster than the
composite graph. When the input is channels-last in memory (the conv's output always is, and
(N, C) trivially), it is viewed as a (rows, C) matrix and handled by the fused Numba kernels
of training_kernels.py; any other layout takes the NumPy formulas. Both give the same numbers
to float rounding, and the tests hold them to each other.
"""

from __future__ import annotations

import numpy as np

from ..autograd import Function, Tensor
from .training_kernels import (bn_backward_rows, bn_backward_rows_reference, channel_stats,
                               normalize_rows, normalize_rows_reference)

__all__ = ["batch_norm"]


def _rows_view(x: np.ndarray) -> np.ndarray | None:
    """x (N, C, ...) as a C-contiguous (rows, C) view when its memory is channels-last, else None."""
    moved = np.moveaxis(x, 1, -1)                                    # (N, ..., C)
    return moved.reshape(-1, x.shape[1]) if moved.flags.c_contiguous else None


def _from_rows(y2: np.ndarray, shape: tuple) -> np.ndarray:
    """Inverse of _rows_view: (rows, C) -> an (N, C, ...) view of the same memory."""
    return np.moveaxis(y2.reshape((shape[0],) + shape[2:] + (shape[1],)), -1, 1)


class BatchNorm(Function):
    """y = gamma * (x - mu) / sqrt(var + eps) + beta over axis 1 (channels).

    Training: mu, var = batch mean and biased variance over all axes but 1, and
        dx = gamma / sqrt(var + eps) * (dy - mean(dy) - xhat * mean(dy * xhat)),
    the means taken over all axes but 1.
    Evaluation: mu, var are the running statistics (constants), dx = dy * gamma / sqrt(var + eps).
    Backward recomputes xhat from the saved input array (not a copy, as in PyTorch): do not
    modify it in place between forward and backward.
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, mean=None, var=None, eps=1e-5, training=True):
        c, dtype = x.shape[1], x.dtype
        mean = np.asarray(mean).astype(dtype)                            # (C,)
        inv_std = (1.0 / np.sqrt(var + eps)).astype(dtype)              # (C,)
        g = gamma.astype(dtype) if gamma is not None else np.ones(c, dtype)
        b = beta.astype(dtype) if beta is not None else np.zeros(c, dtype)
        ctx.save_for_backward(x, mean, inv_std, g * inv_std)
        ctx.training = training
        rows = _rows_view(x)
        if rows is not None:                                             # channels-last memory
            return _from_rows(normalize_rows(rows, mean, inv_std, g, b), x.shape)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return normalize_rows_reference(x, *(v.reshape(shape) for v in (mean, inv_std, g, b)))

    @staticmethod
    def backward(ctx, dy):
        x, mean, inv_std, scale = ctx.saved_tensors                      # scale = gamma * inv_std
        rows = _rows_view(x)
        if ctx.training and rows is not None:
            dy2 = np.ascontiguousarray(np.moveaxis(dy, 1, -1)).reshape(rows.shape)  # (rows, C)
            dx2, dgamma, dbeta = bn_backward_rows(dy2, rows, mean, inv_std, scale)
            return _from_rows(dx2, dy.shape), dgamma, dbeta
        axes = (0,) + tuple(range(2, dy.ndim))
        shape = (1, -1) + (1,) * (dy.ndim - 2)
        mean, inv_std, scale = (v.reshape(shape) for v in (mean, inv_std, scale))
        if not ctx.training:                                             # mean, var: constants
            return dy * scale, (dy * (x - mean) * inv_std).sum(axis=axes), dy.sum(axis=axes)
        return bn_backward_rows_reference(dy, x, mean, inv_std, scale, axes)


def _batch_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and biased variance over all axes but 1, in float64."""
    rows = _rows_view(x)
    if rows is not None:
        return channel_stats(rows)
    axes = (0,) + tuple(range(2, x.ndim))
    return x.mean(axis=axes, dtype=np.float64), x.var(axis=axes, dtype=np.float64)


def batch_norm(x: Tensor, running_mean: np.ndarray | None, running_var: np.ndarray | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation over axis 1 of (N, C) or (N, C, H, W), as torch's batch_norm.

    In training the running statistics (ndarrays, updated in place) move towards the batch's:
    running = (1 - momentum) * running + momentum * batch, with the unbiased batch variance.
    """
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"batch_norm: expected (N, C), (N, C, L) or (N, C, H, W), got {x.shape}")
    c = x.shape[1]
    for name, arr in (("running_mean", running_mean), ("running_var", running_var),
                      ("weight", weight), ("bias", bias)):
        if arr is not None and np.shape(getattr(arr, "data", arr)) != (c,):
            raise ValueError(f"batch_norm: {name} must have shape ({c},) for input {x.shape}, "
                             f"got {np.shape(getattr(arr, 'data', arr))}")
    for name, arr in (("running_mean", running_mean), ("running_var", running_var)):
        if arr is not None and not (isinstance(arr, np.ndarray) and arr.dtype.kind == "f"):
            raise TypeError(f"batch_norm: {name} must be a floating-point ndarray (it is updated "
                            f"in place), got {getattr(arr, 'dtype', type(arr).__name__)}")
    if training:
        n = x.size // c
        if n < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, "
                             f"got input of shape {x.shape}")
        mean, var = _batch_stats(x.data)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += momentum * var * (n / (n - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
        mean, var = running_mean, running_var
    return BatchNorm.apply(x, weight, bias, mean=mean, var=var, eps=eps, training=training)
