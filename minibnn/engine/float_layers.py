"""The real-valued steps of the packed graph, kept in float32 as minibnn's forward computes them.

First and last layers of a BNN stay real: conv by im2col with the same column matrix and the
same product as minibnn.functional.conv (so BLAS sees identical operands), linear as nn.Linear,
and the parameter-free steps between layers (global average pool, ReActNet's AvgDown2, the NCHW
flatten, L2 normalisation), all on channels-last arrays. NumPy only.
"""

import numpy as np

__all__ = ["conv2d_float", "linear_float", "global_avg_pool", "avg_down2", "flatten_nchw",
           "l2_normalize"]


def conv2d_float(x: np.ndarray, w2: np.ndarray, k: int, stride: int, padding: int,
                 bias=None, nchw: bool = False) -> np.ndarray:
    """Real conv by im2col.  x (N, H, W, C) (or (N, C, H, W) with nchw=True), w2 float32
    (M, k*k*C) with taps ordered (kh, kw, C) -> float32 (N, OH, OW, M).

    Builds the same column matrix (N*OH*OW, k*k*C) as minibnn.functional.conv and calls the same
    product cols @ w2.T, so BLAS sees identical operands.
    """
    if nchw:
        x = x.transpose(0, 2, 3, 1)
    n, h, w, c = x.shape
    oh, ow = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    xh = x
    if padding:                                                  # zero padding, NHWC
        xh = np.zeros((n, h + 2 * padding, w + 2 * padding, c), np.float32)
        xh[:, padding:padding + h, padding:padding + w] = x
    win = np.lib.stride_tricks.sliding_window_view(xh, (k, k), axis=(1, 2))   # (N,H',W',C,k,k)
    win = win[:, : (oh - 1) * stride + 1 : stride, : (ow - 1) * stride + 1 : stride]
    cols = win.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, -1)           # (N*OH*OW, k*k*C)
    y = cols @ w2.T                                                           # (N*OH*OW, M)
    if bias is not None:
        y += bias
    return y.reshape(n, oh, ow, -1)


def linear_float(x: np.ndarray, w: np.ndarray, bias=None) -> np.ndarray:
    """y = x @ W^T (+ b), as nn.Linear.  x (N, K), w float32 (M, K) -> float32 (N, M)."""
    y = x @ w.T
    return y if bias is None else y + bias


def global_avg_pool(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C): sum over H, W times float32(1 / (H W)), as Tensor.mean does."""
    return x.sum(axis=(1, 2)) * np.float32(1.0 / (x.shape[1] * x.shape[2]))


def avg_down2(x: np.ndarray) -> np.ndarray:
    """ReActNet's AvgDown2 on NHWC: odd sizes repeat their last row/column, then 2x2 mean.
    (N, H, W, C) -> (N, ceil(H/2), ceil(W/2), C)."""
    if x.shape[1] % 2:
        x = np.concatenate([x, x[:, -1:]], axis=1)
    if x.shape[2] % 2:
        x = np.concatenate([x, x[:, :, -1:]], axis=2)
    s = (x[:, 0::2, 0::2] + x[:, 0::2, 1::2]) + (x[:, 1::2, 0::2] + x[:, 1::2, 1::2])
    return s * np.float32(0.25)


def flatten_nchw(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C*H*W) in the model's NCHW flatten order."""
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(x.shape[0], -1)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """x / sqrt(max(sum x^2, eps^2)) per row, as minibnn.functional.normalize (MLP heads)."""
    return x / np.sqrt(np.maximum((x * x).sum(axis=1, keepdims=True), eps * eps))
