"""The outbox relay: publishes what apply.lua wrote, then forgets it.

Outputs are written to a slot's outbox in the same Lua call that moves the money, so a
crash between "money moved" and "published" loses nothing: the next relay pass, in this
process or the next owner, publishes them. A crash after the broker acknowledged but before
the outbox entry was deleted publishes it again with the same deterministic id; readers
dedupe by id.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from charger.charging import ledger
from charger.store.redis_store import OutboxEntry, RedisStore
from topics import names


class Producer(Protocol):
    async def send(
        self, topic: str, value: bytes | None = ..., key: bytes | None = ..., headers: Any = ...
    ) -> asyncio.Future[Any]: ...


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None
    kind: str


def _command(typ: str, f: dict[bytes, bytes]) -> bytes:
    cause = f[b"c"].decode()
    return orjson.dumps(
        {
            "id": f"{cause}{typ}",
            "type": typ,
            "account": f[b"k"].decode(),
            "time": f[b"t"].decode(),
            "reason": "balance_exhausted" if typ == "account.suspended" else "balance_above_floor",
            "balance_micros": int(f[b"b"]),
        }
    )


def render(f: dict[bytes, bytes]) -> Output:
    """Turn one compact outbox entry into the Kafka record it stands for."""
    op = f[b"o"]
    key = f.get(b"k") or None
    if op == b"L":
        value = ledger.complete(f[b"v"], f[b"b"])
        return Output(names.LEDGER, key, value, None, "ledger")
    if op == b"S":
        return Output(
            names.TELEPHONY_COMMANDS, key, _command("account.suspended", f), None, "suspended"
        )
    if op == b"R":
        return Output(
            names.TELEPHONY_COMMANDS, key, _command("account.restored", f), None, "restored"
        )
    if op == b"D":
        hdrs = orjson.loads(f[b"h"])
        return Output(
            names.DLQ, key, f[b"v"], [(k, str(v).encode()) for k, v in hdrs.items()], "dlq"
        )
    raise ValueError(f"unknown outbox entry {op!r}")


@dataclass
class RelayStats:
    published: Counter[str] = field(default_factory=Counter)
    ledger_values: list[bytes] = field(default_factory=list)


class Relay:
    """Publishes slot outboxes to Kafka in order and deletes what the broker acknowledged."""

    def __init__(self, store: RedisStore, producer: Producer, chunk: int = 5000) -> None:
        self.store = store
        self.producer = producer
        self.chunk = chunk

    async def drain(self, slots: Iterable[int]) -> Counter[str]:
        """Publish everything pending in `slots`; returns counts by output kind."""
        counts: Counter[str] = Counter()
        pending = set(slots)
        while pending:
            batches = await self.store.outbox(pending, self.chunk)
            if not batches:
                break
            futures: list[asyncio.Future[Any]] = []
            done: dict[int, list[bytes]] = {}
            for slot, entries in batches.items():
                done[slot] = [eid for eid, _ in entries]
                for out in map(render, (f for _, f in entries)):
                    fut = await self.producer.send(
                        out.topic, value=out.value, key=out.key, headers=out.headers
                    )
                    futures.append(fut)
                    counts[out.kind] += 1
            await asyncio.gather(*futures)
            await self.store.ack_outbox(done)
            pending = {s for s, entries in batches.items() if len(entries) >= self.chunk}
        return counts


def entries_of(batches: dict[int, list[OutboxEntry]]) -> int:
    return sum(len(v) for v in batches.values())
