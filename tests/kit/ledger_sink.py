"""The ledger sink for the tests: a database of its own per test, `charger ledger-sink` as a
real process, the ledger topic written and read, and the stored rows read back."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from charger.kafka.admin import create_topics
from charger_tools.embedded import free_port
from charger_tools.postgres import create_database
from charger_tools.processes import stop_process
from charger_tools.reading import drain
from charger_topics import names
from tests.kit.http import get_async
from tests.kit.waits import until


def fresh_database(server_url: str) -> str:
    """A new, empty database on the session's PostgreSQL; its URL."""
    return create_database(server_url, f"t_{uuid.uuid4().hex[:12]}")


@dataclass
class LedgerTopic:
    """billing.ledger of a (shared) broker: a sink group that starts at its current end,
    and records published to it."""

    bootstrap: str
    group_id: str

    @classmethod
    async def at_end(cls, bootstrap: str) -> LedgerTopic:
        """A new sink group whose committed offsets are the topic's current end, so the
        sink stores what this test publishes and nothing earlier runs left there."""
        topic = cls(bootstrap, f"sink-{uuid.uuid4().hex[:8]}")
        await create_topics(bootstrap, names.TOPICS.values())
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, group_id=topic.group_id, enable_auto_commit=False
        )
        await consumer.start()
        try:
            tps = [TopicPartition(names.LEDGER, p) for p in range(topic.partitions)]
            consumer.assign(tps)
            # The embedded broker's end offsets lag behind batched writes: read to the end.
            for tp, offset in (await consumer.end_offsets(tps)).items():
                consumer.seek(tp, offset)
            await drain(consumer, tps)
            ends = {tp: OffsetAndMetadata(await consumer.position(tp), "") for tp in tps}
            await consumer.commit(ends)
        finally:
            await consumer.stop()
        return topic

    @property
    def partitions(self) -> int:
        return names.TOPICS[names.LEDGER].partitions

    async def publish(self, entries: Iterable[tuple[str, bytes]]) -> None:
        """Publish (account, value) records keyed by account, in order, and wait for them."""
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            futures = [
                await producer.send(names.LEDGER, value, key=account.encode())
                for account, value in entries
            ]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()


class SinkProcess:
    """`charger ledger-sink` as a real process; its output is drained into `output`."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.web_port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "charger",
                "ledger-sink",
                "--web-port",
                str(self.web_port),
                *args,
            ],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.out = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out += line

    @property
    def output(self) -> str:
        return self.out.decode(errors="replace")

    def tail(self) -> str:
        return self.out[-3000:].decode(errors="replace")

    async def metrics(self) -> str:
        status, body = await get_async(f"http://127.0.0.1:{self.web_port}/metrics")
        return body.decode() if status == 200 else ""

    async def wait_ready(self, timeout: float = 60.0) -> None:
        async def ready() -> bool:
            status, _ = await get_async(f"http://127.0.0.1:{self.web_port}/ready", 2.0)
            return status == 200

        await until(
            ready,
            "the ledger sink is not ready",
            timeout,
            interval=0.2,
            process=self.proc,
            detail=self.tail,
        )

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)

    def stop(self, timeout: float = 30.0) -> int:
        code = stop_process(self.proc, timeout)
        self._reader.join(5)
        return code


def sink_env(bootstrap: str, database_url: str, group_id: str, **extra: str) -> dict[str, str]:
    return {
        "CHARGER_KAFKA_BOOTSTRAP": bootstrap,
        "CHARGER_DATABASE_URL": database_url,
        "CHARGER_SINK_GROUP_ID": group_id,
        "CHARGER_BATCH_TIMEOUT_MS": "20",
        **extra,
    }


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text page (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def rows(url: str, accounts: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored entries of `accounts` by entry id: their columns."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT entry_id, account, kind, amount_micros, balance_after_micros, currency,"
            " occurred_at, document, ledger_partition, ledger_offset"
            " FROM ledger_entries WHERE account = ANY(%s)",
            (list(accounts),),
        )
        names_ = [d.name for d in cur.description or ()]
        return {row[0]: dict(zip(names_, row, strict=True)) for row in await cur.fetchall()}


async def refused(url: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT reason, entry_id, ledger_partition, ledger_offset, detail, document"
            " FROM ledger_refused ORDER BY refused_id"
        )
        names_ = [d.name for d in cur.description or ()]
        return [dict(zip(names_, row, strict=True)) for row in await cur.fetchall()]
