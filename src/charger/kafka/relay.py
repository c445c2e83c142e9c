"""The outbox relay: publishes what apply.lua wrote, then forgets it.

Outputs are written to a slot's outbox in the same Lua call that moves the money, so a
crash between "money moved" and "published" loses nothing: the next relay pass, in this
process or the next owner, publishes them. A crash after the broker acknowledged but before
the outbox entry was deleted publishes it again with the same deterministic id; readers
dedupe by id.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack  # type: ignore[import-untyped]
import orjson
from aiokafka.partitioner import murmur2

from charger.charging import ledger
from charger.events.timefmt import format_time_ms
from charger.metrics import Metrics
from charger.store.redis_store import OutboxEntry, RedisStore
from topics import names


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


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] | None
    kind: str


def _time(f: dict[bytes, bytes]) -> str:
    """The entry's time: an RFC 3339 string (`t`) or epoch milliseconds (`m`)."""
    t = f.get(b"t")
    return t.decode() if t is not None else format_time_ms(int(f[b"m"]))


def _json(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def _available(f: dict[bytes, bytes]) -> int:
    """The available balance of a floor entry (`b` in entries of earlier versions)."""
    return int(f[b"a"] if b"a" in f else f[b"b"])


def _effective(f: dict[bytes, bytes]) -> str:
    """When, in event time, the account crossed its floor: the moving record's time (`w`),
    epoch ms (`x`), or for entries of earlier versions their only time."""
    if b"w" in f:
        return f[b"w"].decode()
    if b"x" in f:
        return format_time_ms(int(f[b"x"]))
    return _time(f)


def _floor(typ: str, f: dict[bytes, bytes]) -> list[Output]:
    """account.suspended / account.restored, and the exhaustion notice with a suspension."""
    account, cause = f[b"k"].decode(), f[b"c"].decode()
    time = _time(f)  # `m`, when it was issued (`t` in entries of earlier versions)
    suspended = typ == "account.suspended"
    reason = "balance_exhausted" if suspended else "balance_above_floor"
    facts: dict[str, Any] = {"available_micros": _available(f), "effective_at": _effective(f)}
    if b"l" in f:  # a movement crossed the floor: the balance it left
        facts["balance_micros"] = int(f[b"l"])
    cmd = {
        "id": f"{cause}{typ}",
        "type": typ,
        "account": account,
        "time": time,
        "reason": reason,
        **facts,
    }
    out = [Output(names.TELEPHONY_COMMANDS, f[b"k"], _json(cmd), None, typ.split(".")[1])]
    if suspended:
        note: dict[str, Any] = {
            "id": f"{cause}balance_exhausted",
            "type": "balance_exhausted",
            "account": account,
            "time": time,
            "reason": reason,
            **facts,
        }
        if f.get(b"e"):
            note["email"] = f[b"e"].decode()
        out.append(Output(names.NOTIFICATIONS, f[b"k"], _json(note), None, "notification"))
    return out


def _cutoff(f: dict[bytes, bytes]) -> list[Output]:
    account, call_id = f[b"k"].decode(), f[b"c"].decode()
    base = {"account": account, "time": _time(f), "call_id": call_id, "reason": "balance_exhausted"}
    cmd = {
        "id": f"cutoff:{account}:{call_id}",
        "type": "call.cutoff",
        **base,
        "cutoff_at": format_time_ms(int(f[b"x"])),
    }
    note: dict[str, Any] = {
        "id": f"cutoff:{account}:{call_id}:notice",
        "type": "call_cut_off",
        **base,
    }
    if f.get(b"e"):
        note["email"] = f[b"e"].decode()
    return [
        Output(names.TELEPHONY_COMMANDS, f[b"k"], _json(cmd), None, "cutoff"),
        Output(names.NOTIFICATIONS, f[b"k"], _json(note), None, "notification"),
    ]


def _expired(f: dict[bytes, bytes]) -> list[Output]:
    account, call_id, time = f[b"k"].decode(), f[b"c"].decode(), _time(f)
    amount = int(f[b"a"])
    entry = {
        "id": f"ttl:{account}:{call_id}:session_expired",
        "type": "ledger.entry",
        "account": account,
        "time": time,
        "kind": "session_expired",
        "amount_micros": amount,
        "currency": f[b"u"].decode(),
        "source_event_id": f"ttl:{call_id}",
        "source_topic": "charger.sessions",
        "quantity": int(f[b"q"]),
        "unit": "second",
        "unit_price_micros": int(f[b"r"]),
        "call_id": call_id,
        "balance_after_micros": int(f[b"b"]),
    }
    note = {
        "id": f"ttl:{account}:{call_id}:notice",
        "type": "session_expired",
        "account": account,
        "time": time,
        "call_id": call_id,
        "charged_micros": -amount,
    }
    return [
        Output(names.LEDGER, f[b"k"], _json(entry), None, "ledger"),
        Output(names.NOTIFICATIONS, f[b"k"], _json(note), None, "notification"),
    ]


def _request(f: dict[bytes, bytes]) -> list[Output]:
    rid = f[b"i"].decode()
    doc = {
        "id": rid,
        "type": "recharge.requested",
        "account": f[b"k"].decode(),
        "time": _time(f),
        "request_id": rid,
        "amount_micros": int(f[b"a"]),
        "available_micros": int(f[b"b"]),
        "threshold_micros": int(f[b"h"]),
        "currency": f[b"u"].decode(),
    }
    if b"l" in f:
        doc["balance_micros"] = int(f[b"l"])
    return [Output(names.RECHARGE_REQUESTS, f[b"k"], _json(doc), None, "recharge_request")]


def _declined(f: dict[bytes, bytes]) -> list[Output]:
    """A declined recharge: the failure e-mail and a low-balance notice."""
    account, rid, time = f[b"k"].decode(), f[b"i"].decode(), _time(f)
    email = f.get(b"e", b"").decode()
    failed = {
        "id": f"{rid}:failed",
        "type": "recharge_failed",
        "account": account,
        "time": time,
        "email": email,
        "reason": f[b"r"].decode() or "declined",
        "request_id": rid,
    }
    low: dict[str, Any] = {
        "id": f"{rid}:low_balance",
        "type": "low_balance",
        "account": account,
        "time": time,
        "available_micros": int(f[b"b"]),
        "threshold_micros": int(f[b"h"]),
    }
    if email:
        low["email"] = email
    return [
        Output(names.NOTIFICATIONS, f[b"k"], _json(failed), None, "recharge_failed"),
        Output(names.NOTIFICATIONS, f[b"k"], _json(low), None, "notification"),
    ]


def unpack_entry(f: dict[bytes, bytes]) -> list[dict[bytes, bytes]]:
    """The outputs one outbox entry holds, in order.

    apply.lua writes the outputs of one call as one entry, a MessagePack list of flat
    field lists (`p`); an entry without `p` is a single output written as stream fields.
    Lua numbers come back as ints: fields are bytes either way.
    """
    packed = f.get(b"p")
    if packed is None:
        return [f]
    outs: list[dict[bytes, bytes]] = []
    for flat in msgpack.unpackb(packed, raw=True):
        pairs = zip(flat[0::2], flat[1::2], strict=True)
        outs.append({k: v if type(v) is bytes else str(v).encode() for k, v in pairs})
    return outs


def render(f: dict[bytes, bytes]) -> list[Output]:
    """Turn one compact outbox entry into the Kafka records it stands for."""
    op = f[b"o"]
    key = f.get(b"k") or None
    if op == b"L":
        return [Output(names.LEDGER, key, ledger.complete(f[b"v"], f[b"b"]), None, "ledger")]
    if op == b"S":
        return _floor("account.suspended", f)
    if op == b"R":
        return _floor("account.restored", f)
    if op == b"C":
        return _cutoff(f)
    if op == b"X":
        return _expired(f)
    if op == b"Q":
        return _request(f)
    if op == b"F":
        return _declined(f)
    if op == b"T":
        return []  # a request timed out: counted, nothing to publish
    if op == b"D":
        hdrs = orjson.loads(f[b"h"])
        return [
            Output(names.DLQ, key, f[b"v"], [(k, str(v).encode()) for k, v in hdrs.items()], "dlq")
        ]
    raise ValueError(f"unknown outbox entry {op!r}")


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
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.producer = producer
        self.chunk = chunk
        self.metrics = metrics
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
    ) -> tuple[list[asyncio.Future[Any]], list[tuple[dict[bytes, bytes], list[Output]]]]:
        """Hand every output of `batches` to the producer; the futures of their acks."""
        producer = self.producer
        futures: list[asyncio.Future[Any]] = []
        sent: list[tuple[dict[bytes, bytes], list[Output]]] = []
        open_batches: dict[tuple[str, int], Any] = {}
        try:
            for slot, entries in batches.items():
                for f in (f for _, packed in entries for f in unpack_entry(packed)):
                    outs = render(f)
                    sent.append((f, outs))
                    for out in outs:
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
                                    f"an output of {len(out.value)} bytes fits no batch"
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
            futures: list[asyncio.Future[Any]] = []
            sent: list[tuple[dict[bytes, bytes], list[Output]]] = []
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
            if self.metrics is not None:
                self.metrics.relayed(sent, time.time())
            await self.store.ack_outbox(
                {slot: [eid for eid, _ in e] for slot, e in batches.items()}
            )
            pending = {s for s, entries in batches.items() if len(entries) >= self.chunk}
        return counts


def _append(batch: Any, out: Output) -> bool:
    """Add `out` to a record batch; False when the batch is full."""
    meta = batch.append(timestamp=None, key=out.key, value=out.value, headers=out.headers or [])
    return meta is not None
