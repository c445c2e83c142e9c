"""A call is rated once, at answer: the planner stores the rate in force then with the session
and charges the end with it, whatever plan version is in force when the end is planned."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from charger.charging.planner import Outcome, Planner
from charger.charging.records import (
    AccountInfo,
    CallRate,
    CallState,
    Inbound,
    Reads,
)
from charger.events.timefmt import parse_time_ms
from charger.protocol.fields import CALL_FIELDS
from charger.protocol.keys import Keys, slot_of
from charger.protocol.ops import Move, SettleCall, StartCall
from charger.rating import Increments, PlanVersions, VoiceRate, plan_from_dict
from charger_topics import names
from tests.kit.ops import ledger_of, the_one

ANSWER = "2026-11-22T10:00:00.000Z"
V2_FROM = "2026-11-22T10:00:30.000Z"  # version 2 starts while the call is up
END = "2026-11-22T10:01:00.000Z"
ACCOUNT = AccountInfo("USD", "tier", 0)


def version(n: int, start: str | None, rates: list[dict[str, Any]], sms: str = "0.01") -> Any:
    d = {"id": "tier", "currency": "USD", "version": n, "voice": rates}
    d |= {"sms": {"outbound_per_segment": sms}}
    return plan_from_dict(d | ({"effective_from": start} if start else {}))


V1 = version(1, None, [{"prefix": "1", "direction": "outbound", "per_minute": "0.60"}])
V2 = version(
    2,
    V2_FROM,
    [
        {"prefix": "1", "direction": "outbound", "per_minute": "1.20", "increments": "1/1"},
        {"prefix": "1415", "direction": "outbound", "per_minute": "2.40", "connect_fee": "0.10"},
    ],
    sms="0.02",
)
TIER = {"tier": PlanVersions([V1, V2])}
ROUTE = {"direction": "outbound", "from": "+15550001", "to": "+14155550100"}


def started(time: str = ANSWER) -> dict[str, Any]:
    body = {"id": "s1", "type": "call.started", "account": "a1", "time": time, "call_id": "c1"}
    return body | ROUTE


def ended(time: str = END, duration_ms: int = 60_000, route: bool = False) -> dict[str, Any]:
    body = {"id": "e1", "type": "call.ended", "account": "a1", "time": time, "call_id": "c1"}
    return body | {"duration_ms": duration_ms} | (ROUTE if route else {})


def run(bodies: list[dict[str, Any]], state: CallState | None = None, plans: Any = None) -> Outcome:
    p = Planner(Keys("t", 8), lambda: TIER if plans is None else plans, {"a1": ACCOUNT})
    batch = [
        Inbound(names.TELEPHONY_EVENTS, slot_of("a1", 8), n, b"a1", orjson.dumps(b))
        for n, b in enumerate(bodies)
    ]
    prepared = p.prepare(batch)
    calls = {d.call_key: state for d in prepared.decoded if d.call_key}
    return p.plan(prepared, Reads(calls=calls))


def stored_rate(out: Outcome) -> tuple[int, int, int, int, str, str, int]:
    """What the start stores of the rate it was answered at."""
    op = the_one(out, StartCall)
    return (
        op.price_per_minute_micros,
        op.connect_fee_micros,
        op.first_increment_s,
        op.next_increment_s,
        op.prefix,
        op.rate_plan,
        op.rate_plan_version,
    )


def ledger(out: Outcome, kind: type[Move] | type[SettleCall] = SettleCall) -> dict[str, Any]:
    return ledger_of(the_one(out, kind))


def stored(rate: VoiceRate, plan_id: str = "tier", plan_version: int = 1) -> CallState:
    return CallState(
        "active",
        "outbound",
        "+15550001",
        "+14155550100",
        0,
        rate=CallRate(plan_id, plan_version, rate),
    )


def test_the_start_stores_the_rate_of_the_version_in_force_at_answer() -> None:
    assert stored_rate(run([started()])) == (600_000, 0, 60, 60, "1", "tier", 1)
    # answered at version 2's start
    assert stored_rate(run([started(V2_FROM)])) == (2_400_000, 100_000, 60, 60, "1415", "tier", 2)


def test_an_end_is_charged_at_the_stored_rate_not_the_version_in_force_at_its_time() -> None:
    entry = ledger(run([ended()], stored(V1.voice[0])))
    assert entry["amount_micros"] == -600_000  # 60 s at 0.60, not 2.40 + 0.10
    assert (entry["rate_plan"], entry["rate_plan_version"], entry["prefix"]) == ("tier", 1, "1")
    assert (entry["unit_price_micros"], entry["connect_fee_micros"]) == (600_000, 0)
    assert entry["increments"] == "60/60"


def test_a_stored_rate_is_used_even_when_the_plan_is_gone_or_changed() -> None:
    rate = VoiceRate("14", "outbound", 900_000, 50_000, Increments(1, 1))
    entry = ledger(run([ended(duration_ms=30_000)], stored(rate, "old", 7), plans={}))
    assert entry["amount_micros"] == -(450_000 + 50_000)
    assert (entry["rate_plan"], entry["rate_plan_version"], entry["prefix"]) == ("old", 7, "14")


def test_start_and_end_in_one_batch_use_the_answer_time_version() -> None:
    out = run([started(), ended()])
    assert ledger(out)["amount_micros"] == -600_000
    assert ledger(out)["rate_plan_version"] == 1


def test_a_parked_end_is_settled_at_the_version_in_force_at_answer() -> None:
    parked = CallState("pending_end", duration_ms=60_000, end_id="e0", end_time=END)
    entry = ledger(run([started()], parked))
    assert (entry["amount_micros"], entry["rate_plan_version"]) == (-600_000, 1)
    assert entry["time"] == END and entry["source_event_id"] == "e0"
    entry = ledger(run([started(V2_FROM)], parked))
    assert (entry["amount_micros"], entry["rate_plan_version"]) == (-2_500_000, 2)


def test_an_end_without_a_session_is_rated_at_its_own_time() -> None:
    entry = ledger(run([ended(route=True)]))
    assert (entry["amount_micros"], entry["rate_plan_version"]) == (-2_500_000, 2)
    entry = ledger(run([ended("2026-11-22T10:00:29.999Z", route=True)]))
    assert (entry["amount_micros"], entry["rate_plan_version"]) == (-600_000, 1)


def test_a_session_without_a_stored_rate_is_rated_at_its_answer_time() -> None:
    # Written by a worker before rates were stored: its answer time picks the version.
    old = CallState("active", "outbound", "+15550001", "+14155550100", parse_time_ms(ANSWER))
    assert ledger(run([ended()], old))["rate_plan_version"] == 1
    old.answer_ms = parse_time_ms(V2_FROM)
    assert ledger(run([ended()], old))["rate_plan_version"] == 2


def test_an_expired_session_charges_the_rest_at_the_stored_rate() -> None:
    state = stored(V1.voice[0])
    state.state, state.charged = "expired", 600_000
    entry = ledger(run([ended(duration_ms=120_000)], state))
    assert (entry["amount_micros"], entry["already_charged_micros"]) == (-600_000, 600_000)


@pytest.mark.parametrize(
    ("time", "price"),
    [("2026-11-22T10:00:29.999Z", 10_000), (V2_FROM, 20_000), (END, 20_000)],
)
def test_texts_are_rated_at_the_version_in_force_at_their_time(time: str, price: int) -> None:
    body = {"id": "m1", "type": "sms.sent", "account": "a1", "time": time}
    entry = ledger(run([body | {"message_id": "m", "to": "+1415"}]), Move)
    assert entry["amount_micros"] == -price


def test_before_every_version_nothing_is_in_force() -> None:
    later = {"tier": PlanVersions([V2])}
    text = {"id": "m1", "type": "sms.sent", "account": "a1", "time": ANSWER}
    text |= {"message_id": "m", "to": "+1415"}
    out = run([started(), text, ended("2026-11-22T10:00:29.999Z", route=True)], plans=later)
    assert out.dlq == {"no_rate_plan_in_force": 3}
    assert the_one(run([started(V2_FROM)], plans=later), StartCall).rate_plan_version == 2


def test_a_plan_without_versions_rates_and_stores_as_before() -> None:
    rates = [{"prefix": "1", "direction": "outbound", "per_minute": "0.60"}]
    plain = plan_from_dict({"id": "tier", "currency": "USD", "voice": rates})
    expected = (600_000, 0, 60, 60, "1", "tier", 0)
    assert stored_rate(run([started()], plans={"tier": plain})) == expected
    entry = ledger(run([ended()], stored(plain.voice[0], plan_version=0), plans={"tier": plain}))
    assert "rate_plan_version" not in entry and entry["rate_plan"] == "tier"


def test_call_fields_decode_with_and_without_a_stored_rate() -> None:
    common = [b"active", b"outbound", b"+1555", b"+1415", b"1000", None, None, None, None]
    old = CallState.from_fields([*common, b"600000", b"0", b"60", b"60", None, None, None])
    assert old is not None and old.rate is None and old.answer_ms == 1000
    new = CallState.from_fields([*common, b"600000", b"0", b"60", b"6", b"", b"tier", b"2"])
    assert new is not None and new.rate == CallRate(
        "tier", 2, VoiceRate("", "outbound", 600_000, 0, Increments(60, 6))
    )
    assert len(common) + 7 == len(CALL_FIELDS)
