"""Follows the output topics during the demo and tallies what the worker published."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from charger.events.timefmt import parse_time_ms
from charger.tasks import cancel_and_wait
from charger_topics import headers as header_names
from charger_topics import names

WATCHED = (
    names.LEDGER,
    names.DLQ,
    names.TELEPHONY_COMMANDS,
    names.NOTIFICATIONS,
    names.RECHARGE_REQUESTS,
    names.CHARGE_RESULTS,
)


@dataclass
class Tally:
    """What downstream readers saw, deduplicated by entry id as they are told to."""

    ledger_ids: set[str] = field(default_factory=set)
    ledger_sum: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ledger_count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_kind: dict[str, str] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    duplicates_seen: int = 0
    dlq: Counter[str] = field(default_factory=Counter)
    commands: Counter[str] = field(default_factory=Counter)
    suspended: set[str] = field(default_factory=set)
    restored: set[str] = field(default_factory=set)
    records: int = 0
    cutoff_lateness_ms: list[int] = field(default_factory=list)
    notifications: Counter[str] = field(default_factory=Counter)
    requests: list[dict[str, Any]] = field(default_factory=list)  # recharge requests seen
    charge_results: Counter[str] = field(default_factory=Counter)  # fee.applied / fee.refused
    fee_items: Counter[str] = field(default_factory=Counter)  # fee entries by item
    subscription_days: int = 0  # fee entries a subscription's schedule made

    def add(
        self, topic: str, value: bytes, headers: dict[str, bytes], timestamp_ms: int = 0
    ) -> None:
        self.records += 1
        if topic == names.DLQ:
            self.dlq[headers.get(header_names.ERROR, b"?").decode()] += 1
            return
        doc = orjson.loads(value)
        if topic == names.RECHARGE_REQUESTS:
            self.requests.append(doc)
            return
        if topic == names.CHARGE_RESULTS:
            self.charge_results[doc["type"]] += 1
            return
        if topic == names.NOTIFICATIONS:
            self.notifications[doc["type"]] += 1
            return
        if topic == names.TELEPHONY_COMMANDS:
            self.commands[doc["type"]] += 1
            if doc["type"] == "call.cutoff" and timestamp_ms:
                # published (record timestamp) minus the instant the credit ran out
                self.cutoff_lateness_ms.append(timestamp_ms - parse_time_ms(doc["cutoff_at"]))
            if doc["type"] == "account.suspended":
                self.suspended.add(doc["account"])
            elif doc["type"] == "account.restored":
                self.restored.add(doc["account"])
            return
        if doc["id"] in self.ledger_ids:
            self.duplicates_seen += 1
            return
        self.ledger_ids.add(doc["id"])
        acct = doc["account"]
        self.ledger_sum[acct] += doc["amount_micros"]
        self.ledger_count[acct] += 1
        self.last_kind[acct] = doc["kind"]
        self.kinds[doc["kind"]] += 1
        if doc["kind"] == "fee":
            self.fee_items[doc["item"]] += 1
            self.subscription_days += "subscription_id" in doc


class OutputTail:
    """Reads the ledger, DLQ and command topics from given offsets into a Tally."""

    def __init__(
        self,
        bootstrap: str,
        start: dict[TopicPartition, int],
        security: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security or {}  # charger.connections.kafka_security
        self.start_at = {tp: off for tp, off in start.items() if tp.topic in WATCHED}
        self.tally = Tally()
        self.idle = asyncio.Event()  # set after a fetch that returned nothing
        self._task: asyncio.Task[None] | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        c = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_poll_records=5000,
            **self.security,
        )
        await c.start()
        c.assign(list(self.start_at))
        for tp, off in self.start_at.items():
            c.seek(tp, off)
        self._consumer = c
        self._task = asyncio.create_task(self._follow())

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            data = await self._consumer.getmany(timeout_ms=200)
            if not data:
                self.idle.set()
                continue
            self.idle.clear()
            for tp, msgs in data.items():
                for m in msgs:
                    self.tally.add(tp.topic, m.value, dict(m.headers or ()), m.timestamp)

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until the tail has read everything published so far."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = -1
        while loop.time() < deadline:
            self.idle.clear()
            await asyncio.wait_for(self.idle.wait(), timeout=max(0.1, deadline - loop.time()))
            if self.tally.records == seen:
                return
            seen = self.tally.records
            await asyncio.sleep(0.3)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        if self._consumer is not None:
            await self._consumer.stop()
