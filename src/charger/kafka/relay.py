"""The outbox relay: publishes what apply.lua wrote, then forgets it.

It moves records and nothing else: the outputs of an outbox entry are decoded by the
protocol (`charger.protocol.outputs`) and rendered by the core (`charging.documents`);
the relay hands the documents to the broker, waits for every acknowledgement, tells the
metrics what went out, and deletes the entries.

Outputs are written to a slot's outbox in the same Lua call that moves the money, so a
crash between "money moved" and "published" loses nothing: the next relay pass, in this
process or the next owner, publishes them. A crash after the broker acknowledged but before
the outbox entry was deleted publishes it again with the same deterministic id; readers
dedupe by id.

With ``CHARGER_REDIS_MIN_REPLICAS`` the relay publishes a chunk only once the replicas
have it (`RedisStore.make_durable`): an entry a failover could still take back is never
published, whoever wrote it (this batch loop, the ticker, a previous owner).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from aiokafka.partitioner import murmur2

from charger.charging.documents import Document, render
from charger.protocol.outputs import Output, decode_entry
from charger.store.redis_store import OutboxEntry, RedisStore
from charger_topics import names

# What the metrics are told of a relay pass: the outputs the broker acknowledged, at when.
Relayed = Callable[[Sequence[Output], float], None]


class Producer(Protocol):
    """What the relay needs of aiokafka's producer."""

    async def send(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ..., headers: Any = ...
    ) -> asyncio.Future[Any]: ...

    def create_batch(self) -> Any: ...

    async def send_batch(
        self, batch: Any, topic: str, *, partition: int
    ) -> asyncio.Future[Any]: ...

    async def partitions_for(self, topic: str) -> set[int]: ...


class Relay:
    """Publishes slot outboxes to Kafka in order and deletes what the broker acknowledged.

    Outputs keyed by account go out as one record batch per topic partition: the
    partition is the slot when the topic has as many partitions as there are slots (the
    slot *is* the default partitioner's choice), otherwise the default partitioner's hash.
    Building batches directly skips aiokafka's per-record `send` path, which cost more
    than everything else the relay does.
    """

    def __init__(
        self,
        store: RedisStore,
        producer: Producer,
        chunk: int = 100,
        relayed: Relayed | None = None,
    ) -> None:
        self.store = store
        self.producer = producer
        self.chunk = chunk
        self.relayed = relayed
        self._partitions: dict[str, int] = {}
        self._hashed: dict[tuple[bytes, int], int] = {}

    async def _count(self, topic: str) -> int:
        n = self._partitions[topic] = len(await self.producer.partitions_for(topic))
        return n

    def _partition(self, n: int, key: bytes, slot: int) -> int:
        """The partition of `key` among `n`: the slot itself when there are as many."""
        if n == self.store.keys.slots:
            return slot
        p = self._hashed.get((key, n))
        if p is None:
            if len(self._hashed) > 100_000:
                self._hashed.clear()
            p = self._hashed[(key, n)] = (murmur2(key) & 0x7FFFFFFF) % n
        return p

    async def _publish(
        self, batches: dict[int, list[OutboxEntry]], counts: Counter[str]
    ) -> tuple[list[asyncio.Future[Any]], list[Output]]:
        """Hand every output of `batches` to the producer; the futures of their acks."""
        producer = self.producer
        futures: list[asyncio.Future[Any]] = []
        sent: list[Output] = []
        open_batches: dict[tuple[str, int], Any] = {}
        try:
            for slot, entries in batches.items():
                for output in (o for _, fields in entries for o in decode_entry(fields)):
                    sent.append(output)
                    for out in render(output):
                        counts[out.kind] += 1
                        if out.key is None or out.topic == names.DLQ:
                            # refused records keep whatever key they came with
                            futures.append(
                                await producer.send(
                                    out.topic, value=out.value, key=out.key, headers=out.headers
                                )
                            )
                            continue
                        n = self._partitions.get(out.topic) or await self._count(out.topic)
                        where = (out.topic, self._partition(n, out.key, slot))
                        batch = open_batches.get(where)
                        if batch is None:
                            batch = open_batches[where] = producer.create_batch()
                        if not _append(batch, out):
                            futures.append(
                                await producer.send_batch(batch, where[0], partition=where[1])
                            )
                            batch = open_batches[where] = producer.create_batch()
                            if not _append(batch, out):
                                raise ValueError(
                                    f"an output of {len(out.value or b'')} bytes fits no batch"
                                )
        finally:
            for (topic, partition), batch in open_batches.items():
                if batch.record_count():
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures, sent

    async def drain(self, slots: Iterable[int]) -> Counter[str]:
        """Publish everything pending in `slots`; returns counts by output kind."""
        counts: Counter[str] = Counter()
        pending = set(slots)
        while pending:
            batches = await self.store.outbox(pending, self.chunk)
            if not batches:
                break
            # Nothing is published that a failover could still take back.
            await self.store.make_durable(batches)
            futures: list[asyncio.Future[Any]] = []
            sent: list[Output] = []
            try:
                futures, sent = await self._publish(batches, counts)
            finally:
                # Every send settles before a failure is raised: nothing is left in flight
                # when the caller backs off, and no outcome goes unread.
                acks = await asyncio.gather(*futures, return_exceptions=True)
            failed = next((a for a in acks if isinstance(a, BaseException)), None)
            if failed is not None:
                # The broker refused or lost some: keep the whole chunk in the outbox and let
                # the caller retry it (records already acknowledged go out again, same ids).
                raise failed
            if self.relayed is not None:
                self.relayed(sent, time.time())
            await self.store.ack_outbox(
                {slot: [eid for eid, _ in e] for slot, e in batches.items()}
            )
            pending = {s for s, entries in batches.items() if len(entries) >= self.chunk}
        return counts


def _append(batch: Any, out: Document) -> bool:
    """Add `out` to a record batch; False when the batch is full."""
    meta = batch.append(timestamp=None, key=out.key, value=out.value, headers=out.headers or [])
    return meta is not None
