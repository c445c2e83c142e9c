"""Redis behind Sentinel, with replicas that must have every batch before it counts.

Real servers: a primary, a replica and three Sentinels (`charger_tools.topology`), the
worker in this process with CHARGER_REDIS_MIN_REPLICAS=1. The primary is SIGKILLed while
texts stream in; the Sentinels promote the replica, the old primary comes back as its
replica (as a supervisor asking the Sentinels would start it), and the worker goes on.
Every event must then be in the ledger exactly once, with the balance Redis holds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from charger.charging.ledger import entry_id
from charger.events.timefmt import format_time_ms, parse_time_ms
from charger.protocol.keys import slot_of
from charger.runtime import Runtime
from charger_tools.topology import wait_in_sync
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.ledger_check import check_complete_ledger
from tests.kit.outputs import cutoffs
from tests.kit.records import call_ended, call_started
from tests.kit.servers import Replicated
from tests.kit.traffic import TextStream, open_accounts
from tests.kit.waits import until
from tests.kit.worker import running

EV = names.TELEPHONY_EVENTS
CALL_CREDIT = 30_000  # 3 s of a call at 0.60/min: cut off while Redis fails over


def sample(rt: Runtime, name: str, **labels: str) -> float:
    return rt.metrics.registry.get_sample_value(name, labels) or 0.0


def wait_timeouts(rt: Runtime, stage: str) -> float:
    return sample(rt, "charger_redis_wait_timeouts_total", stage=stage)


async def start_calls(run: Run, accounts: list[str]) -> int:
    """One call per account, answered now (wall clock); returns when (ms)."""
    now_ms = time.time_ns() // 1_000_000
    at = format_time_ms(now_ms)
    for account in accounts:
        await run.send(
            EV, account, call_started(run, account, f"s-{account}", call_id="c1", time=at)
        )

    async def sessions_open() -> bool:
        keys = [run.keys.call(slot_of(a, run.keys.slots), a, "c1") for a in accounts]
        return bool(await run.redis.exists(*keys) == len(accounts))

    await until(sessions_open, "the calls' sessions open in Redis", 30)
    return now_ms


async def test_the_worker_rides_out_a_failover_and_charges_every_event_once(
    sentinel_run: Replicated,
) -> None:
    run, topology = sentinel_run.run, sentinel_run.topology
    settings = sentinel_run.settings(
        redis_min_replicas=1, redis_wait_timeout_ms=500, retry_backoff_max_ms=1000
    )
    texters = await open_accounts(run, "t", 4)
    callers = [run.acct(f"k{i}") for i in range(2)]
    for account in callers:
        await run.account(account, credit=CALL_CREDIT)
    stream = TextStream(run, texters, per_second=150)
    async with running(settings) as rt:
        playing = asyncio.create_task(stream.play())
        try:
            await until(lambda: rt.worker.batches >= 5, "the worker charging", 30)
            answered_ms = await start_calls(run, callers)
            old = topology.primary()
            killed_at = time.monotonic()
            old.kill()
            await until(lambda: rt.worker.retry.failing_since is not None, "batches failing", 30)
            await asyncio.to_thread(topology.wait_promoted, old)
            promoted_at = time.monotonic()
            await asyncio.to_thread(topology.rejoin, old)
            rejoined_at = time.monotonic()
            await until(lambda: rt.worker.retry.failing_since is None, "the worker going on", 60)
            resumed_at = time.monotonic()
            sent_at_resume = stream.sent
            await until(lambda: stream.sent >= sent_at_resume + 150, "texts after the failover")
        finally:
            stream.stop()
            await playing

        async def both_cut() -> bool:
            return len(await cutoffs(run)) == len(callers)

        await until(both_cut, "both calls cut off", 60, interval=0.5)
        cut = await cutoffs(run)
        for account in callers:
            command = next(c for c in cut if c["account"] == account)
            talk_ms = parse_time_ms(command["cutoff_at"]) - answered_ms
            ended = call_ended(
                run,
                account,
                f"e-{account}",
                call_id="c1",
                duration_ms=talk_ms,
                time=command["cutoff_at"],
            )
            await run.send(EV, account, ended)
        await run.wait_idle(90)
        lateness_sum = sample(rt, "charger_cutoff_lateness_seconds_sum")
        timeouts = wait_timeouts(rt, "apply") + wait_timeouts(rt, "relay")

    expected = set(stream.ledger_ids)
    balances: dict[str, int | None] = dict(stream.balances)
    for account in [*texters, *callers]:
        expected.add(entry_id("ac", f"cr-{account}", "topup"))
    for account in callers:
        expected.add(entry_id("ev", f"e-{account}", "call"))
        balances[account] = None  # worked out by Redis; the ledger must agree with it
    check = await check_complete_ledger(run, expected, balances)
    lateness = [parse_time_ms(c["time"]) - parse_time_ms(c["cutoff_at"]) for c in cut]
    report: dict[str, Any] = {
        "texts": stream.sent,
        **check.summary(),
        "failover_s": round(promoted_at - killed_at, 2),
        "old_primary_back_as_replica_s": round(rejoined_at - killed_at, 2),
        "outage_s": round(resumed_at - killed_at, 2),
        "cutoff_lateness_ms": lateness,
        "cutoff_lateness_mean_s": round(lateness_sum / len(callers), 3),
        "wait_timeouts": timeouts,
    }
    print(f"\nfailover under traffic: {report}")
    assert (check.lost, check.doubled, check.mismatched) == ([], [], {}), report
    assert len(cut) == len(callers)


async def test_without_its_replica_nothing_is_committed_or_published_until_it_is_back(
    replica_run: Replicated,
) -> None:
    run, topology = replica_run.run, replica_run.topology
    settings = replica_run.settings(
        redis_min_replicas=1, redis_wait_timeout_ms=200, retry_backoff_max_ms=500
    )
    accounts = await open_accounts(run, "r", 2)
    stream = TextStream(run, accounts, per_second=1000)
    async with running(settings) as rt:
        await stream.play(20)
        await run.wait_idle(60)

        async def published_all() -> bool:  # the opening credits too
            return len(await run.ledger()) == 20 + len(accounts)

        await until(published_all, "the first texts published with the replica there", 30)

        replica = topology.nodes[1]
        replica.kill()
        before = set(stream.ledger_ids)
        await stream.play(30)
        # The batch's wait times out; then every retry's drain of the outbox does (the
        # batch loop drains before it fetches again).
        await until(lambda: wait_timeouts(rt, "apply") >= 1, "the batch's wait timing out", 30)
        await until(lambda: wait_timeouts(rt, "relay") >= 2, "the relay's waits timing out", 30)
        # Applied on the primary and retried, but nothing of it counts yet.
        assert await run.committed_lag() == 30
        published = {entry["id"] for entry in await run.ledger()}
        assert not (stream.ledger_ids - before) & published
        assert await run.outbox_backlog() > 0

        await asyncio.to_thread(replica.restart)
        await asyncio.to_thread(wait_in_sync, replica)
        await run.wait_idle(60)
        waited = sample(rt, "charger_redis_wait_seconds_count", stage="relay")

    expected = stream.ledger_ids | {entry_id("ac", f"cr-{a}", "topup") for a in accounts}
    balances: dict[str, int | None] = dict(stream.balances)
    check = await check_complete_ledger(run, expected, balances)
    assert (check.lost, check.doubled, check.mismatched) == ([], [], {}), check.summary()
    assert waited > 0
