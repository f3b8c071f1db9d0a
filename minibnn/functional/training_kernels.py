"""Training kernels (Numba), each beside its NumPy reference twin: im2col/col2im for the conv,
and the per-channel passes of batch norm.

The training conv lowers a convolution to one matrix product per chunk of images:

    cols[(n, oh, ow), (i, j, c)] = x[n, s*oh + i - p, s*ow + j - p, c]   (0 outside the image)
    y[(n, oh, ow), m]            = cols @ W2^T,       W2[m, (i, j, c)] = w[m, c, i, j]

`col2im` is the adjoint of `im2col`: it adds each row of a column gradient back onto the input
pixels that row was copied from. Both work on channels-last (N, H, W, C) arrays, so every copy
moves a contiguous run of C values; the padding is never materialised (taps that fall outside
the image read zero, or are skipped in the adjoint).

Why Numba here: the NumPy twins (a strided window view copied once, and one strided add per
kernel tap) are correct and readable but move memory slowly; the kernels do the same copies in
one pass and fill a buffer the caller reuses chunk after chunk. They are serial on purpose:
they are memory-bound, and a second Numba thread would compete with OpenBLAS's worker threads.
Batch norm on channels-last memory, seen as a matrix (rows, C), takes three passes forward (mean,
squared deviations, the affine map) and two backward (gradient sums, then dx) instead of
NumPy's five or six, with float64 per-channel accumulators; xhat is recomputed from x where
needed rather than stored. Measured times: docs/training_speed.md.
Under NUMBA_DISABLE_JIT=1, and for dtypes other than float32 and float64, the NumPy twins are
used instead (see the dispatchers at the end).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit
from numpy.lib.stride_tricks import sliding_window_view

__all__ = ["im2col", "col2im", "im2col_reference", "col2im_reference", "jit_enabled",
           "to_channels_last",
           "channel_stats", "channel_stats_reference", "normalize_rows", "normalize_rows_reference",
           "bn_backward_rows", "bn_backward_rows_reference"]


def jit_enabled() -> bool:
    """False under NUMBA_DISABLE_JIT=1, where the kernels would run as (very slow) Python."""
    return not numba.config.DISABLE_JIT


def _use_kernels(*arrays: np.ndarray) -> bool:
    """The Numba kernels are compiled for float32 and float64; any other dtype (float16, say)
    and NUMBA_DISABLE_JIT=1 take the NumPy twins."""
    return jit_enabled() and all(a.dtype in (np.float32, np.float64) for a in arrays)


# ------------------------------------------------------------------------- NumPy reference twins
def im2col_reference(x: np.ndarray, k: tuple, s: tuple, p: tuple, out: tuple) -> np.ndarray:
    """(N, H, W, C) -> cols (N*OH*OW, kh*kw*C), with zero padding p: a window view, one copy."""
    n, h, w, c = x.shape
    xp = np.zeros((n, h + 2 * p[0], w + 2 * p[1], c), dtype=x.dtype)     # (N, Hp, Wp, C)
    xp[:, p[0] : p[0] + h, p[1] : p[1] + w] = x
    win = sliding_window_view(xp, k, axis=(1, 2))                        # (N, Hp', Wp', C, kh, kw)
    win = win[:, : (out[0] - 1) * s[0] + 1 : s[0], : (out[1] - 1) * s[1] + 1 : s[1]]
    return win.transpose(0, 1, 2, 4, 5, 3).reshape(n * out[0] * out[1], -1)


def col2im_reference(dcols: np.ndarray, dx: np.ndarray, k: tuple, s: tuple, p: tuple,
                     out: tuple) -> None:
    """Adjoint of im2col_reference: dx (N, H, W, C) += col2im(dcols), one strided add per tap."""
    n, h, w, c = dx.shape
    taps = dcols.reshape(n, out[0], out[1], k[0], k[1], c)               # (N, OH, OW, kh, kw, C)
    dxp = np.zeros((n, h + 2 * p[0], w + 2 * p[1], c), dtype=dcols.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            dxp[:, i : i + s[0] * out[0] : s[0], j : j + s[1] * out[1] : s[1]] += taps[:, :, :, i, j]
    dx += dxp[:, p[0] : p[0] + h, p[1] : p[1] + w]


def channel_stats_reference(x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and biased variance of x2 (rows, C), as float64."""
    return x2.mean(axis=0, dtype=np.float64), x2.var(axis=0, dtype=np.float64)


