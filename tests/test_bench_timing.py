"""bench/__init__.py: the shared timers, on a virtual clock (no wall time is asserted)."""

import pytest

from minibnn import bench


@pytest.fixture
def virtual_time(monkeypatch):
    """A clock that only the timed functions advance; no pauses or warm-up time."""
    monkeypatch.setattr(bench, "SETTLE_SECONDS", 0.0)
    monkeypatch.setattr(bench, "WARMUP_SECONDS", 0.0)
    now = [0.0]

    def ticking(seconds, calls):
        def fn():
            now[0] += seconds
            calls.append(seconds)
        return fn
    return (lambda: now[0]), ticking


def test_interleaved_medians_times_each_side_on_its_own(virtual_time):
    clock, ticking = virtual_time
    calls_a, calls_b = [], []
    result = bench.interleaved_medians({"a": ticking(2.0, calls_a), "b": ticking(3.0, calls_b)},
                                       repeats=7, block=3, clock=clock)
    assert result == {"a": 2.0, "b": 3.0}
    assert len(calls_a) == 7 + 3 and len(calls_b) == 7 + 3       # 7 timed + 1 warm-up per block


def test_paired_difference_is_the_cost_the_extra_work_adds(virtual_time):
    clock, ticking = virtual_time
    calls = []
    diff = bench.paired_difference(ticking(1.0, calls), ticking(1.25, calls), pairs=5, clock=clock)
    assert diff == pytest.approx(0.25)
    assert len(calls) == 2 * 5 + 2                                 # 5 timed pairs + 1 warm-up
