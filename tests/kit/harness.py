"""One isolated charging run on a (possibly shared) broker and Redis, and where they are.

Isolation without per-test topics: the run gets its own Redis key prefix and consumer group,
the group starts at the current end of the input topics, outputs are read from the offsets
they had when the run began, and account ids carry the run's unique id.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from charger.events.timefmt import format_time_ms
from charger.kafka.admin import create_topics
from charger.protocol.fields import AccountField
from charger.protocol.keys import Keys
from charger.settings import Settings
from charger.store.client import RedisClient
from charger_tools.reading import answered, drain
from charger_topics import names
from tests.kit import records
from tests.kit.cluster import redis_for

# (topic, key, value) as Run.send_all takes it; a None value is a tombstone.
Item = tuple[str, str, dict[str, Any] | bytes | None]


@dataclass(frozen=True)
class Stack:
    """Where the broker and Redis of this test session are."""

    bootstrap: str
    redis_url: str
    kafka_owned: bool
    redis_owned: bool
    broker: str = "tansu"  # what the session started: "tansu", "kafka", or "external"

    @property
    def owned(self) -> bool:
        """True when both servers were started for this session and nobody else uses them."""
        return self.kafka_owned and self.redis_owned


def run_start_ms() -> int:
    """The wall clock now, in whole seconds: where a run's event times begin.

    Event times are relative to the run, never a fixed calendar date: a worker on the
    wall clock (the ticker, session TTLs) sees them as recent on any day the suite runs.
    """
    return time.time_ns() // 1_000_000_000 * 1000


@dataclass(frozen=True)
class Sent:
    """Where a record sent by the test landed, and its timestamp."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass
class Out:
    topic: str
    key: bytes | None
    value: bytes | None  # None: a null value (only a refused record's, on the DLQ)
    headers: dict[str, bytes] = field(default_factory=dict)  # the last value of each name
    header_list: list[tuple[str, bytes | None]] = field(default_factory=list)  # all, in order
    timestamp: int = 0
    offset: int = 0
    partition: int = 0

    def json(self) -> Any:
        assert self.value is not None, "a null value"
        return orjson.loads(self.value)


