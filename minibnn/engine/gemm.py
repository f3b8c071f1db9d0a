"""XNOR-popcount kernels on packed +-1 words (Numba), each beside a NumPy reference twin.

For a, b in {-1,+1}^K packed as bits (1 means -1, tail bits 0):  a.b = K - 2 popcount(a XOR b).
This file: the microkernels shared by the GEMM and the conv, the packed GEMM and binary linear
layer, and the fused output stages (scale/bias to float32, or a per-channel threshold that emits
packed bits). The popcount itself and the choice of method per CPU live in isa.py, the conv in
conv.py, the fast float -> bits packer in pack.py, aligned buffers in buffers.py. Imports
numpy, numba, isa.py, buffers.py and pack.py only; runs as plain Python under
NUMBA_DISABLE_JIT=1 (slowly). Editing a helper that other files call: see "Numba's cache" in
docs/engine_speed.md.
Reference: Rastegari et al. 2016 (XNOR-Net), arXiv:1603.05279.
"""

import numba
import numpy as np
from numba import njit, prange

from .buffers import _aligned_block, acc_width, aligned_copy, aligned_empty, pad_lanes
from .isa import (POPCOUNT_WORDS, _hot_loop_hints, isa_path, popcount, popcount_method,
                  popsum16)
from .pack import neg_bits64, pack_signs_reference

__all__ = [
    "popcount", "aligned_empty", "aligned_copy", "pad_lanes", "fold_threshold",
    "scale_bias_reference", "threshold_reference",
    "xnor_gemm", "xnor_gemm_naive", "xnor_gemm_reference", "PackedLinear", "prepare_linear",
    "binary_linear", "binary_linear_reference",
]

PARALLEL_MIN_MACS = 5_000_000   # below this, thread start-up costs more than it saves
MODE_INT, MODE_FLOAT, MODE_BITS = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# The microkernel shared by the GEMM and the conv. One packed uint64 word is handled as its two
# uint32 halves (lo, hi): popcounts then add into 32-bit accumulators, 16 channels per 512-bit
# register, and both halves share one accumulator load/store. Output channels m are the long
# contiguous axis the vectoriser runs along; four pixels share each weight load. Arguments are
# whole arrays plus indices: slicing rows inside the hot loop would cost reference counting.

@njit(cache=True)
def _accumulate4(acc, p, x, i, s, c, w, t):
    """For q < 4 and every m:  acc[p+q, m] += popcount(x[i+q*s, c] ^ w[t, c, m])
                                             + popcount(x[i+q*s, c+1] ^ w[t, c+1, m]).

    acc uint32 (P, >= M); x uint32 (pixels, Cw32) one image row (or the GEMM's rows), with
    pixel stride s; w uint32 (taps, Cw32, M); c even (the low half of a 64-bit word); t the tap.
    """
    _hot_loop_hints()
    l0, h0 = x[i, c], x[i, c + 1]
    l1, h1 = x[i + s, c], x[i + s, c + 1]
    l2, h2 = x[i + 2 * s, c], x[i + 2 * s, c + 1]
    l3, h3 = x[i + 3 * s, c], x[i + 3 * s, c + 1]
    for m in range(w.shape[2]):
        lo, hi = w[t, c, m], w[t, c + 1, m]
        acc[p, m] += popcount(l0 ^ lo) + popcount(h0 ^ hi)
        acc[p + 1, m] += popcount(l1 ^ lo) + popcount(h1 ^ hi)
        acc[p + 2, m] += popcount(l2 ^ lo) + popcount(h2 ^ hi)
        acc[p + 3, m] += popcount(l3 ^ lo) + popcount(h3 ^ hi)


@njit(cache=True)
def _accumulate1(acc, p, x, i, c, w, t):
    """One pixel of _accumulate4: the remainder when fewer than 4 are left."""
    _hot_loop_hints()
    lo, hi = x[i, c], x[i, c + 1]
    for m in range(w.shape[2]):
        acc[p, m] += popcount(lo ^ w[t, c, m]) + popcount(hi ^ w[t, c + 1, m])


