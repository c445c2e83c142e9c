"""Calls and suspension on the real broker and Redis.

Out-of-order and repeated call events settle a call exactly once; rating edge cases (a
zero-length call, inbound calls) come out as the rate plan says; usage past the floor is
charged, and the switch is told once when an account crosses its floor and once when it
is back above.

Sample plan std-usd: outbound "1" 0.60/min 1/1; "44" 0.90/min 60/6 + 0.05 connect;
other outbound 1.20/min 60/60; inbound free except "1800" 0.05/min 60/6; SMS out 0.0079.
"""

from __future__ import annotations

from charger.protocol.fields import AccountField, CallField
from charger.protocol.keys import slot_of
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.outputs import commands_for, entries
from tests.kit.records import (
    FR_NUMBER,
    UK_NUMBER,
    US_NUMBER,
    balance_credited,
    call_ended,
    call_started,
    sms_sent,
)
from tests.kit.worker import running

EV = names.TELEPHONY_EVENTS


async def call_state(run: Run, acct: str, cid: str) -> dict[str, str]:
    slot = slot_of(acct, run.keys.slots)
    h = await run.redis.hgetall(run.keys.call(slot, acct, cid))
    return {k.decode(): v.decode() for k, v in h.items()}


async def active_calls(run: Run, acct: str) -> set[str]:
    slot = slot_of(acct, run.keys.slots)
    members = await run.redis.smembers(run.keys.account_calls(slot, acct))
    # the set holds call session keys; name the calls by their ids
    return {(await run.redis.hget(m, CallField.CALL_ID)).decode() for m in members}


async def test_end_before_start_is_parked_then_the_late_start_settles_it_once(run: Run) -> None:
    u = run.uid
    a, b = run.acct("park"), run.acct("inbatch")
    ka, kb = f"ka-{u}", f"kb-{u}"
    # No route: it cannot be rated yet.
    end_a = call_ended(run, a, f"ea-{u}", call_id=ka, duration_ms=30_500)
    async with running(run.settings):
        await run.account(a, credit=5_000_000)
        await run.account(b, credit=5_000_000)
        await run.wait_idle(60)
        await run.send(EV, a, end_a)
        await run.wait_idle()
        # Parked: nothing moved, nothing published, the end waits in its call hash.
        parked = await call_state(run, a, ka)
        assert parked["state"] == "pending_end"
        assert parked[CallField.DURATION] == "30500"
        assert parked["end_id"] == end_a["id"]
        assert await run.balance(a) == 5_000_000
        assert await entries(run, a, "call") == []

        start_a = call_started(run, a, f"sa-{u}", call_id=ka, to=US_NUMBER)
        await run.send_all(
            [
                (EV, a, start_a),
                (EV, a, start_a),  # resent start
                (EV, a, end_a),  # resent end
                # a second end of the same call
                (EV, a, call_ended(run, a, f"ea2-{u}", call_id=ka, duration_ms=99_000)),
                # b: the same story within one batch (or two: the outcome must not differ).
                (EV, b, call_ended(run, b, f"eb-{u}", call_id=kb, duration_ms=61_200)),
                (EV, b, call_started(run, b, f"sb-{u}", call_id=kb, to=UK_NUMBER)),
            ]
        )
        await run.wait_idle()

    # a: "1" at 0.60/min 1/1: 30.5 s -> 31 s -> 31 * 10_000 = 310_000
    calls_a = await entries(run, a, "call")
    assert len(calls_a) == 1
    e = calls_a[0]
    assert e["id"] == f"ev:ea-{u}:call"
    assert e["source_event_id"] == end_a["id"]
    assert e["time"] == end_a["time"]
    assert (e["call_id"], e["duration_ms"], e["quantity"]) == (ka, 30_500, 31)
    assert (e["prefix"], e["direction"]) == ("1", "outbound")
    assert e["amount_micros"] == -310_000
    assert e["balance_after_micros"] == 4_690_000
    assert await run.balance(a) == 4_690_000
    assert (await call_state(run, a, ka))["state"] == "ended"
    assert await active_calls(run, a) == set()

    # b: "44" at 0.90/min 60/6 + 0.05: 61.2 s -> 62 s -> 66 s billed -> 990_000 + 50_000
    calls_b = await entries(run, b, "call")
    assert [(c["id"], c["quantity"], c["amount_micros"]) for c in calls_b] == [
        (f"ev:eb-{u}:call", 66, -1_040_000)
    ]
    assert await run.balance(b) == 5_000_000 - 1_040_000
    assert await active_calls(run, b) == set()
    assert await run.outputs(names.DLQ) == []


