"""CHARGER_REDIS_WAIT_AOF on real servers: batches wait for the fsync of the primary and a
replica (WAITAOF), and a server that cannot do it stops the worker at start with one line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis

from charger.charging.ledger import entry_id
from charger.connections import close_redis
from charger.runtime import Runtime
from charger.store.durability import DurabilityConfigError
from charger_tools.embedded import EmbeddedServer, start_redis
from tests.kit.harness import Run, Stack
from tests.kit.ledger_check import check_complete_ledger
from tests.kit.servers import redis_server_binary, replicated_run
from tests.kit.traffic import TextStream, open_accounts
from tests.kit.worker import running


async def test_batches_wait_for_the_fsync_of_the_primary_and_a_replica(stack: Stack) -> None:
    async with replicated_run(stack.bootstrap, sentinels=0, durable=True) as replicated:
        run = replicated.run
        settings = replicated.settings(redis_min_replicas=1, redis_wait_aof=True)
        accounts = await open_accounts(run, "f", 2)
        stream = TextStream(run, accounts, per_second=1000)
        async with running(settings) as rt:
            await stream.play(20)
            await run.wait_idle(60)
            sample = rt.metrics.registry.get_sample_value
            waited = sample("charger_redis_wait_seconds_count", {"stage": "apply"})
            timeouts = sample("charger_redis_wait_timeouts_total", {"stage": "apply"})
        expected = stream.ledger_ids | {entry_id("ac", f"cr-{a}", "topup") for a in accounts}
        check = await check_complete_ledger(run, expected, dict(stream.balances))
    assert (check.lost, check.doubled, check.mismatched) == ([], [], {}), check.summary()
    assert waited and timeouts == 0


@pytest.fixture
def redis7() -> Iterator[EmbeddedServer]:
    """Debian's Redis server, of this test's own."""
    server = start_redis(binary=redis_server_binary())
    try:
        yield server
    finally:
        server.stop()


async def refused_at_start(run: Run, url: str) -> str:
    """The message with which a worker with WAIT_AOF on `url` refuses to start."""
    rt = Runtime(run.settings_with(redis_url=url, redis_wait_aof=True, redis_startup_wait_s=5))
    try:
        with pytest.raises(DurabilityConfigError) as err:
            await rt.start()
    finally:
        await close_redis(rt.redis)
    return str(err.value)


async def test_wait_aof_on_a_redis_without_waitaof_stops_the_worker_at_start(
    run: Run, redis7: EmbeddedServer
) -> None:
    with redis.Redis.from_url(redis7.address) as client:
        known = client.execute_command("COMMAND INFO", "WAITAOF")
    if known and known[0] is not None:
        pytest.skip("this redis-server knows WAITAOF (Redis 7.2+)")
    message = await refused_at_start(run, redis7.address)
    assert "\n" not in message
    assert "needs WAITAOF" in message and "does not know it" in message


async def test_wait_aof_without_appendonly_on_the_primary_stops_the_worker_at_start(
    run: Run,
) -> None:
    server = await asyncio.to_thread(start_redis)  # appendonly no
    try:
        message = await refused_at_start(run, server.address)
    finally:
        await asyncio.to_thread(server.stop)
    assert "\n" not in message
    assert "appendonly yes" in message
