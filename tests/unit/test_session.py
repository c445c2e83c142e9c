"""Hold maths: tables with hand-computed values, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.charging.session import (
    HoldRate,
    Step,
    affordable,
    billed,
    cost,
    next_coverage,
    reserve,
)

PER_SECOND = HoldRate(600_000, 0, 1, 1)  # $0.60/min, 1/1
SIX = HoldRate(900_000, 50_000, 60, 6)  # $0.90/min, connect $0.05, 60/6


@pytest.mark.parametrize(
    ("seconds", "rate", "expected"),
    [
        (0, SIX, 0),
        (1, SIX, 60),
        (60, SIX, 60),
        (61, SIX, 66),
        (66, SIX, 66),
        (67, SIX, 72),
        (0, PER_SECOND, 0),
        (1, PER_SECOND, 1),
        (99, PER_SECOND, 99),
    ],
)
def test_billed(seconds: int, rate: HoldRate, expected: int) -> None:
    assert billed(seconds, rate) == expected


@pytest.mark.parametrize(
    ("covered", "rate", "expected"),
    [
        (0, SIX, 50_000),
        (60, SIX, 900_000 + 50_000),
        (66, SIX, 990_000 + 50_000),
        (10, PER_SECOND, 100_000),
        (100, PER_SECOND, 1_000_000),
    ],
)
def test_cost(covered: int, rate: HoldRate, expected: int) -> None:
    assert cost(covered, rate) == expected


@pytest.mark.parametrize(
    ("budget", "rate", "expected"),
    [
        (1_000_000, PER_SECOND, 100),
        (999_999, PER_SECOND, 99),
        (0, PER_SECOND, 0),
        (49_999, SIX, 0),  # not even the connect fee
        (949_999, SIX, 0),  # the fee but not the first 60 s
        (950_000, SIX, 60),
        (1_039_999, SIX, 60),
        (1_040_000, SIX, 66),
    ],
)
def test_affordable(budget: int, rate: HoldRate, expected: int) -> None:
    assert affordable(budget, rate) == expected


def test_reserve_a_whole_interval_when_it_fits() -> None:
    assert reserve(0, 0, 1_000_000, 10, PER_SECOND) == Step(10, 100_000)
    assert reserve(10, 100_000, 100_000, 10, PER_SECOND) == Step(20, 200_000)


def test_no_reservation_when_the_whole_interval_does_not_fit() -> None:
    # $1.00 in all: 95 s covered, 0.05 left: what is left is shared, not reserved here
    assert reserve(95, 950_000, 50_000, 10, PER_SECOND) is None
    assert reserve(100, 1_000_000, 0, 10, PER_SECOND) is None


def test_first_hold_of_a_sixty_second_first_increment_covers_the_increment() -> None:
    assert reserve(0, 0, 10_000_000, 10, SIX) == Step(60, 950_000)
    assert next_coverage(60, 10, SIX) == 72


def test_a_connect_fee_only_rate_reserves_free_minutes_once_the_fee_is_held() -> None:
    fee_only = HoldRate(0, 50_000, 60, 60)
    assert reserve(0, 0, 10_000, 10, fee_only) is None
    assert reserve(60, 50_000, 0, 10, fee_only) == Step(120, 50_000)


rates = st.builds(
    HoldRate,
    st.integers(1, 10_000_000),
    st.integers(0, 1_000_000),
    st.sampled_from([1, 6, 30, 60]),
    st.sampled_from([1, 6, 60]),
)


@given(rates, st.integers(0, 10**10))
def test_affordable_is_the_most_that_fits(r: HoldRate, budget: int) -> None:
    s = affordable(budget, r)
    if s:
        assert cost(s, r) <= budget
        assert billed(s, r) == s
    assert cost(next_coverage(s, 1, r), r) > budget or (s == 0 and cost(r.first, r) > budget)


@given(rates, st.integers(0, 5000), st.integers(-(10**9), 10**10), st.integers(1, 120))
def test_reserve_never_takes_more_than_allowed(
    r: HoldRate, cov: int, avail: int, interval: int
) -> None:
    covered = billed(cov, r)
    hold = cost(covered, r) if covered else 0
    step = reserve(covered, hold, avail, interval, r)
    if step is None:
        assert cost(next_coverage(covered, interval, r), r) - hold > avail
    else:
        assert step.covered > covered and billed(step.covered, r) == step.covered
        assert step.hold - hold <= avail and step.hold == cost(step.covered, r)