@njit(cache=True)
def _accumulate_bytes(acc, p, x, i, s, c, w, t, pixels):
    """_accumulate4 (pixels == 4) or _accumulate1 (pixels == 1) with isa.popsum16: the two
    halves' byte counts add before one widening, 16 channels at a time (w's M axis padded to a
    multiple of 16 lanes, acc at least as wide)."""
    mp = w.shape[2]
    wf = w.reshape(-1)
    b0 = (t * w.shape[1] + c) * mp
    for m0 in range(0, mp, 16):
        for q in range(pixels):
            xq = (x[i + q * s, c], x[i + q * s, c + 1])
            popsum16(acc, (p + q, m0), wf, (b0 + m0, b0 + mp + m0), xq, True)


@njit(cache=True, inline="always")
def _halves3(x, i, c):
    """(lo, hi) halves of word c at pixels i, i+1, i+2 of row x: the taps of a 3-wide kernel."""
    return x[i, c], x[i, c + 1], x[i + 1, c], x[i + 1, c + 1], x[i + 2, c], x[i + 2, c + 1]


@njit(cache=True, inline="always")
def _popcount6(xs, l0, h0, l1, h1, l2, h2):
    """sum of popcount(x_half ^ w_half) over the 6 halves of 3 taps; xs from _halves3."""
    return (popcount(xs[0] ^ l0) + popcount(xs[1] ^ h0) + popcount(xs[2] ^ l1)
            + popcount(xs[3] ^ h1) + popcount(xs[4] ^ l2) + popcount(xs[5] ^ h2))


@njit(cache=True)
def _accumulate4x3(acc, p, x, i, s, c, w, t):
    """_accumulate4 for all three taps t, t+1, t+2 of a kernel row at once (kw == 3):

        acc[p+q, m] += sum_{k<3} popcount(x[i+q*s+k, c] ^ w[t+k, c, m])
                                 + popcount(x[i+q*s+k, c+1] ^ w[t+k, c+1, m])       (q < 4)

    Six popcounts meet in registers before one accumulator load/store, a third of the memory
    traffic and loop overhead of three _accumulate4 calls (it matters most when M is small).
    """
    _hot_loop_hints()
    x0, x1 = _halves3(x, i, c), _halves3(x, i + s, c)
    x2, x3 = _halves3(x, i + 2 * s, c), _halves3(x, i + 3 * s, c)
    for m in range(w.shape[2]):
        l0, h0 = w[t, c, m], w[t, c + 1, m]
        l1, h1 = w[t + 1, c, m], w[t + 1, c + 1, m]
        l2, h2 = w[t + 2, c, m], w[t + 2, c + 1, m]
        acc[p, m] += _popcount6(x0, l0, h0, l1, h1, l2, h2)
        acc[p + 1, m] += _popcount6(x1, l0, h0, l1, h1, l2, h2)
        acc[p + 2, m] += _popcount6(x2, l0, h0, l1, h1, l2, h2)
        acc[p + 3, m] += _popcount6(x3, l0, h0, l1, h1, l2, h2)


@njit(cache=True)
def _emit(acc, base, row_class, col_cls, mode, scale, bias, sgn, thr, out_i, out_f, out_b,
          margin):
    """Fused output stage for P pixels (or rows).  acc uint (P, >= M) popcounts; the constant
    of pixel p is base[row_class, col_cls[p]] (base int32 (R, Cc, M): K, or the border table);
    margin int32 (>= M,) scratch for mode 2, allocated once by the caller.

        a = base - 2 acc                                    (int, exact)
        mode 0: out_i = a                                   int32 (P, M)
        mode 1: out_f = float32(a) * scale + bias           float32 (P, M)
        mode 2: bit m of out_b = 1  iff  sgn[m]*a < thr[m]   uint64 (P, ceil(M/64))
                (== float32(a)*scale + bias < 0, see fold_threshold)
    """
    _hot_loop_hints()
    m_total = scale.shape[0]
    for p in range(acc.shape[0]):
        cc = col_cls[p]                    # index base directly: a row view would cost refcounts
        if mode == 0:
            for m in range(m_total):
                out_i[p, m] = base[row_class, cc, m] - 2 * np.int32(acc[p, m])
        elif mode == 1:
            for m in range(m_total):
                a = np.float32(base[row_class, cc, m] - 2 * np.int32(acc[p, m]))
                out_f[p, m] = a * scale[m] + bias[m]
        else:
            for m in range(m_total):              # margin < 0  <=>  sgn*a < thr (no overflow:
                a = base[row_class, cc, m] - 2 * np.int32(acc[p, m])      # |a|, |thr| <= K+1)
                margin[m] = sgn[m] * a - thr[m]
            for j in range(out_b.shape[1]):
                out_b[p, j] = neg_bits64(margin, 64 * j, min(64, m_total - 64 * j))


