"""The Redis adapter of the charging path: one read round trip and one apply round trip a batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack  # type: ignore[import-untyped]

from charger.charging.planner import Prepared
from charger.charging.records import AccountInfo, CallState, Reads
from charger.protocol.fields import (
    ACCOUNT_SETTINGS_FIELDS,
    CALL_FIELDS,
    AccountField,
    SubscriptionField,
)
from charger.protocol.keys import Keys
from charger.protocol.ops import NO_WATERMARK, ScriptConfig, SlotPlan, Value
from charger.store.client import RedisClient, RedisPipeline
from charger.store.durability import REPLIES, Durability
from charger.store.scripts import Scripts

OutboxEntry = tuple[bytes, dict[bytes, bytes]]


@dataclass(slots=True)
class _SlotReads:
    seen: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)


class RedisForgot(Exception):
    """Redis no longer has records a batch follows on from: it lost writes (a failover to
    a replica that was behind, a restart from an older state). `marks` holds, per slot
    that applied nothing, each such source's watermark: what Redis still has."""

    def __init__(self, marks: dict[int, dict[str, int]]) -> None:
        super().__init__(f"Redis is behind in slots {sorted(marks)}: {marks}")
        self.marks = marks


class DueSubscription(NamedTuple):
    """A subscription the scheduler must look at, as `charging.scheduling` reads it."""

    slot: int
    key: str
    account_key: str
    fields: dict[bytes, bytes]
    time_zone: str
    currency: bytes


SUBSCRIPTION_ACCOUNT = SubscriptionField.ACCOUNT.value.encode()


