"""The 3x3 row kernels of the avx512 and generic paths: all nine taps of a word summed in
registers before one accumulator update, one output row at a time.

    acc[p, m] = sum_{c, kh, kw < 3} popcount(x_kh[p*s+kw, c] ^ w[3kh+kw, c, m])

_row9 takes one word popcount per term (vpopcntd on AVX-512 VPOPCNTDQ) and rereads all
weights per pixel, so conv.py uses it only while they fit in L1; _row9_bytes adds the 18
terms of a word as bytes (isa.popsum16) with words outside pixels, so it serves every 3x3
conv. The avx2 path has its own kernel, nibble.py. Both are driven by conv._conv_rows, which
also owns the border constants (conv.border_table). Imports numpy, numba, isa.py, buffers.py
and gemm.py only.
"""

import numpy as np
from numba import njit

from .buffers import aligned_copy
from .gemm import _popcount6
from .isa import _hot_loop_hints, popsum16, popsum16_out

__all__ = ["ROW9_MAX_WEIGHT_BYTES", "ROW9_BYTES_BLOCKS", "row9_weights"]

ROW9_MAX_WEIGHT_BYTES = 32 * 1024   # _row9 rereads all weights per pixel: keep them in L1
ROW9_BYTES_BLOCKS = 8               # _row9_bytes: 16-channel blocks per pass over a row


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
    in L1 (few channels); see conv._conv_rows.
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
    """_row9 for the generic path (isa.py): the 18 popcounts of a word and a pixel
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
