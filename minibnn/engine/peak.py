"""The binary peak of this machine, measured: XOR, popcount and add on L1-resident data.

`bench kernels` reports each packed conv as a share of this figure rather than of a peak
assumed from a vendor's port count (docs/engine_speed.md says why). The loop is the kernels'
innermost step and nothing else:

    acc[b, j] += sum_{k < 18} popcount(x_k ^ w[b, k, j])      (b < B tiles, j < 16 lanes)

with the popcount method of the path (isa.py): one word popcount per term (POPCOUNT_WORDS,
the avx512 path) or carry-save adders and byte counts over the 18 terms, widened once
(POPCOUNT_BYTES, isa.popsum16: the generic path). The weight tiles (B = 8: 9 KB) stay in L1;
the 18 inputs x_k change every round, as a pixel's do, so nothing can be hoisted out of the
loop. One binary MAC is one bit: a round of a tile is 16 * 18 * 32 MACs. The avx2 path's
nibble lookups (POPCOUNT_NIBBLES, nibble.nibsum32) run their own call as the 3x3 conv makes
it: 24 input bytes against one 12 KB tile of 8 blocks of 32 output channels, 24 * 8 * 256
MACs a round. A real layer also loads activations, handles borders and writes outputs, so on a quiet
machine it stays at or below this figure: the ceiling of its inner loop on this core,
measured the way the layer is.
"""

import time

import numba
import numpy as np
from numba import njit, prange

from .isa import POPCOUNT_BYTES, POPCOUNT_NIBBLES, _hot_loop_hints, popcount_method, popsum16
from .gemm import _popcount6
from .nibble import TERMS as _NIBBLE_TERMS, nibsum32

__all__ = ["measure_peak", "peak_loop", "PEAK_TILES"]

PEAK_TILES = 8
_TERMS, _LANES = 18, 16


@njit(cache=True)
def _peak_rounds(w, x, acc, rounds, method):
    """rounds passes over the tiles w uint32 (B*18*16,) into acc uint32 (B, 16); x uint32
    (64*18,) supplies the 18 inputs of each round."""
    _hot_loop_hints()
    for r in range(rounds):
        q = (r % 64) * _TERMS
        xs = (x[q], x[q + 1], x[q + 2], x[q + 3], x[q + 4], x[q + 5], x[q + 6], x[q + 7],
              x[q + 8], x[q + 9], x[q + 10], x[q + 11], x[q + 12], x[q + 13], x[q + 14],
              x[q + 15], x[q + 16], x[q + 17])
        for b in range(acc.shape[0]):
            o = b * _TERMS * _LANES
            if method == POPCOUNT_BYTES:
                popsum16(acc, (b, 0), w,
                         (o, o + 16, o + 32, o + 48, o + 64, o + 80, o + 96, o + 112, o + 128,
                          o + 144, o + 160, o + 176, o + 192, o + 208, o + 224, o + 240,
                          o + 256, o + 272), xs, True)
            else:                                   # as row9._row9 writes it
                x0, x1, x2 = xs[0:6], xs[6:12], xs[12:18]
                for j in range(_LANES):
                    acc[b, j] += (_popcount6(x0, w[o + j], w[o + 16 + j], w[o + 32 + j],
                                             w[o + 48 + j], w[o + 64 + j], w[o + 80 + j])
                                  + _popcount6(x1, w[o + 96 + j], w[o + 112 + j],
                                               w[o + 128 + j], w[o + 144 + j],
                                               w[o + 160 + j], w[o + 176 + j])
                                  + _popcount6(x2, w[o + 192 + j], w[o + 208 + j],
                                               w[o + 224 + j], w[o + 240 + j],
                                               w[o + 256 + j], w[o + 272 + j]))


@njit(cache=True)
def _peak_nibbles(wn, x, acc, rounds):
    """rounds calls of nibsum32 on one tile wn uint8 (24 * 8 * 64,) into acc uint32 (1, 256);
    x uint8 (64 * 24,) supplies the 24 input bytes of each round."""
    cols = (0, 32, 64, 96, 128, 160, 192, 224)
    for r in range(rounds):
        nibsum32(acc, 0, cols, wn, 0, x, ((r % 64) * _NIBBLE_TERMS,), 8, True)


@njit(cache=True)
def _peak_loop(w, x, wn, xb, acc, nacc, rounds, method):
    if method == POPCOUNT_NIBBLES:
        _peak_nibbles(wn, xb, nacc, rounds)
    else:
        _peak_rounds(w, x, acc, rounds, method)


@njit(cache=True, parallel=True)
def _peak_parallel(w, x, wn, xb, accs, naccs, rounds, method):
    """One copy of the loop per thread; accs (threads, B, 16) and naccs (threads, 1, 256)
    allocated by the caller."""
    for t in prange(accs.shape[0]):
        _peak_loop(w, x, wn, xb, accs[t], naccs[t], rounds, method)


def peak_loop(isa: str | None = None, copies: int = 1):
    """The loop of path `isa` (default isa.isa_path()) on fixed random data, as a function
    run(rounds) that runs `copies` copies of it (in parallel when copies > 1, one per thread),
    and the binary MACs of one round of one copy: returns (run, macs_per_round)."""
    method = popcount_method(isa)
    rng = np.random.default_rng(0)
    w = rng.integers(0, 2 ** 32, PEAK_TILES * _TERMS * _LANES, dtype=np.uint64).astype(np.uint32)
    x = rng.integers(0, 2 ** 32, 64 * _TERMS, dtype=np.uint64).astype(np.uint32)
    wn = rng.integers(0, 16, _NIBBLE_TERMS * 8 * 64, dtype=np.uint8)
    xb = rng.integers(0, 256, 64 * _NIBBLE_TERMS + _NIBBLE_TERMS, dtype=np.uint8)
    accs = np.zeros((copies, PEAK_TILES, _LANES), np.uint32)
    naccs = np.zeros((copies, 1, 256), np.uint32)
    macs_per_round = PEAK_TILES * _LANES * _TERMS * 32
    if method == POPCOUNT_NIBBLES:
        macs_per_round = _NIBBLE_TERMS * 8 * 256

    def run(rounds):
        if copies > 1:
            _peak_parallel(w, x, wn, xb, accs, naccs, rounds, method)
        else:
            _peak_loop(w, x, wn, xb, accs[0], naccs[0], rounds, method)
    return run, macs_per_round


def measure_peak(isa: str | None = None, threads: int | None = None, seconds: float = 0.15,
                 trials: int = 5, clock=time.perf_counter) -> float:
    """Binary MACs per second of the XOR-popcount-add loop on `threads` threads (default:
    Numba's count), with the popcount of path `isa` (default isa.isa_path()): the best of
    `trials` runs of about `seconds` each (the best, because a shared machine only ever
    slows a loop down). clock: the benchmark's (time.process_time counts all threads' CPU
    time, as it does for the layers it is compared with)."""
    threads = numba.get_num_threads() if threads is None else int(threads)
    loop, macs_per_round = peak_loop(isa, threads)

    def run(rounds):
        start = clock()
        loop(rounds)
        return clock() - start

    run(1)                                                     # compile / load the cache
    rounds = 64
    while run(rounds) < seconds / 4 and rounds < 1 << 30:      # about `seconds` per trial
        rounds *= 4
    best = min(run(rounds) for _ in range(trials))
    return threads * rounds * macs_per_round / best
