"""In-call holds and predictive cutoff, on the real broker and Redis, with a hand-driven clock."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from charger.clock import ManualClock
from charger.events.timefmt import format_time_ms, parse_time_ms
from charger.protocol.fields import AccountField
from charger.runtime import Runtime
from charger.sampler import Sampler
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.outputs import commands, cutoffs, notifications
from tests.kit.records import UK_NUMBER, balance_credited, call_ended, call_started
from tests.kit.worker import Worker, running

EV = names.TELEPHONY_EVENTS


async def cut_times(run: Run, rt: Runtime, clock: ManualClock, until_s: int) -> list[int]:
    """Tick once a second of simulated time; the seconds at which cutoffs were published."""
    cuts = []
    for sec in range(until_s + 1):
        clock.set(run.t0_ms + sec * 1000)
        published = await rt.worker.tick()
        cuts += [sec] * published.get("cutoff", 0)
    return cuts


@pytest.mark.parametrize(
    ("calls", "credit_limit", "expected_cut_s"),
    [
        (1, 0, 100),  # $1.00 at $0.60/min -> 100 s
        (2, 0, 50),  # two calls share it -> both at 50 s
        (1, 500_000, 150),  # a $0.50 credit limit lends 50 s more
    ],
)
async def test_cutoff_at_the_exact_second_credit_runs_out(
    run: Run, calls: int, credit_limit: int, expected_cut_s: int
) -> None:
    a = run.acct(f"cut{calls}{credit_limit}")
    await run.account(a, credit=1_000_000, credit_limit=credit_limit)
    clock = ManualClock(run.t0_ms)
    async with running(run.settings_with(tick_ms=0), clock) as rt:
        ids = [f"c{i}-{run.uid}" for i in range(calls)]
        await run.send_all([(EV, a, call_started(run, a, f"s-{c}", call_id=c)) for c in ids])
        await run.wait_idle()
        cuts = await cut_times(run, rt, clock, expected_cut_s + 30)
        assert cuts == [expected_cut_s] * calls
        # The switch reports the talk time: the final charge settles from it.
        talk_ms = expected_cut_s * 1000 + 400
        await run.send_all(
            [(EV, a, call_ended(run, a, f"e-{c}", call_id=c, duration_ms=talk_ms)) for c in ids]
        )
        await run.wait_idle()
    cmds = await cutoffs(run)
    assert len(cmds) == calls
    assert {c["cutoff_at"] for c in cmds} == {format_time_ms(run.t0_ms + expected_cut_s * 1000)}
    suspended = await commands(run, "account.suspended")
    assert len(suspended) == 1
    notes = {n["type"] for n in await notifications(run)}
    assert {"call_cut_off", "balance_exhausted"} <= notes
    # 0.4 s past the cutoff is charged in full: the switch was late, usage happened.
    billed = expected_cut_s + 1
    assert await run.balance(a) == 1_000_000 - calls * billed * 10_000
    assert int(await run.redis.hget(run.keys.account_of(a), AccountField.HELD)) == 0


async def test_zero_rated_inbound_call_is_never_cut(run: Run) -> None:
    a = run.acct("free")
    await run.account(a, credit=0)
    clock = ManualClock(run.t0_ms)
    async with running(run.settings_with(tick_ms=0), clock) as rt:
        call = f"in-{run.uid}"
        await run.send(
            EV,
            a,
            call_started(run, a, f"s-{call}", call_id=call, to=UK_NUMBER, direction="inbound"),
        )
        await run.wait_idle()
        assert await cut_times(run, rt, clock, 600) == []


async def test_a_top_up_before_the_instant_keeps_the_call_up(run: Run) -> None:
    a = run.acct("topup")
    await run.account(a, credit=100_000)  # 10 s at $0.60/min
    clock = ManualClock(run.t0_ms)
    async with running(run.settings_with(tick_ms=0), clock) as rt:
        await run.send(EV, a, call_started(run, a, f"s-t-{run.uid}", call_id=f"t-{run.uid}"))
        await run.wait_idle()
        assert await cut_times(run, rt, clock, 5) == []
        paid = balance_credited(
            run, a, f"pay-{run.uid}", amount_micros=100_000, reference="PAY", time=run.at(5)
        )
        await run.send(names.BILLING_ACCOUNTS, a, paid)
        await run.wait_idle()
        cuts = [s for s in await cut_times(run, rt, clock, 40) if s > 5]
        assert cuts == [20]


async def test_a_lost_end_is_closed_by_the_session_ttl_and_charged_what_it_held(run: Run) -> None:
    a = run.acct("ttl")
    await run.account(a, credit=50_000_000)
    clock = ManualClock(run.t0_ms)
    async with running(run.settings_with(tick_ms=0, max_call_s=120), clock) as rt:
        call = f"lost-{run.uid}"
        await run.send(EV, a, call_started(run, a, f"s-{call}", call_id=call))
        await run.wait_idle()
        for sec in range(0, 126):
            clock.set(run.t0_ms + sec * 1000)
            await rt.worker.tick()
    expired = [e for e in await run.ledger() if e["kind"] == "session_expired"]
    assert len(expired) == 1
    # holds of 10 s, extended 2 s ahead: covered to 130 s when the TTL hit at 120 s
    assert expired[0]["amount_micros"] == -1_300_000
    assert await run.balance(a) == 50_000_000 - 1_300_000
    assert int(await run.redis.hget(run.keys.account_of(a), AccountField.HELD)) == 0
    assert [n["type"] for n in await notifications(run)] == ["session_expired"]


async def test_killed_worker_restarted_mid_call_still_cuts_once_on_time(run: Run) -> None:
    a = run.acct("kill")
    await run.account(a, credit=450_000)  # 45 s at $0.60/min, in real time
    # The dead member's partitions move after the default 6 s session timeout: Kafka's
    # group.min.session.timeout.ms refuses anything shorter (the embedded broker took 3 s),
    # and the cutoff is still 45 s away.
    w1 = Worker(run)
    await run.wait_idle(60)
    answer_ms = time.time_ns() // 1_000_000
    try:
        call = f"k-{run.uid}"
        answered = format_time_ms(answer_ms)
        await run.send(EV, a, call_started(run, a, f"s-{call}", call_id=call, time=answered))
        await run.wait_idle(60)
        w1.kill()  # SIGKILL mid-call: holds and schedule live in Redis only
        w2 = Worker(run)
        try:
            deadline = time.monotonic() + 90
            cmds: list[dict[str, Any]] = []
            while time.monotonic() < deadline and not cmds:
                await asyncio.sleep(1)
                cmds = await cutoffs(run)
            await asyncio.sleep(2)  # a second cutoff would show up by now
            cmds = await cutoffs(run)
        finally:
            assert w2.stop() == 0, w2.tail()
    finally:
        w1.kill()
    assert len(cmds) == 1, cmds
    assert cmds[0]["cutoff_at"] == format_time_ms(answer_ms + 45_000)
    lateness = parse_time_ms(cmds[0]["time"]) - (answer_ms + 45_000)
    assert 0 <= lateness <= 1_000, lateness


async def held_by_slots(run: Run) -> int:
    """What the slots' held totals (the holds gauge's source) add up to, all currencies."""
    total = 0
    for slot in range(run.keys.slots):
        total += sum(int(v) for v in (await run.redis.hgetall(run.keys.held(slot))).values())
    return total


async def held_by_accounts(run: Run, accounts: list[str]) -> int:
    total = 0
    for a in accounts:
        total += int(await run.redis.hget(run.keys.account_of(a), AccountField.HELD))
    return total


async def test_the_holds_gauge_is_the_slots_held_total_through_extend_cut_and_end(
    run: Run,
) -> None:
    a, b = run.acct("gauge1"), run.acct("gauge2")
    await run.account(a, credit=5_000_000)
    await run.account(b, credit=300_000)  # cut at 30 s: a cut call keeps its hold
    clock = ManualClock(run.t0_ms)
    async with running(run.settings_with(tick_ms=0), clock) as rt:
        sampler = Sampler(rt.metrics, rt.redis, rt.keys)

        def gauge() -> float | None:
            return rt.metrics.registry.get_sample_value("charger_holds", {"currency": "USD"})

        first, second = f"g1-{run.uid}", f"g2-{run.uid}"
        await run.send_all(
            [
                (EV, a, call_started(run, a, f"s-{first}", call_id=first)),
                (EV, b, call_started(run, b, f"s-{second}", call_id=second)),
            ]
        )
        await run.wait_idle()
        assert await cut_times(run, rt, clock, 45) == [30]
        held = await held_by_accounts(run, [a, b])
        assert held > 0 and await held_by_slots(run) == held
        await sampler.sample_redis(range(run.keys.slots))
        assert gauge() == held / 1_000_000
        await run.send_all(
            [
                (EV, a, call_ended(run, a, f"e-{first}", call_id=first, duration_ms=44_000)),
                (EV, b, call_ended(run, b, f"e-{second}", call_id=second, duration_ms=30_000)),
            ]
        )
        await run.wait_idle()
        assert await held_by_accounts(run, [a, b]) == 0 == await held_by_slots(run)
        await sampler.sample_redis(range(run.keys.slots))
        assert gauge() == 0
