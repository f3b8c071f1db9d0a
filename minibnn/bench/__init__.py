"""Benchmarks behind `minibnn bench ...`: each module exposes add_arguments(parser) and run(args).

Shared here: `setup_threads`, which gives Numba, PyTorch (when installed) and NumPy's OpenBLAS
the same thread count, so every side of a comparison runs on the same cores, and
`interleaved_medians`, the one timer of every side-by-side comparison.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numba
import numpy as np

from ..blas_threads import set_blas_threads

__all__ = ["setup_threads", "set_blas_threads", "clock_for", "interleaved_medians",
           "paired_difference", "settle"]

SETTLE_SECONDS = 0.25
WARMUP_SECONDS = 0.05


def settle() -> None:
    """Pause long enough for the worker threads of whichever library ran last to stop spinning
    and sleep (OpenBLAS spins about 0.1 s after a product, OpenMP pools a few ms): otherwise
    they share the cores with the next measurement and can double its time (blas_threads.py)."""
    time.sleep(SETTLE_SECONDS)


def setup_threads(requested: int) -> tuple[int, Any, bool]:
    """Set Numba, torch and OpenBLAS to `requested` threads (capped by Numba's maximum).

    Returns (threads, the torch module or None, whether OpenBLAS could be set).
    """
    threads = max(1, min(requested, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    return threads, torch, set_blas_threads(threads)


def clock_for(timer: str) -> Callable[[], float]:
    """--timer cpu: process CPU time (steady on a busy machine); wall: time.perf_counter."""
    return time.process_time if timer == "cpu" else time.perf_counter


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, block: int = 5,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median time of each function over `repeats` calls, measured in alternating blocks.

    Each side runs `block` timed calls in a row, after a settle() pause and untimed calls for
    WARMUP_SECONDS (at least one), then hands over to the next side, until every side has its
    `repeats`. The warm-up matters for millisecond kernels: on this kind of VM the first calls
    after an idle pause ran up to 1.5x slower. Alternating shares the slow phases of a busy
    machine (and the allocator settling in) between the sides instead of landing them on
    whichever ran first; the pause at each hand-over keeps one library's
    worker threads, which spin for a while after their last call, out of the other's timings.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    while any(len(t) < repeats for t in times.values()):
        for name, fn in fns.items():
            settle()
            start = time.perf_counter()
            fn()
            while time.perf_counter() - start < WARMUP_SECONDS:
                fn()
            for _ in range(min(block, repeats - len(times[name]))):
                start = clock()
                fn()
                times[name].append(clock() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def paired_difference(base: Callable[[], object], extra: Callable[[], object], pairs: int,
                      clock: Callable[[], float] = time.perf_counter) -> float:
    """Median over `pairs` of time(extra) - time(base), the two timed back to back in
    alternating order: the cost `extra` adds to `base`. Differencing two separate medians would
    carry both sides' drift (10% of a millisecond call on a noisy VM); a pair shares it."""
    settle()
    start = time.perf_counter()
    base(), extra()
    while time.perf_counter() - start < WARMUP_SECONDS:
        base(), extra()
    diffs = []
    for i in range(pairs):
        t = []
        for fn in ((base, extra) if i % 2 == 0 else (extra, base)):
            t0 = clock()
            fn()
            t.append(clock() - t0)
        diffs.append(t[1] - t[0] if i % 2 == 0 else t[0] - t[1])
    return float(np.median(diffs))
