"""Process-level settings that the command line and the packed runtime make: glibc's allocator
thresholds (allocator.py) and NumPy's OpenBLAS thread count (blas_threads.py)."""

import platform

import numpy as np
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


def test_packed_model_runs_on_one_blas_thread_and_restores_the_count():
    from minibnn.blas_threads import blas_threads, set_blas_threads
    from minibnn.engine.export import export
    from minibnn.models import build_model

    before = blas_threads()
    if before is None:
        pytest.skip("NumPy is not linked to a findable OpenBLAS")
    model = build_model("mlp", in_channels=1, image_size=8, width=0.25, rng=0)
    model.eval()
    packed = export(model)
    seen = []
    first = packed.nodes[0]
    original = first.run

    def spy(*args):                                  # records the count inside the run
        seen.append(blas_threads())
        return original(*args)

    first.run = spy
    set_blas_threads(2)
    try:
        packed(np.zeros((3, 1, 8, 8), np.float32))
        assert seen == [1] and blas_threads() == 2

        def fail(*args):
            raise RuntimeError("a node failed")

        first.run = fail                             # an error inside the run: restored too
        with pytest.raises(RuntimeError, match="a node failed"):
            packed(np.zeros((3, 1, 8, 8), np.float32))
        assert blas_threads() == 2
    finally:
        set_blas_threads(before)
