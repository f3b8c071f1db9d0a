"""Convolution, pooling and batch normalisation on NCHW arrays, as fused Functions.

conv2d lowers to one matrix product with im2col (a strided window view copied once into a
(C*kh*kw, N*OH*OW) matrix); its backward scatters the column gradient back with one strided
add per kernel tap (kh*kw slice additions, no np.add.at). Batch norm is fused because its
backward has a short closed form that is several times faster than the composite graph.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .function import Function
from .tensor import Tensor

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "batch_norm"]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _out_size(size: int, k: int, s: int, p: int) -> int:
    return (size + 2 * p - k) // s + 1


def _pad(x: np.ndarray, ph: int, pw: int, value: float = 0.0) -> np.ndarray:
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(xp: np.ndarray, k: tuple, s: tuple, out: tuple) -> np.ndarray:
    """Strided view (N, C, OH, OW, kh, kw) of a padded NCHW array; no copy."""
    view = sliding_window_view(xp, k, axis=(2, 3))
    return view[:, :, : (out[0] - 1) * s[0] + 1 : s[0], : (out[1] - 1) * s[1] + 1 : s[1]]


def _scatter_taps(dtaps: np.ndarray, padded_shape: tuple, k: tuple, s: tuple,
                  out: tuple, pad: tuple, in_hw: tuple) -> np.ndarray:
    """col2im: sum per-tap gradients (A, B, kh, kw, OH, OW) into (A, B, H, W), minus padding."""
    dxp = np.zeros(padded_shape, dtype=dtaps.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            dxp[:, :, i : i + s[0] * out[0] : s[0], j : j + s[1] * out[1] : s[1]] += dtaps[:, :, i, j]
    return dxp[:, :, pad[0] : pad[0] + in_hw[0], pad[1] : pad[1] + in_hw[1]]


# ------------------------------------------------------------------------------ conv2d
def _im2col_nhwc(x: np.ndarray, k: tuple, s: tuple, p: tuple, out: tuple) -> np.ndarray:
    """(N, C, H, W) -> columns (N*OH*OW, kh*kw*C), channels innermost.

    Rows are output pixels, so the product with the weights has the long axis first, which is
    the orientation in which BLAS runs fastest; one padded NHWC copy feeds one window copy.
    """
    n, c, h, w = x.shape
    xh = np.zeros((n, h + 2 * p[0], w + 2 * p[1], c), dtype=x.dtype)    # (N, Hp, Wp, C)
    xh[:, p[0] : p[0] + h, p[1] : p[1] + w] = x.transpose(0, 2, 3, 1)
    win = sliding_window_view(xh, k, axis=(1, 2))                        # (N, Hp', Wp', C, kh, kw)
    win = win[:, : (out[0] - 1) * s[0] + 1 : s[0], : (out[1] - 1) * s[1] + 1 : s[1]]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n * out[0] * out[1], -1)


def _col2im_nhwc(dcols: np.ndarray, x_shape: tuple, k: tuple, s: tuple, p: tuple,
                 out: tuple) -> np.ndarray:
    """Adjoint of _im2col_nhwc: (N*OH*OW, kh*kw*C) -> (N, C, H, W), one strided add per tap."""
    n, c, h, w = x_shape
    taps = dcols.reshape(n, out[0], out[1], k[0], k[1], c)               # (N, OH, OW, kh, kw, C)
    dxh = np.zeros((n, h + 2 * p[0], w + 2 * p[1], c), dtype=dcols.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            dxh[:, i : i + s[0] * out[0] : s[0], j : j + s[1] * out[1] : s[1]] += taps[:, :, :, i, j]
    return dxh[:, p[0] : p[0] + h, p[1] : p[1] + w].transpose(0, 3, 1, 2)


class Conv2d(Function):
    """y[n,m] = sum_{c,i,j} w[m,c,i,j] * xpad[n, c, s*oh + i, s*ow + j]  (+ b[m]).

    Shapes: x (N, C, H, W), w (M, C, kh, kw) -> y (N, M, OH, OW).
    As one matrix product: cols (N*OH*OW, kh*kw*C), W2 (M, kh*kw*C), y2 = cols @ W2^T.
        dW2 = dy2^T @ cols,   dcols = dy2 @ W2 -> col2im -> dx,   db = sum of dy over N, OH, OW.
    """

    @staticmethod
    def forward(ctx, x, w, b=None, stride=(1, 1), padding=(0, 0)):
        n, m, k = x.shape[0], w.shape[0], w.shape[2:]
        out = (_out_size(x.shape[2], k[0], stride[0], padding[0]),
               _out_size(x.shape[3], k[1], stride[1], padding[1]))
        cols = _im2col_nhwc(x, k, stride, padding, out)                  # (N*OH*OW, kh*kw*C)
        w2 = w.transpose(0, 2, 3, 1).reshape(m, -1)                      # (M, kh*kw*C)
        y2 = cols @ w2.T                                                 # (N*OH*OW, M)
        if b is not None:
            y2 += b
        ctx.save_for_backward(cols, w2)
        ctx.geometry = (x.shape, w.shape, stride, padding, out)
        return y2.reshape(n, *out, m).transpose(0, 3, 1, 2)              # (N, M, OH, OW) view

    @staticmethod
    def backward(ctx, dy):
        cols, w2 = ctx.saved_tensors
        x_shape, w_shape, stride, padding, out = ctx.geometry
        m, c, kh, kw = w_shape
        dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, m)                    # (N*OH*OW, M)
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _col2im_nhwc(dy2 @ w2, x_shape, (kh, kw), stride, padding, out)
        if ctx.needs_input_grad[1]:
            dw = (dy2.T @ cols).reshape(m, kh, kw, c).transpose(0, 3, 1, 2)
        if ctx.needs_input_grad[2]:
            db = dy2.sum(axis=0)
        return dx, dw, db


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
    """2-D cross-correlation on NCHW, as torch.nn.functional.conv2d (zero padding, groups=1)."""
    stride, padding = _pair(stride), _pair(padding)
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W) and weight (M, C, kh, kw), "
                         f"got {x.shape} and {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels (shape {x.shape}) but the "
                         f"weight {weight.shape} expects {weight.shape[1]}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({weight.shape[0]},), got {bias.shape}")
    oh = _out_size(x.shape[2], weight.shape[2], stride[0], padding[0])
    ow = _out_size(x.shape[3], weight.shape[3], stride[1], padding[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"conv2d: kernel {weight.shape[2:]} with padding {padding} does not fit "
                         f"the input's {x.shape[2:]} spatial size")
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)


# ------------------------------------------------------------------------------- pooling
class MaxPool2d(Function):
    """y = max over each window (padding counts as -inf); dy goes to the first maximum."""

    @staticmethod
    def forward(ctx, x, k=(2, 2), stride=(2, 2), padding=(0, 0)):
        out = (_out_size(x.shape[2], k[0], stride[0], padding[0]),
               _out_size(x.shape[3], k[1], stride[1], padding[1]))
        xp = _pad(x, *padding, value=-np.inf)
        win = _windows(xp, k, stride, out).reshape(*x.shape[:2], *out, -1)  # (N, C, OH, OW, kh*kw)
        arg = win.argmax(axis=-1)
        ctx.save_for_backward(arg)
        ctx.geometry = (x.shape, xp.shape, k, stride, padding, out)
        return np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]

    @staticmethod
    def backward(ctx, dy):
        (arg,) = ctx.saved_tensors
        x_shape, xp_shape, k, stride, padding, out = ctx.geometry
        taps = np.arange(k[0] * k[1]).reshape(k)
        dtaps = np.where(arg[:, :, None, None] == taps[:, :, None, None], dy[:, :, None, None], 0)
        return _scatter_taps(dtaps.astype(dy.dtype), xp_shape, k, stride, out, padding, x_shape[2:])


class AvgPool2d(Function):
    """y = mean over each window, zero padding included in the count (torch's default)."""

    @staticmethod
    def forward(ctx, x, k=(2, 2), stride=(2, 2), padding=(0, 0)):
        out = (_out_size(x.shape[2], k[0], stride[0], padding[0]),
               _out_size(x.shape[3], k[1], stride[1], padding[1]))
        xp = _pad(x, *padding)
        ctx.geometry = (x.shape, xp.shape, k, stride, padding, out)
        return _windows(xp, k, stride, out).mean(axis=(-2, -1), dtype=x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x_shape, xp_shape, k, stride, padding, out = ctx.geometry
        share = dy / (k[0] * k[1])
        dtaps = np.broadcast_to(share[:, :, None, None], share.shape[:2] + k + share.shape[2:])
        return _scatter_taps(dtaps, xp_shape, k, stride, out, padding, x_shape[2:])


def _check_pool(name: str, x: Tensor, k: tuple, padding: tuple) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name}: expected input (N, C, H, W), got shape {x.shape}")
    if padding[0] * 2 > k[0] or padding[1] * 2 > k[1]:
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel size {k}")
    if x.shape[2] + 2 * padding[0] < k[0] or x.shape[3] + 2 * padding[1] < k[1]:
        raise ValueError(f"{name}: kernel {k} does not fit the input's {x.shape[2:]} spatial size")


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    k, padding = _pair(kernel_size), _pair(padding)
    _check_pool("max_pool2d", x, k, padding)
    return MaxPool2d.apply(x, k=k, stride=_pair(stride or kernel_size), padding=padding)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    k, padding = _pair(kernel_size), _pair(padding)
    _check_pool("avg_pool2d", x, k, padding)
    return AvgPool2d.apply(x, k=k, stride=_pair(stride or kernel_size), padding=padding)


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """Average over the bins [floor(i*H/oh), ceil((i+1)*H/oh)), as torch's adaptive pooling."""
    from . import ops

    oh, ow = _pair(output_size)
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: expected input (N, C, H, W), got {x.shape}")
    h, w = x.shape[2:]
    if h % oh == 0 and w % ow == 0:                     # equal bins: one ordinary pooling
        return avg_pool2d(x, (h // oh, w // ow))
    rows = []
    for i in range(oh):
        r0, r1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        cells = [ops.mean(x[:, :, r0:r1, (j * w) // ow : -((-(j + 1) * w) // ow)], axis=(2, 3))
                 for j in range(ow)]
        rows.append(ops.stack(cells, axis=-1))           # (N, C, OW)
    return ops.stack(rows, axis=-2)                      # (N, C, OH, OW)


# ---------------------------------------------------------------------------- batch norm
class BatchNorm(Function):
    """y = gamma * (x - mu) / sqrt(var + eps) + beta over axis 1 (channels).

    Training: mu, var = batch mean and biased variance over all axes but 1, and
        dx = gamma / sqrt(var + eps) / n * (n * dy - sum(dy) - xhat * sum(dy * xhat)).
    Evaluation: mu, var are the running statistics (constants), dx = dy * gamma / sqrt(var + eps).
    """

    @staticmethod
    def forward(ctx, x, gamma, beta, mean=None, var=None, eps=1e-5, training=True):
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, -1) + (1,) * (x.ndim - 2)
        inv_std = (1.0 / np.sqrt(var + eps)).astype(x.dtype).reshape(shape)
        xhat = (x - mean.astype(x.dtype).reshape(shape)) * inv_std
        ctx.save_for_backward(xhat, inv_std, gamma)
        ctx.axes, ctx.shape, ctx.training = axes, shape, training
        y = xhat * gamma.reshape(shape) if gamma is not None else xhat
        return y + beta.reshape(shape) if beta is not None else y

    @staticmethod
    def backward(ctx, dy):
        xhat, inv_std, gamma = ctx.saved_tensors
        dbeta = dy.sum(axis=ctx.axes)
        dgamma = (dy * xhat).sum(axis=ctx.axes)
        scale = inv_std * (gamma.reshape(ctx.shape) if gamma is not None else 1)
        if ctx.training:
            n = dy.size // dbeta.size
            dx = scale / n * (n * dy - dbeta.reshape(ctx.shape) - xhat * dgamma.reshape(ctx.shape))
        else:
            dx = dy * scale
        return dx, dgamma, dbeta


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
    if training:
        axes = (0,) + tuple(range(2, x.ndim))
        n = x.size // c
        if n < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, "
                             f"got input of shape {x.shape}")
        mean = x.data.mean(axis=axes)
        var = x.data.var(axis=axes)
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