def normalize_rows_reference(x2, mean, inv_std, gamma, beta):
    """y = (x2 - mean) * inv_std * gamma + beta, per column (all (C,) of x2's dtype)."""
    return (x2 - mean) * inv_std * gamma + beta


def bn_backward_rows_reference(dy2, x2, mean, inv_std, scale, axes=(0,)):
    """Training-mode batch-norm gradients: returns (dx, dgamma, dbeta), with
    xhat = (x2 - mean) * inv_std and scale = gamma * inv_std,
        dx = scale * (dy - mean(dy) - xhat * mean(dy * xhat)), the means taken over `axes`.
    On (rows, C) the parameters are (C,); on other layouts pass them broadcastable to x2 and
    the axes that are not the channel axis."""
    xhat = (x2 - mean) * inv_std
    dbeta = dy2.sum(axis=axes, dtype=np.float64)
    dgamma = (dy2 * xhat).sum(axis=axes, dtype=np.float64)
    n = dy2.size // dbeta.size
    shape = np.shape(mean)
    dx = scale * (dy2 - (dbeta / n).astype(dy2.dtype).reshape(shape)
                  - xhat * (dgamma / n).astype(dy2.dtype).reshape(shape))
    return dx, dgamma, dbeta


# ------------------------------------------------------------------------------- Numba kernels
@njit(cache=True)
def _channels_last_kernel(x, out):
    n, c, h, w = x.shape
    for b in range(n):
        for i in range(h):                 # one (C, W) slab at a time: it stays in L1
            for ch in range(c):
                for j in range(w):
                    out[b, i, j, ch] = x[b, ch, i, j]


@njit(cache=True)
def _im2col_kernel(x, kh, kw, sh, sw, ph, pw, oh, ow, cols):
    n, h, w, c = x.shape
    for b in range(n):
        for y in range(oh):
            for xo in range(ow):
                row = (b * oh + y) * ow + xo
                for i in range(kh):
                    ih = y * sh + i - ph
                    for j in range(kw):
                        iw = xo * sw + j - pw
                        base = (i * kw + j) * c
                        if 0 <= ih < h and 0 <= iw < w:
                            for ch in range(c):
                                cols[row, base + ch] = x[b, ih, iw, ch]
                        else:
                            for ch in range(c):
                                cols[row, base + ch] = 0


@njit(cache=True)
def _col2im_kernel(dcols, kh, kw, sh, sw, ph, pw, oh, ow, dx):
    n, h, w, c = dx.shape
    for b in range(n):
        for y in range(oh):
            for xo in range(ow):
                row = (b * oh + y) * ow + xo
                for i in range(kh):
                    ih = y * sh + i - ph
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = xo * sw + j - pw
                        if iw < 0 or iw >= w:
                            continue
                        base = (i * kw + j) * c
                        for ch in range(c):
                            dx[b, ih, iw, ch] += dcols[row, base + ch]


@njit(cache=True)
def _channel_stats_kernel(x2):
    rows, c = x2.shape
    total = np.zeros(c)
    for r in range(rows):
        for ch in range(c):
            total[ch] += x2[r, ch]
    mean = total / rows
    squares = np.zeros(c)                  # second pass around the mean: no cancellation
    for r in range(rows):
        for ch in range(c):
            d = x2[r, ch] - mean[ch]
            squares[ch] += d * d
    return mean, squares / rows


@njit(cache=True)
def _normalize_rows_kernel(x2, mean, inv_std, gamma, beta, y):
    rows, c = x2.shape
    for r in range(rows):
        for ch in range(c):
            y[r, ch] = (x2[r, ch] - mean[ch]) * inv_std[ch] * gamma[ch] + beta[ch]


