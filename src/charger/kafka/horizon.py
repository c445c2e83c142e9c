"""How far in time the ticker may act for each key slot: the event-time horizon.

A cutoff at instant T is right only if nothing that happened before T is still unread:
a `call.ended`, a top-up or a recharge result sitting in the partition's backlog would
have changed the decision. So the ticker acts "as of" a horizon per slot:

- every assigned partition of the slot is caught up (its read position reached the high
  watermark of the last fetch answer): the horizon is the instant that answer arrived;
- a partition is behind: the horizon is the broker timestamp of the last record read
  from it — everything produced before that has been read;
- a partition is behind and nothing was read from it since it was assigned: there is no
  horizon yet, and the slot is not ticked until the first batch comes through.

After a restart or a rebalance this turns "cut every call whose money ran out while we
were away" into "replay the backlog, deciding each cut as of the moment it was due".

A caught-up partition is caught up only as of its last fetch answer, not as of now: the
high watermark is the broker's when it answered, and records produced since sit unread
until the next answer. Acting as of now would let a tick cut a call whose end reached
the broker between that answer and the tick; a fetcher that has not heard from the
broker for a while (a starved process, a slow broker) holds its slots back by as long.
(The answer's own transit, from the broker to the consumer's fetcher, is the only
stretch left uncounted.)

"Read" means processed: records a fetch has returned but the batch loop has not yet
applied are "in hand", and the partition counts as behind until they are (the consumer's
own position has already moved past them; found by `charger chaos`, where a tick slipped
in between a fetch and its batch and cut a call whose end was in that very fetch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition


class Horizon:
    """Per-partition read progress, turned into a tick instant per key slot."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._read: dict[TopicPartition, tuple[int, int]] = {}  # next offset, last timestamp
        self._in_hand: dict[TopicPartition, int] = {}  # first offset fetched, not yet applied

    def fetched(self, data: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Records returned by a fetch, not applied yet."""
        for tp, msgs in data.items():
            if msgs:
                self._in_hand.setdefault(tp, msgs[0].offset)

    def released(self) -> None:
        """The batch in hand failed and will be fetched again: nothing is in hand."""
        self._in_hand.clear()

    def advance(self, data: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Record a processed batch (records with `.offset` and `.timestamp`, in order)."""
        for tp, msgs in data.items():
            self._in_hand.pop(tp, None)
            if msgs:
                last = max(m.timestamp for m in msgs)
                _, before = self._read.get(tp, (0, last))
                self._read[tp] = (msgs[-1].offset + 1, max(last, before))

    def forget(self) -> None:
        """Partitions were revoked or reassigned: progress is known again after a batch."""
        self._read.clear()
        self._in_hand.clear()

    def slot_now(
        self,
        now_ms: int,
        assigned: Iterable[TopicPartition],
        position: Callable[[TopicPartition], int | None],
        highwater: Callable[[TopicPartition], int | None],
        learned: Callable[[TopicPartition], int | None],
    ) -> dict[int, int]:
        """The instant each slot may be ticked as of; slots without one are left out.

        `learned(tp)`: when the fetch answer that carried `tp`'s high watermark arrived, on
        the same clock as `now_ms` (None: no answer yet). A caught-up partition holds its
        slot there: records produced after that answer are not counted in the watermark.
        """
        horizon: dict[int, int] = {}
        blocked: set[int] = set()
        for tp in assigned:
            slot = tp.partition % self.slots
            hw, read = highwater(tp), self._read.get(tp)
            pos = self._in_hand.get(tp)
            if pos is None:
                pos = position(tp)
            if pos is None and read is not None:
                pos = read[0]
            answered = learned(tp)
            if hw is not None and pos is not None and pos >= hw and answered is not None:
                at = min(now_ms, answered)
            elif read is not None:
                at = min(now_ms, read[1])
            else:
                blocked.add(slot)
                continue
            horizon[slot] = min(horizon.get(slot, at), at)
        return {s: t for s, t in horizon.items() if s not in blocked}
