"""Fees, adjustments and the low-balance notice on the real broker and Redis."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator

import pytest

from charger.clock import ManualClock
from charger.runtime import Runtime
from charger_topics import headers as headers_of
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.outputs import charge_results, commands, entries, notifications
from tests.kit.records import (
    account_upserted,
    balance_adjusted,
    balance_credited,
    fee_charged,
    sms_sent,
)
from tests.kit.worker import Worker, running

ACC = names.BILLING_ACCOUNTS
EV = names.TELEPHONY_EVENTS
SMS = 7_900  # std-usd outbound SMS per segment
NUMBER = 5_000_000


@pytest.fixture
async def worker(run: Run) -> AsyncIterator[tuple[Runtime, ManualClock]]:
    clock = ManualClock(run.t0_ms)
    async with running(run.settings_with(tick_ms=0), clock) as runtime:
        yield runtime, clock


async def test_a_fee_that_requires_funds_is_refused_when_short_and_applied_when_not(
    run: Run, worker: tuple[Runtime, ManualClock]
) -> None:
    a = run.acct("buyer")
    await run.account(a, credit=NUMBER - 1)
    short = fee_charged(run, a, f"buy1-{run.uid}", amount_micros=NUMBER, require_funds=True)
    await run.send(ACC, a, short)
    await run.send(ACC, a, short)  # a resend: still one result
    await run.send(ACC, a, balance_credited(run, a, f"pay-{run.uid}", amount_micros=1))
    enough = fee_charged(
        run, a, f"buy2-{run.uid}", amount_micros=NUMBER, require_funds=True, reference="+3804412"
    )
    await run.send(ACC, a, enough)
    await run.send(ACC, a, enough)
    await run.wait_idle(60)

    results = await charge_results(run, a)
    assert [(r["type"], r["fee_id"]) for r in results] == [
        ("fee.refused", short["id"]),
        ("fee.applied", enough["id"]),
    ]
    refused, applied = results
    assert refused["reason"] == "insufficient_funds"
    assert refused["available_micros"] == NUMBER - 1
    fees = await entries(run, a, "fee")
    assert len(fees) == 1
    (fee,) = fees
    assert fee["amount_micros"] == -NUMBER and fee["reference"] == "+3804412"
    assert fee["item"] == "number_purchase" and fee["unit"] == "item"
    assert applied["ledger_entry_id"] == fee["id"]
    assert applied["balance_after_micros"] == fee["balance_after_micros"] == 0
    assert await run.balance(a) == 0
    # Taking the money exactly to the floor is allowed, and suspends the account.
    assert [c["type"] for c in await commands(run, account=a)] == ["account.suspended"]


async def test_a_fee_without_require_funds_goes_below_the_floor_and_suspends(
    run: Run, worker: tuple[Runtime, ManualClock]
) -> None:
    a = run.acct("renter")
    await run.account(a, credit=1_000_000)
    renewal = fee_charged(run, a, f"renew-{run.uid}", amount_micros=NUMBER, item="number_renewal")
    await run.send(ACC, a, renewal)
    await run.wait_idle(60)
    (applied,) = await charge_results(run, a)
    assert applied["type"] == "fee.applied"
    assert applied["balance_after_micros"] == 1_000_000 - NUMBER == await run.balance(a)
    assert [c["type"] for c in await commands(run, account=a)] == ["account.suspended"]


async def test_adjustments_move_the_balance_both_ways_and_the_floor_follows(
    run: Run, worker: tuple[Runtime, ManualClock]
) -> None:
    a = run.acct("adjusted")
    await run.account(a, credit=2_000_000)
    down = balance_adjusted(run, a, f"adj1-{run.uid}", amount_micros=-3_000_000, reason="rebill")
    up = balance_adjusted(
        run, a, f"adj2-{run.uid}", amount_micros=4_500_000, reason="refund", reference="t-9"
    )
    zero = balance_adjusted(run, a, f"adj3-{run.uid}", amount_micros=0)
    for record in (down, up, up, zero):
        await run.send(ACC, a, record)
    await run.wait_idle(60)

    adjustments = await entries(run, a, "adjustment")
    assert [(e["amount_micros"], e["reason"]) for e in adjustments] == [
        (-3_000_000, "rebill"),
        (4_500_000, "refund"),
    ]
    assert adjustments[1]["reference"] == "t-9"
    assert [e["balance_after_micros"] for e in adjustments] == [-1_000_000, 3_500_000]
    assert await run.balance(a) == 3_500_000
    assert [c["type"] for c in await commands(run, account=a)] == [
        "account.suspended",
        "account.restored",
    ]
    dlq = [o for o in await run.outputs(names.DLQ) if o.json()["id"] == zero["id"]]
    assert [o.headers[headers_of.ERROR] for o in dlq] == [b"invalid_adjustment"]


async def test_low_balance_is_sent_once_per_crossing(
    run: Run, worker: tuple[Runtime, ManualClock]
) -> None:
    a = run.acct("low")
    level = 1_000_000
    upsert = account_upserted(run, a, f"up-{a}", low_balance_micros=level, notify_email="l@x.io")
    await run.send(ACC, a, upsert)
    await run.send(ACC, a, balance_credited(run, a, f"cr1-{a}", amount_micros=level + 2 * SMS))
    texts = [sms_sent(run, a, f"s{i}-{run.uid}") for i in range(6)]
    # Texts and account records travel on two topics: each step is applied before the next.
    steps = [
        [(EV, a, text) for text in texts[:4]],  # the third crosses below
        [(ACC, a, balance_credited(run, a, f"cr2-{a}", amount_micros=level))],  # above
        [(EV, a, text) for text in texts[4:]],  # stays above
        [(ACC, a, balance_adjusted(run, a, f"adj-{a}", amount_micros=-level))],  # below
    ]
    for step in steps:
        await run.send_all(step)
        await run.wait_idle(60)

    lows = [n for n in await notifications(run) if n["type"] == "low_balance" and n["account"] == a]
    # The third text crosses below; the credit re-arms it; the adjustment crosses again.
    assert [(n["id"], n["available_micros"]) for n in lows] == [
        (f"low:{a}:1", level - SMS),
        (f"low:{a}:2", level - 4 * SMS),
    ]
    assert {n["threshold_micros"] for n in lows} == {level}
    assert {n["email"] for n in lows} == {"l@x.io"}


async def test_a_crash_between_apply_and_publish_still_gives_one_result_per_fee(run: Run) -> None:
    a = run.acct("crash")
    short = fee_charged(run, a, f"f1-{run.uid}", amount_micros=NUMBER, require_funds=True)
    enough = fee_charged(run, a, f"f2-{run.uid}", amount_micros=NUMBER // 2, require_funds=True)
    items = [
        (ACC, a, account_upserted(run, a, f"up-{a}")),
        (ACC, a, balance_credited(run, a, f"cr-{a}", amount_micros=NUMBER - 1)),
        (ACC, a, short),
        (ACC, a, enough),
        (ACC, a, short),  # resent
    ]
    await run.send_all(items)  # all there before the worker starts: one first batch
    doomed = Worker(run, failpoint="kill_after_apply")
    assert await doomed.run_to_exit(90) == -signal.SIGKILL, doomed.tail()
    assert await charge_results(run, a) == []  # applied, not published
    worker = Worker(run)
    try:
        await run.wait_idle(90)
        await run.send(ACC, a, enough)  # and once more after the restart
        await run.wait_idle(90)
        assert worker.stop() == 0, worker.tail()
    finally:
        worker.kill()
    results = await charge_results(run, a)
    assert sorted((r["type"], r["fee_id"]) for r in results) == [
        ("fee.applied", enough["id"]),
        ("fee.refused", short["id"]),
    ]
    assert [e["amount_micros"] for e in await entries(run, a, "fee")] == [-(NUMBER // 2)]
    assert await run.balance(a) == NUMBER - 1 - NUMBER // 2
