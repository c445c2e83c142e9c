"""The benchmark's workload: a realistic switch mix, produced once, and accounts per run.

Every run reads the same records from `telephony.events`, each on a fresh consumer group
and a fresh Redis key prefix. The broker's end offsets may lag behind multi-record
batches, so where the records are is taken from the offsets the broker acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from redis.asyncio import Redis

from charger.charging.planner import Planner
from charger.charging.records import Inbound
from charger.protocol.keys import Keys
from charger.rating import RatePlan
from charger.store.client import RedisClient
from charger.store.redis_store import RedisStore
from charger_tools.reading import drain
from charger_tools.simulate import SimConfig, SimRecord, Switch, sample_accounts, stats
from charger_tools.simulate.model import MICROS
from charger_topics import names

# Large enough that no account of the mix reaches its floor: all usage is charged.
OPENING_MICROS = 1_000_000 * MICROS
ACCOUNTS = 9999  # the simulator's ceiling


@dataclass
class Workload:
    """Records to play: accounts, the measured events, and more events for the latency run."""

    cfg: SimConfig
    accounts: list[SimRecord]
    events: list[SimRecord]
    extra: list[SimRecord]
    # account id -> (currency, rate plan id)
    account_plans: dict[str, tuple[str, str]]
    # Filled by `produce`: acknowledged offsets of every record sent, by record position.
    account_offsets: list[tuple[int, int]] = field(default_factory=list)
    starts: dict[TopicPartition, int] = field(default_factory=dict)  # first offset we wrote
    ends: dict[TopicPartition, int] = field(default_factory=dict)  # next offset after ours
    span_s: float = 0.0  # simulated time the switch played

    def mix(self) -> dict[str, int]:
        """Counts of the measured events by kind and by kind:type."""
        return dict(sorted(stats(self.events).items()))


def sim_config(seed: int, start_ms: int) -> SimConfig:
    """A busy switch over ~10,000 accounts, bad input at its default doses."""
    return SimConfig(
        accounts=ACCOUNTS,
        seed=seed,
        start_ms=start_ms,
        call_rate_per_s=100.0,
        sms_rate_per_s=60.0,
        ring_through_rate_per_s=12.0,
        small_accounts=0,
    )


def generate(n_events: int, n_extra: int, seed: int = 7, start_ms: int | None = None) -> Workload:
    """Play the switch until it sent `n_events + n_extra` records (deterministic per seed)."""
    start = time.time_ns() // 1_000_000 if start_ms is None else start_ms
    cfg = sim_config(seed, start)
    switch = Switch(cfg)
    out: list[SimRecord] = []
    at = cfg.start_ms
    while len(out) < n_events + n_extra:
        at += 1000
        out += switch.advance(at)
    docs = sample_accounts(cfg)
    plans: dict[str, tuple[str, str]] = {}
    accounts: list[SimRecord] = []
    for d in docs:
        if d["type"] == "balance.credited":
            d["amount_micros"] = OPENING_MICROS
        else:
            plans[d["account"]] = (d["currency"], d["rate_plan"])
        accounts.append(
            SimRecord(names.BILLING_ACCOUNTS, d["account"].encode(), orjson.dumps(d), "good")
        )
    events, extra = out[:n_events], out[n_events : n_events + n_extra]
    return Workload(cfg, accounts, events, extra, plans, span_s=(at - cfg.start_ms) / 1000)


def producer(bootstrap: str, linger_ms: int = 5) -> AIOKafkaProducer:
    # The embedded broker has no idempotent producer.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=linger_ms,
        max_batch_size=512 * 1024,
        client_id="charger-bench",
    )


async def send_all(prod: AIOKafkaProducer, records: list[SimRecord]) -> list[tuple[int, int]]:
    """Send in order; the (partition, offset) the broker acknowledged for each record."""
    futures = [await prod.send(r.topic, r.value, key=r.key) for r in records]
    return [(md.partition, md.offset) for md in await asyncio.gather(*futures)]


async def produce(w: Workload, bootstrap: str) -> float:
    """Send accounts, then the measured events; return the events' produce rate."""
    prod = producer(bootstrap)
    await prod.start()
    try:
        await _send_accounts(w, prod)
        began = time.monotonic()
        for part, off in await send_all(prod, w.events):
            _extend(w, TopicPartition(names.TELEPHONY_EVENTS, part), off)
        return len(w.events) / (time.monotonic() - began)
    finally:
        await prod.stop()


