"""The ticker under 100,000 active calls, and what accounts and calls cost in Redis memory.

Accounts and calls are set up directly through `RedisStore.apply` with the 'A', 'U' and 'S'
ops the planner would emit (every balance far above anything a call can hold, so nothing
is cut), then the 'T' op is driven in 100 ms steps of simulated time as fast as it goes:
the same call per slot, and the same relay pass, that the worker's ticker makes.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from redis.asyncio import Redis

from charger.charging import ledger
from charger.kafka.relay import Relay
from charger.protocol.fields import AccountField
from charger.protocol.keys import Keys, slot_of
from charger.protocol.ops import Move, Op, SlotPlan, StartCall, UpsertAccount
from charger.rating import load_plans
from charger.runtime import default_plans_path, script_config
from charger.store.redis_store import RedisStore
from charger_tools.bench.proc import (
    redis_command_calls,
    redis_commands,
    redis_cpu_seconds,
    redis_used_memory,
)
from charger_tools.bench.report import percentile
from charger_tools.bench.runs import Env
from charger_tools.bench.workload import OPENING_MICROS, clear_outboxes, sim_config
from charger_tools.simulate.model import account_profiles, destination, format_time
from charger_topics import names

SETUP_CHUNK = 8000
# Every call billed per second: each is re-held once per hold interval, the ticker's
# heaviest plan (60-second increments are re-held six times less often).
TICK_PLAN = "pro-usd"


class NullProducer:
    """The relay's producer for this run: counts what would be published (nothing, here)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None
    ) -> asyncio.Future[Any]:
        self.sent += 1
        return _done()

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.sent += batch.n
        return _done()

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(8))


class _Batch:
    def __init__(self) -> None:
        self.n = 0

    def append(self, **_: Any) -> bool:
        self.n += 1
        return True

    def record_count(self) -> int:
        return self.n


def _done() -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    fut.set_result(None)
    return fut


