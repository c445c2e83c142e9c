"""Rate plan versions on the real broker and Redis: a call is charged at the rate of its answer.

Event times are built from the run's clock (a few minutes back from now), never a fixed
date: the worker compares session times with the wall clock.
"""

from __future__ import annotations

import time
from typing import Any

from charger.events.timefmt import format_time_ms
from charger.protocol.fields import CallField
from charger.protocol.keys import slot_of
from charger.rating.versions import record_key
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.outputs import entries
from tests.kit.records import call_ended, call_started, rate_plan_upserted, sms_sent
from tests.kit.waits import until
from tests.kit.worker import running

EV, RP = names.TELEPHONY_EVENTS, names.RATE_PLANS


def plan_version(
    plan_id: str, version: int, start: str | None, per_minute: str, sms: str
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": plan_id,
        "currency": "USD",
        "version": version,
        "voice": [
            {"prefix": "1", "direction": "outbound", "per_minute": per_minute, "increments": "1/1"}
        ],
        "sms": {"outbound_per_segment": sms},
    }
    if start is not None:
        doc["effective_from"] = start
    published = format_time_ms(int(time.time() * 1000))  # published now
    return rate_plan_upserted(published, f"pub-{plan_id}-{version}", doc)


async def test_a_call_is_charged_at_the_version_in_force_at_its_answer(run: Run) -> None:
    # The call is answered at t(0); version 2 (twice the price) starts at t(10) and is
    # published only after the answer; the call ends at t(60).
    base_ms = int(time.time() * 1000) - 300_000

    def t(seconds: float) -> str:
        return format_time_ms(base_ms + int(seconds * 1000))

    plan_id, acct = run.acct("tier"), run.acct("caller")
    v1 = plan_version(plan_id, 1, None, "0.60", "0.0100")
    v2 = plan_version(plan_id, 2, t(10), "1.20", "0.0200")
    await run.send(RP, record_key(plan_id, 1), v1)
    async with running(run.settings) as rt:
        await run.account(acct, plan=plan_id, credit=10_000_000)
        await run.send(EV, acct, call_started(run, acct, "s1", call_id="c1", time=t(0)))
        await run.wait_idle(60)
        slot = slot_of(acct, run.keys.slots)
        session = await run.redis.hgetall(run.keys.call(slot, acct, "c1"))
        stored = (CallField.RATE_PLAN, CallField.RATE_PLAN_VERSION, CallField.PREFIX)
        stored += (CallField.PRICE_PER_MINUTE,)
        assert [session[field.encode()] for field in stored] == [
            plan_id.encode(),
            b"1",
            b"1",
            b"600000",
        ]

        await run.send(RP, record_key(plan_id, 2), v2)
        await until(lambda: len(rt.plans.current()[plan_id].versions) == 2, "version 2")
        ended = call_ended(run, acct, "e1", call_id="c1", duration_ms=60_000, time=t(60))
        await run.send(EV, acct, ended)
        # A call answered after version 2's start is rated by it.
        await run.send(EV, acct, call_started(run, acct, "s2", call_id="c2", time=t(20)))
        ended = call_ended(run, acct, "e2", call_id="c2", duration_ms=30_000, time=t(50))
        await run.send(EV, acct, ended)
        # Texts: before version 2's start, exactly at it, after it.
        for eid, when in (("m-before", t(9.999)), ("m-at", t(10)), ("m-after", t(40))):
            await run.send(EV, acct, sms_sent(run, acct, eid, message_id=eid, time=when))
        await run.wait_idle(60)

    ledger = {e["source_event_id"]: e for e in await entries(run, acct)}
    first = ledger["e1"]
    assert (first["amount_micros"], first["unit_price_micros"]) == (-600_000, 600_000)
    assert (first["rate_plan"], first["rate_plan_version"], first["prefix"]) == (plan_id, 1, "1")
    second = ledger["e2"]
    assert (second["amount_micros"], second["rate_plan_version"]) == (-600_000, 2)  # 30 s at 1.20
    texts = {
        eid: (ledger[eid]["amount_micros"], ledger[eid]["rate_plan_version"])
        for eid in ("m-before", "m-at", "m-after")
    }
    assert texts == {"m-before": (-10_000, 1), "m-at": (-20_000, 2), "m-after": (-20_000, 2)}
    assert await run.balance(acct) == 10_000_000 - 600_000 - 600_000 - 10_000 - 2 * 20_000
