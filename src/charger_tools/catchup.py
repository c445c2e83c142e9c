"""How far a consumer group is from having charged and published what was produced.

The demo, the benchmark and the chaos run all wait on the same condition: every input
record they produced is committed by the worker's group, and every slot's outbox is
empty (its outputs acknowledged by the broker).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from charger.protocol.keys import Keys
from charger.store.client import RedisClient
from charger_topics import names


async def behind(
    bootstrap: str,
    group: str,
    produced: Mapping[TopicPartition, int],
    redis: RedisClient,
    keys: Keys,
    **client: Any,
) -> int:
    """Input records not committed by `group`, plus outbox entries not yet relayed.

    `produced` is the next offset after what was sent, per partition (counted from the
    producer's acknowledgements: the embedded broker's end offsets lag behind batches).
    """
    c = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **client
    )
    await c.start()
    try:
        lag = 0
        for tp, end in produced.items():
            if tp.topic in names.CO_PARTITIONED:
                lag += max(0, end - (await c.committed(tp) or 0))
    finally:
        await c.stop()
    pipe = redis.pipeline(transaction=False)
    for slot in range(keys.slots):
        pipe.xlen(keys.outbox(slot))
    backlog: list[int] = await pipe.execute()
    return lag + sum(backlog)


async def wait_caught_up(
    bootstrap: str,
    group: str,
    produced: Mapping[TopicPartition, int],
    redis: RedisClient,
    keys: Keys,
    timeout: float,
    **client: Any,
) -> bool:
    """Until nothing is behind (True), or `timeout` seconds passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await behind(bootstrap, group, produced, redis, keys, **client) == 0:
            return True
        await asyncio.sleep(0.2)
    return False