# ---------------------------------------------------------------------------------------------
# Output stages: parameters and NumPy twins.

def fold_threshold(scale: np.ndarray, bias: np.ndarray, k: int):
    """Integer form of the sign decision.  scale, bias float32 (M,), k = max |acc|.

    Returns sgn, thr int32 (M,) with, for every integer acc in [-k, k],

        sgn*acc < thr   <=>   float32(acc) * scale + bias < 0      (evaluated in float32)

    so the packed kernel compares integers and still agrees bit for bit with the float path.
    acc -> float32(acc)*scale + bias is monotone (rounding is monotone), so the set of acc
    giving -1 is an interval ending at -k (scale >= 0) or at +k (scale < 0); a vectorised binary
    search finds its edge. scale == 0 gives a constant (bias < 0); an output of exactly 0 is +1.
    """
    scale = np.asarray(scale, np.float32).ravel()
    bias = np.asarray(bias, np.float32).ravel()
    flip = scale < 0
    lo = np.full(scale.shape, -k, np.int64)
    hi = np.full(scale.shape, k + 1, np.int64)     # g(k + 1) := False, never evaluated
    while np.any(lo < hi):                          # first acc where g(acc) is False
        mid = (lo + hi) // 2
        g = ((mid.astype(np.float32) * scale + bias) < 0) ^ flip
        open_ = lo < hi
        lo = np.where(open_ & g, mid + 1, lo)
        hi = np.where(open_ & ~g, mid, hi)
    sgn = np.where(flip, -1, 1).astype(np.int32)
    thr = np.where(flip, 1 - lo, lo).astype(np.int32)   # scale<0: acc >= lo <=> -acc < 1-lo
    return sgn, thr


