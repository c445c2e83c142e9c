"""The ticker's event-time horizon per key slot."""

from __future__ import annotations

from typing import NamedTuple

from aiokafka import TopicPartition

from charger.kafka.horizon import Horizon

EV, AC = "telephony.events", "billing.accounts"
NOW = 1_000_000


class Rec(NamedTuple):
    offset: int
    timestamp: int


def answered_now(tp: TopicPartition) -> int | None:
    """The last fetch answer arrived just now."""
    return NOW


def tps(p: int) -> list[TopicPartition]:
    return [TopicPartition(EV, p), TopicPartition(AC, p)]


def test_caught_up_partitions_tick_as_of_now() -> None:
    h = Horizon(8)
    assigned = tps(0) + tps(1)
    got = h.slot_now(NOW, assigned, lambda tp: 10, lambda tp: 10, answered_now)
    assert got == {0: NOW, 1: NOW}


def test_a_backlog_holds_the_slot_at_the_last_record_read() -> None:
    h = Horizon(8)
    h.advance({TopicPartition(EV, 3): [Rec(4, 900_000), Rec(5, 900_500)]})
    hw = {TopicPartition(EV, 3): 50, TopicPartition(AC, 3): 7}
    got = h.slot_now(
        NOW, tps(3), lambda tp: {TopicPartition(AC, 3): 7}.get(tp), hw.get, answered_now
    )
    # events partition is behind (6 < 50): as of its last record; accounts caught up
    assert got == {3: 900_500}


def test_nothing_read_from_a_lagging_partition_blocks_its_slot_only() -> None:
    h = Horizon(8)
    hw = {TopicPartition(EV, 2): 9}
    got = h.slot_now(NOW, tps(2) + tps(5), lambda tp: 0, lambda tp: hw.get(tp, 0), answered_now)
    assert got == {5: NOW}


def test_unknown_highwater_is_not_caught_up() -> None:
    h = Horizon(8)
    assert h.slot_now(NOW, tps(1), lambda tp: 0, lambda tp: None, answered_now) == {}
    h.advance({TopicPartition(EV, 1): [Rec(0, 5)], TopicPartition(AC, 1): [Rec(0, 7)]})
    assert h.slot_now(NOW, tps(1), lambda tp: None, lambda tp: None, answered_now) == {1: 5}


def test_horizon_never_passes_now_and_forget_resets() -> None:
    h = Horizon(4)
    h.advance({TopicPartition(EV, 6): [Rec(0, NOW + 60_000)]})
    got = h.slot_now(NOW, [TopicPartition(EV, 6)], lambda tp: 1, lambda tp: 3, answered_now)
    assert got == {2: NOW}  # partition 6 lives in slot 6 % 4 == 2
    h.forget()
    assert h.slot_now(NOW, [TopicPartition(EV, 6)], lambda tp: 1, lambda tp: 3, answered_now) == {}


def test_records_fetched_but_not_applied_keep_the_slot_behind() -> None:
    h = Horizon(8)
    tp = TopicPartition(EV, 0)
    h.advance({tp: [Rec(0, 100)]})
    # a fetch returned offsets 1..2; the consumer's position already says 3 == highwater
    h.fetched({tp: [Rec(1, 200), Rec(2, 300)]})
    assert h.slot_now(NOW, [tp], lambda _: 3, lambda _: 3, answered_now) == {0: 100}
    h.advance({tp: [Rec(1, 200), Rec(2, 300)]})
    assert h.slot_now(NOW, [tp], lambda _: 3, lambda _: 3, answered_now) == {0: NOW}
    h.fetched({tp: [Rec(3, 400)]})
    h.released()  # the batch failed: rewound, nothing in hand
    assert h.slot_now(NOW, [tp], lambda _: 3, lambda _: 4, answered_now) == {0: 300}


def test_a_caught_up_slot_ticks_as_of_its_last_fetch_answer_not_now() -> None:
    # Position == high watermark, but that watermark is the broker's as of the answer 400 ms
    # ago: a call's end produced since is unread, so the slot must not act as of now.
    h = Horizon(8)
    tp = TopicPartition(EV, 2)
    h.advance({tp: [Rec(4, NOW - 900)]})
    got = h.slot_now(NOW, [tp], lambda _: 5, lambda _: 5, lambda _: NOW - 400)
    assert got == {2: NOW - 400}


def test_a_slot_waits_for_its_oldest_fetch_answer() -> None:
    h = Horizon(8)
    answered = {TopicPartition(EV, 1): NOW - 30, TopicPartition(AC, 1): NOW - 700}
    got = h.slot_now(NOW, tps(1), lambda _: 5, lambda _: 5, answered.get)
    assert got == {1: NOW - 700}


def test_a_starved_fetcher_holds_the_slot_at_its_last_answer() -> None:
    # No answer for 5 s (a starved process): the slot stays as of that answer, later than
    # the last record read (the answer confirmed nothing newer had arrived by then).
    h = Horizon(8)
    tp = TopicPartition(EV, 3)
    h.advance({tp: [Rec(4, NOW - 9_000)]})
    assert h.slot_now(NOW, [tp], lambda _: 5, lambda _: 5, lambda _: NOW - 5_000) == {
        3: NOW - 5_000
    }


def test_no_fetch_answer_yet_is_not_caught_up() -> None:
    h = Horizon(8)
    tp = TopicPartition(EV, 4)
    assert h.slot_now(NOW, [tp], lambda _: 5, lambda _: 5, lambda _: None) == {}
    h.advance({tp: [Rec(4, NOW - 300)]})
    assert h.slot_now(NOW, [tp], lambda _: 5, lambda _: 5, lambda _: None) == {4: NOW - 300}


def test_an_answer_stamped_after_now_does_not_move_the_horizon_ahead() -> None:
    # The two readings come from different moments (the answer landed after `now` was read).
    h = Horizon(8)
    tp = TopicPartition(EV, 5)
    assert h.slot_now(NOW, [tp], lambda _: 5, lambda _: 5, lambda _: NOW + 20) == {5: NOW}
