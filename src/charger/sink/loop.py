"""`charger ledger-sink`'s loop: billing.ledger into PostgreSQL, one transaction per batch.

Each fetched batch is stored in one database transaction (`postgres.ledger_store`); its
offsets are committed only once that transaction has committed. A crash in between reads
the batch again, and the store finds every entry already there (`duplicate`): entries are
keyed by their id, so the database holds each once whatever is replayed or republished.
Any failure — PostgreSQL or the broker away, a commit refused after a rebalance — rewinds
the batch to its first offsets; then the loop's `charger.deps.Retrier` (the worker's loops
use the same) counts the error by dependency, logs it and backs off
(`CHARGER_RETRY_BACKOFF_*`) before the batch is fetched again. The loop never ends on one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaTimeoutError

from charger.connections import kafka_security
from charger.deps import Retrier, backoff_for
from charger.metrics import SinkMetrics
from charger.postgres.connect import connect
from charger.postgres.ledger_store import BatchReport, LedgerRecord, store_batch
from charger.postgres.migrate import SchemaError, migrate, migrations, schema_version
from charger.settings import Settings
from charger.statements.entries import Verdict
from charger_topics import names

__all__ = ["LedgerSink"]

log = logging.getLogger("charger.sink")

# The Retrier's stage: its log lines read `ledger batch failed …`, `… recovered`.
STAGE = "ledger batch"
# How long an offset commit may wait for the broker before the batch is rewound.
COMMIT_TIMEOUT_S = 10.0
# How often lag is sampled, and the database asked whether it answers while idle.
SAMPLE_EVERY_S = 1.0
PING_EVERY_S = 5.0
# Liveness: how long the loop may go without fetching.
STALL_S = 60.0
_LOGGED_IDS = 10  # ids named in one log line of a batch


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, sink: LedgerSink) -> None:
        self.sink = sink

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        # The batch in hand finishes (and commits) first; the next owner reads the rest.
        async with self.sink.lock:
            self.sink.metrics.set_lag({})

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.sink.sampled_at = 0.0


class LedgerSink:
    """Consumes billing.ledger in batches into the statement store."""

    def __init__(self, settings: Settings, metrics: SinkMetrics, *, migrate: bool = True) -> None:
        self.settings = settings
        self.metrics = metrics
        self.run_migrations = migrate
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self.conn: psycopg.AsyncConnection[Any] | None = None
        self.retry = Retrier(STAGE, metrics, backoff_for(settings), log)
        self.started = False
        self.polled_at = time.monotonic()
        self.sampled_at = 0.0
        self.pinged_at = time.monotonic()
        self.batches = 0
        self.stored = 0
        self._stopping = asyncio.Event()

    # ---- lifecycle ----
    async def start(self) -> None:
        """Connect to PostgreSQL (migrating its schema) and join the sink's group.

        Fails at once when either cannot be reached: the command says so in one line."""
        self.conn = await self._connect()
        s = self.settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.sink_group_id,
            client_id=f"{s.client_id}-ledger-sink",
            enable_auto_commit=False,
            # A new group stores the ledger from its beginning (billing.ledger keeps it all).
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max_records,
            fetch_max_wait_ms=s.fetch_wait_ms,
            session_timeout_ms=s.session_timeout_ms,
            heartbeat_interval_ms=min(1_000, s.session_timeout_ms // 3),
            rebalance_timeout_ms=s.rebalance_timeout_ms,
            isolation_level="read_committed",
            **kafka_security(s),
        )
        self.consumer.subscribe([names.LEDGER], listener=_Rebalance(self))
        await self.consumer.start()
        self.started = True

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await connect(self.settings, "ledger-sink", autocommit=True)
        try:
            if self.run_migrations:
                await migrate(conn)
            else:
                have, need = await schema_version(conn), len(migrations())
                if have < need:
                    raise SchemaError(
                        f"the database's schema is at version {have}, this build needs {need}: "
                        "run charger ledger-sink once with migrations on"
                    )
        except BaseException:
            await conn.close()
            raise
        return conn

    def request_stop(self) -> None:
        """Stop after the batch in hand (SIGTERM): it is stored and committed first."""
        self._stopping.set()

    async def stop(self) -> None:
        self._stopping.set()
        async with self.lock:
            if self.consumer is not None:
                await self.consumer.stop()
                self.consumer = None
            if self.conn is not None:
                await self.conn.close()
                self.conn = None

    # ---- the loop ----
    async def run(self) -> None:
        """Store batches until asked to stop."""
        while not self._stopping.is_set():
            await self.run_once()

    async def run_once(self) -> int:
        """Fetch one batch and store it; returns how many records it held (0 on failure)."""
        assert self.consumer is not None
        data: Mapping[TopicPartition, Sequence[ConsumerRecord]] = {}
        try:
            data = await self.consumer.getmany(
                timeout_ms=self.settings.batch_timeout_ms,
                max_records=self.settings.batch_max_records,
            )
            self.polled_at = time.monotonic()
            n = await self._handle(data) if data else 0
            if not data:
                await self._ping_when_due()
            await self._sample_when_due()
        except Exception as exc:
            if self._stopping.is_set() and self.consumer is None:
                return 0  # stopped under the fetch: not a fault
            self._rewind(data)
            await self.retry.failed(exc, self._stopping)
            return 0
        self.retry.succeeded()
        return n

    async def _handle(self, data: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> int:
        async with self.lock:
            if self.consumer is None:
                return 0
            records = [
                LedgerRecord(tp.partition, m.offset, m.value)
                for tp, msgs in data.items()
                for m in msgs
            ]
            conn = await self._connection()
            started = time.perf_counter()
            async with conn.transaction():
                report = await store_batch(conn, records)
            self.metrics.batch_commit.observe(time.perf_counter() - started)
            # Only now, with the entries committed, may the group move past them.
            await self._commit({tp: msgs[-1].offset + 1 for tp, msgs in data.items()})
            self.metrics.last_commit.set(time.time())
            self.metrics.batch_size.observe(len(records))
            self.batches += 1
            self.stored += report.results[Verdict.STORED]
            self._report(report)
            return len(records)

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        """The connection, opened again when an outage broke it."""
        if self.conn is None or self.conn.closed or self.conn.broken:
            if self.conn is not None:
                await self.conn.close()
            self.conn = await self._connect()
        return self.conn

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        # aiokafka waits for the coordinator as long as the broker is away: bound it.
        try:
            await asyncio.wait_for(self.consumer.commit(offsets), COMMIT_TIMEOUT_S)
        except TimeoutError as exc:
            raise KafkaTimeoutError(
                f"offset commit not acknowledged within {COMMIT_TIMEOUT_S:g} s"
            ) from exc

    def _report(self, report: BatchReport) -> None:
        for verdict, n in report.results.items():
            self.metrics.records.labels(str(verdict)).inc(n)
        for refusal in report.refused:
            log.error(
                "ledger record refused",
                extra={
                    "reason": str(refusal.reason),
                    "entry_id": refusal.entry_id,
                    "account": refusal.account,
                    "partition": refusal.partition,
                    "offset": refusal.offset,
                    "detail": refusal.detail,
                },
            )
        if report.recreated:
            log.info(
                "entries re-created with another balance after; the first is kept",
                extra={"count": len(report.recreated), "entry_ids": report.recreated[:_LOGGED_IDS]},
            )

    # ---- failures ----
    def _rewind(self, data: Mapping[TopicPartition, Sequence[ConsumerRecord]]) -> None:
        """Fetch the failed batch again: nothing of it was committed."""
        consumer = self.consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        for tp, msgs in data.items():
            # A partition taken by a rebalance meanwhile starts from its committed offset
            # at its next owner.
            if tp in assigned and msgs:
                consumer.seek(tp, msgs[0].offset)

    # ---- sampling and status ----
    async def _sample_when_due(self) -> None:
        now = time.monotonic()
        if now - self.sampled_at < SAMPLE_EVERY_S or self.consumer is None:
            return
        self.sampled_at = now
        consumer = self.consumer
        lags: dict[tuple[str, int], int] = {}
        for tp in consumer.assignment():
            end = consumer.highwater(tp)
            try:
                position = await asyncio.wait_for(consumer.position(tp), 0.5)
            except (TimeoutError, IllegalStateError):
                continue
            if end is not None:
                lags[(tp.topic, tp.partition)] = end - position
        self.metrics.set_lag(lags)

    async def _ping_when_due(self) -> None:
        """While idle, ask the database now and then: an outage shows before the next batch."""
        now = time.monotonic()
        if now - self.pinged_at < PING_EVERY_S:
            return
        self.pinged_at = now
        async with self.lock:
            conn = await self._connection()
            await conn.execute("SELECT 1")

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Liveness: the loop fetches (idle counts), or backs off and so comes back."""
        age = time.monotonic() - self.polled_at
        ok = age < STALL_S + self.retry.backoff.max_s
        return ok, {"status": "ok" if ok else "stalled", "last_poll_age_s": round(age, 3)}

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Readiness: joined, and the last batch or ping went through."""
        consumer = self.consumer
        assigned = len(consumer.assignment()) if consumer is not None else 0
        ok = self.started and self.retry.failing_since is None
        return ok, {
            "ready": ok,
            "assigned_partitions": assigned,
            "batches": self.batches,
            "stored": self.stored,
        }
