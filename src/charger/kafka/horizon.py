"""How far in time the ticker may act for each key slot: the event-time horizon.

A cutoff at instant T is right only if nothing that happened before T is still unread:
a `call.ended`, a top-up or a recharge result sitting in the partition's backlog would
have changed the decision. So the ticker acts "as of" a horizon per slot:

- every assigned partition of the slot is caught up (its read position reached the high
  watermark of the last fetch): the horizon is now;
- a partition is behind: the horizon is the broker timestamp of the last record read
  from it — everything produced before that has been read;
- a partition is behind and nothing was read from it since it was assigned: there is no
  horizon yet, and the slot is not ticked until the first batch comes through.

After a restart or a rebalance this turns "cut every call whose money ran out while we
were away" into "replay the backlog, deciding each cut as of the moment it was due".
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

    def advance(self, data: Mapping[TopicPartition, Sequence[Any]]) -> None:
        """Record a processed batch (records with `.offset` and `.timestamp`, in order)."""
        for tp, msgs in data.items():
            if msgs:
                last = max(m.timestamp for m in msgs)
                _, before = self._read.get(tp, (0, last))
                self._read[tp] = (msgs[-1].offset + 1, max(last, before))

    def forget(self) -> None:
        """Partitions were revoked or reassigned: progress is known again after a batch."""
        self._read.clear()

    def slot_now(
        self,
        now_ms: int,
        assigned: Iterable[TopicPartition],
        position: Callable[[TopicPartition], int | None],
        highwater: Callable[[TopicPartition], int | None],
    ) -> dict[int, int]:
        """The instant each slot may be ticked as of; slots without one are left out."""
        horizon: dict[int, int] = {}
        blocked: set[int] = set()
        for tp in assigned:
            slot = tp.partition % self.slots
            hw, pos = highwater(tp), position(tp)
            read = self._read.get(tp)
            if pos is None and read is not None:
                pos = read[0]
            if hw is not None and pos is not None and pos >= hw:
                at = now_ms
            elif read is not None:
                at = min(now_ms, read[1])
            else:
                blocked.add(slot)
                continue
            horizon[slot] = min(horizon.get(slot, at), at)
        return {s: t for s, t in horizon.items() if s not in blocked}
