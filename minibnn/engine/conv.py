"""Binary 2-D convolution on NHWC-packed words (Numba), beside its NumPy reference twin.

    out[n, oh, ow, m] = sum_{kh, kw, c} x[n, c, oh*s + kh - p, ow*s + kw - p] * w[m, c, kh, kw]

with x, w in {-1, +1} and zero padding: a padded position contributes 0, exactly as a float conv
of sign(x), sign(w). The fast kernel pads with the bit 0 (+1) once and subtracts, at border
pixels only, the per-channel sum of the weight taps that fell outside (Larq Compute Engine's
idea; Bannink et al. 2021, arXiv:2011.09398). The popcount method follows the ISA path
(isa.py): for 3x3 kernels row9._row9 with word popcounts on avx512, nibble._rows9_nibbles
(input-chosen nibble tables) on avx2 and row9._row9_bytes on generic; other kernels take the
tiled _conv_row. Imports numpy, numba and the engine's isa, buffers, gemm, nibble and row9.
"""

import numba
import numpy as np
from numba import njit, prange

from .isa import POPCOUNT_NIBBLES, POPCOUNT_WORDS, isa_path, popcount, popcount_method
from .buffers import _aligned_block, acc_width, aligned_empty, pad_lanes
from .gemm import (_accumulate1, _accumulate4, _accumulate4x3, _accumulate_bytes,
                   _check_words, _emit, _output_arrays, _output_stage, _use_threads)
from .nibble import _rows9_nibbles, nibble_weights
from .row9 import ROW9_MAX_WEIGHT_BYTES, _row9, _row9_bytes, row9_weights

NIBBLE_CHUNK_PIXELS = 128           # _rows9_nibbles: output pixels per pass over the weights

__all__ = ["PackedConv2d", "prepare_conv2d", "binary_conv2d", "binary_conv2d_naive",
           "binary_conv2d_reference", "border_table"]


