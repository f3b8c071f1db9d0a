"""Binary 2-D convolution on NHWC-packed words (Numba), beside its NumPy reference twin.

    out[n, oh, ow, m] = sum_{kh, kw, c} x[n, c, oh*s + kh - p, ow*s + kw - p] * w[m, c, kh, kw]

with x, w in {-1, +1} and zero padding: a padded position contributes 0, exactly as a float conv
of sign(x), sign(w). The fast kernel pads with the bit 0 (+1) once and subtracts, at border
pixels only, the per-channel sum of the weight taps that fell outside (Larq Compute Engine's
idea; Bannink et al. 2021, arXiv:2011.09398). The popcount method follows the ISA path
(isa.py): _row9 with word popcounts on avx512, _row9_bytes on avx2 and generic. Imports numpy,
numba, isa.py, buffers.py and gemm.py only.
"""

import numpy as np
from numba import njit, prange

from .isa import (POPCOUNT_BYTES, _hot_loop_hints, isa_path, popcount, popcount_method, popsum16,
                  popsum16_out)
from .buffers import _aligned_block, acc_width, aligned_copy, aligned_empty, pad_lanes
from .gemm import (_accumulate1, _accumulate4, _accumulate4x3, _accumulate_bytes,
                      _check_words, _emit, _output_arrays, _output_stage, _popcount6,
                      _use_threads)

ROW9_MAX_WEIGHT_BYTES = 32 * 1024   # _row9 rereads all weights per pixel: keep them in L1
ROW9_BYTES_BLOCKS = 8               # _row9_bytes: 16-channel blocks per pass over a row

__all__ = ["PackedConv2d", "prepare_conv2d", "binary_conv2d", "binary_conv2d_naive",
           "binary_conv2d_reference", "border_table", "row9_weights"]


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
# The 3x3 row kernel: all nine taps of a word summed in registers (few channels).

@njit(cache=True, inline="always")
def _halves3k(x3, k, i, c):
    """gemm._halves3 of row k of x3 uint32 (rows, pixels, Cw32)."""
    return (x3[k, i, c], x3[k, i, c + 1], x3[k, i + 1, c], x3[k, i + 1, c + 1], x3[k, i + 2, c],
            x3[k, i + 2, c + 1])