async def produce_accounts(w: Workload, bootstrap: str) -> None:
    """Send only the account records (a run on a broker of its own)."""
    prod = producer(bootstrap)
    await prod.start()
    try:
        await _send_accounts(w, prod)
    finally:
        await prod.stop()


async def _send_accounts(w: Workload, prod: AIOKafkaProducer) -> None:
    w.account_offsets = await send_all(prod, w.accounts)
    for part, off in w.account_offsets:
        _extend(w, TopicPartition(names.BILLING_ACCOUNTS, part), off)


def _extend(w: Workload, tp: TopicPartition, offset: int) -> None:
    w.starts[tp] = min(w.starts.get(tp, offset), offset)
    w.ends[tp] = max(w.ends.get(tp, 0), offset + 1)


def event_counts(w: Workload) -> dict[TopicPartition, int]:
    """Measured event records per partition (start to end of what we wrote)."""
    return {tp: w.ends[tp] - w.starts[tp] for tp in w.starts if tp.topic == names.TELEPHONY_EVENTS}


async def assign_at_end(c: AIOKafkaConsumer, tps: list[TopicPartition]) -> None:
    """Assign `tps` to a started consumer and place it at their reported ends (which may
    lag on the embedded broker: at worst a few older records are read)."""
    c.assign(tps)
    for tp, off in (await c.end_offsets(tps)).items():
        c.seek(tp, off)


async def real_ends(bootstrap: str, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
    """Where each partition really ends: from the reported end, read until a fetch is empty."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await c.start()
    try:
        await assign_at_end(c, tps)
        await drain(c, tps)
        return {tp: await c.position(tp) for tp in tps}
    finally:
        await c.stop()


async def start_group(bootstrap: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    """Commit `offsets` for a new, empty consumer group: where its first member starts."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
    finally:
        await c.stop()


async def charger_group_offsets(
    w: Workload, bootstrap: str, events_at: str
) -> dict[TopicPartition, int]:
    """Accounts consumed already (loaded directly); events from their start or their end."""
    partitions = names.TOPICS[names.TELEPHONY_EVENTS].partitions
    out: dict[TopicPartition, int] = {}
    rest: list[TopicPartition] = []
    for topic in names.CO_PARTITIONED:
        for p in range(partitions):
            tp = TopicPartition(topic, p)
            if tp in w.ends:
                out[tp] = w.starts[tp] if topic == events_at else w.ends[tp]
            else:
                rest.append(tp)
    if rest:
        out.update(await real_ends(bootstrap, rest))
    return out


async def load_charger_accounts(w: Workload, store: RedisStore, plans: dict[str, RatePlan]) -> int:
    """Apply the accounts through the real planner and apply.lua, at their real offsets.

    The watermarks end where the group's committed offsets begin; the opening top-ups'
    ledger entries are dropped from the outbox: they are not part of any measurement.
    """
    planner = Planner(store.keys, lambda: plans)
    batch = [
        Inbound(names.BILLING_ACCOUNTS, part, off, r.key, r.value)
        for r, (part, off) in zip(w.accounts, w.account_offsets, strict=True)
    ]
    batch.sort(key=lambda rec: (rec.partition, rec.offset))
    applied = 0
    for i in range(0, len(batch), 4000):
        chunk = batch[i : i + 4000]
        prepared = planner.prepare(chunk)
        outcome = planner.plan(prepared, await store.read(prepared))
        highest: dict[str, int] = {}
        for rec in chunk:
            highest[rec.source] = max(highest.get(rec.source, -1), rec.offset)
        done, _ = await store.apply(outcome.plan, highest, time.time_ns() // 1_000_000)
        applied += done
    await clear_outboxes(store.client, store.keys)
    return applied


async def clear_outboxes(client: RedisClient, keys: Keys) -> None:
    await client.delete(*(keys.outbox(s) for s in range(keys.slots)))


async def load_plain_accounts(w: Workload, client: Redis, prefix: str) -> None:
    """One hash per account with its balance: what the Faust agent and the limit debit."""
    pipe = client.pipeline(transaction=False)
    for account, (currency, plan) in w.account_plans.items():
        pipe.hset(
            plain_key(prefix, account),
            mapping={"bal": OPENING_MICROS, "cur": currency, "plan": plan},
        )
    await pipe.execute()


def plain_key(prefix: str, account: str) -> str:
    return f"{prefix}:a:{account}"


def kinds(records: list[SimRecord]) -> Counter[str]:
    return Counter(r.kind for r in records)
