"""NumPy's OpenBLAS thread count: read it, set it, or hold it at one for a block of code.

Why the packed engine needs this: after every threaded matrix product, OpenBLAS's worker
threads keep spinning for about a tenth of a second, waiting for more work. Numba's worker
threads that start in that window share their cores with the spinners and run several times
slower (docs/training_speed.md, "Process-level effects", has the measurement). A packed model's float first and last layers are
NumPy products, so `PackedModel` runs them on one BLAS thread (in the calling thread: no
spinning workers) while Numba owns the cores. Benchmarks use `set_blas_threads` to give
NumPy the same thread count as Numba and PyTorch.

Works with the OpenBLAS bundled in NumPy's wheels (and any OpenBLAS already loaded whose
library file sits in numpy.libs); with another BLAS it does nothing and says so by returning
False or None.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os

import numpy as np

__all__ = ["blas_threads", "set_blas_threads", "single_blas_thread", "blas_core_name"]

_SET = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
_GET = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")
_CORE = ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename")


@functools.lru_cache(maxsize=1)
def _openblas_lib():
    """The OpenBLAS library NumPy has loaded (ctypes.CDLL), or None."""
    pattern = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs", "*openblas*")
    for path in glob.glob(pattern):
        try:
            lib = ctypes.CDLL(path)                    # the copy NumPy already loaded
        except OSError:
            continue
        if any(hasattr(lib, n) for n in _GET):
            return lib
    return None


def _openblas():
    """(set, get) functions of the OpenBLAS NumPy has loaded, or None."""
    lib = _openblas_lib()
    if lib is None:
        return None
    setter = next((getattr(lib, n) for n in _SET if hasattr(lib, n)), None)
    getter = next((getattr(lib, n) for n in _GET if hasattr(lib, n)), None)
    return (setter, getter) if setter is not None and getter is not None else None


def blas_core_name() -> str | None:
    """The kernel set NumPy's OpenBLAS chose at load time ("Haswell", "SkylakeX", "Zen", ...),
    which OPENBLAS_CORETYPE overrides; None when there is no OpenBLAS to ask."""
    lib = _openblas_lib()
    fn = next((getattr(lib, n) for n in _CORE if hasattr(lib, n)), None) if lib else None
    if fn is None:
        return None
    fn.restype = ctypes.c_char_p
    name = fn()
    return name.decode(errors="replace").strip() if name else None


def blas_threads() -> int | None:
    """Threads NumPy's OpenBLAS uses now, or None when it cannot be found."""
    found = _openblas()
    return int(found[1]()) if found else None


def set_blas_threads(n: int) -> bool:
    """Set NumPy's OpenBLAS to n threads; False when there is no OpenBLAS to set."""
    found = _openblas()
    if found is None:
        return False
    found[0](ctypes.c_int(int(n)))
    return True


@contextlib.contextmanager
def single_blas_thread():
    """Run the block with NumPy's BLAS on the calling thread only, then restore the count.

    The count is process-wide: NumPy products run meanwhile from other Python threads get one
    BLAS thread too (slower, never wrong)."""
    before = blas_threads()
    if before is None or before == 1:
        yield
        return
    set_blas_threads(1)
    try:
        yield
    finally:
        set_blas_threads(before)
