"""In-call holds and predictive cutoff, on the real broker and Redis, with a hand-driven clock."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from charger.clock import ManualClock
from charger.events.timefmt import format_time_ms, parse_time_ms
from charger.metrics import Sampler
from charger.runtime import Runtime
from charger.settings import Settings
from tests.integration.harness import Run
from tests.integration.test_crash import Worker
from topics import names

EV = names.TELEPHONY_EVENTS


def start(
    run: Run,
    acct: str,
    call: str,
    to: str = "+14155550100",
    direction: str = "outbound",
    t: str | None = None,
) -> dict[str, Any]:
    return {
        "id": f"s-{call}",
        "type": "call.started",
        "account": acct,
        "time": t or run.t0,
        "call_id": call,
        "direction": direction,
        "from": "+15550001",
        "to": to,
    }


def end(run: Run, acct: str, call: str, duration_ms: int) -> dict[str, Any]:
    return {
        "id": f"e-{call}",
        "type": "call.ended",
        "account": acct,
        "time": run.at(duration_ms / 1000),
        "call_id": call,
        "duration_ms": duration_ms,
    }


async def manual_runtime(run: Run, clock: ManualClock) -> Runtime:
    settings = Settings(**{**run.settings.model_dump(), "tick_ms": 0, "redis_url": run.redis_url})
    rt = Runtime(settings, clock=clock)
    await rt.start()
    return rt


async def cut_times(run: Run, rt: Runtime, clock: ManualClock, until_s: int) -> list[int]:
    """Tick once a second of simulated time; the seconds at which cutoffs were published."""
    cuts = []
    for sec in range(until_s + 1):
        clock.set(run.t0_ms + sec * 1000)
        published = await rt.worker.tick()
        cuts += [sec] * published.get("cutoff", 0)
    return cuts


async def cutoffs(run: Run) -> list[dict[str, Any]]:
    return [
        o.json()
        for o in await run.outputs(names.TELEPHONY_COMMANDS)
        if o.json()["type"] == "call.cutoff"
    ]


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
    rt = await manual_runtime(run, clock)
    try:
        await run.send_all([(EV, a, start(run, a, f"c{i}-{run.uid}")) for i in range(calls)])
        await run.wait_idle()
        cuts = await cut_times(run, rt, clock, expected_cut_s + 30)
        assert cuts == [expected_cut_s] * calls
        # The switch reports the talk time: the final charge settles from it.
        await run.send_all(
            [
                (EV, a, end(run, a, f"c{i}-{run.uid}", expected_cut_s * 1000 + 400))
                for i in range(calls)
            ]
        )
        await run.wait_idle()
    finally:
        await rt.stop()
    cmds = await cutoffs(run)
    assert len(cmds) == calls
    assert {c["cutoff_at"] for c in cmds} == {format_time_ms(run.t0_ms + expected_cut_s * 1000)}
    suspended = [
        o.json()
        for o in await run.outputs(names.TELEPHONY_COMMANDS)
        if o.json()["type"] == "account.suspended"
    ]
    assert len(suspended) == 1
    notes = {o.json()["type"] for o in await run.outputs(names.NOTIFICATIONS)}
    assert {"call_cut_off", "balance_exhausted"} <= notes
    # 0.4 s past the cutoff is charged in full: the switch was late, usage happened.
    billed = expected_cut_s + 1
    assert await run.balance(a) == 1_000_000 - calls * billed * 10_000
    assert int(await run.redis.hget(run.keys.account_of(a), "held")) == 0


async def test_zero_rated_inbound_call_is_never_cut(run: Run) -> None:
    a = run.acct("free")
    await run.account(a, credit=0)
    clock = ManualClock(run.t0_ms)
    rt = await manual_runtime(run, clock)
    try:
        await run.send(
            EV, a, start(run, a, f"in-{run.uid}", to="+442071234567", direction="inbound")
        )
        await run.wait_idle()
        assert await cut_times(run, rt, clock, 600) == []
    finally:
        await rt.stop()


async def test_a_top_up_before_the_instant_keeps_the_call_up(run: Run) -> None:
    a = run.acct("topup")
    await run.account(a, credit=100_000)  # 10 s at $0.60/min
    clock = ManualClock(run.t0_ms)
    rt = await manual_runtime(run, clock)
    try:
        await run.send(EV, a, start(run, a, f"t-{run.uid}"))
        await run.wait_idle()
        assert await cut_times(run, rt, clock, 5) == []
        await run.send(
            names.BILLING_ACCOUNTS,
            a,
            {
                "id": f"pay-{run.uid}",
                "type": "balance.credited",
                "account": a,
                "time": run.at(5),
                "amount_micros": 100_000,
                "reference": "PAY",
            },
        )
        await run.wait_idle()
        cuts = [s for s in await cut_times(run, rt, clock, 40) if s > 5]
        assert cuts == [20]
    finally:
        await rt.stop()


async def test_a_lost_end_is_closed_by_the_session_ttl_and_charged_what_it_held(run: Run) -> None:
    a = run.acct("ttl")
    await run.account(a, credit=50_000_000)
    clock = ManualClock(run.t0_ms)
    settings = Settings(
        **{**run.settings.model_dump(), "tick_ms": 0, "max_call_s": 120, "redis_url": run.redis_url}
    )
    rt = Runtime(settings, clock=clock)
    await rt.start()
    try:
        await run.send(EV, a, start(run, a, f"lost-{run.uid}"))
        await run.wait_idle()
        for sec in range(0, 126):
            clock.set(run.t0_ms + sec * 1000)
            await rt.worker.tick()
    finally:
        await rt.stop()
    expired = [e for e in await run.ledger() if e["kind"] == "session_expired"]
    assert len(expired) == 1
    # holds of 10 s, extended 2 s ahead: covered to 130 s when the TTL hit at 120 s
    assert expired[0]["amount_micros"] == -1_300_000
    assert await run.balance(a) == 50_000_000 - 1_300_000
    assert int(await run.redis.hget(run.keys.account_of(a), "held")) == 0
    notes = [o.json() for o in await run.outputs(names.NOTIFICATIONS)]
    assert [n["type"] for n in notes] == ["session_expired"]


async def test_killed_worker_restarted_mid_call_still_cuts_once_on_time(run: Run) -> None:
    a = run.acct("kill")
    await run.account(a, credit=450_000)  # 45 s at $0.60/min, in real time
    fast = {"CHARGER_SESSION_TIMEOUT_MS": "3000"}  # the dead member's partitions move sooner
    w1 = Worker(run, **fast)
    await run.wait_idle(60)
    answer_ms = time.time_ns() // 1_000_000
    try:
        await run.send(EV, a, start(run, a, f"k-{run.uid}", t=format_time_ms(answer_ms)))
        await run.wait_idle(60)
        w1.kill()  # SIGKILL mid-call: holds and schedule live in Redis only
        w2 = Worker(run, **fast)
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
        total += int(await run.redis.hget(run.keys.account_of(a), "held"))
    return total


async def test_the_holds_gauge_is_the_slots_held_total_through_extend_cut_and_end(
    run: Run,
) -> None:
    a, b = run.acct("gauge1"), run.acct("gauge2")
    await run.account(a, credit=5_000_000)
    await run.account(b, credit=300_000)  # cut at 30 s: a cut call keeps its hold
    clock = ManualClock(run.t0_ms)
    rt = await manual_runtime(run, clock)
    sampler = Sampler(rt.metrics, rt.redis, rt.keys)

    def gauge() -> float | None:
        return rt.metrics.registry.get_sample_value("charger_holds", {"currency": "USD"})

    try:
        await run.send_all(
            [(EV, a, start(run, a, f"g1-{run.uid}")), (EV, b, start(run, b, f"g2-{run.uid}"))]
        )
        await run.wait_idle()
        assert await cut_times(run, rt, clock, 45) == [30]
        held = await held_by_accounts(run, [a, b])
        assert held > 0 and await held_by_slots(run) == held
        await sampler.sample_redis(range(run.keys.slots))
        assert gauge() == held / 1_000_000
        await run.send_all(
            [
                (EV, a, end(run, a, f"g1-{run.uid}", 44_000)),
                (EV, b, end(run, b, f"g2-{run.uid}", 30_000)),
            ]
        )
        await run.wait_idle()
        assert await held_by_accounts(run, [a, b]) == 0 == await held_by_slots(run)
        await sampler.sample_redis(range(run.keys.slots))
        assert gauge() == 0
    finally:
        await rt.stop()
