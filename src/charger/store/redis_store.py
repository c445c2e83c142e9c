"""The Redis adapter of the charging path: one read round trip and one apply round trip a batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack  # type: ignore[import-untyped]
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from charger.charging.planner import Prepared
from charger.charging.records import AccountInfo, CallState, Reads
from charger.protocol.fields import ACCOUNT_SETTINGS_FIELDS, CALL_FIELDS
from charger.protocol.keys import Keys
from charger.protocol.ops import ScriptConfig, SlotPlan, Value
from charger.store.scripts import Scripts

OutboxEntry = tuple[bytes, dict[bytes, bytes]]


@dataclass(slots=True)
class _SlotReads:
    seen: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)


class RedisStore:
    """Reads what planning needs and applies planned batches with apply.lua."""

    def __init__(self, client: Redis, keys: Keys, cfg: ScriptConfig) -> None:
        self.client = client
        self.keys = keys
        self.scripts = Scripts(client)
        self.cfg = cfg

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

        def queue(pipe: Pipeline) -> None:
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
        highest: dict[str, int],
        now_ms: int,
        slot_now: Mapping[int, int] | None = None,
    ) -> tuple[int, int]:
        """Run apply.lua once per slot, all slots in one pipeline. Returns (applied, skipped).

        `slot_now` overrides the instant the script acts as of, per slot (the ticker's
        event-time horizon).
        """
        if not plan.slots:
            return 0, 0
        calls = []
        for slot, sb in plan.slots.items():
            at = slot_now.get(slot, now_ms) if slot_now else now_ms
            calls.append(sb.script_args(self.keys, at, self.cfg, highest))

        def queue(pipe: Pipeline) -> None:
            for keys, args in calls:
                self.scripts.apply(pipe, keys, args)

        res: list[list[int]] = await self.scripts.run(queue)
        return sum(r[0] for r in res), sum(r[1] for r in res)

    async def outbox(self, slots: Iterable[int], count: int) -> dict[int, list[OutboxEntry]]:
        """Up to `count` unrelayed outputs of each slot, oldest first."""
        slots = list(slots)
        pipe = self.client.pipeline(transaction=False)
        for slot in slots:
            pipe.xrange(self.keys.outbox(slot), count=count)
        res: list[list[OutboxEntry]] = await pipe.execute()
        return {slot: entries for slot, entries in zip(slots, res, strict=True) if entries}

    async def ack_outbox(self, done: dict[int, list[bytes]]) -> None:
        """Forget outputs that the broker acknowledged."""
        pipe = self.client.pipeline(transaction=False)
        for slot, ids in done.items():
            pipe.xdel(self.keys.outbox(slot), *ids)
        await pipe.execute()
