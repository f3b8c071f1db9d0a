"""Packing float activations into words at memory speed (Numba), beside a NumPy twin.

Same format as bitpack.pack_bits (bit b of word w = element 64w + b, bit = x < 0, so 0 and -0.0
are +1, tail bits 0), but one pass over the floats, threaded, and able to read NCHW directly.
Used where a float layer hands over to a binary one; its `neg_bits64` also packs the bits that
the output stages emit (gemm._emit, stage.stage). Imports numpy, numba, llvmlite and isa.py.
"""

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from .isa import vector_compare_target

__all__ = ["pack_signs", "pack_signs_reference", "neg_mask16", "neg_bits64"]


# ---------------------------------------------------------------------------------------------
# Sixteen compares to sixteen bits in three instructions. A plain loop `word |= (x[b] < 0) << b`
# compiles to a shift and an OR per element; LLVM's <16 x i1> -> i16 bitcast of a vector compare
# is vcmpps/vpcmpd into a mask register and one kmovw on AVX-512 (a movemask on AVX2). That
# bitcast is plain LLVM IR, but only x86 lowers it well, so other targets (ARM64, pre-AVX2 x86:
# isa.vector_compare_target) compile the compare loop instead; the choice is made per target,
# at compile time, which Numba's cache keys on.

def neg_mask16(a, i):
    """Bits b < 16 set where a[i + b] < 0 (0, -0.0 and NaN give 0).  a 1-D, i + 16 <= a.size:
    compiled, it is one unchecked 16-element vector load (NUMBA_BOUNDSCHECK does not see it)."""
    word = 0
    for b in range(16):
        word |= int(a[i + b] < 0) << b
    return np.uint32(word)


@intrinsic
def _neg_mask16(typingctx, a, i):
    ok = (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
          and a.dtype in (types.float32, types.float64, types.int32, types.int64)
          and isinstance(i, types.Integer))
    if not ok:
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(a)(context, builder, args[0])
        start = context.cast(builder, args[1], i, types.intp)
        vec = ir.VectorType(context.get_data_type(a.dtype), 16)
        ptr = builder.bitcast(builder.gep(ary.data, [start]), vec.as_pointer())
        values = builder.load(ptr, align=a.dtype.bitwidth // 8)
        zero = ir.Constant(vec, None)
        if isinstance(a.dtype, types.Float):
            neg = builder.fcmp_ordered("<", values, zero)         # NaN < 0 is false, as in NumPy
        else:
            neg = builder.icmp_signed("<", values, zero)
        return builder.zext(builder.bitcast(neg, ir.IntType(16)), ir.IntType(32))
    return types.uint32(a, i), codegen


@overload(neg_mask16, inline="always")
def _neg_mask16_jit(a, i):
    vector_ok = (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                 and a.dtype in (types.float32, types.float64, types.int32, types.int64))
    if vector_ok and vector_compare_target():
        return lambda a, i: _neg_mask16(a, i)
    return lambda a, i: _neg_mask16_loop(a, i)     # other dtypes and layouts


@njit(cache=True)
def _neg_mask16_loop(a, i):
    """neg_mask16 one compare at a time (a called function: inlining this loop four times
    trips Numba's SSA checks)."""
    word = np.uint32(0)
    for b in range(16):
        word |= np.uint32(a[i + b] < 0) << np.uint32(b)
    return word


@njit(cache=True, inline="always")
def neg_bits64(a, start, count):
    """One packed word: bit b (b < count <= 64) = a[start + b] < 0.  a 1-D C-contiguous
    float32/float64/int32/int64; reads a[start : start + count] only."""
    if count == 64:                                   # the common case, unrolled
        return (np.uint64(neg_mask16(a, start)) | np.uint64(neg_mask16(a, start + 16)) << 16
                | np.uint64(neg_mask16(a, start + 32)) << 32
                | np.uint64(neg_mask16(a, start + 48)) << 48)
    word = np.uint64(0)
    b = 0
    while b + 16 <= count:
        word |= np.uint64(neg_mask16(a, start + b)) << np.uint64(b)
        b += 16
    while b < count:                                  # the last count % 16 elements
        word |= np.uint64(a[start + b] < 0) << np.uint64(b)
        b += 1
    return word


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
    """x (R, K) any real dtype Numba compiles -> out uint64 (R, W64)."""
    k = x.shape[1]
    for r in prange(x.shape[0]):
        row = x[r]
        for w in range(out.shape[1]):
            out[r, w] = neg_bits64(row, 64 * w, min(64, k - 64 * w))


@njit(cache=True, parallel=True)
def _pack_nchw(x, out):
    """x float (N, C, H, W) -> out uint32 (N, H, W, 2*W64); reads x along W (contiguous)."""
    n_img, c, h, wid = x.shape
    rows = np.empty((n_img * h, wid), np.uint32)   # per-task scratch: none allocated in prange
    for t in prange(n_img * h):
        n, i = t // h, t % h
        row = rows[t]
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
    "NCHW": (N, C, H, W) -> uint64 (N, H, W, ceil(C/64)).  bit = x < 0 (0 and -0.0 -> +1).
    Any real dtype; float16, which Numba cannot compile, is widened to float32 (exactly)."""
    x = np.ascontiguousarray(x)
    if x.dtype == np.float16:
        x = x.astype(np.float32)
    if x.dtype.kind not in "fiub":
        raise ValueError(f"pack_signs expects real numbers, found dtype {x.dtype}")
    if layout == "NCHW":
        if x.ndim != 4:
            raise ValueError(f"pack_signs(layout='NCHW') expects (N, C, H, W), found {x.shape}")
        out = np.empty((x.shape[0], x.shape[2], x.shape[3], -(-x.shape[1] // 64)), np.uint64)
        _pack_nchw(x, out.view(np.uint32))                  # writes every word (tails zero)
        return out
    if layout != "NHWC":
        raise ValueError(f"pack_signs: layout must be 'NHWC' or 'NCHW', found {layout!r}")
    k = x.shape[-1]
    out = np.empty(x.shape[:-1] + (-(-k // 64),), np.uint64)
    _pack_rows_nhwc(x.reshape(-1, k), out.reshape(-1, out.shape[-1]))   # writes every word
    return out
