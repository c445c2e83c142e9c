"""Rating: prefix matching, billing increments and call/SMS charges.

Expected values in the tables are worked out by hand from the rules in docs/rate-plans.md,
never by calling the code under test.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.rating import (
    CallCharge,
    Increments,
    RatePlan,
    VoiceRate,
    billed_seconds,
    call_charge,
    sms_charge,
)

INC_60_60 = Increments(60, 60)
INC_60_6 = Increments(60, 6)
INC_1_1 = Increments(1, 1)


def rate(
    prefix: str,
    direction: str = "outbound",
    per_minute: int = 600_000,
    connect: int = 0,
    inc: Increments = INC_60_6,
) -> VoiceRate:
    return VoiceRate(prefix, direction, per_minute, connect, inc)


def plan(*voice: VoiceRate, sms_out: int = 7_900, sms_in: int = 2_500) -> RatePlan:
    return RatePlan("test", "USD", voice, sms_out, sms_in, 10_000)


PREFIX_PLAN = plan(
    rate(""),
    rate("1"),
    rate("14"),
    rate("1415"),
    rate("44"),
    rate("1800", "inbound"),
    rate("", "forwarded", 300_000),
    rate("1", "forwarded", 200_000),
)


# --- prefixes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("direction", "number", "prefix"),
    [
        ("outbound", "14155550100", "1415"),
        ("outbound", "+1 415 555 0100", "1415"),
        ("outbound", "+1-415-555-0100", "1415"),
        ("outbound", "+1 (415) 555-0100", "1415"),
        ("outbound", "1415", "1415"),
        ("outbound", "141", "14"),
        ("outbound", "1-416-555-0100", "14"),
        ("outbound", "12125550100", "1"),
        ("outbound", "1", "1"),
        ("outbound", "+44 20 7946 0000", "44"),
        ("outbound", "4", ""),
        ("outbound", "+33 1 23 45 67 89", ""),
        ("outbound", "", ""),
        ("outbound", "anonymous", ""),
        ("outbound", "1" * 500, "1"),
        ("inbound", "18005550100", "1800"),
        ("inbound", "+1 (800) 555-0100", "1800"),
        ("forwarded", "+1 212", "1"),
        ("forwarded", "+44 20", ""),
    ],
)
def test_voice_rate_longest_prefix_wins(direction: str, number: str, prefix: str) -> None:
    found = PREFIX_PLAN.voice_rate(direction, number)
    assert found is not None
    assert found.prefix == prefix
    assert found.direction == direction


@pytest.mark.parametrize(
    ("direction", "number"),
    [
        ("inbound", "12125550100"),  # inbound has no catch-all in this plan
        ("inbound", "180"),
        ("inbound", ""),
    ],
)
def test_voice_rate_no_match_is_none(direction: str, number: str) -> None:
    assert PREFIX_PLAN.voice_rate(direction, number) is None


def test_voice_rate_direction_is_separate() -> None:
    outbound_only = plan(rate("1"))
    assert outbound_only.voice_rate("outbound", "1212") is not None
    assert outbound_only.voice_rate("inbound", "1212") is None
    assert outbound_only.voice_rate("forwarded", "1212") is None


def test_voice_rate_unknown_direction_raises() -> None:
    with pytest.raises(ValueError, match="direction"):
        PREFIX_PLAN.voice_rate("outgoing", "1")


def test_plan_equality_ignores_the_index() -> None:
    assert plan(rate("1")) == plan(rate("1"))
    assert hash(plan(rate("1"))) == hash(plan(rate("1")))
    assert plan(rate("1")) != plan(rate("2"))


# --- billed seconds -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration_ms", "inc", "billed"),
    [
        (0, INC_60_60, 0),
        (1, INC_60_60, 60),
        (1_000, INC_60_60, 60),
        (59_999, INC_60_60, 60),
        (60_000, INC_60_60, 60),
        (60_001, INC_60_60, 120),
        (120_000, INC_60_60, 120),
        (120_001, INC_60_60, 180),
        (0, INC_60_6, 0),
        (1, INC_60_6, 60),
        (60_000, INC_60_6, 60),
        (60_001, INC_60_6, 66),
        (66_000, INC_60_6, 66),
        (66_001, INC_60_6, 72),
        (90_500, INC_60_6, 96),  # 91 s: 60 + 6 blocks of 6
        (0, INC_1_1, 0),
        (1, INC_1_1, 1),
        (999, INC_1_1, 1),
        (1_000, INC_1_1, 1),
        (1_001, INC_1_1, 2),
        (60_000, INC_1_1, 60),
        (60_001, INC_1_1, 61),
        (66_001, INC_1_1, 67),
        (30_001, Increments(30, 10), 40),
        (1, Increments(1, 60), 1),
        (1_001, Increments(1, 60), 61),
    ],
)
def test_billed_seconds(duration_ms: int, inc: Increments, billed: int) -> None:
    assert billed_seconds(duration_ms, inc) == billed


@pytest.mark.parametrize("duration_ms", [-1, -60_000])
def test_billed_seconds_rejects_negative(duration_ms: int) -> None:
    with pytest.raises(ValueError, match="duration_ms"):
        billed_seconds(duration_ms, INC_60_6)


@pytest.mark.parametrize("duration_ms", [1.5, True, "1000"])
def test_billed_seconds_rejects_non_int(duration_ms: object) -> None:
    with pytest.raises(ValueError):
        billed_seconds(duration_ms, INC_60_6)  # type: ignore[arg-type]


# --- call charges -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration_ms", "per_minute", "connect", "inc", "billed", "amount"),
    [
        (60_000, 600_000, 0, INC_60_6, 60, 600_000),
        (60_001, 600_000, 0, INC_60_6, 66, 660_000),
        (66_000, 600_000, 0, INC_60_6, 66, 660_000),
        (66_001, 600_000, 0, INC_60_6, 72, 720_000),
        (0, 600_000, 0, INC_60_6, 0, 0),
        (0, 600_000, 50_000, INC_60_6, 0, 50_000),  # answered: connect fee even at 0 s
        (1, 600_000, 0, INC_1_1, 1, 10_000),
        (1, 900_000, 50_000, INC_60_6, 60, 950_000),
        (61_000, 1_200_000, 0, INC_60_60, 120, 2_400_000),
        (90_000, 600_000, 0, INC_1_1, 90, 900_000),
        # Odd prices round up to the micro-unit, once, at the end.
        (1_000, 7, 0, INC_1_1, 1, 1),  # 7/60 -> 1
        (13_000, 7_900, 0, INC_1_1, 13, 1_712),  # 102700/60 = 1711.67 -> 1712
        (1_000, 1_000_001, 0, INC_1_1, 1, 16_667),  # 1000001/60 = 16666.68 -> 16667
        (1_000, 59, 0, INC_1_1, 1, 1),
        (60_000, 59, 0, INC_1_1, 60, 59),  # exact: no rounding
        (60_000, 1, 0, INC_60_60, 60, 1),
        (7_000, 100_001, 3, INC_1_1, 7, 11_670),  # 700007/60 = 11666.78 -> 11667, + 3
        (600_000, 0, 0, INC_60_60, 600, 0),  # zero-rated
        (600_000, 0, 20_000, INC_60_60, 600, 20_000),
    ],
)
def test_call_charge(
    duration_ms: int, per_minute: int, connect: int, inc: Increments, billed: int, amount: int
) -> None:
    charge = call_charge(duration_ms, rate("1", per_minute=per_minute, connect=connect, inc=inc))
    assert charge == CallCharge(
        billed_seconds=billed, amount_micros=amount, connect_fee_micros=connect
    )


def test_zero_rated() -> None:
    assert rate("", per_minute=0, connect=0).zero_rated
    assert not rate("", per_minute=0, connect=1).zero_rated
    assert not rate("", per_minute=1, connect=0).zero_rated


def test_call_charge_rejects_negative_duration() -> None:
    with pytest.raises(ValueError):
        call_charge(-1, rate("1"))


@pytest.mark.parametrize(
    ("billed", "amount", "connect"), [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 5, 6), (0, 1.0, 0)]
)
def test_call_charge_value_checks(billed: int, amount: int, connect: int) -> None:
    with pytest.raises(ValueError):
        CallCharge(billed, amount, connect)


# --- value-type invariants ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "first", "next_"),
    [("60/6", 60, 6), ("60/60", 60, 60), ("1/1", 1, 1), (" 30 / 10 ", 30, 10)],
)
def test_increments_parse(text: str, first: int, next_: int) -> None:
    inc = Increments.parse(text)
    assert (inc.first, inc.next) == (first, next_)
    assert str(inc) == f"{first}/{next_}"


@pytest.mark.parametrize("text", ["0/6", "60/0", "60", "60/6/6", "a/b", "-1/1", "", "1.5/1"])
def test_increments_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        Increments.parse(text)


@pytest.mark.parametrize(("first", "next_"), [(0, 1), (1, 0), (-60, 6), (True, 1), (1.0, 1)])
def test_increments_rejects(first: object, next_: object) -> None:
    with pytest.raises(ValueError):
        Increments(first, next_)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "direction", "per_minute", "connect"),
    [
        ("+1", "outbound", 1, 0),
        ("1a", "outbound", 1, 0),
        ("1", "outgoing", 1, 0),
        ("1", "outbound", -1, 0),
        ("1", "outbound", 1, -1),
        ("1", "outbound", 0.6, 0),
    ],
)
def test_voice_rate_rejects(prefix: str, direction: str, per_minute: int, connect: int) -> None:
    with pytest.raises(ValueError):
        VoiceRate(prefix, direction, per_minute, connect, INC_60_6)


@pytest.mark.parametrize(
    ("plan_id", "currency", "sms_out"),
    [
        ("p", "usd", 0),
        ("p", "US", 0),
        ("p", "USDD", 0),
        ("", "USD", 0),
        ("a b", "USD", 0),
        ("p", "USD", -1),
    ],
)
def test_rate_plan_rejects(plan_id: str, currency: str, sms_out: int) -> None:
    with pytest.raises(ValueError):
        RatePlan(plan_id, currency, (), sms_out, 0, 0)


def test_rate_plan_rejects_duplicate_prefix_per_direction() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        plan(rate("1"), rate("1", per_minute=1))
    # Same prefix in different directions is fine.
    plan(rate("1"), rate("1", "inbound"))


# --- SMS ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outbound", "segments", "amount"),
    [
        (True, 1, 7_900),
        (True, 3, 23_700),
        (False, 1, 2_500),
        (False, 2, 5_000),
        (True, 255, 2_014_500),
    ],
)
def test_sms_charge(outbound: bool, segments: int, amount: int) -> None:
    assert sms_charge(plan(), outbound, segments) == amount


@pytest.mark.parametrize("segments", [0, -1, 1.0, True])
def test_sms_charge_rejects_bad_segments(segments: object) -> None:
    with pytest.raises(ValueError):
        sms_charge(plan(), True, segments)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------

durations = st.integers(min_value=0, max_value=7 * 24 * 3_600_000)
increments = st.builds(
    Increments, st.integers(min_value=1, max_value=3_600), st.integers(min_value=1, max_value=600)
)
rates = st.builds(
    VoiceRate,
    st.just(""),
    st.sampled_from(["outbound", "inbound", "forwarded"]),
    st.integers(min_value=0, max_value=100_000_000),
    st.integers(min_value=0, max_value=10_000_000),
    increments,
)


@given(durations, increments)
def test_billed_seconds_properties(duration_ms: int, inc: Increments) -> None:
    seconds = -(-duration_ms // 1000)
    billed = billed_seconds(duration_ms, inc)
    assert type(billed) is int
    assert billed >= seconds
    assert (billed == 0) == (seconds == 0)
    if billed > 0:
        assert billed >= inc.first
        assert billed - seconds < max(inc.first, inc.next)
    if billed > inc.first:
        assert (billed - inc.first) % inc.next == 0


@given(durations, rates)
def test_call_charge_properties(duration_ms: int, voice: VoiceRate) -> None:
    charge = call_charge(duration_ms, voice)
    for value in (charge.billed_seconds, charge.amount_micros, charge.connect_fee_micros):
        assert type(value) is int
    assert charge.amount_micros >= charge.connect_fee_micros == voice.connect_fee_micros >= 0
    usage = charge.amount_micros - charge.connect_fee_micros
    exact_times_60 = charge.billed_seconds * voice.per_minute_micros
    # Rounded up to the micro-unit: never below the exact price, and less than one micro above.
    assert usage * 60 >= exact_times_60
    assert (usage - 1) * 60 < exact_times_60 or usage == 0


@given(durations, durations, rates)
def test_call_charge_is_monotonic(a: int, b: int, voice: VoiceRate) -> None:
    short, long = sorted((a, b))
    assert call_charge(short, voice).amount_micros <= call_charge(long, voice).amount_micros
    assert call_charge(short, voice).billed_seconds <= call_charge(long, voice).billed_seconds