class Run:
    """One isolated run: settings, producing inputs, reading outputs and balances."""

    def __init__(self, bootstrap: str, redis_url: str, partitions: int | None = None) -> None:
        """A run on `bootstrap` and `redis_url` (a ``redis+cluster://`` URL: a cluster).

        `partitions` other than the contract's creates the topics with that many (on a
        broker where they do not exist yet) and sets CHARGER_PARTITIONS to match."""
        self.uid = uuid.uuid4().hex[:8]
        self.t0_ms = run_start_ms()
        self.t0 = format_time_ms(self.t0_ms)
        self.bootstrap = bootstrap
        self.redis_url = redis_url
        self.settings = Settings(
            kafka_bootstrap=bootstrap,
            redis_url=redis_url,  # type: ignore[arg-type]
            redis_prefix=f"t{self.uid}",
            group_id=f"g{self.uid}",
            batch_timeout_ms=20,
            **({} if partitions is None else {"partitions": partitions}),
        )
        self.partitions = partitions
        self.keys = Keys(self.settings.redis_prefix, self.settings.partitions)
        self.redis: RedisClient = redis_for(redis_url)
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        self.marks: dict[TopicPartition, int] = {}
        self.produced: dict[TopicPartition, int] = {}  # next offset after what we sent

    def at(self, seconds: float) -> str:
        """RFC 3339 time `seconds` after the run began (t0)."""
        return format_time_ms(self.t0_ms + round(seconds * 1000))

    def event(
        self, typ: str, account: str, event_id: str, time: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """An input record of `typ` for `account`; its time is t0 unless given."""
        return records.event(typ, account, event_id, time or self.t0, **fields)

    def acct(self, name: str) -> str:
        return f"{name}-{self.uid}"

    def settings_with(self, **changes: Any) -> Settings:
        """The run's settings with `changes` (tick_ms=0 for a hand-driven clock, say)."""
        # The URL is passed again as given: the dumped settings hold it parsed.
        return Settings(**{**self.settings.model_dump(), "redis_url": self.redis_url, **changes})

    def _group_consumer(self) -> AIOKafkaConsumer:
        """A consumer in the run's group that joins nothing: for reading and committing offsets."""
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.settings.group_id,
            enable_auto_commit=False,
        )

    def topic_partitions(self, topic: str) -> int:
        """How many partitions `topic` has in this run."""
        spec = names.TOPICS[topic]
        if self.partitions is None or spec.partitions == 1:
            return spec.partitions
        return self.partitions

    async def start(self) -> None:
        await create_topics(self.bootstrap, names.TOPICS.values(), self.partitions)
        await self.producer.start()
        c = self._group_consumer()
        await c.start()
        try:
            tps = [
                TopicPartition(t, p) for t in names.TOPICS for p in range(self.topic_partitions(t))
            ]
            # End offsets of the embedded broker lag behind multi-record batches: read
            # from them to the real end, so earlier runs' records stay out of this one.
            c.assign(tps)
            for tp, off in (await c.end_offsets(tps)).items():
                c.seek(tp, off)
            await drain(c, tps)
            self.marks = {tp: await c.position(tp) for tp in tps}
            inputs = {
                tp: OffsetAndMetadata(off, "")
                for tp, off in self.marks.items()
                if tp.topic in names.CO_PARTITIONED
            }
            await c.commit(inputs)
        finally:
            await c.stop()

    async def close(self) -> None:
        await self.producer.stop()
        await self.redis.aclose()

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            CHARGER_KAFKA_BOOTSTRAP=self.bootstrap,
            CHARGER_REDIS_URL=self.redis_url,
            CHARGER_REDIS_PREFIX=self.settings.redis_prefix,
            CHARGER_GROUP_ID=self.settings.group_id,
            CHARGER_BATCH_TIMEOUT_MS="20",
        )
        if self.partitions is not None:
            env["CHARGER_PARTITIONS"] = str(self.partitions)
        env.update(extra)
        return env

    # ---- inputs ----
    async def send(self, topic: str, account: str, value: dict[str, Any] | bytes) -> None:
        await self.send_all([(topic, account, value)])

    async def send_all(self, items: Iterable[Item]) -> None:
        """Send keyed records in order; a None value is sent as a null (a tombstone)."""
        futs = []
        for topic, account, value in items:
            raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
            futs.append(await self.producer.send(topic, raw, key=account.encode()))
        for md in await asyncio.gather(*futs):
            tp = TopicPartition(md.topic, md.partition)
            self.produced[tp] = max(self.produced.get(tp, 0), md.offset + 1)

    async def send_record(
        self,
        topic: str,
        key: str | None,
        value: dict[str, Any] | bytes | None,
        headers: list[tuple[str, bytes | None]] | None = None,
        timestamp_ms: int | None = None,
    ) -> Sent:
        """Send one record with `headers` (and a CreateTime of `timestamp_ms`); where it
        landed and its timestamp."""
        raw = value if value is None or isinstance(value, bytes) else orjson.dumps(value)
        timestamp_ms = self.t0_ms if timestamp_ms is None else timestamp_ms
        md = await (
            await self.producer.send(
                topic,
                raw,
                key=None if key is None else key.encode(),
                headers=headers or [],
                timestamp_ms=timestamp_ms,
            )
        )
        tp = TopicPartition(md.topic, md.partition)
        self.produced[tp] = max(self.produced.get(tp, 0), md.offset + 1)
        return Sent(md.topic, md.partition, md.offset, timestamp_ms)

    async def account(
        self,
        account: str,
        *,
        credit: int = 0,
        plan: str = "std-usd",
        currency: str = "USD",
        credit_limit: int = 0,
    ) -> None:
        upserted = records.account_upserted(
            self.t0,
            account,
            f"up-{account}",
            currency=currency,
            rate_plan=plan,
            credit_limit_micros=credit_limit,
        )
        await self.send(names.BILLING_ACCOUNTS, account, upserted)
        if credit:
            credited = records.balance_credited(
                self.t0, account, f"cr-{account}", amount_micros=credit, reference="opening"
            )
            await self.send(names.BILLING_ACCOUNTS, account, credited)

    # ---- outputs ----
    async def outputs(self, topic: str) -> list[Out]:
        """Everything on `topic` since the run began (for this run's accounts)."""
        c = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await c.start()
        try:
            tps = [tp for tp in self.marks if tp.topic == topic]
            c.assign(tps)
            ends = await c.end_offsets(tps)
            for tp in tps:
                c.seek(tp, self.marks[tp])
            out: list[Out] = []
            # The embedded broker's end offsets can lag behind batched writes: read until
            # past them *and* a fetch comes back empty.
            while True:
                ready = answered(c, tps)
                data = await c.getmany(timeout_ms=300)
                behind = [tp for tp in tps if await c.position(tp) < ends[tp]]
                if not data and not behind and ready:
                    break
                for msgs in data.values():
                    for m in msgs:
                        if m.key is None or self.uid.encode() in m.key:
                            listed = list(m.headers or ())
                            out.append(
                                Out(
                                    topic,
                                    m.key,
                                    m.value,
                                    dict(listed),  # type: ignore[arg-type]
                                    listed,
                                    m.timestamp,
                                    m.offset,
                                    m.partition,
                                )
                            )
            return out
        finally:
            await c.stop()

    async def ledger(self) -> list[dict[str, Any]]:
        return [o.json() for o in await self.outputs(names.LEDGER)]

    async def balance(self, account: str) -> int:
        v = await self.redis.hget(self.keys.account_of(account), AccountField.BALANCE)
        return int(v) if v is not None else 0

    async def committed(self) -> dict[TopicPartition, int]:
        """The group's committed offset of every input partition this run produced to."""
        c = self._group_consumer()
        await c.start()
        try:
            out = {}
            for tp in self.produced:
                if tp.topic not in names.CO_PARTITIONED:  # rate plans: read outside the group
                    continue
                done = await c.committed(tp)
                out[tp] = done if done is not None else self.marks[tp]
            return out
        finally:
            await c.stop()

    async def committed_lag(self) -> int:
        """Records this run produced to the inputs that its group has not committed yet.

        Counted from the offsets the broker acknowledged to our producer: the embedded
        broker's end-offset answer lags behind multi-record batches.
        """
        done = await self.committed()
        return sum(max(0, end - done[tp]) for tp, end in self.produced.items() if tp in done)

    async def wait_idle(self, timeout: float = 30.0) -> None:
        """Until every input is committed and every outbox is empty."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if await self.committed_lag() == 0 and await self.outbox_backlog() == 0:
                return
            await asyncio.sleep(0.1)
        raise TimeoutError(f"not idle after {timeout}s: lag {await self.committed_lag()}")

    async def outbox_backlog(self) -> int:
        total = 0
        for slot in range(self.keys.slots):
            total += await self.redis.xlen(self.keys.outbox(slot))
        return total


@contextlib.asynccontextmanager
async def started_run(
    bootstrap: str, redis_url: str, partitions: int | None = None
) -> AsyncIterator[Run]:
    """A started run on the given broker and Redis, closed afterwards."""
    run = Run(bootstrap, redis_url, partitions)
    await run.start()
    try:
        yield run
    finally:
        await run.close()