class RedisStore:
    """Reads what planning needs and applies planned batches with apply.lua."""

    def __init__(
        self,
        client: RedisClient,
        keys: Keys,
        cfg: ScriptConfig,
        durability: Durability | None = None,
    ) -> None:
        self.client = client
        self.keys = keys
        self.scripts = Scripts(client)
        self.cfg = cfg
        self.durability = durability or Durability()

    async def read(self, p: Prepared) -> Reads:
        """Seen ids, uncached accounts, call sessions and request states of a batch:
        one read.lua call per slot, all slots in one pipeline."""
        reads = Reads()
        if not (p.seen_keys or p.account_keys or p.call_keys or p.request_fields):
            return reads
        slot_of = self.keys.slot_of_key
        by_slot: dict[int, _SlotReads] = {}

        def of(slot: int) -> _SlotReads:
            sr = by_slot.get(slot)
            if sr is None:
                sr = by_slot[slot] = _SlotReads()
            return sr

        for slot, seen in p.seen_keys.items():
            of(slot).seen = seen
        for key in p.account_keys:
            of(slot_of(key)).accounts.append(key)
        for key in p.call_keys:
            of(slot_of(key)).calls.append(key)
        for key, fld in p.request_fields:
            of(slot_of(key)).requests.append((key, fld))
        calls: list[tuple[list[str], list[Value]]] = []
        for slot, sr in by_slot.items():
            requests = [x for pair in sr.requests for x in pair]
            packed = msgpack.packb([sr.seen, sr.accounts, sr.calls, requests], use_bin_type=False)
            calls.append(([self.keys.watermark(slot)], [packed]))

        def queue(pipe: RedisPipeline) -> None:
            for keys, args in calls:
                self.scripts.read(pipe, keys, args)

        res: list[list[list[Any]]] = await self.scripts.run(queue)
        n, m = len(CALL_FIELDS), len(ACCOUNT_SETTINGS_FIELDS)
        for sr, (seen_vals, acct_vals, call_vals, req_vals) in zip(
            by_slot.values(), res, strict=True
        ):
            reads.seen.update(zip(sr.seen, seen_vals, strict=True))
            for i, key in enumerate(sr.accounts):
                currency, rate_plan, credit_limit = acct_vals[m * i : m * i + m]
                reads.accounts[key] = (
                    None
                    if currency is None
                    else AccountInfo(currency.decode(), rate_plan.decode(), int(credit_limit))
                )
            for i, key in enumerate(sr.calls):
                reads.calls[key] = CallState.from_fields(call_vals[n * i : n * i + n])
            for where, val in zip(sr.requests, req_vals, strict=True):
                reads.requests[where] = None if val is None else val.decode()
        return reads

    async def apply(
        self,
        plan: SlotPlan,
        highest: Mapping[str, int],
        now_ms: int,
        slot_now: Mapping[int, int] | None = None,
        expected: Mapping[str, int] | None = None,
        wait: bool = True,
    ) -> tuple[int, int]:
        """Run apply.lua once per slot, all slots in one pipeline. Returns (applied, skipped).

        `slot_now` overrides the instant the script acts as of, per slot (the ticker's
        event-time horizon). `expected` is, per source, the offset its watermark must have
        reached already; a slot whose watermark is behind applies nothing, and once the
        other slots are applied `RedisForgot` says which and how far they got.

        With durability settings the pipeline ends with a wait for replicas; too few
        acknowledgements raise `NotDurable` (before `RedisForgot`: nothing of the batch
        may count as done then). `wait=False` leaves it out where nothing is committed on
        the strength of the call (the ticker: the relay waits before it publishes).
        """
        if not plan.slots:
            return 0, 0
        calls = []
        for slot, sb in plan.slots.items():
            at = slot_now.get(slot, now_ms) if slot_now else now_ms
            calls.append(sb.script_args(self.keys, at, self.cfg, highest, expected))
        durability = self.durability if wait else Durability()

        def queue(pipe: RedisPipeline) -> None:
            for keys, args in calls:
                self.scripts.apply(pipe, keys, args)
            durability.queue(pipe)  # on the same connection: WAIT counts its writes

        res: list[list[Any]] = await self.scripts.run(queue)
        if durability.waits:
            durability.check("apply", res)
            res = res[:-REPLIES]
        applied, skipped = sum(r[0] for r in res), sum(r[1] for r in res)
        forgotten: dict[int, dict[str, int]] = {}
        for slot, reply in zip(plan.slots, res, strict=True):
            if len(reply) > 2:
                marks = reply[2]
                forgotten[slot] = {
                    marks[i].decode(): int(marks[i + 1]) for i in range(0, len(marks), 2)
                }
        if forgotten:
            raise RedisForgot(forgotten)
        return applied, skipped

    async def due_subscriptions(
        self, slot_now: Mapping[int, int], count: int
    ) -> list[DueSubscription]:
        """Up to `count` subscriptions per slot whose next look is due at the slot's now,
        with their account's time zone and currency."""
        slots = list(slot_now)
        pipe = self.client.pipeline(transaction=False)
        for slot in slots:
            pipe.zrangebyscore(
                self.keys.subscriptions(slot), "-inf", slot_now[slot], start=0, num=count
            )
        found: list[list[bytes]] = await pipe.execute()
        due = [
            (slot, key.decode()) for slot, keys in zip(slots, found, strict=True) for key in keys
        ]
        if not due:
            return []
        pipe = self.client.pipeline(transaction=False)
        for _, key in due:
            pipe.hgetall(key)
        hashes: list[dict[bytes, bytes]] = await pipe.execute()
        accounts = [
            self.keys.account(slot, fields.get(SUBSCRIPTION_ACCOUNT, b"").decode())
            for (slot, _), fields in zip(due, hashes, strict=True)
        ]
        pipe = self.client.pipeline(transaction=False)
        for account_key in accounts:
            pipe.hmget(account_key, AccountField.TIME_ZONE.value, AccountField.CURRENCY.value)
        settings: list[list[bytes | None]] = await pipe.execute()
        return [
            DueSubscription(slot, key, account_key, fields, (zone or b"UTC").decode(), currency)
            for (slot, key), fields, account_key, (zone, currency) in zip(
                due, hashes, accounts, settings, strict=True
            )
            if fields and currency is not None  # gone, or its account is
        ]

    async def watermarks(self, where: Mapping[int, list[str]]) -> dict[str, int]:
        """The last applied offset of each source, read from the slot it is applied in
        (`where`: slot -> sources); NO_WATERMARK for a source the slot has none of."""
        pairs = [(slot, source) for slot, sources in where.items() for source in sources]
        pipe = self.client.pipeline(transaction=False)
        for slot, source in pairs:
            pipe.hget(self.keys.watermark(slot), source)
        values: list[bytes | None] = await pipe.execute()
        return {
            source: NO_WATERMARK if value is None else int(value)
            for (_, source), value in zip(pairs, values, strict=True)
        }

    async def start_watermarks(self, starts: Mapping[int, Mapping[str, int]]) -> int:
        """At assignment: each source a slot has no watermark of gets the offset before the
        one the group will read next (`starts`: slot -> source -> that offset). Returns how
        many were written.

        Without it a slot's first records of a source leave the only watermark of it, and a
        Redis that forgot them would look never read from that source: nothing would be
        applied again. Written like a batch, to the durability asked, before any record is
        fetched; a watermark already there is kept (it is the authority)."""
        pairs = [
            (slot, source, offset)
            for slot, sources in starts.items()
            for source, offset in sources.items()
        ]
        if not pairs:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for slot, source, offset in pairs:
            pipe.hsetnx(self.keys.watermark(slot), source, offset - 1)
        durability = self.durability
        durability.queue(pipe)
        replies: list[Any] = await pipe.execute()
        if durability.waits:
            durability.check("apply", replies)
            replies = replies[:-REPLIES]
        return sum(int(reply) for reply in replies)

    async def outbox(self, slots: Iterable[int], count: int) -> dict[int, list[OutboxEntry]]:
        """Up to `count` unrelayed outputs of each slot, oldest first."""
        slots = list(slots)
        pipe = self.client.pipeline(transaction=False)
        for slot in slots:
            pipe.xrange(self.keys.outbox(slot), count=count)
        res: list[list[OutboxEntry]] = await pipe.execute()
        return {slot: entries for slot, entries in zip(slots, res, strict=True) if entries}

    async def make_durable(self, slots: Iterable[int]) -> None:
        """Before outputs read from `slots` are published: wait until the replicas have
        them. They may have been written by another connection (a previous owner, a
        concurrent tick), so one write per slot goes first and the wait follows it:
        replication is in order, so what was read before that write is covered too."""
        durability = self.durability
        if not durability.waits:
            return
        pipe = self.client.pipeline(transaction=False)
        for slot in slots:
            pipe.incr(self.keys.relay_probe(slot))
        durability.queue(pipe)
        durability.check("relay", await pipe.execute())

    async def ack_outbox(self, done: dict[int, list[bytes]]) -> None:
        """Forget outputs that the broker acknowledged."""
        pipe = self.client.pipeline(transaction=False)
        for slot, ids in done.items():
            pipe.xdel(self.keys.outbox(slot), *ids)
        await pipe.execute()