def scale_bias_reference(acc: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """y = float32(acc) * scale + bias, channels last.  acc int (..., M) -> float32 (..., M)."""
    return acc.astype(np.float32) * np.asarray(scale, np.float32) + np.asarray(bias, np.float32)


def threshold_reference(acc: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Packed sign of scale_bias_reference: bit = y < 0 (y == 0 -> +1).  -> uint64 (..., W64)."""
    return pack_signs_reference(scale_bias_reference(acc, scale, bias))


def _output_stage(m: int, k: int, scale, bias, to_bits: bool):
    """Validate scale/bias and pick the mode.  Returns (mode, scale, bias, sgn, thr)."""
    if scale is None and bias is None:
        if to_bits:
            raise ValueError("to_bits=True needs scale and/or bias (the sign threshold)")
        mode = MODE_INT
    else:
        mode = MODE_BITS if to_bits else MODE_FLOAT
    scale = np.ones(m, np.float32) if scale is None else np.asarray(scale, np.float32).ravel()
    bias = np.zeros(m, np.float32) if bias is None else np.asarray(bias, np.float32).ravel()
    for name, v in (("scale", scale), ("bias", bias)):
        if v.shape != (m,):
            raise ValueError(f"{name} must have one value per output channel: expected ({m},), "
                             f"found {v.shape}")
    sgn, thr = fold_threshold(scale, bias, k) if mode == MODE_BITS else (
        np.ones(m, np.int32), np.zeros(m, np.int32))
    return (mode, *(aligned_copy(v) for v in (scale, bias, sgn, thr)))   # vector loads


def _output_arrays(mode: int, shape: tuple, m: int):
    """Allocate the output of `mode`, shape + (M,) or shape + (ceil(M/64),) when packed, and
    empty stand-ins shape + (0,) for the other two (the jitted driver takes all three)."""
    sizes = [m if mode == MODE_INT else 0, m if mode == MODE_FLOAT else 0,
             -(-m // 64) if mode == MODE_BITS else 0]
    outs = [aligned_empty(shape + (n,), dt) for n, dt in zip(sizes, (np.int32, np.float32,
                                                                    np.uint64))]
    return outs[0], outs[1], outs[2], outs[mode]


def _check_words(name: str, a, ndim: int, k: int | None = None, tail: bool = False) -> np.ndarray:
    """Thin validation in front of the jitted cores (never inside the hot loops). tail=True also
    checks that bits past k are 0 (weights, once; activations at the one-shot entry points
    binary_linear / xnor_gemm / binary_conv2d; a prepared layer trusts its packer's output)."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
        raise ValueError(f"{name}: the channel count k must be a positive integer, found {k!r}")
    if not isinstance(a, np.ndarray) or a.dtype != np.uint64:
        found = a.dtype if isinstance(a, np.ndarray) else type(a).__name__
        raise ValueError(f"{name} must be a uint64 ndarray of packed words, found {found}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, found shape {a.shape}")
    if k is not None and a.shape[-1] != -(-k // 64):
        raise ValueError(f"{name}: {k} channels need {-(-k // 64)} words on the last axis, "
                         f"found {a.shape[-1]}")
    if tail and k % 64 and a.size and np.any(a[..., -1] >> np.uint64(k % 64)):
        raise ValueError(f"{name}: bits past channel {k} must be 0 (pack with bitpack.pack_bits)")
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# Packed GEMM and binary linear layer: rows of x play the pixels, rows of w the output channels.

def xnor_gemm_reference(a_pm1: np.ndarray, b_pm1: np.ndarray) -> np.ndarray:
    """a @ b.T on +-1 values.  a (M, K), b (N, K) -> int32 (M, N)."""
    return np.rint(np.asarray(a_pm1, np.float64) @ np.asarray(b_pm1, np.float64).T).astype(np.int32)


@njit(cache=True)
def xnor_gemm_naive(a_words, b_words, k):
    """The textbook loop: out[i, j] = k - 2 sum_w popcount(a[i, w] ^ b[j, w]).

    a_words uint64 (M, W64), b_words uint64 (N, W64) -> int32 (M, N). No validation.
    """
    m, n = a_words.shape[0], b_words.shape[0]
    out = np.empty((m, n), np.int32)
    for i in range(m):
        for j in range(n):
            s = 0
            for w in range(a_words.shape[1]):
                s += popcount(a_words[i, w] ^ b_words[j, w])
            out[i, j] = k - 2 * s
    return out


@njit(cache=True)
def _gemm_rows(x, wt, base, i0, i1, mode, scale, bias, sgn, thr, out_i, out_f, out_b, method,
               acc, margin, same_class):
    """Rows i0:i1 of the packed product.  x uint32 (B, 2*W64), wt uint32 (1, 2*W64, Mp) (weights
    transposed so M is contiguous, padded to 16 lanes), base int32 (1, 1, M) = K. Writes rows of
    out_* via _emit. Scratch from the caller (nothing here allocates): acc uint32 (4, >= Mp),
    margin int32 (M,), same_class int64 zeros (4,) (every row uses base[0, 0])."""
    n_words = wt.shape[1]
    i = i0
    while i < i1:
        acc[:] = 0
        rows = 4 if i + 4 <= i1 else 1
        for c in range(0, n_words, 2):                          # (lo, hi) halves of a word
            if method != POPCOUNT_WORDS:
                _accumulate_bytes(acc, 0, x, i, 1, c, wt, 0, rows)
            elif rows == 4:
                _accumulate4(acc, 0, x, i, 1, c, wt, 0)
            else:
                _accumulate1(acc, 0, x, i, c, wt, 0)
        _emit(acc[:rows], base, 0, same_class, mode, scale, bias, sgn, thr,
              out_i[i:i + rows], out_f[i:i + rows], out_b[i:i + rows], margin)
        i += rows


@njit(cache=True)
def _gemm_serial(x, wt, base, mode, scale, bias, sgn, thr, out_i, out_f, out_b, method):
    acc = _aligned_block(4, acc_width(wt.shape[2]))
    _gemm_rows(x, wt, base, 0, x.shape[0], mode, scale, bias, sgn, thr, out_i, out_f, out_b,
               method, acc, np.empty(scale.shape[0], np.int32), np.zeros(4, np.int64))


@njit(cache=True, parallel=True)
def _gemm_parallel(x, wt, base, mode, scale, bias, sgn, thr, out_i, out_f, out_b, method):
    n_blocks = (x.shape[0] + 15) // 16                 # 16 rows per task
    # Every task's scratch is allocated here, on the calling thread: an allocation inside the
    # prange body comes from the worker's own malloc arena (docs/engine_speed.md).
    accs = _aligned_block(4 * n_blocks, acc_width(wt.shape[2]))
    margins = np.empty((n_blocks, scale.shape[0]), np.int32)
    same_class = np.zeros(4, np.int64)
    for blk in prange(n_blocks):
        _gemm_rows(x, wt, base, 16 * blk, min(16 * blk + 16, x.shape[0]),
                   mode, scale, bias, sgn, thr, out_i, out_f, out_b, method,
                   accs[4 * blk:4 * blk + 4], margins[blk], same_class)


class PackedLinear:
    """A binary linear layer ready to run: weights re-laid once, output stage folded once.

        y = (x . w) * scale + bias,   x . w = K - 2 popcount(x XOR w)

    Build with prepare_linear; call with x_words uint64 (B, W64) -> int32 (B, M) (no stage),
    float32 (B, M) (scale/bias), or uint64 (B, ceil(M/64)) packed signs (to_bits=True).
    """

    def __init__(self, w_words: np.ndarray, k: int, scale=None, bias=None, to_bits=False,
                 isa: str | None = None):
        w_words = _check_words("w_words", w_words, 2, k, tail=True)
        self.k, self.m = int(k), w_words.shape[0]
        self.isa = isa_path() if isa is None else isa
        self.method = popcount_method(self.isa)
        self.wt = pad_lanes(w_words.view(np.uint32).T[None])              # (1, 2*W64, Mp)
        self.base = aligned_copy(np.full((1, 1, self.m), self.k, np.int32))   # K per row
        self.stage = _output_stage(self.m, self.k, scale, bias, to_bits)

    def __call__(self, x_words: np.ndarray) -> np.ndarray:
        x_words = _check_words("x_words", x_words, 2, self.k)
        mode, scale, bias, sgn, thr = self.stage
        out_i, out_f, out_b, out = _output_arrays(mode, (x_words.shape[0],), self.m)
        run = _gemm_parallel if _use_threads(x_words.shape[0] * self.m * self.k) else _gemm_serial
        run(x_words.view(np.uint32), self.wt, self.base, mode, scale, bias, sgn, thr,
            out_i, out_f, out_b, self.method)
        return out


def _use_threads(macs: int) -> bool:
    return macs >= PARALLEL_MIN_MACS and numba.get_num_threads() > 1


def prepare_linear(w_words: np.ndarray, k: int, scale=None, bias=None,
                   to_bits: bool = False, isa: str | None = None) -> PackedLinear:
    """Prepare a binary linear layer once (export time); see PackedLinear for the call.
    isa: the popcount path (isa.ISA_PATHS), default isa.isa_path(); every path is exact."""
    return PackedLinear(w_words, k, scale, bias, to_bits, isa)


def binary_linear(x_words: np.ndarray, w_words: np.ndarray, k: int, scale=None, bias=None,
                  to_bits: bool = False, isa: str | None = None) -> np.ndarray:
    """One-shot binary linear layer.  x_words uint64 (B, W64), w_words uint64 (M, W64).

    Returns int32 (B, M) = x . w^T; with scale/bias float32 (B, M) = acc*scale + bias; with
    to_bits=True uint64 (B, ceil(M/64)) = packed sign(acc*scale + bias).
    """
    layer = PackedLinear(w_words, k, scale, bias, to_bits, isa)
    return layer(_check_words("x_words", x_words, 2, k, tail=True))   # one-shot: tails too


def binary_linear_reference(x_pm1, w_pm1, scale=None, bias=None, to_bits=False):
    """NumPy twin of binary_linear on +-1 values x (B, K), w (M, K)."""
    acc = xnor_gemm_reference(x_pm1, w_pm1)
    if scale is None and bias is None:
        return acc
    m = acc.shape[1]
    scale = np.ones(m, np.float32) if scale is None else scale
    bias = np.zeros(m, np.float32) if bias is None else bias
    if to_bits:
        return threshold_reference(acc, scale, bias)
    return scale_bias_reference(acc, scale, bias)


def xnor_gemm(a_words: np.ndarray, b_words: np.ndarray, k: int) -> np.ndarray:
    """Packed +-1 matrix product.  a_words uint64 (M, W64), b_words uint64 (N, W64) -> int32 (M, N).

        out[i, j] = sum_k a[i, k] b[j, k] = K - 2 popcount(a_i XOR b_j)
    """
    return binary_linear(a_words, b_words, k)
