"""Fuzzing the rating core: plan documents, prices, durations, increments, holds, money text.

test_rating.py and test_session.py hold the worked examples and the properties at everyday
prices; these go to the edges the contract allows (the highest price a plan may state, a
week-long call, hour-long increments) and to documents no one should write, and check the
promises the worker builds on: a plan either loads or says why (PlanError, nothing else);
every amount is an exact non-negative integer, monotonic in duration, and the same whether
the hold maths or the final charge computes it; rating a record raises only RatingError.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charger.charging.records import AccountInfo
from charger.charging.session import HoldRate, billed, cost, reserve
from charger.charging.usage import RatingError, rate_record
from charger.kafka.plans_reader import PlanBook
from charger.money import format_micros, parse_money
from charger.rating import (
    Increments,
    PlanError,
    RatePlan,
    VoiceRate,
    billed_seconds,
    call_charge,
    plan_from_dict,
    sms_charge,
)
from charger.rating.model import MAX_INCREMENT_S, MAX_PRICE_MICROS
from charger_topics import reasons
from charger_topics.records import MAX_DURATION_MS, MAX_MICROS, MAX_SEGMENTS
from tests.kit.strategies import json_like

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIRECTIONS = ["outbound", "inbound", "forwarded"]

# --- plan documents ------------------------------------------------------------------------

money_like = st.one_of(
    st.from_regex(r"-?[0-9]{1,6}(\.[0-9]{1,7})?", fullmatch=True),
    st.text(max_size=8),
    st.integers(-(10**12), 10**12),
    st.floats(),
    st.booleans(),
    st.none(),
)
rate_docs = st.fixed_dictionaries(
    {
        "prefix": st.one_of(st.from_regex(r"[0-9]{0,4}", fullmatch=True), st.text(max_size=3)),
        "direction": st.sampled_from([*DIRECTIONS, "sideways"]),
        "per_minute": money_like,
    },
    optional={
        "connect_fee": money_like,
        "per_minute_micros": st.integers(-1, 2 * MAX_PRICE_MICROS),
        "increments": st.one_of(
            st.from_regex(r"[0-9]{1,5}/[0-9]{1,5}", fullmatch=True), st.text(max_size=5)
        ),
        "typo": st.just(1),
    },
)
plan_docs = st.fixed_dictionaries(
    {
        "id": st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True), json_like),
        "currency": st.one_of(st.sampled_from(["USD", "UAH"]), json_like),
        "voice": st.one_of(st.lists(rate_docs, max_size=4), json_like),
    },
    optional={
        "sms": st.one_of(
            st.fixed_dictionaries({}, optional={"outbound_per_segment": money_like}), json_like
        ),
        "ring_through_attempt": money_like,
        "ring_through_attempt_micros": st.integers(-1, 2 * MAX_PRICE_MICROS),
        "description": json_like,
    },
)


@FAST
@given(st.one_of(plan_docs, json_like))
def test_a_plan_document_loads_or_says_why(doc: Any) -> None:
    try:
        plan = plan_from_dict(doc)
    except PlanError as exc:
        assert str(exc)
        return
    prices = [plan.sms_out_micros, plan.sms_in_micros, plan.ring_through_micros]
    for r in plan.voice:
        prices += [r.per_minute_micros, r.connect_fee_micros]
        assert 1 <= r.increments.first <= MAX_INCREMENT_S and r.increments.next >= 1
    assert all(type(p) is int and 0 <= p <= MAX_PRICE_MICROS for p in prices)


@FAST
@given(plan_docs, st.binary(max_size=8) | st.none())
def test_the_plan_book_never_raises_and_keeps_a_plan_it_refuses(doc: Any, key: Any) -> None:
    book = PlanBook({"p": plan_from_dict({"id": "p", "currency": "USD", "voice": []})})
    record = {"id": "r", "type": "rate_plan.upserted", "time": "2026-11-22T10:00:00.000Z"}
    try:
        raw = orjson.dumps(record | {"plan": doc})
    except TypeError:  # ints past 64 bits: not a record anyone could send as orjson JSON
        return
    bad = book.apply(key, raw)
    if bad is not None:
        assert bad.reason in reasons.DECODER or bad.reason in reasons.RATE_PLANS, bad
        assert "p" in book.current()


# --- charges at the edges ------------------------------------------------------------------

increments = st.builds(Increments, st.integers(1, MAX_INCREMENT_S), st.integers(1, MAX_INCREMENT_S))
prices = st.one_of(st.integers(0, MAX_PRICE_MICROS), st.sampled_from([0, 1, MAX_PRICE_MICROS]))
rates = st.builds(VoiceRate, st.just(""), st.sampled_from(DIRECTIONS), prices, prices, increments)
durations = st.one_of(st.integers(0, MAX_DURATION_MS), st.sampled_from([0, 1, MAX_DURATION_MS]))


@FAST
@given(durations, durations, rates)
def test_call_charges_are_exact_monotonic_and_agree_with_the_hold_maths(
    a: int, b: int, rate: VoiceRate
) -> None:
    short, long = sorted((a, b))
    cs, cl = call_charge(short, rate), call_charge(long, rate)
    assert type(cl.amount_micros) is int and 0 <= cs.amount_micros <= cl.amount_micros
    assert cs.billed_seconds <= cl.billed_seconds
    # apply.lua holds with doubles: every product it forms stays exact.
    assert (cl.billed_seconds + MAX_INCREMENT_S) * rate.per_minute_micros < 2**53
    # A hold covering the call costs what the call is finally charged.
    hr = HoldRate.of(rate)
    seconds = -(-long // 1000)
    assert billed(seconds, hr) == billed_seconds(long, rate.increments) == cl.billed_seconds
    if long:
        assert cost(cl.billed_seconds, hr) == cl.amount_micros


@FAST
@given(rates, st.integers(0, MAX_DURATION_MS // 1000), st.integers(-(10**15), 10**15), st.data())
def test_a_hold_never_raises_and_stays_a_whole_increment_cost(
    rate: VoiceRate, seconds: int, room: int, data: st.DataObject
) -> None:
    hr = HoldRate.of(rate)
    covered = billed(seconds, hr)
    hold = cost(covered, hr) if covered else 0
    step = reserve(covered, hold, room, data.draw(st.integers(1, 120)), hr)
    if step is not None:
        assert type(step.hold) is int and step.hold >= hold >= 0
        assert step.covered > covered and billed(step.covered, hr) == step.covered
        assert step.hold == cost(step.covered, hr)


@FAST
@given(st.integers(0, MAX_PRICE_MICROS), st.integers(0, MAX_PRICE_MICROS), st.data())
def test_sms_charges_are_linear_in_segments(out: int, inn: int, data: st.DataObject) -> None:
    plan = RatePlan("p", "USD", (), out, inn, 0)
    n = data.draw(st.integers(1, MAX_SEGMENTS))
    outbound = data.draw(st.booleans())
    per = out if outbound else inn
    assert sms_charge(plan, outbound, n) == n * per == n * sms_charge(plan, outbound, 1)
    assert n * per <= MAX_MICROS  # a text at the highest price fits one movement


# --- rating a record: RatingError or a bounded debit ----------------------------------------


@FAST
@given(rates, durations, durations)
def test_rating_a_call_debits_a_bounded_amount_or_refuses_with_a_reason(
    rate: VoiceRate, a: int, b: int
) -> None:
    plan = RatePlan("p", "USD", (rate,), 0, 0, 0)
    info = AccountInfo("USD", "p", 0)
    results: list[int | None] = []
    for ms in sorted((a, b)):
        body = {"id": "e", "type": "call.ended", "account": "a", "time": "2026-11-22T10:00:00.000Z"}
        body |= {"call_id": "c", "duration_ms": ms, "direction": rate.direction, "to": "1"}
        try:
            results.append(rate_record(body, info, plan).amount_micros)
        except RatingError as exc:
            assert exc.reason == "charge_too_large", exc
            results.append(None)
    short, long = results
    if long is not None:  # a shorter call never costs more, nor is refused when a longer is not
        assert short is not None and long <= short <= 0 and -long <= MAX_MICROS


@pytest.mark.parametrize("currency", ["UAH", "EUR"])
def test_rating_in_another_currency_is_refused(currency: str) -> None:
    plan = RatePlan("p", "USD", (), 1, 1, 1)
    body = {"id": "e", "type": "call.attempt", "account": "a", "time": "2026-11-22T10:00:00.000Z"}
    with pytest.raises(RatingError) as err:
        rate_record(body | {"call_id": "c", "to": "1"}, AccountInfo(currency, "p", 0), plan)
    assert err.value.reason == "currency_mismatch"


# --- money text -----------------------------------------------------------------------------


@FAST
@given(st.one_of(st.text(max_size=50), money_like))
def test_money_text_parses_exactly_or_is_refused(text: Any) -> None:
    try:
        micros = parse_money(text)
    except ValueError:
        return
    assert type(micros) is int
    assert parse_money(format_micros(micros)) == micros
