"""The charging path: fetch a batch, plan it, apply it in Redis, commit, relay outputs.

Offsets are committed only after the batch's money moved and its outputs were written to
the outbox in the same Lua call; the relay publishes them in the background while the next
batch is planned (charger.kafka.publisher). Redelivery is harmless anyway: apply.lua skips
offsets at or below the slot watermark.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError, KafkaTimeoutError

from charger.charging.planner import Outcome, Planner
from charger.charging.records import Inbound
from charger.clock import Clock
from charger.connections import kafka_security
from charger.deps import Retrier, backoff_for
from charger.kafka.horizon import Horizon
from charger.kafka.inbound import inbound_of
from charger.kafka.publisher import Publisher
from charger.kafka.recovery import Recovery, source_of
from charger.kafka.relay import Relay
from charger.kafka.scheduler import SCHEDULE_EVERY_MS, schedule
from charger.metrics import Metrics
from charger.protocol.ops import SlotPlan
from charger.rating import PlanSource
from charger.settings import Settings
from charger.store.redis_store import RedisForgot, RedisStore
from charger_topics import names

log = logging.getLogger("charger.batch")

# Settings before usage: an account created in the same batch as its first call is known.
_TOPIC_ORDER = {names.BILLING_ACCOUNTS: 0, names.RECHARGE_RESULTS: 1, names.TELEPHONY_EVENTS: 2}
# How long an offset commit may wait for the broker before the batch is retried.
COMMIT_TIMEOUT_S = 10.0


async def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The next offset to read, if known right now (a tick must not wait for it)."""
    try:
        pos: int = await asyncio.wait_for(consumer.position(tp), 0.05)
    except (TimeoutError, IllegalStateError):
        return None
    return pos


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: BatchWorker) -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # Let the batch and the relay pass in hand finish (the next owner publishes what is
        # left); then forget cached settings of accounts we may lose.
        async with self.worker.lock:
            await self.worker.publisher.quiesce()
            self.worker.planner.accounts.clear()
            self.worker.horizon.forget()

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.worker.assigned_slots = {
            tp.partition % self.worker.store.keys.slots for tp in assigned
        }
        self.worker.needs_drain = True
        self.worker.unstarted = set(assigned)
        self.worker.horizon.forget()
        self.worker.rewound = False  # what was rewound is now fetched from the committed offsets


