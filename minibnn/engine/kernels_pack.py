"""Packing float activations into words at memory speed (Numba), beside a NumPy twin.

Same format as bitpack.pack_bits (bit b of word w = element 64w + b, bit = x < 0, so 0 and -0.0
are +1, tail bits 0), but one pass over the floats, threaded, and able to read NCHW directly.
Used where a float layer hands over to a binary one. Imports numpy and numba only.
"""

import numpy as np
from numba import njit, prange

__all__ = ["pack_signs", "pack_signs_reference"]


def pack_signs_reference(x: np.ndarray) -> np.ndarray:
    """NumPy packing of the last axis, rule of bitpack.pack_bits.  (..., K) -> uint64 (..., W64)."""
    neg = np.asarray(x) < 0
    k = neg.shape[-1]
    nbytes = -(-k // 64) * 8
    packed = np.zeros(neg.shape[:-1] + (nbytes,), np.uint8)
    packed[..., : -(-k // 8)] = np.packbits(neg, axis=-1, bitorder="little")
    return packed.view("<u8").astype(np.uint64)


@njit(cache=True, parallel=True)
def _pack_rows_nhwc(x, out):
    """x float (R, K) -> out uint32 (R, 2*W64): 32-bit halves of the little-endian words."""
    k = x.shape[1]
    for r in prange(x.shape[0]):
        for w in range(out.shape[1]):
            word = np.uint32(0)
            for b in range(min(32, k - 32 * w)):      # 32-bit lanes: twice the compares per op
                word |= np.uint32(x[r, 32 * w + b] < 0) << np.uint32(b)
            out[r, w] = word


@njit(cache=True, parallel=True)
def _pack_nchw(x, out):
    """x float (N, C, H, W) -> out uint32 (N, H, W, 2*W64); reads x along W (contiguous)."""
    n_img, c, h, wid = x.shape
    for t in prange(n_img * h):
        n, i = t // h, t % h
        row = np.empty(wid, np.uint32)
        for cw in range(out.shape[3]):
            row[:] = 0
            for b in range(min(32, c - 32 * cw)):
                bit = np.uint32(b)
                xs = x[n, 32 * cw + b, i]
                for j in range(wid):                  # vectorised along W
                    row[j] |= np.uint32(xs[j] < 0) << bit
            out[n, i, :, cw] = row


def pack_signs(x: np.ndarray, layout: str = "NHWC") -> np.ndarray:
    """Fast packer for activations.  "NHWC": (..., C) -> uint64 (..., W64);
    "NCHW": (N, C, H, W) -> uint64 (N, H, W, ceil(C/64)).  bit = x < 0 (0 and -0.0 -> +1)."""
    x = np.ascontiguousarray(x)
    if layout == "NCHW":
        if x.ndim != 4:
            raise ValueError(f"pack_signs(layout='NCHW') expects (N, C, H, W), found {x.shape}")
        out = np.zeros((x.shape[0], x.shape[2], x.shape[3], -(-x.shape[1] // 64)), np.uint64)
        _pack_nchw(x, out.view(np.uint32))
        return out
    if layout != "NHWC":
        raise ValueError(f"pack_signs: layout must be 'NHWC' or 'NCHW', found {layout!r}")
    k = x.shape[-1]
    out = np.zeros(x.shape[:-1] + (-(-k // 64),), np.uint64)
    _pack_rows_nhwc(x.reshape(-1, k), out.reshape(-1, out.shape[-1]).view(np.uint32))
    return out