async def test_end_with_route_settles_alone_and_a_late_start_opens_nothing(run: Run) -> None:
    u = run.uid
    a = run.acct("routed")
    k = f"k-{u}"
    route = {"direction": "outbound", "from": "+15550001", "to": UK_NUMBER}
    end = call_ended(run, a, f"e-{u}", call_id=k, duration_ms=61_200, **route)
    async with running(run.settings):
        await run.account(a, credit=5_000_000)
        await run.wait_idle(60)
        await run.send(EV, a, end)
        await run.wait_idle()
        assert await run.balance(a) == 5_000_000 - 1_040_000
        await run.send_all(
            [(EV, a, call_started(run, a, f"s-{u}", call_id=k, to=UK_NUMBER)), (EV, a, end)]
        )
        await run.wait_idle()

    calls = await entries(run, a, "call")
    assert len(calls) == 1
    c = calls[0]
    # "44" at 0.90/min 60/6 + 0.05 connect: 61.2 s -> 62 s -> 66 s billed
    assert (c["id"], c["quantity"], c["amount_micros"]) == (f"ev:e-{u}:call", 66, -1_040_000)
    assert (c["connect_fee_micros"], c["increments"]) == (50_000, "60/6")
    assert await run.balance(a) == 3_960_000
    # The late start opened no session and put no hold.
    assert (await call_state(run, a, k))["state"] == "ended"
    assert await active_calls(run, a) == set()
    slot = slot_of(a, run.keys.slots)
    members = await run.redis.zrange(run.keys.sessions(slot), 0, -1)
    assert not [m for m in members if k.encode() in m]
    assert int(await run.redis.hget(run.keys.account_of(a), AccountField.HELD) or 0) == 0
    assert await run.outputs(names.DLQ) == []


async def test_duplicate_starts_and_ends_change_nothing(run: Run) -> None:
    u = run.uid
    a = run.acct("dups")
    k = f"k-{u}"
    start = call_started(run, a, f"s-{u}", call_id=k, to=FR_NUMBER)
    end = call_ended(run, a, f"e-{u}", call_id=k, duration_ms=61_000)
    records = [
        (EV, a, start),
        (EV, a, start),
        # another start, same call
        (EV, a, call_started(run, a, f"s2-{u}", call_id=k, to=FR_NUMBER, time=run.at(1))),
        (EV, a, end),
        (EV, a, end),
        # another end, same call, longer
        (EV, a, call_ended(run, a, f"e2-{u}", call_id=k, duration_ms=600_000)),
    ]
    async with running(run.settings):
        await run.account(a, credit=5_000_000)
        await run.wait_idle(60)
        await run.send_all(records[:3])
        await run.wait_idle()
        assert (await call_state(run, a, k))["state"] == "active"
        assert await active_calls(run, a) == {k}
        await run.send_all(records[3:])
        await run.wait_idle()
        await run.send_all(records)  # all of it once more
        await run.wait_idle()

    # Other outbound at 1.20/min 60/60: 61 s -> 120 s billed -> 2_400_000
    calls = await entries(run, a, "call")
    assert [(c["id"], c["quantity"], c["amount_micros"]) for c in calls] == [
        (f"ev:e-{u}:call", 120, -2_400_000)
    ]
    assert await run.balance(a) == 2_600_000
    assert (await call_state(run, a, k))["state"] == "ended"
    slot = slot_of(a, run.keys.slots)
    members = await run.redis.zrange(run.keys.sessions(slot), 0, -1)
    assert not [m for m in members if k.encode() in m]  # the session is closed
    assert await run.outputs(names.DLQ) == []  # same bytes again are resends, not conflicts


async def test_a_settled_call_leaves_the_accounts_active_calls(run: Run) -> None:
    u = run.uid
    a = run.acct("active")
    k = f"k-{u}"
    async with running(run.settings):
        await run.account(a, credit=5_000_000)
        await run.wait_idle(60)
        await run.send(EV, a, call_started(run, a, f"s-{u}", call_id=k, to=US_NUMBER))
        await run.wait_idle()
        assert await active_calls(run, a) == {k}
        await run.send(EV, a, call_ended(run, a, f"e-{u}", call_id=k, duration_ms=10_000))
        await run.wait_idle()
    # "1" at 0.60/min 1/1: 10 s -> 100_000; the call is settled...
    assert await run.balance(a) == 4_900_000
    assert (await call_state(run, a, k))["state"] == "ended"
    # ... so the account has no active call left.
    assert await active_calls(run, a) == set()


