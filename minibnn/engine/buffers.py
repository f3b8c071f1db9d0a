"""Scratch and weight buffers for the packed kernels: 64-byte aligned, lanes padded to 16.

A 512-bit load or store from an address that is not a multiple of 64 touches two cache lines,
and the 16-lane loads of isa.popsum16 must never run past a row: these helpers give every
kernel buffer both properties. Imports numpy and numba only.
"""

import numpy as np
from numba import njit

__all__ = ["ALIGN", "aligned_empty", "aligned_copy", "pad_lanes", "acc_width"]

ALIGN = 64                      # bytes: one cache line, one 512-bit vector


def aligned_empty(shape, dtype) -> np.ndarray:
    """np.empty whose data starts on a 64-byte boundary. NumPy only promises 16 bytes, and a
    512-bit load or store from an address that is not a multiple of 64 touches two cache lines
    (what misalignment cost the packed conv: docs/engine_speed.md)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    buf = np.empty(nbytes + ALIGN, np.uint8)
    start = -buf.ctypes.data % ALIGN
    return buf[start:start + nbytes].view(dtype).reshape(shape)


def aligned_copy(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of a on a 64-byte boundary (aligned_empty)."""
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def pad_lanes(a: np.ndarray) -> np.ndarray:
    """aligned_copy of a with its last axis zero-padded to a multiple of 16 lanes, so 16-lane
    loads (isa.popsum16) never run past a row; kernels ignore the padded outputs."""
    out = aligned_empty(a.shape[:-1] + (-(-a.shape[-1] // 16) * 16,), a.dtype)
    out[...] = 0
    out[..., :a.shape[-1]] = a
    return out


@njit(cache=True)
def _aligned_block(rows, width):
    """Numba's twin of aligned_empty for a (rows, width) uint32 scratch block."""
    buf = np.empty(rows * width + ALIGN // 4, np.uint32)
    start = (-buf.ctypes.data % ALIGN) // 4
    return buf[start:start + rows * width].reshape((rows, width))


@njit(cache=True)
def acc_width(m):
    """Columns of an accumulator block for M outputs: M rounded up to 16 lanes (what _row9
    writes) plus 16, plus 16 more if rows would then sit a multiple of 4 KiB apart (their
    loads and stores would alias in the cache's address check)."""
    width = 16 * ((m + 15) // 16) + 16
    return width + 16 if (4 * width) % 4096 == 0 else width