class Setup:
    """Plans ops with increasing offsets of one source per slot, applied in chunks."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.keys = store.keys
        self.offsets: dict[str, int] = {}
        self.plan = SlotPlan()
        self.pending = 0

    def _source(self, slot: int) -> tuple[str, int]:
        source = f"bench.setup/{slot}"
        offset = self.offsets.get(source, -1) + 1
        self.offsets[source] = offset
        return source, offset

    def add(self, slot: int, op: Op) -> None:
        source, offset = self._source(slot)
        self.plan.slot(slot).add(source, offset, op)
        self.pending += 1

    async def flush(self, now_ms: int) -> None:
        if self.pending:
            highest = {src: off for src, off in self.offsets.items()}
            await self.store.apply(self.plan, highest, now_ms)
        self.plan, self.pending = SlotPlan(), 0


async def run_tick(
    env: Env, calls: int, seconds: float, warmup_s: float = 10.0, seed: int = 7
) -> dict[str, Any]:
    prefix, _ = env.new("tick")
    s = env.settings(prefix, "bench-tick")
    keys = Keys(prefix, s.partitions)
    redis = Redis.from_url(env.redis_url)
    store = RedisStore(redis, keys, script_config(s))
    try:
        start = time.time_ns() // 1_000_000
        profiles = account_profiles(sim_config(seed, start))
        setup = Setup(store)
        when = format_time(start)
        mem0 = await redis_used_memory(redis)
        for p in profiles:
            slot, akey = slot_of(p.id, keys.slots), keys.account_of(p.id)
            up, cr = f"up-{p.id}", f"cr-{p.id}"
            setup.add(
                slot,
                UpsertAccount(
                    akey,
                    keys.seen(slot, "ac", up),
                    up,
                    p.id,
                    p.currency,
                    p.rate_plan,
                    0,
                    0,
                    0,
                    0,
                    p.notify_email,
                    up,
                    when,
                ),
            )
            head = ledger.ledger_head(
                entry=ledger.entry_id("ac", cr, "topup"),
                account=p.id,
                time=when,
                kind="topup",
                amount_micros=OPENING_MICROS,
                currency=p.currency,
                source_event_id=cr,
                source_topic=names.BILLING_ACCOUNTS,
                quantity=1,
                unit="payment",
                unit_price_micros=OPENING_MICROS,
            )
            setup.add(
                slot,
                Move(
                    akey,
                    keys.seen(slot, "ac", cr),
                    cr,
                    OPENING_MICROS,
                    head,
                    "topup",
                    p.id,
                    ledger.entry_id("ac", cr, ""),
                    when,
                ),
            )
            if setup.pending >= SETUP_CHUNK:
                await setup.flush(start)
        await setup.flush(start)
        await clear_outboxes(redis, keys)
        mem1 = await redis_used_memory(redis)
        sample_account = await _avg_usage(redis, [keys.account_of(p.id) for p in profiles[:500]])

        plan = load_plans(default_plans_path())[TICK_PLAN]
        rng = random.Random(seed)
        cfg = sim_config(seed, start)
        call_keys: list[str] = []
        for i in range(calls):
            p = profiles[i % len(profiles)]
            slot = slot_of(p.id, keys.slots)
            to = destination(cfg, rng)
            rate = plan.voice_rate("outbound", to)
            assert rate is not None
            call_id, event_id = f"call-b{i}", f"start-b{i}"
            ckey = keys.call(slot, p.id, call_id)
            call_keys.append(ckey)
            setup.add(
                slot,
                StartCall(
                    keys.account_of(p.id),
                    keys.seen(slot, "ev", event_id),
                    ckey,
                    keys.account_calls(slot, p.id),
                    event_id,
                    call_id,
                    start - rng.randrange(10_000),  # answered within the last interval
                    "outbound",
                    p.number,
                    to,
                    p.id,
                    rate.per_minute_micros,
                    rate.connect_fee_micros,
                    rate.increments.first,
                    rate.increments.next,
                    rate.prefix,
                    plan.id,
                    plan.version,
                ),
            )
            if setup.pending >= SETUP_CHUNK:
                await setup.flush(start)
        await setup.flush(start)
        mem2 = await redis_used_memory(redis)
        sample_call = await _avg_usage(redis, call_keys[:500])
        active = sum([await redis.zcard(keys.sessions(slot)) for slot in range(keys.slots)])

        result = await _drive(store, s.tick_max_sessions, start, seconds, warmup_s)
        held = await redis.hget(keys.account_of(profiles[0].id), AccountField.HELD)
    finally:
        await redis.aclose()
    return {
        "active_sessions": active,
        **result,
        "held_sample_micros": int(held or 0),
        "plan": f"{TICK_PLAN}: per-second increments, hold interval {s.hold_interval_s}s",
        "memory": {
            "bytes_per_account": round((mem1 - mem0) / len(profiles)),
            "bytes_per_active_call": round((mem2 - mem1) / calls),
            "account_hash_bytes": sample_account,
            "call_hash_bytes": sample_call,
            "accounts": len(profiles),
            "calls": calls,
            "note": "INFO used_memory deltas: hashes, set/zset members, dedupe ids",
        },
    }


async def _avg_usage(redis: Redis, keys: list[str]) -> int:
    pipe = redis.pipeline(transaction=False)
    for k in keys:
        pipe.memory_usage(k)
    sizes = [int(x or 0) for x in await pipe.execute()]
    return round(sum(sizes) / max(1, len(sizes)))


async def _drive(
    store: RedisStore, max_sessions: int, start: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """Tick every slot in 100 ms steps of simulated time; measure after the warm-up."""
    slots = list(range(store.keys.slots))
    producer = NullProducer()
    relay = Relay(store, producer)
    step = 100
    now = start

    async def tick() -> tuple[int, int]:
        plan = SlotPlan()
        for slot in slots:
            plan.slot(slot).add_tick(max_sessions)
        looked, cuts = await store.apply(plan, {}, now)
        await relay.drain(slots)
        return looked, cuts

    for _ in range(int(warmup_s * 1000 / step)):
        now += step
        await tick()
    client = store.client
    if not isinstance(client, Redis):  # INFO below counts the commands of one server
        raise TypeError("the ticker benchmark measures one Redis server, not a cluster")
    n = int(seconds * 1000 / step)
    walls: list[float] = []
    looked_total = cuts_total = 0
    client_cmds = ("evalsha", "eval", "xrange", "xdel")  # what the ticker sends itself
    sent0 = await redis_command_calls(client, client_cmds)
    cmd0 = await redis_commands(client)
    rcpu0 = await redis_cpu_seconds(client)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        now += step
        t = time.perf_counter()
        looked, cuts = await tick()
        walls.append((time.perf_counter() - t) * 1000)
        looked_total += looked
        cuts_total += cuts
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    rcpu = await redis_cpu_seconds(client) - rcpu0
    calls = (await redis_commands(client)) - cmd0 - 3  # less the INFO calls in between
    sent = await redis_command_calls(client, client_cmds) - sent0
    simulated = n * step / 1000
    p50, p99 = percentile(walls, 50), percentile(walls, 99)
    return {
        "sessions_held_per_s": round(looked_total / simulated),
        "redis_calls_per_tick": round(sent / n, 1),
        "redis_round_trips_per_tick": 2,
        "redis_commands_per_tick_inside_scripts": round((calls - sent) / n, 1),
        "tick_wall_ms_p50": round(p50, 2) if p50 is not None else None,
        "tick_wall_ms_p99": round(p99, 2) if p99 is not None else None,
        "cpu_share_worker": round(cpu / simulated, 4),
        "cpu_share_redis": round(rcpu / simulated, 4),
        "simulated_seconds": simulated,
        "wall_seconds": round(wall, 2),
        "ticks": n,
        "warmup_simulated_seconds": warmup_s,
        "sessions_looked_at": looked_total,
        "calls_cut": cuts_total,
        "outputs_published": producer.sent,
    }
