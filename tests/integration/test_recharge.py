"""Auto-recharge, top-ups and restore on the real broker and Redis, with a hand-driven clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from charger.clock import ManualClock
from charger.protocol.fields import AccountField
from charger.runtime import Runtime
from charger_topics import headers as headers_of
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.outputs import commands, notifications, recharge_requests
from tests.kit.records import account_upserted, balance_credited, recharge_result, sms_sent
from tests.kit.worker import running

EV = names.TELEPHONY_EVENTS
ACC = names.BILLING_ACCOUNTS
SMS = 7_900  # std-usd outbound SMS per segment
THRESHOLD, AMOUNT = 10_000_000, 60_000_000


@pytest.fixture
async def clocked(run: Run) -> AsyncIterator[tuple[Runtime, ManualClock]]:
    clock = ManualClock(run.t0_ms)
    settings = run.settings_with(tick_ms=0, recharge_backoff_s=3600, recharge_timeout_s=600)
    async with running(settings, clock) as rt:
        yield rt, clock


def upsert(
    run: Run,
    a: str,
    eid: str,
    *,
    enabled: bool = True,
    threshold: int = THRESHOLD,
    amount: int = AMOUNT,
) -> dict[str, Any]:
    """An account with auto-recharge settings (on by default) and an e-mail to notify."""
    auto = {"enabled": enabled, "threshold_micros": threshold, "amount_micros": amount}
    return account_upserted(run, a, eid, notify_email=f"{a}@example.com", auto_recharge=auto)


def sms(run: Run, a: str, eid: str) -> dict[str, Any]:
    return sms_sent(run, a, eid, message_id=eid)


async def opened(run: Run, a: str, balance: int) -> None:
    await run.send_all(
        [
            (ACC, a, upsert(run, a, f"u-{a}")),
            (ACC, a, balance_credited(run, a, f"c-{a}", amount_micros=balance)),
        ]
    )


async def test_a_thousand_charges_crossing_the_threshold_make_one_request(
    run: Run, clocked: tuple[Runtime, ManualClock]
) -> None:
    a = run.acct("burst")
    await opened(run, a, 12_000_000)
    await run.send_all([(EV, a, sms(run, a, f"s{i}-{run.uid}")) for i in range(1000)])
    await run.wait_idle(60)
    reqs = await recharge_requests(run)
    assert len(reqs) == 1
    r = reqs[0]
    assert (r["amount_micros"], r["threshold_micros"]) == (AMOUNT, THRESHOLD)
    # requested by the first charge that took the balance below 10.00: 12.00 - n * 0.0079
    first_below = next(n for n in range(1, 1001) if 12_000_000 - n * SMS < THRESHOLD)
    assert r["available_micros"] == r["balance_micros"] == 12_000_000 - first_below * SMS
    assert await run.balance(a) == 12_000_000 - 1000 * SMS


async def test_a_decline_mails_and_backs_off_before_asking_again(
    run: Run, clocked: tuple[Runtime, ManualClock]
) -> None:
    _rt, clock = clocked
    a = run.acct("declined")
    await opened(run, a, 10_005_000)
    await run.send(EV, a, sms(run, a, f"s1-{run.uid}"))
    await run.wait_idle()
    (req,) = await recharge_requests(run)
    failed = recharge_result(
        run,
        a,
        f"r1-{run.uid}",
        request_id=req["request_id"],
        status="failed",
        amount_micros=AMOUNT,
        reason="card_declined",
    )
    await run.send(names.RECHARGE_RESULTS, a, failed)
    await run.wait_idle()
    notes = await notifications(run)
    mails = [n for n in notes if n["type"] == "recharge_failed"]
    assert len(mails) == 1
    assert mails[0]["email"] == f"{a}@example.com" and mails[0]["reason"] == "card_declined"
    assert [n["type"] for n in notes].count("low_balance") == 1
    # Within the backoff, more charges ask for nothing.
    clock.advance(3599_000)
    await run.send(EV, a, sms(run, a, f"s2-{run.uid}"))
    await run.wait_idle()
    assert len(await recharge_requests(run)) == 1
    # After it, the next charge asks again, with a new id.
    clock.advance(2_000)
    await run.send(EV, a, sms(run, a, f"s3-{run.uid}"))
    await run.wait_idle()
    reqs = await recharge_requests(run)
    assert len(reqs) == 2 and reqs[1]["request_id"] != req["request_id"]


async def test_a_success_credits_once_and_restores_a_suspended_account(
    run: Run, clocked: tuple[Runtime, ManualClock]
) -> None:
    a = run.acct("restore")
    await opened(run, a, 10_000)  # 1 cent: two SMS take it below zero
    await run.send_all([(EV, a, sms(run, a, f"s{i}-{run.uid}")) for i in range(2)])
    await run.wait_idle()
    (req,) = await recharge_requests(run)
    cmds = [c["type"] for c in await commands(run)]
    assert cmds == ["account.suspended"]
    ok = recharge_result(
        run, a, f"ok-{run.uid}", request_id=req["request_id"], amount_micros=AMOUNT
    )
    # delivered twice, and once more under another id by a retrying payment service
    await run.send_all([(names.RECHARGE_RESULTS, a, ok)] * 2)
    await run.send(names.RECHARGE_RESULTS, a, {**ok, "id": f"ok2-{run.uid}"})
    await run.wait_idle()
    recharges = [e for e in await run.ledger() if e["kind"] == "recharge"]
    assert len(recharges) == 1 and recharges[0]["amount_micros"] == AMOUNT
    assert await run.balance(a) == 10_000 - 2 * SMS + AMOUNT
    cmds = [c["type"] for c in await commands(run)]
    assert cmds == ["account.suspended", "account.restored"]
    assert not [o for o in await run.outputs(names.DLQ)]


async def test_a_manual_top_up_restores_and_keeps_the_request_in_flight(
    run: Run, clocked: tuple[Runtime, ManualClock]
) -> None:
    a = run.acct("topup")
    await opened(run, a, 5_000)
    await run.send(EV, a, sms(run, a, f"s1-{run.uid}"))
    await run.wait_idle()
    paid = balance_credited(run, a, f"pay-{run.uid}", amount_micros=1_000_000)
    await run.send(ACC, a, paid)  # still below 10.00
    await run.send(EV, a, sms(run, a, f"s2-{run.uid}"))
    await run.wait_idle()
    cmds = [c["type"] for c in await commands(run)]
    assert cmds == ["account.suspended", "account.restored"]
    assert len(await recharge_requests(run)) == 1  # the top-up did not end the request in flight
    assert [e["kind"] for e in await run.ledger()].count("topup") == 2


async def test_an_unanswered_request_times_out_and_a_new_one_follows(
    run: Run, clocked: tuple[Runtime, ManualClock]
) -> None:
    rt, clock = clocked
    a = run.acct("timeout")
    await opened(run, a, 9_000_000)  # already below: the first charge asks
    await run.send(EV, a, sms(run, a, f"s1-{run.uid}"))
    await run.wait_idle()
    clock.advance(599_000)
    await rt.worker.tick()
    assert len(await recharge_requests(run)) == 1
    clock.advance(2_000)
    await rt.worker.tick()
    reqs = await recharge_requests(run)
    assert len(reqs) == 2
    # a late success for the timed-out request still credits: the card was charged
    await run.send(
        names.RECHARGE_RESULTS,
        a,
        recharge_result(
            run, a, f"late-{run.uid}", request_id=reqs[0]["request_id"], amount_micros=AMOUNT
        ),
    )
    await run.wait_idle()
    assert [e["kind"] for e in await run.ledger()].count("recharge") == 1


@pytest.mark.parametrize(
    ("threshold", "amount"),
    [(9_999_999, AMOUNT), (THRESHOLD, 50_000_000), (70_000_000, 65_000_000)],
)
async def test_invalid_settings_are_refused_and_the_old_ones_kept(
    run: Run, clocked: tuple[Runtime, ManualClock], threshold: int, amount: int
) -> None:
    a = run.acct("policy")
    await opened(run, a, 100_000_000)
    await run.send(ACC, a, upsert(run, a, f"bad-{run.uid}", threshold=threshold, amount=amount))
    await run.wait_idle()
    (dlq,) = await run.outputs(names.DLQ)
    assert dlq.headers[headers_of.ERROR] == b"invalid_auto_recharge"
    thr = await run.redis.hget(run.keys.account_of(a), AccountField.AUTO_RECHARGE_THRESHOLD)
    assert int(thr) == THRESHOLD
