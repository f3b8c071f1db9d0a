"""Keep freed memory in the process, so NumPy's large temporaries do not re-fault their pages.

A NumPy training step allocates and frees tens of megabytes of temporaries (activations,
im2col columns, gradients). glibc serves every block above its mmap threshold with a fresh
`mmap` and returns it to the kernel on `free`, so the next step touches brand-new pages and
pays a page fault (and the kernel's zeroing) for every 4 KiB again: a large share of a step
(docs/training_speed.md, "Process-level effects", has the measurement). glibc raises the threshold by itself after a while, which is why such timings drift downwards
over a run.

`keep_freed_memory()` sets the threshold and the trim limit high up front, which is the
in-process form of the MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ environment variables
(PyTorch's performance guide recommends jemalloc or tcmalloc for the same reason). The cost is
that the process keeps its peak memory until it exits. The `minibnn` command line calls it for
every command, so training and both sides of every benchmark run under the same allocator;
library users may call it themselves. It does nothing where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1      # mallopt parameter numbers, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold_mb: int = 256) -> bool:
    """Serve blocks below `mmap_threshold_mb` from the heap and keep freed heap memory.

    glibc versions that cap the threshold (mallopt(3) documents 32 MiB on 64-bit systems) get
    the cap instead. Returns True when glibc accepted a threshold and the trim limit, False
    elsewhere (other C libraries, or platforms without mallopt), in which case nothing changed.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    threshold = 0
    for mb in (int(mmap_threshold_mb), 32):
        if mallopt(_M_MMAP_THRESHOLD, mb << 20):
            threshold = mb << 20
            break
    if not threshold:
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