def row9_weights(wt: np.ndarray) -> np.ndarray:
    """Re-lay 3x3 weights for _row9: wt uint32 (9, Cw32, M) -> uint32 (Cw32/2, ceil(M/16), 18, 16),

        out[word, mb, 2t + half, j] = wt[t, 2 word + half, 16 mb + j]   (0 where 16 mb + j >= M)

    so that the 18 weight halves one 16-lane block of output channels needs for one packed word
    sit in one contiguous 1152-byte tile: a single base pointer with constant offsets.
    """
    taps, cw32, m = wt.shape
    mp = -(-m // 16) * 16
    padded = np.zeros((taps, cw32, mp), np.uint32)
    padded[:, :, :m] = wt
    tiles = padded.reshape(taps, cw32 // 2, 2, mp // 16, 16)       # (t, word, half, mb, j)
    return aligned_copy(tiles.transpose(1, 3, 0, 2, 4).reshape(cw32 // 2, mp // 16, 2 * taps,
                                                                16))


@njit(cache=True)
def _row9(acc, x3, s, wb, out, base, row_class, col_cls, to_out):
    """A whole 3x3 kernel, one output row at a time, with the nine taps of a word together:

        acc[p, m] = sum_{c, kh, kw < 3} popcount(x_kh[p*s+kw, c] ^ w[3kh+kw, c, m])

    x3 uint32 (3, pixels, Cw32) the three input rows x_kh; wb from row9_weights; acc uint32
    (P, >= 16 ceil(M/16)) is overwritten (no zeroing pass). With to_out (int output, M a
    multiple of 16) the last word writes the finished result instead, as _emit's mode 0 would:
    out int32 (P, M) = base[row_class, col_cls[p], m] - 2 acc[p, m], sparing a pass per pixel.

    All 18 popcounts of a word and a pixel meet in registers before one accumulator update, and
    the 16-lane loop over j has a constant trip count and one weight pointer with constant
    offsets, so it compiles to 18 vpxord (weights from L1) + 18 vpopcntd + 18 vpaddd and no
    scalar remainder. Each pixel reads every weight, so this pays only while the weights stay
    in L1 (few channels); see _conv_rows.
    """
    _hot_loop_hints()
    n_words, n_blocks = wb.shape[0], wb.shape[1]
    wf = wb.reshape(-1)           # flat: offsets below are constants, no stride arithmetic
    for p in range(acc.shape[0]):
        cc = col_cls[p]
        ps = max(p * s, 0)        # provably >= 0: LLVM drops the negative-index wraparound
        for word in range(n_words):
            c = 2 * word
            r0, r1, r2 = _halves3k(x3, 0, ps, c), _halves3k(x3, 1, ps, c), _halves3k(x3, 2, ps, c)
            first, finish = word == 0, to_out and word == n_words - 1
            for mb in range(n_blocks):
                o = (word * n_blocks + mb) * 288                  # tile (word, mb): 18 x 16
                for j in range(16):
                    total = (_popcount6(r0, wf[o + j], wf[o + 16 + j], wf[o + 32 + j],
                                        wf[o + 48 + j], wf[o + 64 + j], wf[o + 80 + j])
                             + _popcount6(r1, wf[o + 96 + j], wf[o + 112 + j],
                                          wf[o + 128 + j], wf[o + 144 + j],
                                          wf[o + 160 + j], wf[o + 176 + j])
                             + _popcount6(r2, wf[o + 192 + j], wf[o + 208 + j],
                                          wf[o + 224 + j], wf[o + 240 + j],
                                          wf[o + 256 + j], wf[o + 272 + j]))
                    m = 16 * mb + j
                    if not first:
                        total += acc[p, m]
                    if finish:
                        out[p, m] = base[row_class, cc, m] - 2 * np.int32(total)
                    else:
                        acc[p, m] = total


@njit(cache=True)
def _row9_bytes(acc, x3, s, wb, out, base, row_class, col_cls, to_out):
    """_row9 for the avx2 and generic paths (isa.py): the 18 popcounts of a word and a pixel
    add as bytes in isa.popsum16 and widen to 32-bit lanes once. Words outside pixels, for
    ROW9_BYTES_BLOCKS blocks of 16 output channels at a time: those blocks' weights for one
    word (18 x 128 uint32, 9 KB) and accumulators stay in L1 while every pixel of the row reads
    them, so this serves every 3x3 conv, not only those whose whole weights fit in L1. Same
    inputs and result as _row9 (to_out: the last word writes the int output, isa.popsum16_out)."""
    n_words, n_blocks = wb.shape[0], wb.shape[1]
    wf, bf = wb.reshape(-1), base.reshape(-1)
    n_cls = base.shape[1]
    for mb0 in range(0, n_blocks, ROW9_BYTES_BLOCKS):
        mb1 = min(n_blocks, mb0 + ROW9_BYTES_BLOCKS)
        for word in range(n_words):
            c, finish = 2 * word, to_out and word == n_words - 1
            for p in range(acc.shape[0]):
                ps = max(p * s, 0)
                xs = _halves3k(x3, 0, ps, c) + _halves3k(x3, 1, ps, c) + _halves3k(x3, 2, ps, c)
                bo = (row_class * n_cls + col_cls[p]) * 16 * n_blocks
                for mb in range(mb0, mb1):
                    o = (word * n_blocks + mb) * 288              # tile (word, mb): 18 x 16
                    offs = (o, o + 16, o + 32, o + 48, o + 64, o + 80, o + 96, o + 112, o + 128,
                            o + 144, o + 160, o + 176, o + 192, o + 208, o + 224, o + 240,
                            o + 256, o + 272)
                    if finish:
                        popsum16_out(out, (p, 16 * mb), wf, offs, xs, word > 0, acc, bf,
                                     bo + 16 * mb)
                    else:
                        popsum16(acc, (p, 16 * mb), wf, offs, xs, word > 0)


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
        if kw_total == 3 and method != POPCOUNT_BYTES:               # 3x3: whole kernel rows
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
                    if method == POPCOUNT_BYTES:
                        _accumulate_bytes(acc, ow, xrow, ow * stride + kw, stride, c, wt, t, 4)
                    else:
                        _accumulate4(acc, ow, xrow, ow * stride + kw, stride, c, wt, t)
                    ow += 4
                while ow < ow_total:
                    if method == POPCOUNT_BYTES:
                        _accumulate_bytes(acc, ow, xrow, ow * stride + kw, stride, c, wt, t, 1)
                    else:
                        _accumulate1(acc, ow, xrow, ow * stride + kw, c, wt, t)
                    ow += 1


@njit(cache=True)
def _conv_rows(xp, wt, wb, kw_total, stride, r0, r1, row_cls, col_cls, base,
               mode, scale, bias, sgn, thr, out_i, out_f, out_b, method, acc, margin):
    """Output rows r0:r1 (row r = n*OH + oh): accumulate, then the fused output stage.
    wb: row9_weights(wt) for the 3x3 row kernels (_row9 when the weights fit in L1, _row9_bytes
    for every 3x3 on the byte-popcount paths), else empty (the tiled path). Scratch from the
    caller, so that nothing here allocates: acc uint32 (OW, acc_width(M)), margin int32 (M,)."""
    oh_total, m = out_i.shape[1], scale.shape[0]
    direct = mode == 0 and m % 16 == 0            # the row kernels write int results themselves
    for r in range(r0, r1):
        n, oh = r // oh_total, r % oh_total
        if wb.size:                                 # all taps of a word in registers
            ih = oh * stride
            if method == POPCOUNT_BYTES:
                _row9_bytes(acc, xp[n, ih:ih + 3], stride, wb, out_i[n, oh], base, row_cls[oh],
                            col_cls, direct)
            else:
                _row9(acc, xp[n, ih:ih + 3], stride, wb, out_i[n, oh], base, row_cls[oh],
                      col_cls, direct)
            if direct:
                continue
        else:
            acc[:] = 0
            _conv_row(xp, wt, kw_total, n, oh, stride, acc, method)
        _emit(acc, base, row_cls[oh], col_cls, mode, scale, bias, sgn, thr,
              out_i[n, oh], out_f[n, oh], out_b[n, oh], margin)


@njit(cache=True)
def _conv_serial(xp, wt, wb, kw_total, stride, row_cls, col_cls, base,
                 mode, scale, bias, sgn, thr, out_i, out_f, out_b, method):
    m = scale.shape[0]
    _conv_rows(xp, wt, wb, kw_total, stride, 0, out_i.shape[0] * out_i.shape[1], row_cls, col_cls,
               base, mode, scale, bias, sgn, thr, out_i, out_f, out_b, method,
               _aligned_block(out_i.shape[2], acc_width(m)), np.empty(m, np.int32))


@njit(cache=True, parallel=True)
def _conv_parallel(xp, wt, wb, kw_total, stride, row_cls, col_cls, base,
                   mode, scale, bias, sgn, thr, out_i, out_f, out_b, method):
    n_rows, ow_total, m = out_i.shape[0] * out_i.shape[1], out_i.shape[2], scale.shape[0]
    per_task = max(1, n_rows // 64)                 # ~64 tasks: balance without tiny tasks
    n_tasks = (n_rows + per_task - 1) // per_task
    # Every task's scratch is allocated here, on the calling thread: allocated inside the
    # prange body, it came from each worker thread's own malloc arena, and two threads ran
    # slower than one (docs/engine_speed.md).
    accs = _aligned_block(n_tasks * ow_total, acc_width(m))
    margins = np.empty((n_tasks, m), np.int32)
    for t in prange(n_tasks):
        _conv_rows(xp, wt, wb, kw_total, stride, t * per_task, min(n_rows, (t + 1) * per_task),
                   row_cls, col_cls, base, mode, scale, bias, sgn, thr, out_i, out_f, out_b,
                   method, accs[t * ow_total:(t + 1) * ow_total], margins[t])


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
        row9 = (self.kh, self.kw) == (3, 3) and (self.method == POPCOUNT_BYTES
                                                  or self.wt.nbytes <= ROW9_MAX_WEIGHT_BYTES)
        self.wb = row9_weights(self.wt) if row9 else np.zeros((0, 0, 18, 16), np.uint32)
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
        run = _conv_parallel if _use_threads(macs) else _conv_serial
        run(xp.view(np.uint32), self.wt, self.wb, self.kw, self.stride, row_cls, col_cls, base,
            mode, scale, bias, sgn, thr, out_i, out_f, out_b, self.method)
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
