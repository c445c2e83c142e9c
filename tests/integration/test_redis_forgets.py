"""Redis may forget: a worker whose Redis went back to an earlier state applies again what
Redis lost, from its watermarks, and every event is charged exactly once.

The loss is made as a failover to a replica that was behind would make it: a consistent
copy of the run's keys is taken while the worker runs, more traffic is charged and
committed, and Redis goes back to the copy. Calls are open across it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from charger_tools.redis_state import forget_since, remember
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.outputs import commands, recharge_requests
from tests.kit.records import (
    account_upserted,
    balance_credited,
    call_ended,
    call_started,
    recharge_result,
    sms_sent,
)
from tests.kit.waits import until
from tests.kit.worker import running

EV = names.TELEPHONY_EVENTS
ACC = names.BILLING_ACCOUNTS
CREDIT = 100_000_000


def by_id(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        grouped[entry["id"]].append(entry)
    return grouped


async def texts(run: Run, accounts: list[str], wave: str, count: int) -> None:
    for n in range(count):
        for account in accounts:
            await run.send(EV, account, sms_sent(run, account, f"{wave}-{account}-{n}"))


@pytest.mark.parametrize(
    ("batch_max_records", "forgotten", "idle"),
    [
        (5000, "the last batch", False),
        (7, "several batches", False),
        (5000, "while no traffic comes", True),
    ],
)
async def test_what_redis_forgot_is_applied_again_once(
    run: Run, batch_max_records: int, forgotten: str, idle: bool
) -> None:
    accounts = [run.acct("a"), run.acct("b")]
    settings = run.settings_with(batch_max_records=batch_max_records, watermark_check_s=0.2)
    async with running(settings) as rt:
        for account in accounts:
            await run.account(account, credit=CREDIT)
        await run.wait_idle(60)  # known before their traffic, which is on another topic
        for account in accounts:
            await run.send(EV, account, call_started(run, account, f"s-{account}", call_id="c1"))
        await texts(run, accounts, "before", 40)
        await run.wait_idle(60)
        state = await remember(run.redis, run.settings.redis_prefix)

        await texts(run, accounts, "lost", 40)  # charged, committed, published ...
        await run.wait_idle(60)
        balances = [await run.balance(account) for account in accounts]
        await forget_since(run.redis, state)  # ... and forgotten by Redis
        if idle:  # found by the worker's own check, not by the next batch

            async def restored() -> bool:
                return [await run.balance(account) for account in accounts] == balances

            await until(restored, "the forgotten texts charged again without new traffic")

        for account in accounts:
            end = call_ended(run, account, f"e-{account}", call_id="c1", duration_ms=65_000)
            await run.send(EV, account, end)
        await texts(run, accounts, "after", 40)

        events = 1 + 40 * 3 + 1  # per account: the credit, 120 texts, the call
        ids: dict[str, list[dict[str, Any]]] = {}

        async def charged_once() -> bool:
            nonlocal ids
            if await run.committed_lag() or await run.outbox_backlog():
                return False
            ids = by_id(await run.ledger())
            return len(ids) == events * len(accounts)

        await until(charged_once, f"every event charged after Redis forgot {forgotten}", 90)
        forgotten_total = rt.metrics.registry.get_sample_value(
            "charger_redis_forgotten_records_total"
        )
        assert forgotten_total is not None and forgotten_total >= 80

    for copies in ids.values():
        # Published twice (before the loss and again after it) with the same content.
        assert len({(c["amount_micros"], c["balance_after_micros"]) for c in copies}) == 1, copies
    for account in accounts:
        mine = [copies[0] for copies in ids.values() if copies[0]["account"] == account]
        assert len(mine) == events
        assert sum(entry["amount_micros"] for entry in mine) == await run.balance(account)
        kinds = sorted(entry["kind"] for entry in mine)
        assert kinds.count("sms_out") == 120 and kinds.count("call") == 1
    again = sum(len(copies) > 1 for copies in ids.values())
    assert again >= 80  # the forgotten wave's entries were re-created, not new ones


async def test_the_first_records_a_slot_applied_from_a_source_are_applied_again(
    run: Run,
) -> None:
    """Redis goes back to before the first record its slots ever applied from the events
    topic: the watermark the worker started at assignment says where that source began,
    so the forgotten texts are charged again instead of looking never read."""
    accounts = [run.acct("a"), run.acct("b")]
    async with running(run.settings_with(watermark_check_s=0.2)) as rt:
        for account in accounts:
            await run.account(account, credit=CREDIT)
        await run.wait_idle(60)
        state = await remember(run.redis, run.settings.redis_prefix)  # no event applied yet

        await texts(run, accounts, "lost", 30)
        await run.wait_idle(60)
        await forget_since(run.redis, state)
        await texts(run, accounts, "after", 30)

        events = 1 + 30 * 2  # per account: the credit, 60 texts
        ids: dict[str, list[dict[str, Any]]] = {}

        async def charged_once() -> bool:
            nonlocal ids
            if await run.committed_lag() or await run.outbox_backlog():
                return False
            ids = by_id(await run.ledger())
            balances = [await run.balance(account) for account in accounts]
            return len(ids) == events * len(accounts) and balances == [
                sum(c[0]["amount_micros"] for c in ids.values() if c[0]["account"] == account)
                for account in accounts
            ]

        await until(charged_once, "the forgotten first texts charged again", 90)
        forgotten_total = rt.metrics.registry.get_sample_value(
            "charger_redis_forgotten_records_total"
        )
        assert forgotten_total is not None and forgotten_total >= 60

    for copies in ids.values():
        assert len({(c["amount_micros"], c["balance_after_micros"]) for c in copies}) == 1, copies
    assert sum(len(copies) > 1 for copies in ids.values()) == 60


async def test_a_recharge_result_before_the_forgotten_request_is_made_again_credits_once(
    run: Run,
) -> None:
    """Redis forgets the texts whose charge made a recharge request, and the payment
    system's result comes before the worker applied them again: the account made that
    request and the card was charged, so the credit lands once (not `unknown_request`),
    and the texts applied again make no second request."""
    a = run.acct("rch")
    auto = {"enabled": True, "threshold_micros": 10_000_000, "amount_micros": 60_000_000}
    # No idle check: the result, not the worker's own check, is what comes first.
    async with running(run.settings_with(watermark_check_s=3600)):
        await run.send_all(
            [
                (ACC, a, account_upserted(run, a, f"u-{a}", auto_recharge=auto)),
                (ACC, a, balance_credited(run, a, f"c-{a}", amount_micros=10_050_000)),
            ]
        )
        await run.wait_idle(60)
        state = await remember(run.redis, run.settings.redis_prefix)
        await texts(run, [a], "lost", 10)  # the 7th takes it below the threshold
        await run.wait_idle(60)
        (request,) = await recharge_requests(run)
        await forget_since(run.redis, state)

        paid = recharge_result(
            run, a, f"ok-{run.uid}", request_id=request["request_id"], amount_micros=60_000_000
        )
        await run.send(names.RECHARGE_RESULTS, a, paid)
        await run.wait_idle(60)
        await texts(run, [a], "after", 5)  # the forgotten texts are found behind these

        events = 2 + 10 + 5  # the credit, the recharge, the texts
        ids: dict[str, list[dict[str, Any]]] = {}

        async def charged_once() -> bool:
            nonlocal ids
            if await run.committed_lag() or await run.outbox_backlog():
                return False
            ids = by_id(await run.ledger())
            return len(ids) == events

        await until(charged_once, "the forgotten texts charged again", 90)
        assert not await run.outputs(names.DLQ)
        kinds = sorted(copies[0]["kind"] for copies in ids.values())
        assert kinds.count("recharge") == 1 and kinds.count("sms_out") == 15
        assert sum(copies[0]["amount_micros"] for copies in ids.values()) == await run.balance(a)
        assert [r["request_id"] for r in await recharge_requests(run)] == [request["request_id"]]


async def test_a_tick_finds_what_redis_forgot_before_it_acts_on_it(run: Run) -> None:
    """No batch and no idle check comes between the loss and the next tick: the tick,
    which acts as of the event time of what was fetched, must not cut or expire calls on
    a state Redis went back from. It finds the loss itself and has it applied again."""
    a = run.acct("tick")
    async with running(run.settings_with(tick_ms=0, watermark_check_s=3600)) as rt:
        await run.account(a, credit=CREDIT)
        await run.wait_idle(60)
        await run.send(EV, a, call_started(run, a, f"s-{a}", call_id="c1"))
        await texts(run, [a], "before", 10)
        await run.wait_idle(60)
        state = await remember(run.redis, run.settings.redis_prefix)
        await texts(run, [a], "lost", 40)
        await run.wait_idle(60)
        balance = await run.balance(a)
        await forget_since(run.redis, state)

        def forgotten() -> float:
            value = rt.metrics.registry.get_sample_value("charger_redis_forgotten_records_total")
            return value or 0.0

        assert forgotten() == 0
        await rt.worker.tick()
        assert forgotten() >= 40  # found by the tick, before any batch

        async def applied_again() -> bool:
            return await run.balance(a) == balance

        await until(applied_again, "the forgotten texts charged again after the tick")
        await run.send(EV, a, call_ended(run, a, f"e-{a}", call_id="c1", duration_ms=30_000))
        await run.wait_idle(60)
    assert not [c for c in await commands(run) if c["type"] == "call.cutoff"]
    entries = by_id(await run.ledger())
    assert len(entries) == 1 + 50 + 1  # the credit, the texts, the call
    assert sum(copies[0]["amount_micros"] for copies in entries.values()) == await run.balance(a)
