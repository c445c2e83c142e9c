"""The API benchmark: its account of stolen CPU, and the one CPU its processes share."""

from __future__ import annotations

import pytest

from charger_tools.bench.placement import pin_process, placement
from charger_tools.bench.steal import AFTER_S, StealWatch, split


def watch_of(*windows: tuple[float, float, float]) -> StealWatch:
    return StealWatch(windows=list(windows))


def test_only_windows_with_stolen_time_make_spans_and_each_reaches_past_its_end() -> None:
    watch = watch_of((0.0, 0.1, 0.0), (0.1, 0.2, 0.3), (0.2, 0.3, 0.005), (0.3, 0.4, 0.02))
    assert watch.stolen_spans() == [(0.1, 0.2 + AFTER_S), (0.3, 0.4 + AFTER_S)]


@pytest.mark.parametrize(
    ("due", "near"),
    [
        (0.05, False),  # before any stolen window
        (0.1, True),  # at its start
        (0.2 + AFTER_S - 0.01, True),  # the backlog is still draining
        (0.2 + AFTER_S + 0.01, False),  # after it drained
    ],
)
def test_a_request_is_near_stolen_time_from_its_window_until_the_backlog_drained(
    due: float, near: bool
) -> None:
    spans = watch_of((0.0, 0.1, 0.0), (0.1, 0.2, 0.3)).stolen_spans()
    near_it, away = split([due], [7.0], spans)
    assert (near_it, away) == (([7.0], []) if near else ([], [7.0]))


def test_split_keeps_every_latency_once_in_its_order() -> None:
    spans = [(1.0, 2.0)]
    near, away = split([0.5, 1.5, 2.5, 1.9], [1.0, 2.0, 3.0, 4.0], spans)
    assert near == [2.0, 4.0]
    assert away == [1.0, 3.0]


def test_the_share_is_weighted_by_window_length_and_counts_only_windows_inside() -> None:
    watch = watch_of((0.0, 0.1, 1.0), (1.0, 1.1, 0.5), (1.1, 1.4, 0.1), (2.0, 2.1, 1.0))
    share = watch.share(1.0, 1.5)
    assert share == pytest.approx((0.5 * 0.1 + 0.1 * 0.3) / 0.4)
    assert watch.share(5.0, 6.0) is None


def test_the_benchmark_shares_the_last_cpu_it_may_use() -> None:
    assert placement({0, 1}) == frozenset({1})
    assert placement(frozenset({3})) == frozenset({3})
    assert placement({0, 2, 5}) == frozenset({5})


def test_pinning_moves_every_thread_of_a_process() -> None:
    import os
    import threading

    allowed = os.sched_getaffinity(0)
    target = placement(allowed)
    parked = threading.Event()
    helper = threading.Thread(target=parked.wait, daemon=True)
    helper.start()
    try:
        assert pin_process(os.getpid(), target)
        assert os.sched_getaffinity(0) == target
        assert os.sched_getaffinity(helper.native_id) == target  # type: ignore[arg-type]
    finally:
        parked.set()
        pin_process(os.getpid(), frozenset(allowed))


def test_a_process_that_is_gone_is_not_pinned() -> None:
    assert not pin_process(2**22 + 7, frozenset({0}))