def binary_conv2d_reference(x_pm1, w_pm1, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Plain float conv with zero padding, as integers.  Also the oracle of the tests.

    x_pm1 (N, C, H, W), w_pm1 (M, C, kh, kw), any real values (use +-1) -> int32 (N, M, OH, OW),
    OH = (H + 2p - kh) // s + 1. NCHW like the training side; the packed kernels answer NHWC.
    """
    x = np.pad(np.asarray(x_pm1, np.float64), ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
    w = np.asarray(w_pm1, np.float64)
    kh, kw = w.shape[2:]
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))   # (N,C,H',W',kh,kw)
    win = win[:, :, ::stride, ::stride]                                       # (N,C,OH,OW,kh,kw)
    return np.rint(np.einsum("nchwij,mcij->nmhw", win, w, optimize=True)).astype(np.int32)


@njit(cache=True)
def binary_conv2d_naive(x_words, w_words, c, stride, padding):
    """Direct loops, no padding trick: skip the taps that fall outside the image.

    x_words uint64 (N, H, W, Cw), w_words uint64 (M, kh, kw, Cw) -> int32 (N, OH, OW, M);
    each inside tap adds c - 2 popcount(x ^ w). The rung between the reference and the fast kernel.
    """
    n_img, h, wid, cw_total = x_words.shape
    m_total, kh_total, kw_total = w_words.shape[:3]
    oh_total = (h + 2 * padding - kh_total) // stride + 1
    ow_total = (wid + 2 * padding - kw_total) // stride + 1
    out = np.zeros((n_img, oh_total, ow_total, m_total), np.int32)
    for n in range(n_img):
        for oh in range(oh_total):
            for ow in range(ow_total):
                for m in range(m_total):
                    acc = 0
                    for kh in range(kh_total):
                        ih = oh * stride + kh - padding
                        for kw in range(kw_total):
                            iw = ow * stride + kw - padding
                            if 0 <= ih < h and 0 <= iw < wid:
                                ones = 0
                                for cw in range(cw_total):
                                    ones += popcount(x_words[n, ih, iw, cw]
                                                     ^ w_words[m, kh, kw, cw])
                                acc += c - 2 * ones
                    out[n, oh, ow, m] = acc
    return out


def border_table(tap_sums: np.ndarray, c: int, h: int, w: int, stride: int, padding: int):
    """Per-pixel constant of the padded kernel:  out = base[row_cls[oh], col_cls[ow]] - 2 P.

    tap_sums int (kh, kw, M) = sum_c w[m, c, kh, kw]. P counts differing bits over all taps with
    pad words 0 (+1), so the raw sum includes +1 * w at every outside tap; hence
        base = kh*kw*c - sum_{outside taps} tap_sums.
    Pixels sharing the same range of inside rows (columns) share a class; interior pixels all
    land in one class. Returns row_cls int64 (OH,), col_cls int64 (OW,), base int32 (R, Cc, M).
    """
    kh, kw, m = tap_sums.shape

    def classes(size, k):
        n_out = (size + 2 * padding - k) // stride + 1
        start = np.arange(n_out) * stride - padding                 # first input index per output
        ranges = np.stack([np.maximum(0, -start), np.minimum(k, size - start)], axis=1)
        uniq, cls = np.unique(ranges, axis=0, return_inverse=True)
        return uniq, cls.reshape(-1).astype(np.int64)

    rows, row_cls = classes(h, kh)
    cols, col_cls = classes(w, kw)
    total = tap_sums.sum(axis=(0, 1))                                # (M,)
    base = aligned_empty((len(rows), len(cols), m), np.int32)     # read as 512-bit vectors
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            inside = tap_sums[r0:r1, c0:c1].sum(axis=(0, 1))
            base[i, j] = kh * kw * c - (total - inside)
    return row_cls, col_cls, base


# ---------------------------------------------------------------------------------------------
# The general row kernel (any kernel size; 3x3 layers whose weights exceed L1) and the drivers.

@njit(cache=True)
def _conv_row(xp, wt, kw_total, n, oh, stride, acc, method):
    """acc[ow, :Mp] += popcounts of output row (n, oh).  xp uint32 (N, Hp, Wp, Cw32) padded,
    wt uint32 (kh*kw, Cw32, Mp) with output channels the contiguous vector axis (padded to 16
    lanes), acc uint32 (OW, >= Mp); method an isa.POPCOUNT_* code."""
    taps, cw_total = wt.shape[0], wt.shape[1]
    ow_total = acc.shape[0]
    for kh in range(taps // kw_total):
        xrow = xp[n, oh * stride + kh]                               # (Wp, Cw32), sliced once
        ow0 = 0
        if kw_total == 3 and method == POPCOUNT_WORDS:               # 3x3: whole kernel rows
            ow0 = ow_total - ow_total % 4
            for c in range(0, cw_total, 2):
                for ow in range(0, ow0, 4):
                    _accumulate4x3(acc, ow, xrow, ow * stride, stride, c, wt, kh * 3)
        if ow0 == ow_total:
            continue
        for kw in range(kw_total):                                   # other kernels, leftovers
            t = kh * kw_total + kw
            for c in range(0, cw_total, 2):                          # (lo, hi) halves of a word
                ow = ow0
                while ow + 4 <= ow_total:                            # 4 pixels share the loads
                    if method != POPCOUNT_WORDS:
                        _accumulate_bytes(acc, ow, xrow, ow * stride + kw, stride, c, wt, t, 4)
                    else:
                        _accumulate4(acc, ow, xrow, ow * stride + kw, stride, c, wt, t)
                    ow += 4
                while ow < ow_total:
                    if method != POPCOUNT_WORDS:
                        _accumulate_bytes(acc, ow, xrow, ow * stride + kw, stride, c, wt, t, 1)
                    else:
                        _accumulate1(acc, ow, xrow, ow * stride + kw, c, wt, t)
                    ow += 1


@njit(cache=True)
def _conv_rows(xp, wt, wb, wn, kw_total, stride, r0, r1, row_cls, col_cls, base,
               mode, scale, bias, sgn, thr, out_i, out_f, out_b, method, acc, margin, pix):
    """Output rows r0:r1 (row r = n*OH + oh): accumulate, then the fused output stage.
    wn: nibble.nibble_weights for 3x3 convs on the avx2 path, else empty; wb: row9_weights(wt)
    for the other 3x3 row kernels (_row9 when the weights fit in L1, _row9_bytes for every 3x3
    on the generic path), else empty (the tiled path). Scratch from the caller, so that nothing
    here allocates: acc uint32 (OW * rows per nibble pass, acc_width(M)), margin int32 (M,),
    pix int64 (acc rows,)."""
    oh_total, ow_total, m = out_i.shape[1], out_i.shape[2], scale.shape[0]
    if wn.size:                                     # nibble lookups: several rows per pass
        chunk = acc.shape[0] // ow_total
        for c0 in range(r0, r1, chunk):
            c1 = min(r1, c0 + chunk)
            _rows9_nibbles(acc, pix, xp, stride, wn, (m + 31) // 32, c0, c1, oh_total, ow_total)
            for r in range(c0, c1):
                n, oh, i = r // oh_total, r % oh_total, (r - c0) * ow_total
                _emit(acc[i:i + ow_total], base, row_cls[oh], col_cls, mode, scale, bias, sgn,
                      thr, out_i[n, oh], out_f[n, oh], out_b[n, oh], margin)
        return
    direct = mode == 0 and m % 16 == 0            # the row kernels write int results themselves
    for r in range(r0, r1):
        n, oh = r // oh_total, r % oh_total
        if wb.size:                                 # all taps of a word in registers
            ih = oh * stride
            if method == POPCOUNT_WORDS:
                _row9(acc, xp[n, ih:ih + 3], stride, wb, out_i[n, oh], base, row_cls[oh],
                      col_cls, direct)
            else:
                _row9_bytes(acc, xp[n, ih:ih + 3], stride, wb, out_i[n, oh], base, row_cls[oh],
                            col_cls, direct)
            if direct:
                continue
        else:
            acc[:ow_total] = 0
            _conv_row(xp, wt, kw_total, n, oh, stride, acc[:ow_total], method)
        _emit(acc[:ow_total], base, row_cls[oh], col_cls, mode, scale, bias, sgn, thr,
              out_i[n, oh], out_f[n, oh], out_b[n, oh], margin)


def _scratch_rows(ow_total: int, nibbles: bool) -> int:
    """Accumulator rows per task: OW, or for the nibble kernel whole output rows of about
    NIBBLE_CHUNK_PIXELS pixels (its weights are read once per pass)."""
    return ow_total * max(1, NIBBLE_CHUNK_PIXELS // ow_total) if nibbles else ow_total


@njit(cache=True)
def _conv_serial(xp, wt, wb, wn, kw_total, stride, row_cls, col_cls, base,
                 mode, scale, bias, sgn, thr, out_i, out_f, out_b, method, acc_rows):
    m = scale.shape[0]
    _conv_rows(xp, wt, wb, wn, kw_total, stride, 0, out_i.shape[0] * out_i.shape[1], row_cls,
               col_cls, base, mode, scale, bias, sgn, thr, out_i, out_f, out_b, method,
               _aligned_block(acc_rows, acc_width(m)), np.empty(m, np.int32),
               np.empty(acc_rows, np.int64))


@njit(cache=True, parallel=True)
def _conv_parallel(xp, wt, wb, wn, kw_total, stride, row_cls, col_cls, base,
                   mode, scale, bias, sgn, thr, out_i, out_f, out_b, method, acc_rows,
                   threads):
    n_rows, m = out_i.shape[0] * out_i.shape[1], scale.shape[0]
    n_thr = max(1, min(threads, n_rows))
    # One contiguous range of output rows and one scratch block per thread, allocated here, on
    # the calling thread: allocated inside the prange body, scratch came from each worker
    # thread's own malloc arena, and two threads ran slower than one; one block per task of
    # ~64 tasks made 5 MB of fresh pages per call (docs/engine_speed.md). Long ranges also let
    # the nibble kernel read its weights once per NIBBLE_CHUNK_PIXELS pixels.
    accs = _aligned_block(n_thr * acc_rows, acc_width(m))
    margins = np.empty((n_thr, m), np.int32)
    pixs = np.empty((n_thr, acc_rows), np.int64)
    for t in prange(n_thr):
        _conv_rows(xp, wt, wb, wn, kw_total, stride, t * n_rows // n_thr,
                   (t + 1) * n_rows // n_thr, row_cls, col_cls, base, mode, scale, bias,
                   sgn, thr, out_i, out_f, out_b, method, accs[t * acc_rows:(t + 1) * acc_rows],
                   margins[t], pixs[t])


class PackedConv2d:
    """A binary conv ready to run: weights re-laid and the output stage folded once.

    Build with prepare_conv2d(w_words, c, stride, padding, scale, bias, to_bits). Call with
    x_words uint64 (N, H, W, ceil(c/64)) (NHWC, channels packed: bitpack.pack_nhwc or
    pack.pack_signs, or a previous layer with to_bits=True) ->
        no stage:      int32   (N, OH, OW, M)   exact conv of sign(x), sign(w), zero padded
        scale/bias:    float32 (N, OH, OW, M)   acc * scale + bias
        to_bits=True:  uint64  (N, OH, OW, ceil(M/64))  packed sign(acc * scale + bias)
    isa (default isa.isa_path()) picks the popcount method; every path gives the same result.
    """

    def __init__(self, w_words, c: int, stride: int = 1, padding: int = 0,
                 scale=None, bias=None, to_bits: bool = False, isa: str | None = None):
        w_words = _check_words("w_words", w_words, 4, c, tail=True)
        if stride < 1 or padding < 0:
            raise ValueError(f"stride must be >= 1 and padding >= 0, found {stride}, {padding}")
        self.c, self.stride, self.padding = int(c), int(stride), int(padding)
        self.m, self.kh, self.kw = w_words.shape[:3]
        self.isa = isa_path() if isa is None else isa
        self.method = popcount_method(self.isa)
        # (kh*kw, Cw32, Mp): output channels contiguous, uint32 lanes (16 per 512-bit register),
        # padded to a multiple of 16.
        self.wt = pad_lanes(w_words.view(np.uint32).transpose(1, 2, 3, 0).reshape(
            self.kh * self.kw, -1, self.m))
        k3 = (self.kh, self.kw) == (3, 3)
        nibbles = k3 and self.method == POPCOUNT_NIBBLES
        row9 = k3 and not nibbles and (self.method != POPCOUNT_WORDS
                                       or self.wt.nbytes <= ROW9_MAX_WEIGHT_BYTES)
        self.wb = row9_weights(self.wt) if row9 else np.zeros((0, 0, 18, 16), np.uint32)
        self.wn = nibble_weights(w_words) if nibbles else np.zeros(0, np.uint8)
        ones = np.unpackbits(w_words.view(np.uint8), axis=-1).sum(axis=-1)          # (M, kh, kw)
        self.tap_sums = (self.c - 2 * ones).transpose(1, 2, 0).astype(np.int64)   # (kh, kw, M)
        self.stage = _output_stage(self.m, self.kh * self.kw * self.c, scale, bias, to_bits)
        self._borders = {}

    def output_shape(self, h: int, w: int) -> tuple:
        return ((h + 2 * self.padding - self.kh) // self.stride + 1,
                (w + 2 * self.padding - self.kw) // self.stride + 1)

    def __call__(self, x_words: np.ndarray) -> np.ndarray:
        x_words = _check_words("x_words", x_words, 4, self.c)
        n, h, w, cw = x_words.shape
        oh, ow = self.output_shape(h, w)
        if oh < 1 or ow < 1:
            raise ValueError(f"input {h}x{w} is smaller than the {self.kh}x{self.kw} kernel")
        if (h, w) not in self._borders:
            self._borders[(h, w)] = border_table(self.tap_sums, self.c, h, w,
                                                 self.stride, self.padding)
        row_cls, col_cls, base = self._borders[(h, w)]
        p = self.padding
        if p:                                                   # pad once, with words of +1
            xp = np.zeros((n, h + 2 * p, w + 2 * p, cw), np.uint64)
            xp[:, p:p + h, p:p + w] = x_words
        else:
            xp = x_words
        mode, scale, bias, sgn, thr = self.stage
        out_i, out_f, out_b, out = _output_arrays(mode, (n, oh, ow), self.m)
        macs = n * oh * ow * self.m * self.kh * self.kw * self.c
        args = (xp.view(np.uint32), self.wt, self.wb, self.wn, self.kw, self.stride, row_cls,
                col_cls, base, mode, scale, bias, sgn, thr, out_i, out_f, out_b, self.method,
                _scratch_rows(ow, self.wn.size > 0))
        if _use_threads(macs):
            _conv_parallel(*args, numba.get_num_threads())
        else:
            _conv_serial(*args)
        return out


def prepare_conv2d(w_words, c: int, stride: int = 1, padding: int = 0, scale=None, bias=None,
                   to_bits: bool = False, isa: str | None = None) -> PackedConv2d:
    """Prepare a binary conv once (export/load time).  w_words uint64 (M, kh, kw, ceil(c/64));
    isa: the popcount path (isa.ISA_PATHS), default isa.isa_path(); every path is exact."""
    return PackedConv2d(w_words, c, stride, padding, scale, bias, to_bits, isa)


def binary_conv2d(x_words, w_words, c: int, stride: int = 1, padding: int = 0, scale=None,
                  bias=None, to_bits: bool = False, isa: str | None = None) -> np.ndarray:
    """One-shot packed conv: prepare_conv2d(...)(x_words). See PackedConv2d for the outputs."""
    layer = PackedConv2d(w_words, c, stride, padding, scale, bias, to_bits, isa)
    return layer(_check_words("x_words", x_words, 4, c, tail=True))   # one-shot: tails too
