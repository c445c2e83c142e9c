"""Authorization: how long a call may last, and who may spend what. Pure."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.charging.authorization import (
    AccountView,
    Kind,
    Refusal,
    Request,
    authorize,
    call_cost_micros,
    max_call_seconds,
)
from charger.rating import Increments, VoiceRate, load_plan_versions
from charger.rating.versions import by_id
from charger.runtime import default_plans_path
from tests.kit.api import account_view

NOW = "2026-11-22T10:00:00.000Z"
TTL = 4 * 3600
DOLLAR = 1_000_000
US = "+14155550100"  # std-usd: 0.60/min, 1/1
UK = "+442071234567"  # std-usd: 0.90/min, 60/6, 0.05 connect fee


def rate(per_minute: int, first: int = 1, next_: int = 1, fee: int = 0) -> VoiceRate:
    return VoiceRate("", "outbound", per_minute, fee, Increments(first, next_))


def view(balance: int, **changes: Any) -> AccountView:
    """The kit's account after an upsert (USD, std-usd), `balance` micro-units, `changes`."""
    return account_view("a1", balance, **changes)


PLANS = by_id(load_plan_versions(default_plans_path()))


@pytest.mark.parametrize(
    ("budget", "per_minute", "first", "next_", "fee", "seconds"),
    [
        (DOLLAR, 600_000, 1, 1, 0, 100),  # the acceptance case: $1.00 at $0.60/min, 1/1
        (DOLLAR, 600_000, 60, 6, 0, 96),  # 60 + 6 × 6: 102 s would cost $1.02
        (DOLLAR, 600_000, 60, 60, 0, 60),  # the second minute costs $1.20 in all
        (DOLLAR, 900_000, 60, 6, 50_000, 60),  # fee $0.05 + 60 s $0.90; 66 s: $1.04
        (590_000, 600_000, 60, 6, 0, 0),  # not even the first minute
        (10_000, 600_000, 1, 1, 10_000, 0),  # the fee alone, no second
        (10_001, 600_000, 1, 1, 10_000, 0),  # a second costs 10,000: 1 micro is not enough
        (20_000, 600_000, 1, 1, 10_000, 1),
        (0, 600_000, 1, 1, 0, 0),
        (-5, 600_000, 1, 1, 0, 0),  # below the floor already
        (10**12, 600_000, 1, 1, 0, TTL),  # capped by the session TTL
        (0, 0, 60, 60, 0, TTL),  # free calls last the TTL
        (49_999, 0, 1, 1, 50_000, 0),  # free minutes behind a connect fee it cannot pay
        (50_000, 0, 1, 1, 50_000, TTL),
    ],
)
def test_max_call_seconds_table(
    budget: int, per_minute: int, first: int, next_: int, fee: int, seconds: int
) -> None:
    assert max_call_seconds(budget, rate(per_minute, first, next_, fee), TTL) == seconds


@given(
    budget=st.integers(-DOLLAR, 10**11),
    per_minute=st.integers(1, 10**8),
    first=st.integers(1, 3600),
    next_=st.integers(1, 3600),
    fee=st.integers(0, 10**7),
    cap=st.integers(60, 7 * 24 * 3600),
)
def test_the_duration_is_affordable_and_one_more_increment_is_not(
    budget: int, per_minute: int, first: int, next_: int, fee: int, cap: int
) -> None:
    r = rate(per_minute, first, next_, fee)
    seconds = max_call_seconds(budget, r, cap)
    assert 0 <= seconds <= cap
    if seconds == 0:
        # Not even the first increment (with the fee) fits, unless the cap forbids it.
        assert call_cost_micros(first, r) > budget
        return
    assert call_cost_micros(seconds, r) <= budget
    if seconds < cap:
        # A whole number of increments, and the next one would not be paid for.
        assert seconds == first or (seconds - first) % next_ == 0
        following = first if seconds < first else seconds + next_
        assert call_cost_micros(following, r) > budget