@njit(cache=True)
def _bn_sums_kernel(dy2, x2, mean, inv_std):
    rows, c = dy2.shape
    dbeta, dgamma = np.zeros(c), np.zeros(c)
    for r in range(rows):
        for ch in range(c):
            dbeta[ch] += dy2[r, ch]
            dgamma[ch] += dy2[r, ch] * ((x2[r, ch] - mean[ch]) * inv_std[ch])
    return dgamma, dbeta


@njit(cache=True)
def _bn_dx_kernel(dy2, x2, mean, inv_std, scale, dy_mean, dyxhat_mean, dx):
    rows, c = dy2.shape
    for r in range(rows):
        for ch in range(c):
            xhat = (x2[r, ch] - mean[ch]) * inv_std[ch]
            dx[r, ch] = scale[ch] * (dy2[r, ch] - dy_mean[ch] - xhat * dyxhat_mean[ch])


# --------------------------------------------------------------------------------- dispatchers
def to_channels_last(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> a C-contiguous (N, H, W, C) array: a view when the memory already is
    channels-last, else a copy (the kernel transposes one cache-sized (C, W) slab at a time)."""
    xt = x.transpose(0, 2, 3, 1)
    if xt.flags.c_contiguous or not _use_kernels(x):
        return np.ascontiguousarray(xt)
    out = np.empty(xt.shape, dtype=x.dtype)
    _channels_last_kernel(x, out)
    return out


def im2col(x: np.ndarray, k: tuple, s: tuple, p: tuple, out: tuple,
           cols: np.ndarray | None = None) -> np.ndarray:
    """Columns (N*OH*OW, kh*kw*C) of channels-last x (N, H, W, C), written into `cols` if given."""
    n, _, _, c = x.shape
    shape = (n * out[0] * out[1], k[0] * k[1] * c)
    if cols is None:
        cols = np.empty(shape, dtype=x.dtype)
    elif cols.shape != shape or cols.dtype != x.dtype:
        raise ValueError(f"im2col: buffer must be {shape} {x.dtype}, got {cols.shape} {cols.dtype}")
    if _use_kernels(x):
        _im2col_kernel(x, k[0], k[1], s[0], s[1], p[0], p[1], out[0], out[1], cols)
    else:
        cols[...] = im2col_reference(x, k, s, p, out)
    return cols


def col2im(dcols: np.ndarray, dx: np.ndarray, k: tuple, s: tuple, p: tuple, out: tuple) -> None:
    """dx (N, H, W, C) += the adjoint of im2col applied to dcols (N*OH*OW, kh*kw*C), in place."""
    if _use_kernels(dcols, dx):
        _col2im_kernel(dcols, k[0], k[1], s[0], s[1], p[0], p[1], out[0], out[1], dx)
    else:
        col2im_reference(dcols, dx, k, s, p, out)


def channel_stats(x2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (mean, biased variance) of a C-contiguous (rows, C) array, in float64."""
    return _channel_stats_kernel(x2) if _use_kernels(x2) else channel_stats_reference(x2)


def normalize_rows(x2, mean, inv_std, gamma, beta) -> np.ndarray:
    """Batch norm's y on (rows, C); mean, inv_std, gamma, beta are (C,) of x2's dtype."""
    if not _use_kernels(x2):
        return normalize_rows_reference(x2, mean, inv_std, gamma, beta)
    y = np.empty_like(x2)
    _normalize_rows_kernel(x2, mean, inv_std, gamma, beta, y)
    return y


def bn_backward_rows(dy2, x2, mean, inv_std, scale) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dgamma, dbeta) of training-mode batch norm on (rows, C); see the reference twin."""
    if not _use_kernels(dy2, x2):
        return bn_backward_rows_reference(dy2, x2, mean, inv_std, scale)
    dgamma, dbeta = _bn_sums_kernel(dy2, x2, mean, inv_std)
    n = dy2.shape[0]
    dx = np.empty_like(dy2)
    _bn_dx_kernel(dy2, x2, mean, inv_std, scale, (dbeta / n).astype(dy2.dtype),
                  (dgamma / n).astype(dy2.dtype), dx)
    return dx, dgamma, dbeta
