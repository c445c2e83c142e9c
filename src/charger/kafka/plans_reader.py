"""Rate plans: files at start, then the compacted `billing.rate-plans` topic.

Every worker reads the whole topic: each one rates for every plan. A record that is not a
valid plan is refused and the plan's previous version stays in force; the worker goes on.
A versioned plan is keyed ``<id>@<version>``, so compaction keeps every version.

Refusals go to the DLQ like every other refused record: as a DLQ op of slot 0 (the topic
has one partition) written by apply.lua under the watermark of source
``billing.rate-plans/0``. Every worker reads every plan record, in offset order, so the
first worker to reach a refused record writes it and the others find its offset at or
below the watermark and skip it: one DLQ record per refused plan record, across workers
and restarts, published by the relay of whichever worker owns slot 0.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, TopicPartition

from charger.charging.records import Inbound
from charger.charging.refusals import refuse
from charger.events.validate import Invalid, decode
from charger.kafka.admin import partition_counts
from charger.kafka.inbound import inbound_of
from charger.metrics import Metrics
from charger.protocol.ops import SlotPlan
from charger.rating import PlanError, RatePlan, plan_from_dict
from charger.rating.loader import strict_json
from charger.rating.versions import PlanVersions, by_id, parse_record_key, record_key
from charger.store.redis_store import RedisStore
from charger.tasks import cancel_and_wait
from charger_topics import names

log = logging.getLogger("charger.plans")

# A plan with thousands of prefixes is far bigger than an event; Kafka's default limit.
MAX_PLAN_BYTES: Final = 1024 * 1024
_TYPES: Final = frozenset({"rate_plan.upserted"})


def _invalid(detail: str) -> Invalid:
    return Invalid("invalid_rate_plan", detail)


class PlanBook:
    """The rate plans in force, every version of every plan id.

    A version is identified by (plan id, version number; 0 for a plan without versions).
    A topic record adds its version or replaces the same version, and overrides the file
    version of the same pair; a tombstone withdraws the topic's version of its key, and the
    file's, if any, is in force again.
    """

    def __init__(
        self, from_files: Mapping[str, RatePlan] | Iterable[RatePlan] | None = None
    ) -> None:
        plans = from_files.values() if isinstance(from_files, Mapping) else from_files or ()
        self._files = {(p.id, p.version): p for p in plans}
        self._topic: dict[tuple[str, int], RatePlan] = {}
        self._view: Mapping[str, PlanVersions] = MappingProxyType(by_id(self._files.values()))
        self.refused = 0

    def current(self) -> Mapping[str, PlanVersions]:
        return self._view

    def apply(self, key: bytes | None, value: bytes | None) -> Invalid | None:
        """Apply one topic record; returns why it was refused, or None."""
        bad = self._apply(key, value)
        if bad is not None:
            self.refused += 1
        return bad

    def _apply(self, key: bytes | None, value: bytes | None) -> Invalid | None:
        if value is None:  # compaction tombstone: the plan version is withdrawn
            if key is None:
                return _invalid("tombstone without a key: no plan to withdraw")
            try:
                where = parse_record_key(key.decode(errors="replace"))
            except ValueError:
                return None  # no valid version was ever under this key: nothing to withdraw
            self._topic.pop(where, None)
            self._rebuild()
            return None
        body = decode(value, _TYPES, MAX_PLAN_BYTES)
        if isinstance(body, Invalid):
            return body
        try:
            # Like plan files: a repeated key is ambiguous and JSON readers keep the last.
            strict_json(value)
            plan = plan_from_dict(body["plan"])
        except (PlanError, ValueError) as exc:
            return _invalid(str(exc))
        shown = None if key is None else key.decode(errors="replace")
        expected = record_key(plan.id, plan.version)
        if shown != expected:
            # Compaction and tombstones work by key: under another key this version would
            # outlive its withdrawal, or be compacted away by another version or plan.
            if plan.version == 0:
                return _invalid(f"record key {shown!r} is not the plan id {plan.id!r}")
            return _invalid(f"record key {shown!r} is not {expected!r}: plan id @ version")
        self._topic[(plan.id, plan.version)] = plan
        self._rebuild()
        return None

    def _rebuild(self) -> None:
        self._view = MappingProxyType(by_id({**self._files, **self._topic}.values()))


class RatePlanReader:
    """Follows `billing.rate-plans` from the beginning, outside any consumer group.

    With a `store`, refused records go to the DLQ (see the module notes); without one
    (tools that only need plans) they are logged and counted in the book.
    """

    def __init__(
        self,
        bootstrap: str,
        book: PlanBook,
        store: RedisStore | None = None,
        metrics: Metrics | None = None,
        security: Mapping[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.book = book
        self.store = store
        self.metrics = metrics
        # Security keyword arguments of the client (charger.connections.kafka_security).
        self.security = dict(security or {})
        self.caught_up = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    def new_consumer(self) -> AIOKafkaConsumer:
        """The reader's client (apart from `start`, so its configuration can be checked)."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            group_id=None,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=2 * MAX_PLAN_BYTES,
            # A plan written in a transaction that was aborted never takes effect.
            isolation_level="read_committed",
            **self.security,
        )

    async def start(self) -> None:
        # Asked of the broker: a consumer that subscribes to nothing knows no partitions.
        counts = await partition_counts(self.bootstrap, [names.RATE_PLANS], security=self.security)
        c = self.new_consumer()
        await c.start()
        tps = [TopicPartition(names.RATE_PLANS, p) for p in range(counts.get(names.RATE_PLANS, 0))]
        c.assign(tps)
        if tps:
            await c.seek_to_beginning(*tps)
        ends = await c.end_offsets(tps) if tps else {}
        self._consumer = c
        self._task = asyncio.create_task(self._follow(ends))

    async def _follow(self, ends: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        c = self._consumer
        while True:
            data = await c.getmany(timeout_ms=200)
            # Caught up once past the end offsets seen at start and a fetch comes back empty
            # (some brokers report end offsets behind batched writes).
            if (
                not data
                and not self.caught_up.is_set()
                and all(await asyncio.gather(*(self._at(c, tp, end) for tp, end in ends.items())))
            ):
                self.caught_up.set()
            for tp, msgs in data.items():
                for m in msgs:
                    bad = self.book.apply(m.key, m.value)
                    if bad is not None:
                        await self._refuse(inbound_of(tp, m), bad)

    async def _refuse(self, rec: Inbound, bad: Invalid) -> None:
        """Send `rec` to the DLQ unless another worker (or this one before) already did."""
        written = await self._write_refusal(rec, bad) if self.store is not None else True
        if written and self.metrics is not None:
            self.metrics.dlq.labels(bad.reason).inc()
        # Every worker meets every refused record again at each start: say it once.
        log.log(
            logging.WARNING if written else logging.DEBUG,
            "rate plan record refused at offset %s: %s: %s",
            rec.offset,
            bad.reason,
            bad.detail,
            extra={"reason": bad.reason},
        )

    async def _write_refusal(self, rec: Inbound, bad: Invalid) -> bool:
        assert self.store is not None
        plan = SlotPlan()
        refuse(plan, self.store.keys.slots, rec, bad.reason, bad.detail)
        # Keep trying: a later refusal written first would move the watermark past this
        # one, and then no worker would ever write it.
        while True:
            try:
                applied, _ = await self.store.apply(
                    plan, {rec.source: rec.offset}, int(time.time() * 1000)
                )
                return applied > 0
            except Exception as exc:
                log.exception("writing a refused rate plan record failed; retrying")
                if self.metrics is not None:
                    self.metrics.error("plans", exc)
                await asyncio.sleep(1.0)

    @staticmethod
    async def _at(c: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
        return bool(await c.position(tp) >= end)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._consumer is not None:
            await self._consumer.stop()