def test_a_dollar_at_sixty_cents_a_minute_buys_100_seconds() -> None:
    answer = authorize(view(DOLLAR), Request(Kind.CALL, to=US), PLANS["std-usd"], NOW, TTL)
    assert answer.allowed and answer.max_duration_s == 100 and answer.reason is None
    assert answer.call_price is not None and answer.call_price.increments == "1/1"
    assert answer.call_price.prefix == "1" and answer.call_price.per_minute_micros == 600_000


def test_a_suspended_account_is_not_allowed_whatever_its_balance() -> None:
    for request in (
        Request(Kind.CALL, to=US),
        Request(Kind.SMS),
        Request(Kind.FEE, amount_micros=1),
    ):
        answer = authorize(view(DOLLAR, suspended=True), request, PLANS["std-usd"], NOW, TTL)
        assert not answer.allowed and answer.reason is Refusal.SUSPENDED
        assert answer.available_micros == DOLLAR


def test_holds_of_active_calls_and_the_credit_limit_move_the_budget() -> None:
    held = view(DOLLAR, held_micros=400_000, active_calls=2)  # $0.60 available
    answer = authorize(held, Request(Kind.CALL, to=US), PLANS["std-usd"], NOW, TTL)
    assert answer.available_micros == 600_000 and answer.max_duration_s == 60
    credit = view(0, credit_limit_micros=DOLLAR)  # nothing on it, a dollar of credit
    answer = authorize(credit, Request(Kind.CALL, to=US), PLANS["std-usd"], NOW, TTL)
    assert answer.allowed and answer.max_duration_s == 100


def test_connect_fee_and_increments_of_the_destination() -> None:
    answer = authorize(view(DOLLAR), Request(Kind.CALL, to=UK), PLANS["std-usd"], NOW, TTL)
    assert answer.max_duration_s == 60  # $0.05 + 60 s at $0.90; 66 s would be $1.04
    assert answer.call_price is not None and answer.call_price.increments == "60/6"
    broke = authorize(view(940_000), Request(Kind.CALL, to=UK), PLANS["std-usd"], NOW, TTL)
    assert not broke.allowed and broke.reason is Refusal.INSUFFICIENT_FUNDS
    assert broke.max_duration_s == 0


def test_texts_and_fees_are_allowed_down_to_the_floor_exactly() -> None:
    plan = PLANS["std-usd"]
    text = authorize(view(7_900), Request(Kind.SMS), plan, NOW, TTL)
    assert text.allowed and text.price_micros == 7_900
    two = authorize(view(7_900), Request(Kind.SMS, segments=2), plan, NOW, TTL)
    assert not two.allowed and two.reason is Refusal.INSUFFICIENT_FUNDS
    inbound = authorize(view(2_500), Request(Kind.SMS, direction="inbound"), plan, NOW, TTL)
    assert inbound.allowed and inbound.price_micros == 2_500
    fee = authorize(
        view(0, credit_limit_micros=5), Request(Kind.FEE, amount_micros=5), None, NOW, TTL
    )
    assert fee.allowed and fee.price_micros == 5
    over = authorize(view(0), Request(Kind.FEE, amount_micros=1), None, NOW, TTL)
    assert not over.allowed and over.reason is Refusal.INSUFFICIENT_FUNDS


def test_rating_refusals_are_the_workers_reasons() -> None:
    call = Request(Kind.CALL, to=US)
    assert authorize(view(DOLLAR), call, None, NOW, TTL).reason is Refusal.UNKNOWN_RATE_PLAN
    uah = authorize(view(DOLLAR), call, PLANS["local-uah"], NOW, TTL)
    assert uah.reason is Refusal.CURRENCY_MISMATCH
    forwarded = Request(Kind.CALL, direction="forwarded", to=US)
    local = view(DOLLAR, currency="UAH", rate_plan="local-uah")
    assert authorize(local, forwarded, PLANS["local-uah"], NOW, TTL).reason is Refusal.NO_RATE