class BatchWorker:
    """Consumes the money-moving topics in batches with explicit offset control."""

    def __init__(
        self,
        settings: Settings,
        store: RedisStore,
        relay: Relay,
        plans: Callable[[], Mapping[str, PlanSource]],
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.publisher = Publisher(relay, metrics)
        self.clock = clock
        self.metrics = metrics
        self.planner = Planner(
            store.keys,
            plans,
            policy=settings.recharge_policy(),
        )
        self.lock = asyncio.Lock()
        self.scheduled_at_ms = -SCHEDULE_EVERY_MS  # when subscriptions were last looked at
        self.horizon = Horizon(store.keys.slots)
        self.assigned_slots: set[int] = set()
        self.needs_drain = True
        # Assigned partitions whose watermark may not exist yet (written before a fetch).
        self.unstarted: set[TopicPartition] = set()
        # First offset per partition of the batch fetched and not yet applied.
        self.in_hand: dict[TopicPartition, int] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self.batches = 0
        self.retry = Retrier("batch", metrics, backoff_for(settings), log)
        self.rewound = False  # a failed batch waits to be fetched again
        self.recovery = Recovery(store, metrics)
        self.verified_at = 0.0  # time.monotonic() of the last idle watermark check

    async def start(self) -> None:
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.group_id,
            client_id=s.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max_records,
            partition_assignment_strategy=(RangePartitionAssignor,),
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=min(1_000, s.session_timeout_ms // 3),
            rebalance_timeout_ms=s.rebalance_timeout_ms,
            # The broker answers a fetch when data is there or after this wait; the library
            # default (500 ms) would sit on the first records of a quiet moment, and some
            # brokers hold a fetch for the whole wait, which then adds to every record.
            fetch_max_wait_ms=s.fetch_wait_ms,
            # Records of an upstream transaction are charged once it commits, never when
            # it aborts (the read_uncommitted default would charge them at once, either way).
            isolation_level="read_committed",
            **kafka_security(s),
        )
        self.consumer.subscribe(list(names.CO_PARTITIONED), listener=_Rebalance(self))
        await self.consumer.start()

    async def stop(self) -> None:
        self._stopping.set()
        async with self.lock:
            if self.consumer is not None:
                await self.consumer.stop()
                self.consumer = None
        await self.publisher.stop()

    async def run(self) -> None:
        """Process batches until stopped; no failure ends the loop."""
        while not self._stopping.is_set():
            try:
                await self.run_once()
            except Exception as exc:
                # Outside a batch (draining the outbox before a fetch, the fetch itself):
                # the loop must survive whatever Redis or the broker is going through.
                log.exception("batch loop step failed; retrying")
                self.metrics.error("batch", exc)
                self.needs_drain = True
                await asyncio.sleep(0.5)

    async def run_once(self) -> int:
        """Fetch and process one batch; returns how many records it held.

        Any failure (Redis or the broker away, a commit refused after a rebalance) rewinds
        the batch, backs off and returns 0, committing nothing: the next call fetches the
        same records again, and apply.lua's watermark makes a second application harmless.
        """
        assert self.consumer is not None
        data: Mapping[TopicPartition, Sequence[ConsumerRecord]] = {}
        try:
            if self.needs_drain:
                await self._drain_assigned()
            failed = self.publisher.failure()
            if failed is not None:
                await self.publisher.settle()  # raises it: take nothing new on meanwhile
            data = await self.consumer.getmany(
                timeout_ms=self.settings.batch_timeout_ms,
                max_records=self.settings.batch_max_records,
            )
            # Synchronously after the fetch: a tick waiting for the lock must not take the
            # positions of records fetched but not yet applied for records Redis forgot.
            self.in_hand = {tp: msgs[0].offset for tp, msgs in data.items() if msgs}
            self.metrics.polled(data)
            self.horizon.fetched(data)
            n = await self._handle(data) if data else await self._verify_when_due()
        except Exception as exc:
            self.in_hand = {}
            if self._stopping.is_set():
                return 0  # the consumer was stopped under the fetch: not a fault
            self._rewind(data)
            await self.retry.failed(exc, self._stopping)
            self.metrics.looped()
            return 0
        # Recovered once a batch went through, or nothing fetched waits to be fetched again.
        if n or not self.rewound:
            self.rewound = False
            self.retry.succeeded()
        return n

    async def _handle(self, data: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> int:
        async with self.lock:
            if self.consumer is None:
                return 0
            ordered = sorted(
                data.items(), key=lambda kv: (_TOPIC_ORDER.get(kv[0].topic, 9), kv[0].partition)
            )
            batch = [inbound_of(tp, m) for tp, msgs in ordered for m in msgs]
            started = time.perf_counter()
            first = {tp: msgs[0].offset for tp, msgs in data.items()}
            held_back = await self.process(batch, first)
            offsets = {tp: msgs[-1].offset + 1 for tp, msgs in data.items() if tp not in held_back}
            await self._commit(offsets)
            self.horizon.advance(data)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)
            self.in_hand = {}
            self.metrics.batch_size.observe(len(batch))
            self.metrics.last_processed.set(self.clock.now_ms() / 1000)
            self.batches += 1
            return len(batch)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        if not offsets:
            return  # every partition of the batch is read again (Redis had forgotten)
        # aiokafka waits for the group coordinator as long as the broker is away; bound it,
        # so the loop backs off, counts the failure and keeps answering /health.
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), COMMIT_TIMEOUT_S)
        except TimeoutError as exc:
            raise KafkaTimeoutError(
                f"offset commit not acknowledged within {COMMIT_TIMEOUT_S:g} s"
            ) from exc

    def _rewind(self, data: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> None:
        """Forget what the failed batch learnt and fetch its records again next time."""
        self.planner.accounts.clear()
        self.needs_drain = True
        self.horizon.released()
        consumer = self.consumer
        if consumer is None or not data:
            return
        self.rewound = True
        assigned = consumer.assignment()
        for tp, msgs in data.items():
            # A rebalance may have taken the partition meanwhile: its next owner starts
            # from the committed offset, which this batch did not move.
            if tp in assigned:
                consumer.seek(tp, msgs[0].offset)

    async def process(
        self, batch: list[Inbound], first: Mapping[TopicPartition, int]
    ) -> set[TopicPartition]:
        """Plan and apply one batch and start publishing its outputs (no commit).

        Returns the partitions whose records were not applied because Redis had forgotten
        records before them: they are read again from where Redis is, not committed.
        """
        prepared = self.planner.prepare(batch)
        reads = await self.store.read(prepared)
        outcome = self.planner.plan(prepared, reads)
        plan, slots = outcome.plan, self.store.keys.slots
        highest: dict[str, int] = {}
        lowest: dict[str, int] = {}
        for tp, offset in first.items():
            source = source_of(tp)
            lowest[source] = offset
            # Every source's watermark moves with its batch, also when none of its records
            # planned an op (duplicates): the watermark says how far Redis has read.
            plan.touch(tp.partition % slots, source)
        for rec in batch:
            if rec.offset > highest.get(rec.source, -1):
                highest[rec.source] = rec.offset
        t0 = time.perf_counter()
        held_back: set[TopicPartition] = set()
        try:
            # Redis applies this batch while the previous batch's outputs are published.
            await self.store.apply(
                plan, highest, self.clock.now_ms(), expected=self.recovery.expected(lowest)
            )
        except RedisForgot as forgot:
            # What Redis forgot includes account settings this worker cached since.
            self.planner.accounts.clear()
            assert self.consumer is not None
            held_back = await self.recovery.rewind(self.consumer, forgot, first)
        self.metrics.redis_seconds.observe(time.perf_counter() - t0)
        # Then that publishing is over before this batch's starts: the outbox stays about
        # two batches long, and a relay that cannot publish fails this batch (its money
        # moved; the retry skips it by the watermark and the outbox keeps its outputs).
        await self.publisher.settle()
        self.publisher.kick(outcome.plan.slots)
        self._count(outcome)
        return held_back

    async def _verify_when_due(self) -> int:
        """While idle, once a second: is Redis behind what this worker applied?"""
        now = time.monotonic()
        if now - self.verified_at < self.settings.watermark_check_s:
            return 0
        self.verified_at = now
        async with self.lock:
            if self.consumer is None:
                return 0
            if await self.recovery.verify(self.consumer, self.consumer.assignment()):
                self.planner.accounts.clear()
        return 0

    async def tick(self) -> Counter[str]:
        """Extend holds of due sessions, cut exhausted calls, expire lost ones, and publish
        what that wrote (outside the batch lock: batches go on meanwhile)."""
        slots = await self._tick_apply()
        if not slots:
            return Counter()
        return await self.publisher.drain(slots)

    async def _tick_apply(self) -> list[int]:
        async with self.lock:
            slots = sorted(self.assigned_slots)
            if not slots or self.consumer is None:
                return []
            # Each slot is ticked as of its event-time horizon: never ahead of a backlog.
            consumer = self.consumer
            assigned = list(consumer.assignment())
            positions = dict(
                zip(
                    assigned,
                    await asyncio.gather(*(_position(consumer, tp) for tp in assigned)),
                    strict=True,
                )
            )
            clock = self.clock

            def learned(tp: TopicPartition) -> int | None:
                try:
                    answered: int | None = consumer.last_poll_timestamp(tp)
                except (AssertionError, IllegalStateError):  # revoked meanwhile
                    return None
                return None if answered is None else clock.from_wall_ms(answered)

            now_ms = clock.now_ms()
            slot_now = self.horizon.slot_now(
                now_ms, assigned, positions.get, consumer.highwater, learned
            )
            plan = SlotPlan()
            for slot in slots:
                if slot in slot_now:
                    plan.slot(slot).add_tick(self.settings.tick_max_sessions)
            # A tick acts as of the event time of what was fetched: in a slot Redis forgot
            # records of, it would cut calls on a state that is not the fetched one. So it
            # follows on from the positions like a batch: every record before them applied.
            applied_to: dict[str, int] = {}
            positions_of: dict[TopicPartition, int] = {}
            for tp, fetched_to in positions.items():
                # Records fetched and waiting for this lock are not applied yet.
                position = self.in_hand.get(tp, fetched_to)
                slot = tp.partition % self.store.keys.slots
                # A source whose forgotten records Kafka no longer has waits for its batch.
                accepted = source_of(tp) in self.recovery.accepted
                if position is not None and slot in plan.slots and not accepted:
                    plan.touch(slot, source_of(tp))
                    applied_to[source_of(tp)] = position - 1
                    positions_of[tp] = position
            # No wait for replicas here, under the batch lock: a tick commits nothing, the
            # relay waits before it publishes what the tick wrote, and a tick a failover
            # lost is ticked again.
            try:
                looked, _cuts = await self.store.apply(
                    plan, applied_to, now_ms, slot_now, expected=applied_to, wait=False
                )
            except RedisForgot as forgot:
                self.planner.accounts.clear()
                await self.recovery.rewind(consumer, forgot, positions_of)
                return slots
            self.metrics.ticked.inc(looked)
            if slot_now and now_ms - self.scheduled_at_ms >= SCHEDULE_EVERY_MS:
                self.scheduled_at_ms = now_ms
                await schedule(self.store, slot_now, now_ms)
            return slots

    async def _drain_assigned(self) -> None:
        async with self.lock:
            if self.unstarted:
                await self._start_watermarks()
            self.needs_drain = False
            await self.publisher.drain(self.assigned_slots)

    async def _start_watermarks(self) -> None:
        """Give every newly assigned source a watermark where the group stands, so that a
        Redis forgetting a slot's first records of it is noticed (RedisStore.start_watermarks)."""
        consumer = self.consumer
        assert consumer is not None
        assigned = consumer.assignment()
        pending = [tp for tp in self.unstarted if tp in assigned]
        starts: dict[int, dict[str, int]] = {}
        for tp in pending:
            position = await asyncio.wait_for(consumer.position(tp), COMMIT_TIMEOUT_S)
            starts.setdefault(tp.partition % self.store.keys.slots, {})[source_of(tp)] = position
        written = await self.store.start_watermarks(starts)
        self.unstarted.clear()
        if written:
            log.info("watermarks started at the group's offsets", extra={"sources": written})

    def _count(self, outcome: Outcome) -> None:
        m = self.metrics
        for (typ, result), n in outcome.results.items():
            m.events.labels(typ, result).inc(n)
        for reason, n in outcome.dlq.items():
            m.dlq.labels(reason).inc(n)
            m.events.labels("refused", "dlq").inc(n)
