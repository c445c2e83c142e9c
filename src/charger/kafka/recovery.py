"""When Redis forgot: read again from where Redis really is.

Redis replicates asynchronously, so a failover can promote a replica that missed the last
writes its primary acknowledged, and a restart can come back from an older state. The
applied-offset watermark in Redis moves with the money in every apply.lua call, so it is
the authority on what Redis holds: a batch whose first record of a source follows on from
an offset the watermark has not reached is not applied (apply.lua refuses the slot), and
the worker seeks each source of such a slot back to its watermark and applies again what
Redis forgot. Ids are deterministic, so what was published before is published again
with the same ids. While the worker is idle the same comparison runs every second
against the consumer's positions, so a forgetful Redis is caught without new traffic.

When a partition is assigned, every source of it a slot has no watermark of gets one at
the offset before where the consumer group stands, before anything is fetched: a Redis
that later forgets the first records a slot applied from a source still holds where they
began. A slot with no watermark of a source therefore has never been assigned it: a new
deployment (or a new `CHARGER_REDIS_PREFIX`) starts where its consumer group stands. A
Redis that lost every write since the source was first assigned looks the same: rebuild
it by resetting the group's offsets to the beginning of the topics.

Kafka must still hold the records: retention longer than the longest gap between a write
and its loss. What it no longer holds cannot be applied again: that is logged and
counted, and the batch goes on from the oldest offset Kafka has.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from charger.charging.records import source_name
from charger.metrics import Metrics
from charger.protocol.ops import NO_WATERMARK
from charger.store.redis_store import RedisForgot, RedisStore

log = logging.getLogger("charger.recovery")


def source_of(tp: TopicPartition) -> str:
    return source_name(tp.topic, tp.partition)


class Recovery:
    """Decides where each source is read from after Redis lost writes."""

    def __init__(self, store: RedisStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        # Sources whose forgotten records Kafka no longer has: their next batch is applied
        # without the check, once, so the worker does not ask for them forever.
        self.accepted: set[str] = set()

    def expected(self, lowest: Mapping[str, int]) -> dict[str, int]:
        """Per source of a batch, the offset its watermark must have reached already."""
        accepted = self.accepted
        expected = {s: -1 if s in accepted else first - 1 for s, first in lowest.items()}
        accepted.difference_update(lowest)
        return expected

    async def rewind(
        self,
        consumer: AIOKafkaConsumer,
        forgot: RedisForgot,
        first: Mapping[TopicPartition, int],
    ) -> set[TopicPartition]:
        """Seek every source of the slots Redis is behind in back to where Redis is;
        returns those partitions, whose offsets the batch must not commit.

        `first` is each partition's first offset in the batch: a source of such a slot
        that Redis is not behind in is read again from there (its records were not
        applied either: the slot applied nothing)."""
        slots = self.store.keys.slots
        behind = {
            tp: forgot.marks[tp.partition % slots].get(source_of(tp))
            for tp in first
            if tp.partition % slots in forgot.marks
        }
        forgotten = [tp for tp, mark in behind.items() if mark is not None]
        starts = await consumer.beginning_offsets(forgotten) if forgotten else {}
        for tp, mark in behind.items():
            if mark is None:
                consumer.seek(tp, first[tp])  # not behind, but its records waited too
            else:
                self._seek_back(consumer, tp, mark, first[tp], starts[tp])
        return set(behind)

    async def verify(self, consumer: AIOKafkaConsumer, assigned: Iterable[TopicPartition]) -> int:
        """Compare the watermarks with the consumer's positions while idle; seek every
        source Redis is behind in back to its watermark. Returns how many it sought."""
        slots = self.store.keys.slots
        positions: dict[TopicPartition, int] = {}
        for tp in assigned:
            positions[tp] = await consumer.position(tp)
        where: dict[int, list[str]] = {}
        for tp in positions:
            where.setdefault(tp.partition % slots, []).append(source_of(tp))
        marks = await self.store.watermarks(where)
        lagging = {
            tp: marks[source_of(tp)]
            for tp, position in positions.items()
            if marks[source_of(tp)] > NO_WATERMARK and marks[source_of(tp)] + 1 < position
        }
        if not lagging:
            return 0
        starts = await consumer.beginning_offsets(list(lagging))
        for tp, mark in lagging.items():
            self._seek_back(consumer, tp, mark, positions[tp], starts[tp])
        return len(lagging)

    def _seek_back(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, mark: int, position: int, start: int
    ) -> None:
        """Read `tp` again from the record after `mark`, or the oldest Kafka still has."""
        self._report(tp, mark, position, start)
        target = max(mark + 1, start)
        if target >= position:
            # Nothing older is left to read: the next batch goes on without the check.
            self.accepted.add(source_of(tp))
            consumer.seek(tp, position)
        else:
            consumer.seek(tp, target)

    def _report(self, tp: TopicPartition, mark: int, position: int, start: int) -> None:
        lost = max(0, start - (mark + 1))  # forgotten and no longer in Kafka
        again = position - max(mark + 1, start)
        self.metrics.redis_forgotten.inc(max(again, 0))
        if lost:
            self.metrics.records_unrecoverable.inc(lost)
        log.error(
            "Redis forgot applied records; applying them again",
            extra={
                "source": source_of(tp),
                "redis_watermark": mark,
                "position": position,
                "records_again": max(again, 0),
                "records_gone_from_kafka": lost,
            },
        )
