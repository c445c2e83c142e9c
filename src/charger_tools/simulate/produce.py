"""Thin Kafka producer for the simulator: send records, or play the switch in real time."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from charger.events.timefmt import format_time_ms
from charger_tools.simulate.model import SimConfig, SimRecord, account_records, stats
from charger_tools.simulate.switch import Switch
from charger_topics import names

TICK_S = 0.05


def plan_records(path: Path | None = None, at_ms: int | None = None) -> list[SimRecord]:
    """`rate_plan.upserted` for every plan in a plans file (the shipped samples by default),
    keyed by plan id for the compacted `billing.rate-plans` topic."""
    from charger.rating.loader import read_document
    from charger.runtime import default_plans_path

    doc = read_document(path or default_plans_path())
    plans = doc["plans"] if isinstance(doc, dict) and "plans" in doc else doc
    out = []
    for plan in plans if isinstance(plans, list) else [plans]:
        rec = {
            "id": f"plan-{plan['id']}",
            "type": "rate_plan.upserted",
            "time": format_time_ms(time.time_ns() // 1_000_000 if at_ms is None else at_ms),
            "plan": plan,
        }
        value = orjson.dumps(rec)
        out.append(SimRecord(names.RATE_PLANS, str(plan["id"]).encode(), value, "good"))
    return out


OnBatch = Callable[[Sequence[SimRecord]], Any]


def _producer(bootstrap: str, security: Mapping[str, Any] | None) -> Any:
    # Idempotence stays off: the embedded broker does not support it. The simulator
    # resends on purpose; deduplication is the worker's job.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        client_id="charger-simulator",
        **(security or {}),
    )


async def _send(producer: Any, records: Iterable[SimRecord]) -> int:
    futures = [await producer.send(r.topic, r.value, key=r.key) for r in records]
    await asyncio.gather(*futures)
    return len(futures)


async def produce(
    bootstrap: str, records: Iterable[SimRecord], security: Mapping[str, Any] | None = None
) -> int:
    """Send `records` in order, wait until the broker acknowledged all; return the count.

    `security`: the client's security arguments (`charger.connections.kafka_security`).
    """
    producer = _producer(bootstrap, security)
    await producer.start()
    try:
        count = await _send(producer, records)
        await producer.flush()
        return count
    finally:
        await producer.stop()


async def run_switch(
    bootstrap: str,
    cfg: SimConfig,
    seconds: float,
    speed: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    on_batch: OnBatch | None = None,
    *,
    with_accounts: bool = False,
    security: Mapping[str, Any] | None = None,
) -> Counter[str]:
    """Play the switch for `seconds` of wall time, `speed` simulated seconds per second.

    Every ~50 ms the records that fell due are produced (and handed to `on_batch`, which
    may be a coroutine function). With `with_accounts`, the sample accounts are sent to
    `billing.accounts` first. Returns `stats` of everything sent.
    """
    if seconds < 0 or speed <= 0:
        raise ValueError("seconds must be >= 0 and speed > 0")
    switch = Switch(cfg)
    totals: Counter[str] = Counter()
    producer = _producer(bootstrap, security)
    await producer.start()
    try:
        if with_accounts:
            accounts = account_records(cfg)
            await _send(producer, accounts)
            totals += stats(accounts)
        began = clock()
        while True:
            elapsed = min(clock() - began, seconds)
            batch = switch.advance(switch.start_ms + int(elapsed * speed * 1000))
            if batch:
                await _send(producer, batch)
                totals += stats(batch)
                if on_batch is not None:
                    result = on_batch(batch)
                    if inspect.isawaitable(result):
                        await result
            if elapsed >= seconds:
                break
            await asyncio.sleep(TICK_S)
        await producer.flush()
    finally:
        await producer.stop()
    return totals
