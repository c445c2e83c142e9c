"""Several calls on one account share its money and are cut the instant it is spent.

Random accounts with 1-5 concurrent calls at random rates, increments, connect fees,
credit limits and answer offsets run on the real broker and Redis under a manual clock;
every cutoff must fall exactly where the reference of how money is spent
(`tests/kit/spending.py`) says that call could not pay for its next increment, be published
within one tick of it, and no other call may be cut. Then the switch reports the talk time
and the ledger must add up to the balance change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from charger.charging.session import HoldRate, billed, cost
from charger.clock import ManualClock
from charger.events.timefmt import format_time_ms, parse_time_ms
from charger.protocol.fields import AccountField
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.outputs import cutoffs
from tests.kit.records import call_ended, call_started
from tests.kit.spending import SpendingCall, cutoff_instants
from tests.kit.worker import running

EV = names.TELEPHONY_EVENTS
TICK_MS = 250
INCREMENTS = [(1, 1), (6, 6), (30, 1), (60, 6), (60, 60)]


@dataclass
class Case:
    account: str
    plan: dict[str, Any]
    balance_micros: int
    credit_limit_micros: int
    calls: list[SpendingCall]
    numbers: dict[str, str]


def make_case(run: Run, rng: random.Random, n: int) -> Case:
    account = run.acct(f"share{n}")
    voice, calls, numbers = [], [], {}
    for k in range(1, rng.randint(1, 5) + 1):
        first, then = rng.choice(INCREMENTS)
        rate = HoldRate(
            rng.choice([0, 60_000, 250_000, 600_000, 1_200_000]),
            rng.choice([0, 0, 20_000]),
            first,
            then,
        )
        voice.append(
            {
                "prefix": str(k),
                "direction": "outbound",
                "per_minute_micros": rate.per_minute_micros,
                "connect_fee_micros": rate.connect_fee_micros,
                "increments": f"{first}/{then}",
            }
        )
        call_id = f"c{n}-{k}-{run.uid}"
        answer_ms = run.t0_ms + rng.randint(0, 20_000)
        calls.append(SpendingCall(call_id, answer_ms, rate))
        numbers[call_id] = f"+{k}4155550100"
    # About half a minute to a minute and a half of all the calls' talk together.
    per_second = sum(c.rate.per_minute_micros for c in calls) // 60
    budget = max(1, per_second * rng.randint(20, 90) + rng.randint(0, 50_000))
    credit_limit = rng.choice([0, 0, budget // 3])
    plan = {
        "id": f"share{n}-{run.uid}",
        "currency": "USD",
        "voice": voice,
        "sms": {"outbound_per_segment_micros": 1000},
        "ring_through_attempt_micros": 0,
    }
    return Case(account, plan, budget - credit_limit, credit_limit, calls, numbers)


def started(run: Run, case: Case, call: SpendingCall) -> dict[str, Any]:
    answered = format_time_ms(call.answer_ms)
    to = case.numbers[call.call_id]
    return call_started(
        run, case.account, f"s-{call.call_id}", call_id=call.call_id, to=to, time=answered
    )


async def test_calls_sharing_an_account_are_cut_the_instant_its_money_is_spent(
    run: Run, tmp_path: Path
) -> None:
    rng = random.Random(20261202)
    cases = [make_case(run, rng, n) for n in range(30)]
    plans = tmp_path / "plans.json"
    plans.write_bytes(orjson.dumps({"plans": [c.plan for c in cases]}))
    settings = run.settings_with(tick_ms=0, rate_plans_path=str(plans))
    expected = {
        c.account: cutoff_instants(c.calls, c.balance_micros + c.credit_limit_micros) for c in cases
    }
    clock = ManualClock(run.t0_ms)
    async with running(settings, clock) as rt:
        for c in cases:
            await run.account(
                c.account,
                credit=c.balance_micros,
                plan=c.plan["id"],
                credit_limit=c.credit_limit_micros,
            )
        await run.send_all(
            [(EV, c.account, started(run, c, call)) for c in cases for call in c.calls]
        )
        await run.wait_idle(60)
        last_ms = max(max(e.values(), default=run.t0_ms) for e in expected.values())
        while clock.now_ms() <= last_ms + 2 * TICK_MS:
            await rt.worker.tick()
            clock.advance(TICK_MS)
        cut = await cutoffs(run)
        got: dict[str, dict[str, int]] = {c.account: {} for c in cases}
        for doc in cut:
            assert doc["call_id"] not in got[doc["account"]], f"cut twice: {doc}"
            at_ms = parse_time_ms(doc["cutoff_at"])
            got[doc["account"]][doc["call_id"]] = at_ms
            lateness_ms = parse_time_ms(doc["time"]) - at_ms
            assert 0 <= lateness_ms < TICK_MS, doc
        assert got == expected

        # The switch hung up at each cutoff; calls never cut end where the sweep stopped.
        ends = []
        for c in cases:
            for call in c.calls:
                end_ms = expected[c.account].get(call.call_id, clock.now_ms())
                ended = call_ended(
                    run,
                    c.account,
                    f"e-{call.call_id}",
                    call_id=call.call_id,
                    duration_ms=end_ms - call.answer_ms,
                    time=format_time_ms(end_ms),
                )
                ends.append((EV, c.account, ended))
        await run.send_all(ends)
        await run.wait_idle(60)

    ledger = await run.ledger()
    for c in cases:
        balance = await run.balance(c.account)
        moved = sum(e["amount_micros"] for e in ledger if e["account"] == c.account)
        assert moved == balance, c.account
        calls_cost = -sum(
            e["amount_micros"] for e in ledger if e["account"] == c.account and e["kind"] == "call"
        )
        budget = c.balance_micros + c.credit_limit_micros
        # Never cut while money was left: the last call cut could not buy its next
        # increment with what was left when all calls had ended.
        if expected[c.account] and len(expected[c.account]) == len(c.calls):
            last = max(c.calls, key=lambda call: (expected[c.account][call.call_id], call.call_id))
            covered = (expected[c.account][last.call_id] - last.answer_ms) // 1000
            price = cost(billed(covered + 1, last.rate), last.rate) - cost(covered, last.rate)
            assert budget - calls_cost < price, c.account
        held = await run.redis.hget(run.keys.account_of(c.account), AccountField.HELD)
        assert int(held) == 0, c.account