async def test_zero_length_call_pays_the_connect_fee_and_inbound_calls_are_rated(
    run: Run,
) -> None:
    zero_uk, zero_us = run.acct("zero-uk"), run.acct("zero-us")
    inbound, tollfree = run.acct("inbound"), run.acct("tollfree")
    cases = [  # account, direction, to, duration
        (zero_uk, "outbound", UK_NUMBER, 0),
        (zero_us, "outbound", US_NUMBER, 0),
        (inbound, "inbound", "+15550009999", 30_000),
        (tollfree, "inbound", "+18005550100", 30_000),
    ]
    async with running(run.settings):
        for acct, *_ in cases:
            await run.account(acct, credit=1_000_000)
        await run.wait_idle(60)
        items = []
        for acct, direction, to, ms in cases:
            k = f"k-{acct}"
            items.append(
                (
                    EV,
                    acct,
                    call_started(run, acct, f"s-{acct}", call_id=k, to=to, direction=direction),
                )
            )
            items.append((EV, acct, call_ended(run, acct, f"e-{acct}", call_id=k, duration_ms=ms)))
        await run.send_all(items)
        await run.wait_idle()

    got = {}
    for acct, *_ in cases:
        calls = await entries(run, acct, "call")
        assert len(calls) == 1, acct
        c = calls[0]
        got[acct] = (
            c["quantity"],
            c["unit_price_micros"],
            c["connect_fee_micros"],
            c["amount_micros"],
            c["balance_after_micros"],
            await run.balance(acct),
        )
    assert got == {
        # "44": nothing billed for 0 s, but the answered call pays its 0.05 connect fee
        zero_uk: (0, 900_000, 50_000, -50_000, 950_000, 950_000),
        # "1": no connect fee, 0 s: a zero entry, nothing moves
        zero_us: (0, 600_000, 0, 0, 1_000_000, 1_000_000),
        # inbound catch-all is free: 30 s -> 60 s billed at 0 -> a zero entry
        inbound: (60, 0, 0, 0, 1_000_000, 1_000_000),
        # inbound "1800" toll-free 0.05/min 60/6: 30 s -> 60 s -> 50_000
        tollfree: (60, 50_000, 0, -50_000, 950_000, 950_000),
    }


async def test_usage_past_the_floor_is_charged_and_suspends_once_until_a_top_up(
    run: Run,
) -> None:
    u = run.uid
    a = run.acct("floor0")
    async with running(run.settings):
        await run.account(a, credit=20_000)
        await run.wait_idle(60)
        opening = await commands_for(run, a)
        await run.send_all([(EV, a, sms_sent(run, a, f"s{i}-{u}")) for i in range(1, 6)])
        await run.wait_idle()
        burst = (await commands_for(run, a))[len(opening) :]
        await run.send(
            names.BILLING_ACCOUNTS, a, balance_credited(run, a, f"top-{u}", amount_micros=1_000_000)
        )
        await run.wait_idle()
        after = (await commands_for(run, a))[len(opening) + len(burst) :]

    # A new account is not suspended for opening at 0: it waits for its first movement.
    assert opening == []

    # Every text is charged, the balance goes below zero: 20_000 - 5 * 7_900
    sms_out = await entries(run, a, "sms_out")
    assert [e["balance_after_micros"] for e in sms_out] == [12_100, 4_200, -3_700, -11_600, -19_500]
    assert await run.balance(a) == -19_500 + 1_000_000
    # The third text reaches the floor (0): one suspension, caused by it, no more.
    assert [(c["type"], c["id"], c["available_micros"]) for c in burst] == [
        ("account.suspended", f"ev:s3-{u}:account.suspended", -3_700)
    ]
    assert burst[0]["reason"] == "balance_exhausted"
    # A movement crossed the floor: its balance is reported, dated as that text; no holds,
    # so available and balance agree. The command's own time is when it was issued.
    assert (burst[0]["balance_micros"], burst[0]["effective_at"]) == (-3_700, run.t0)
    assert after[0]["balance_micros"] == 980_500
    # The top-up lifts it above the floor: one restore.
    assert [(c["type"], c["id"], c["available_micros"]) for c in after] == [
        ("account.restored", f"ac:top-{u}:account.restored", 980_500)
    ]


async def test_credit_limit_moves_the_suspension_floor(run: Run) -> None:
    u = run.uid
    a, b = run.acct("limit"), run.acct("edge")
    async with running(run.settings):
        # 0.05 of credit: suspended only once available balance <= -50_000.
        await run.account(a, credit=20_000, credit_limit=50_000)
        await run.account(b, credit=29_000, credit_limit=50_000)
        await run.wait_idle(60)
        assert await commands_for(run, a) == []  # opening at 0 > -50_000: not suspended
        await run.send_all(
            [(EV, a, sms_sent(run, a, f"a{i}-{u}")) for i in range(1, 11)]
            + [(EV, b, sms_sent(run, b, f"b{i}-{u}")) for i in range(1, 11)]
        )
        await run.wait_idle()
        await run.send(
            names.BILLING_ACCOUNTS, a, balance_credited(run, a, f"top-{u}", amount_micros=1_000_000)
        )
        await run.wait_idle()

    # a: 20_000 - 7_900 n: after 8 texts -43_200 (above the floor), after 9 -51_100
    after_a = [e["balance_after_micros"] for e in await entries(run, a, "sms_out")]
    assert after_a == [20_000 - 7_900 * n for n in range(1, 11)]
    assert [(c["type"], c["id"], c["available_micros"]) for c in await commands_for(run, a)] == [
        ("account.suspended", f"ev:a9-{u}:account.suspended", -51_100),
        ("account.restored", f"ac:top-{u}:account.restored", -59_000 + 1_000_000),
    ]
    # b: 29_000 - 7_900 * 10 = -50_000 exactly: at the floor is suspended, by the 10th text
    assert await run.balance(b) == -50_000
    assert [(c["type"], c["id"], c["available_micros"]) for c in await commands_for(run, b)] == [
        ("account.suspended", f"ev:b10-{u}:account.suspended", -50_000),
    ]
