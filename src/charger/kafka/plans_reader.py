"""Rate plans: files at start, then the compacted `billing.rate-plans` topic.

Every worker reads the whole topic: each one rates for every plan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from charger.events.validate import Invalid, decode
from charger.rating import PlanError, RatePlan, plan_from_dict
from topics import names

log = logging.getLogger("charger.plans")


class PlanBook:
    """The rate plans in force: topic versions override file versions of the same id."""

    def __init__(self, from_files: Mapping[str, RatePlan] | None = None) -> None:
        self._files = dict(from_files or {})
        self._topic: dict[str, RatePlan] = {}
        self._view: Mapping[str, RatePlan] = MappingProxyType(dict(self._files))
        self.refused = 0

    def current(self) -> Mapping[str, RatePlan]:
        return self._view

    def apply(self, key: bytes | None, value: bytes | None) -> str | None:
        """Apply one topic record; returns an error sentence when it is refused."""
        if value is None:  # compaction tombstone: the plan is withdrawn
            if key is not None:
                self._topic.pop(key.decode(errors="replace"), None)
                self._rebuild()
            return None
        body = decode(value, frozenset({"rate_plan.upserted"}))
        if isinstance(body, Invalid):
            self.refused += 1
            return f"{body.reason}: {body.detail}"
        try:
            plan = plan_from_dict(body["plan"])
        except (PlanError, ValueError) as exc:
            self.refused += 1
            return str(exc)
        self._topic[plan.id] = plan
        self._rebuild()
        return None

    def _rebuild(self) -> None:
        self._view = MappingProxyType({**self._files, **self._topic})


class RatePlanReader:
    """Follows `billing.rate-plans` from the beginning, outside any consumer group."""

    def __init__(
        self, bootstrap: str, book: PlanBook, security: Mapping[str, Any] | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.book = book
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
            **self.security,
        )

    async def start(self) -> None:
        c = self.new_consumer()
        await c.start()
        parts = c.partitions_for_topic(names.RATE_PLANS) or set()
        tps = [TopicPartition(names.RATE_PLANS, p) for p in sorted(parts)]
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
            for msgs in data.values():
                for m in msgs:
                    err = self.book.apply(m.key, m.value)
                    if err:
                        log.warning("rate plan record refused at offset %s: %s", m.offset, err)

    @staticmethod
    async def _at(c: AIOKafkaConsumer, tp: TopicPartition, end: int) -> bool:
        return bool(await c.position(tp) >= end)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
