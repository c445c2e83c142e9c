"""Sharing an account's money among its calls: tables, and the reference of spending."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from charger.charging.session import HoldRate, billed, cost
from charger.charging.sharing import Share, SharedCall, share
from tests.kit.spending import SpendingCall, cutoff_instants

PER_SECOND = HoldRate(600_000, 0, 1, 1)  # $0.60/min, 1/1: 10,000 micros a second
MINUTES = HoldRate(600_000, 0, 60, 60)
FREE = HoldRate(0, 0, 60, 60)
T0 = 1_000_000_000_000  # epoch ms; only differences matter
FOREVER_MS = 10**12  # beyond any cutoff the strategies below can reach


def test_two_calls_at_one_rate_split_what_is_left_second_by_second() -> None:
    # $1.00, two calls answered together: 50 s each, both exhausted there.
    calls = [
        SharedCall("a", T0, 10, 100_000, PER_SECOND),
        SharedCall("b", T0, 10, 100_000, PER_SECOND),
    ]
    assert share(calls, 1_000_000, T0, FOREVER_MS) == {
        "a": Share(50, 500_000, True),
        "b": Share(50, 500_000, True),
    }


def test_a_reservation_not_yet_talked_is_shared_again() -> None:
    # "b" reserved 40 s ahead but at T0+20 s has talked 20: the rest goes to both calls.
    calls = [
        SharedCall("a", T0 + 10_000, 10, 100_000, PER_SECOND),
        SharedCall("b", T0, 40, 400_000, PER_SECOND),
    ]
    # spent by T0+20 s: a 10 s, b 20 s = 300,000; 700,000 left = 70 s of one call:
    # both talk 35 s more: a to 45 s, b to 55 s
    got = share(calls, 1_000_000, T0 + 20_000, FOREVER_MS)
    assert got == {"a": Share(45, 450_000, True), "b": Share(55, 550_000, True)}


def test_a_call_paid_to_its_minute_runs_on_while_the_per_second_call_is_cut() -> None:
    # $0.70: "m" buys its first minute (0.60) at answer; "s" gets the other 0.10 = 10 s.
    calls = [SharedCall("m", T0, 0, 0, MINUTES), SharedCall("s", T0, 0, 0, PER_SECOND)]
    got = share(calls, 700_000, T0, FOREVER_MS)
    assert got == {"m": Share(60, 600_000, True), "s": Share(10, 100_000, True)}


def test_free_and_cut_calls_buy_nothing_and_a_window_stops_the_look_ahead() -> None:
    calls = [
        SharedCall("free", T0, 0, 0, FREE),
        SharedCall("gone", T0, 30, 300_000, PER_SECOND, cut=True),
        SharedCall("on", T0, 10, 100_000, PER_SECOND),
    ]
    got = share(calls, 10_000_000, T0, 20_000)
    assert got == {"on": Share(20, 200_000, False)}  # covered to the window, not exhausted


calls_strategy = st.lists(
    st.tuples(
        st.integers(0, 30_000),  # answer offset, ms
        st.one_of(st.just(0), st.integers(60_000, 2_000_000)),  # per minute
        st.sampled_from([0, 0, 20_000]),  # connect fee
        st.sampled_from([(1, 1), (6, 6), (30, 1), (60, 6), (60, 60)]),
    ),
    min_size=1,
    max_size=5,
)


@example(specs=[(0, 60_000, 0, (1, 1)), (1, 0, 20_000, (1, 1))], budget=1000)
@given(calls_strategy, st.integers(0, 3_000_000))
def test_sharing_from_the_first_answer_is_the_reference_of_spending(
    specs: list[tuple[int, int, int, tuple[int, int]]], budget: int
) -> None:
    rates = [HoldRate(price, fee, first, then) for _, price, fee, (first, then) in specs]
    ids = [f"c{n}" for n in range(len(specs))]
    answers = [T0 + offset for offset, *_ in specs]
    start = min(answers)
    got = share(
        [SharedCall(i, a, 0, 0, r) for i, a, r in zip(ids, answers, rates, strict=True)],
        budget,
        start,
        FOREVER_MS,
    )
    reference = cutoff_instants(
        [SpendingCall(i, a, r) for i, a, r in zip(ids, answers, rates, strict=True)], budget
    )
    cut = {
        i: a + got[i].covered * 1000
        for i, a in zip(ids, answers, strict=True)
        if i in got and got[i].exhausted
    }
    assert cut == reference
    for i, r in zip(ids, rates, strict=True):
        if i in got:
            assert billed(got[i].covered, r) == got[i].covered
            assert got[i].hold == cost(got[i].covered, r)
