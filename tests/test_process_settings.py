"""Process-level settings that the command line and the packed runtime make: glibc's allocator
thresholds (allocator.py) and NumPy's OpenBLAS thread count (blas_threads.py)."""

import platform

import pytest


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_is_accepted_by_glibc():
    from minibnn.allocator import keep_freed_memory

    assert keep_freed_memory() is True


def test_single_blas_thread_holds_openblas_at_one_and_restores_the_count():
    from minibnn.blas_threads import blas_threads, set_blas_threads, single_blas_thread

    before = blas_threads()
    if before is None:
        pytest.skip("NumPy is not linked to a findable OpenBLAS")
    set_blas_threads(2)
    try:
        with single_blas_thread():
            assert blas_threads() == 1
        assert blas_threads() == 2
    finally:
        set_blas_threads(before)
