"""Dependency faults on the real broker and Redis: a worker rides out an outage of each.

A `charger worker` process charges a steady stream of SMS, ring-through attempts and calls.

- Redis is SIGKILLed mid-stream (a durable Valkey: AOF, fsync always) while the switch
  keeps producing. The worker stays alive, commits nothing, backs off (its retry delay
  grows, its errors stay few), reports Redis down in /metrics and not ready in /ready.
  Redis comes back on the same port with its data, and the worker catches up.
- The broker goes away: every connection to it runs through a proxy, which resets them
  all and refuses new ones for a while. The worker stays alive, reports the broker down,
  and catches up when the proxy listens again.

After each: every event has exactly one ledger entry id (a record the relay published
again after a lost acknowledgement carries the same id), no event has two, every balance
is what the prices say and equals its ledger sum, nothing went to the DLQ.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from charger.kafka.batch import COMMIT_TIMEOUT_S
from charger_tools.embedded import EmbeddedServer, free_port, start_redis
from charger_topics import names
from tests.kit.brokers import own_broker
from tests.kit.harness import Run, Stack, started_run
from tests.kit.proxy import Proxy
from tests.kit.traffic import open_accounts, stream, traffic
from tests.kit.worker import Worker

# A short backoff cap keeps the catch-up quick; the growth from 0.1 s is still visible.
FAST_BACKOFF = {"CHARGER_RETRY_BACKOFF_MAX_MS": "2000"}
OUTAGE_S = 8.0
OFFSET_COMMIT = 8  # the Kafka protocol's api key of an offset commit request

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# ---- the worker as an operator sees it ----
async def scrape(worker: Worker) -> Samples:
    status, body = await worker.get("/metrics")
    assert status == 200, worker.tail()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= lbl)


# ---- the checks after recovery ----
async def catch_up(
    run: Run, worker: Worker, producer: asyncio.Task[None], since: float
) -> tuple[float, Samples]:
    """Until the whole stream is out and charged: seconds since `since`, and the metrics then."""
    await producer
    await run.wait_idle(60)
    took = time.monotonic() - since
    return took, await scrape(worker)


async def stop_ready(worker: Worker) -> None:
    """A recovered worker is ready again, and stops cleanly."""
    status, _ = await worker.get("/ready")
    assert status == 200
    assert worker.stop() == 0, worker.tail()


async def check_exactly_once(run: Run, balances: dict[str, int], ids: set[str]) -> int:
    """Ledger, balances and DLQ as they must be; returns how many records were republished."""
    ledger = await run.ledger()
    by_id = {e["id"]: e for e in ledger}
    republished = len(ledger) - len(by_id)
    credits = {f"ac:cr-{a}:topup" for a in balances}
    assert set(by_id) == ids | credits, "lost or invented ledger entries"
    ids_per_cause = Counter(e["source_event_id"] for e in by_id.values())
    assert max(ids_per_cause.values()) == 1, "an event has two ledger entries"
    for acct, closing in balances.items():
        assert await run.balance(acct) == closing, acct
        assert sum(e["amount_micros"] for e in by_id.values() if e["account"] == acct) == closing
    assert await run.committed_lag() == 0
    assert await run.outbox_backlog() == 0
    assert await run.outputs(names.DLQ) == []
    return republished


# ---- Redis ----
@pytest.fixture
def durable_redis() -> Iterator[EmbeddedServer]:
    with start_redis(durable=True) as server:
        yield server


@pytest.fixture
async def redis_run(stack: Stack, durable_redis: EmbeddedServer) -> AsyncIterator[Run]:
    async with started_run(stack.bootstrap, durable_redis.address) as run:
        yield run


async def test_redis_down_pauses_commits_backs_off_and_resumes_without_loss(
    redis_run: Run, durable_redis: EmbeddedServer
) -> None:
    run = redis_run
    accounts = await open_accounts(run, "r", 16)
    rounds, balances, ids = traffic(run, accounts, rounds=120)
    events = sum(len(b) for b in rounds)

    worker = Worker(run, **FAST_BACKOFF)
    try:
        await run.wait_idle(90)
        before = await scrape(worker)
        assert value(before, "charger_dependency_up", dependency="redis") == 1

        producer = await stream(run, rounds)
        durable_redis.kill()
        killed = time.monotonic()

        async def redis_seen_down() -> bool:
            m = await scrape(worker)
            return (
                value(m, "charger_dependency_up", dependency="redis") == 0
                and total(m, "charger_dependency_errors_total", dependency="redis", stage="batch")
                > 0
            )

        await worker.until(redis_seen_down, "redis reported down", 10)
        detected = time.monotonic() - killed
        frozen = await run.committed()
        errors_at = value(await scrape(worker), "charger_batch_errors_total", stage="batch")
        longest_wait = 0.0
        ready_codes, health_codes = set(), set()
        while time.monotonic() - killed < OUTAGE_S:
            await asyncio.sleep(0.5)
            assert worker.proc.poll() is None, worker.tail()
            now = await run.committed()
            moved = {tp for tp, off in now.items() if off != frozen.get(tp, run.marks[tp])}
            assert not moved, f"offsets committed while Redis was down: {moved}"
            m = await scrape(worker)
            longest_wait = max(longest_wait, value(m, "charger_retry_delay_seconds", stage="batch"))
            ready_codes.add((await worker.get("/ready"))[0])
            health_codes.add((await worker.get("/health"))[0])
        m = await scrape(worker)
        retries = value(m, "charger_batch_errors_total", stage="batch") - errors_at
        window = time.monotonic() - killed - detected
        lag_down = await run.committed_lag()
        assert lag_down > 0, "nothing was produced while Redis was down"
        assert ready_codes == {503} and health_codes == {200}
        # Capped exponential backoff: waits grew past the first ones, no hot loop.
        assert longest_wait >= 0.7, longest_wait
        assert 1 <= retries <= 3 + window / 0.7, (retries, window)
        assert value(m, "charger_redis_errors_total", stage="batch") > 0
        assert value(m, "charger_backoff_seconds_total", dependency="redis") > 0

        durable_redis.restart()
        restarted = time.monotonic()
        caught_up, after = await catch_up(run, worker, producer, restarted)
        assert value(after, "charger_dependency_up", dependency="redis") == 1
        assert value(after, "charger_retry_delay_seconds", stage="batch") == 0
        await stop_ready(worker)
    finally:
        worker.kill()

    republished = await check_exactly_once(run, balances, ids)
    print(
        f"\nredis down {restarted - killed:.1f}s (detected after {detected:.1f}s), "
        f"{events} events, lag while down {lag_down}, batch retries {retries:.0f} "
        f"(longest wait {longest_wait:.2f}s), caught up {caught_up:.1f}s after restart, "
        f"republished {republished}, lost 0, double charges 0"
    )


# ---- the broker ----
@pytest.fixture
def proxied_broker() -> Iterator[Proxy]:
    """A broker of its own, reachable only through a proxy (it advertises the proxy)."""
    port = free_port()
    with Proxy(target=port) as proxy, own_broker(port=port, advertised=proxy.address):
        yield proxy


@pytest.fixture
async def broker_run(stack: Stack, proxied_broker: Proxy) -> AsyncIterator[Run]:
    async with started_run(proxied_broker.address, stack.redis_url) as run:
        yield run


async def test_broker_down_backs_off_and_resumes_without_loss(
    broker_run: Run, proxied_broker: Proxy
) -> None:
    run, proxy = broker_run, proxied_broker
    accounts = await open_accounts(run, "k", 16)
    rounds, balances, ids = traffic(run, accounts, rounds=80)
    events = sum(len(b) for b in rounds)

    worker = Worker(run, **FAST_BACKOFF)
    try:
        await run.wait_idle(90)
        assert value(await scrape(worker), "charger_dependency_up", dependency="kafka") == 1

        producer = await stream(run, rounds)
        # Cut when the worker commits a batch: its money moved and its outputs went out,
        # the commit is lost with the connection.
        await asyncio.to_thread(proxy.cut_on, OFFSET_COMMIT)
        assert await asyncio.to_thread(proxy.tripped.wait, 20), "the worker committed nothing"
        cut = time.monotonic()

        async def kafka_seen_down() -> bool:
            m = await scrape(worker)
            return value(m, "charger_dependency_up", dependency="kafka") == 0

        await worker.until(kafka_seen_down, "broker reported down", 10)
        detected = time.monotonic() - cut
        ready_codes, health_codes = set(), set()
        # Longer than a commit may wait, so the batch fails, backs off and is retried.
        while time.monotonic() - cut < COMMIT_TIMEOUT_S + 3:
            await asyncio.sleep(0.5)
            assert worker.proc.poll() is None, worker.tail()
            ready_codes.add((await worker.get("/ready"))[0])
            health_codes.add((await worker.get("/health"))[0])
        assert ready_codes == {503} and health_codes == {200}
        down = await scrape(worker)
        assert value(down, "charger_dependency_errors_total", dependency="kafka", stage="batch") > 0
        assert value(down, "charger_dependency_errors_total", dependency="kafka", stage="probe") > 0

        await asyncio.to_thread(proxy.restore)
        restored = time.monotonic()
        caught_up, after = await catch_up(run, worker, producer, restored)
        assert value(after, "charger_dependency_up", dependency="kafka") == 1
        await stop_ready(worker)
    finally:
        worker.kill()

    republished = await check_exactly_once(run, balances, ids)
    kafka_errors = total(after, "charger_dependency_errors_total", dependency="kafka")
    print(
        f"\nbroker down {restored - cut:.1f}s (detected after {detected:.1f}s), {events} events, "
        f"kafka errors {kafka_errors:.0f}, caught up {caught_up:.1f}s after restore, "
        f"republished {republished}, lost 0, double charges 0"
    )
