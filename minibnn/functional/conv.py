"""Convolution and pooling on NCHW arrays, as fused Functions (batch norm is in batchnorm.py).

conv2d lowers to matrix products with im2col: chunk by chunk of images, the input's windows are
copied into a (rows, kh*kw*C) matrix that multiplies the weights; its backward scatters the
column gradient back with col2im (training_kernels.py holds both, with their NumPy twins;
no np.add.at).
Pooling uses strided window views and one strided add per kernel tap in backward.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..autograd import Function, Tensor
from ..autograd.reductions import mean
from ..autograd.shape import stack
from .training_kernels import col2im, im2col, to_channels_last

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"]


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


def _check_geometry(name: str, kernel=None, stride=(1, 1), padding=(0, 0)) -> None:
    """stride and kernel sizes >= 1 and padding >= 0, as PyTorch requires (one-line errors)."""
    for what, value, low in (("kernel size", kernel, 1), ("stride", stride, 1),
                             ("padding", padding, 0)):
        if value is not None and min(value) < low:
            raise ValueError(f"{name}: {what} must be >= {low}, got {value}")


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
CHUNK_BYTES = 8 << 20   # im2col buffer per chunk of images: small enough to stay in cache


def _image_chunks(n: int, rows_per_image: int, row_bytes: int) -> list[tuple[int, int]]:
    """Ranges of whole images whose columns fill about CHUNK_BYTES (at least one image); the
    first range is the longest, so one buffer sized for it serves them all."""
    step = max(1, CHUNK_BYTES // max(1, rows_per_image * row_bytes))
    return [(n0, min(n, n0 + step)) for n0 in range(0, n, step)]


class Conv2d(Function):
    """y[n,m] = sum_{c,i,j} w[m,c,i,j] * xpad[n, c, s*oh + i, s*ow + j]  (+ b[m]).

    Shapes: x (N, C, H, W), w (M, C, kh, kw) -> y (N, M, OH, OW).
    As matrix products over chunks of images, with cols = im2col(x) (rows, kh*kw*C) and
    W2 (M, kh*kw*C) the weight with channels innermost:
        y2 = cols @ W2^T,   dW2 = sum over chunks of cols^T @ dy2,   dx = col2im(dy2 @ W2),
        db = sum of dy over N, OH, OW.
    Memory is laid out channels-last (NHWC) inside: the output is an NCHW view of NHWC memory,
    which the following batch norm and activation keep, so the next conv's input needs no copy.
    The columns are not kept for backward; when dW is wanted they are rebuilt chunk by chunk (a
    cheap copy), which keeps a conv's saved state at the size of its input instead of kh*kw
    times that. As in PyTorch, backward reads the input array itself when its memory is already
    channels-last: do not modify it in place between forward and backward.
    """

    @staticmethod
    def forward(ctx, x, w, b=None, stride=(1, 1), padding=(0, 0)):
        n, m, k = x.shape[0], w.shape[0], w.shape[2:]
        out = (_out_size(x.shape[2], k[0], stride[0], padding[0]),
               _out_size(x.shape[3], k[1], stride[1], padding[1]))
        xh = to_channels_last(x)                                         # (N, H, W, C)
        w2 = w.transpose(0, 2, 3, 1).reshape(m, -1)                      # (M, kh*kw*C)
        rows = out[0] * out[1]                                           # output pixels per image
        y2 = np.empty((n * rows, m), dtype=np.result_type(x, w))         # (N*OH*OW, M)
        chunks = _image_chunks(n, rows, w2.shape[1] * x.itemsize)
        buffer = np.empty((chunks[0][1] * rows, w2.shape[1]), dtype=x.dtype)
        for n0, n1 in chunks:
            cols = im2col(xh[n0:n1], k, stride, padding, out, buffer[: (n1 - n0) * rows])
            np.matmul(cols, w2.T, out=y2[n0 * rows : n1 * rows])         # (chunk rows, M)
        if b is not None:
            y2 += b
        ctx.save_for_backward(xh, w2)
        ctx.geometry = (x.shape, w.shape, stride, padding, out)
        return y2.reshape(n, *out, m).transpose(0, 3, 1, 2)              # (N, M, OH, OW) view

    @staticmethod
    def backward(ctx, dy):
        xh, w2 = ctx.saved_tensors
        x_shape, w_shape, stride, padding, out = ctx.geometry
        m, c, kh, kw = w_shape
        k, rows = (kh, kw), out[0] * out[1]
        dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, m)                    # (N*OH*OW, M)
        want_dx, want_dw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        dxh = np.zeros(xh.shape, dtype=dy.dtype) if want_dx else None    # (N, H, W, C)
        dw2 = np.zeros(w2.shape[::-1], dtype=dy.dtype) if want_dw else None  # (kh*kw*C, M)
        chunks = _image_chunks(x_shape[0], rows, w2.shape[1] * xh.itemsize)
        shape = (chunks[0][1] * rows, w2.shape[1])
        cols_buffer = np.empty(shape, dtype=xh.dtype)                   # one buffer serves both
        dcols_buffer = cols_buffer if dy.dtype == xh.dtype else np.empty(shape, dtype=dy.dtype)
        for n0, n1 in chunks:
            dy_chunk = dy2[n0 * rows : n1 * rows]                        # (chunk rows, M)
            if want_dw:
                cols = im2col(xh[n0:n1], k, stride, padding, out, cols_buffer[: len(dy_chunk)])
                dw2 += cols.T @ dy_chunk                                 # (kh*kw*C, M)
            if want_dx:
                dcols = np.matmul(dy_chunk, w2, out=dcols_buffer[: len(dy_chunk)])
                col2im(dcols, dxh[n0:n1], k, stride, padding, out)       # (chunk rows, kh*kw*C)
        dx = dxh.transpose(0, 3, 1, 2) if want_dx else None              # (N, C, H, W) view
        dw = dw2.T.reshape(m, kh, kw, c).transpose(0, 3, 1, 2) if want_dw else None
        db = dy2.sum(axis=0) if ctx.needs_input_grad[2] else None
        return dx, dw, db


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
    """2-D cross-correlation on NCHW, as torch.nn.functional.conv2d (zero padding, groups=1)."""
    stride, padding = _pair(stride), _pair(padding)
    _check_geometry("conv2d", None, stride, padding)
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


def _check_pool(name: str, x: Tensor, k: tuple, stride: tuple, padding: tuple) -> None:
    _check_geometry(name, k, stride, padding)
    if x.ndim != 4:
        raise ValueError(f"{name}: expected input (N, C, H, W), got shape {x.shape}")
    if padding[0] * 2 > k[0] or padding[1] * 2 > k[1]:
        raise ValueError(f"{name}: padding {padding} must be at most half the kernel size {k}")
    if x.shape[2] + 2 * padding[0] < k[0] or x.shape[3] + 2 * padding[1] < k[1]:
        raise ValueError(f"{name}: kernel {k} does not fit the input's {x.shape[2:]} spatial size")


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    k, padding = _pair(kernel_size), _pair(padding)
    stride = _pair(kernel_size if stride is None else stride)
    _check_pool("max_pool2d", x, k, stride, padding)
    return MaxPool2d.apply(x, k=k, stride=stride, padding=padding)


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    k, padding = _pair(kernel_size), _pair(padding)
    stride = _pair(kernel_size if stride is None else stride)
    _check_pool("avg_pool2d", x, k, stride, padding)
    return AvgPool2d.apply(x, k=k, stride=stride, padding=padding)


def adaptive_avg_pool2d(x: Tensor, output_size) -> Tensor:
    """Average over the bins [floor(i*H/oh), ceil((i+1)*H/oh)), as torch's adaptive pooling."""
    oh, ow = _pair(output_size)
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: expected input (N, C, H, W), got {x.shape}")
    h, w = x.shape[2:]
    if h % oh == 0 and w % ow == 0:                     # equal bins: one ordinary pooling
        return avg_pool2d(x, (h // oh, w // ow))
    rows = []
    for i in range(oh):
        r0, r1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        cells = [mean(x[:, :, r0:r1, (j * w) // ow : -((-(j + 1) * w) // ow)], axis=(2, 3))
                 for j in range(ow)]
        rows.append(stack(cells, axis=-1))           # (N, C, OW)
    return stack(rows, axis=-2)                      # (N, C, OH, OW)
