"""Pack +-1 values into uint64 words and back: the storage format of the binary engine.

Bit b of word w holds element 64*w + b of the last axis; bit 1 means -1, bit 0 means +1
(sign(0) = +1); unused tail bits of the last word are 0. Channels are packed innermost (NHWC).
NumPy only; leaves out any arithmetic on the packed words (engine/gemm.py, engine/conv.py).
Convention: Courbariaux, Hubara et al. 2016, arXiv:1602.02830; bit order as in Larq Compute Engine.
"""

import numpy as np

__all__ = ["WORD_BITS", "n_words", "pack_bits", "unpack_bits", "pack_rows", "pack_nhwc"]

WORD_BITS = 64
_LE_WORD = np.dtype("<u8")   # the byte order np.packbits(bitorder="little") produces


def n_words(k: int) -> int:
    """W64 = ceil(K / 64): how many uint64 words hold K bits."""
    return -(-int(k) // WORD_BITS)


def pack_bits(x: np.ndarray) -> np.ndarray:
    """Pack the signs of x along its last axis.  x (..., K) any real dtype -> uint64 (..., W64).

        bit = 1  if x < 0  else 0        (so +1, 0 and -0.0 all pack as +1: sign(0) = +1)

    -0.0 packs as +1 because `-0.0 < 0` is False (IEEE 754 compares -0.0 == 0.0); NaN also packs
    as +1. Tail bits past K are 0, so XOR of two packed rows never counts them.
    """
    return _pack_mask(np.asarray(x) < 0)


def _pack_mask(neg: np.ndarray) -> np.ndarray:
    """Pack a boolean mask (..., K), True meaning -1, into uint64 (..., W64)."""
    k = neg.shape[-1]
    nbytes = n_words(k) * 8
    # (..., ceil(K/8)) uint8; packbits may keep a strided input's memory order, and the word
    # view below needs the last axis contiguous
    packed = np.ascontiguousarray(np.packbits(neg, axis=-1, bitorder="little"))
    if packed.shape[-1] != nbytes:                               # pad bytes up to whole words
        full = np.zeros(packed.shape[:-1] + (nbytes,), np.uint8)
        full[..., : packed.shape[-1]] = packed
        packed = full
    words = packed.view(_LE_WORD)                                # (..., W64), bytes little-endian
    return words if words.dtype == np.uint64 else words.astype(np.uint64)


def unpack_bits(words: np.ndarray, k: int, dtype=np.float32) -> np.ndarray:
    """Inverse of pack_bits.  words uint64 (..., W64) -> +-1 array (..., K) of `dtype`.

        x = 1 - 2 * bit     (bit 0 -> +1, bit 1 -> -1); tail bits past K are ignored.
    """
    words = np.asarray(words)
    if words.dtype != np.uint64:
        raise ValueError(f"unpack_bits expects uint64 words, found {words.dtype}")
    if words.shape[-1] != n_words(k):
        raise ValueError(f"unpack_bits: K={k} needs {n_words(k)} words on the last axis, "
                         f"found {words.shape[-1]}")
    as_bytes = np.ascontiguousarray(words, dtype=_LE_WORD).view(np.uint8)   # (..., 8*W64)
    bits = np.unpackbits(as_bytes, axis=-1, count=k, bitorder="little")     # (..., K) 0/1
    return (1 - 2 * bits.astype(np.int8)).astype(dtype)


def pack_rows(x: np.ndarray) -> np.ndarray:
    """Pack a matrix row by row: (M, K) -> uint64 (M, W64). The operand layout of xnor_gemm."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"pack_rows expects a 2-D (M, K) array, found shape {x.shape}")
    return pack_bits(x)


def pack_nhwc(x: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """Pack activations for binary_conv2d: channels become the packed axis.

    x (N, C, H, W) if layout == "NCHW" (the training layout), or (N, H, W, C) if "NHWC"
    -> uint64 (N, H, W, ceil(C/64)).  Conv weights (M, C, kh, kw) pack with the same call:
    pack_nhwc(w) -> (M, kh, kw, ceil(C/64)).
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"pack_nhwc expects a 4-D array, found shape {x.shape}")
    if layout == "NCHW":
        # Compare first (contiguous), then move the 1-byte booleans rather than the floats.
        return _pack_mask(np.moveaxis(x < 0, 1, -1))             # (N, H, W, C) mask
    if layout == "NHWC":
        return pack_bits(x)
    raise ValueError(f"pack_nhwc: layout must be 'NCHW' or 'NHWC', found {layout!r}")
