"""The Redis adapter of the charging path: one read round trip and one apply round trip a batch."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from redis.asyncio import Redis

from charger.charging.ops import ScriptConfig, SlotPlan
from charger.charging.planner import Prepared
from charger.charging.records import AccountInfo, CallState, Reads
from charger.store import keys as F
from charger.store.keys import Keys
from charger.store.scripts import Scripts

OutboxEntry = tuple[bytes, dict[bytes, bytes]]


class RedisStore:
    """Reads what planning needs and applies planned batches with apply.lua."""

    def __init__(self, client: Redis, keys: Keys, cfg: ScriptConfig) -> None:
        self.client = client
        self.keys = keys
        self.scripts = Scripts(client)
        self.cfg = cfg

    async def read(self, p: Prepared) -> Reads:
        """Seen ids, uncached accounts and call sessions of a batch, in one pipeline."""
        reads = Reads()
        if not (p.seen_keys or p.account_keys or p.call_keys or p.request_fields):
            return reads
        pipe = self.client.pipeline(transaction=False)
        for keys in p.seen_keys.values():
            pipe.mget(keys)
        acct_keys = list(p.account_keys)
        for key in acct_keys:
            pipe.hmget(key, [F.CURRENCY, F.RATE_PLAN, F.CREDIT_LIMIT])
        for key in p.call_keys:
            pipe.hgetall(key)
        for key, fld in p.request_fields:
            pipe.hget(key, fld)
        res: list[Any] = await pipe.execute()
        i = 0
        for keys in p.seen_keys.values():
            reads.seen.update(zip(keys, res[i], strict=True))
            i += 1
        for key in acct_keys:
            cur, plan, climit = res[i]
            reads.accounts[key] = (
                None if cur is None else AccountInfo(cur.decode(), plan.decode(), int(climit))
            )
            i += 1
        for key in p.call_keys:
            reads.calls[key] = CallState.from_hash(res[i])
            i += 1
        for where in p.request_fields:
            reads.requests[where] = None if res[i] is None else res[i].decode()
            i += 1
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
        pipe = self.client.pipeline(transaction=False)
        for slot, sb in plan.slots.items():
            at = slot_now.get(slot, now_ms) if slot_now else now_ms
            keys, argv = sb.script_args(self.keys, at, self.cfg, highest)
            await self.scripts.apply(keys=keys, args=argv, client=pipe)
        res: list[list[int]] = await pipe.execute()
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
