"""The daily movement of funds and statement pages' cursors: tables for the rules, hypothesis
for the sums. Every instant is built from explicit local times of a named zone."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.statements.cursor import Position, StatementQuery, decode_cursor, encode_cursor
from charger.statements.model import InvalidCursor, Show
from charger.statements.movements import (
    DaySum,
    Movement,
    assemble,
    daily_movements,
    day_starts,
    shown,
)

KYIV = ZoneInfo("Europe/Kyiv")
NEW_YORK = ZoneInfo("America/New_York")
USD = 1_000_000


def local(zone: ZoneInfo, day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)


def test_a_day_runs_from_local_midnight_and_is_23_or_25_hours_across_a_change() -> None:
    # Kyiv: summer time from the last Sunday of March (03:00 -> 04:00), back in October.
    starts = day_starts(date(2026, 3, 28), date(2026, 3, 30), KYIV)
    assert starts[0] == datetime(2026, 3, 27, 22, 0, tzinfo=UTC)  # UTC+2
    assert [b - a for a, b in itertools.pairwise(starts)] == [
        timedelta(hours=24),
        timedelta(hours=23),
        timedelta(hours=24),
    ]
    autumn = day_starts(date(2026, 10, 25), date(2026, 10, 25), KYIV)
    assert autumn[1] - autumn[0] == timedelta(hours=25)


def test_a_midnight_swallowed_by_a_gap_starts_the_day_after_the_gap() -> None:
    # Santiago moved its clocks from 00:00 to 01:00 on 2026-09-06.
    santiago = ZoneInfo("America/Santiago")
    (start, _) = day_starts(date(2026, 9, 6), date(2026, 9, 6), santiago)
    assert start.astimezone(santiago).hour == 1
    assert (start - timedelta(milliseconds=1)).astimezone(santiago).date() == date(2026, 9, 5)


DAY = date(2026, 11, 20)
CASES = [
    # (what, movements as (local day offset, hour, kind, amount), expected by day)
    (
        "entries are summed per kind and direction, the day's closing is the next's opening",
        [
            (0, 9, "call", -600_000),
            (0, 10, "call", -300_000),
            (0, 11, "topup", 5 * USD),
            (1, 8, "sms_out", -7_900),
            (1, 23, "adjustment", 100_000),
            (1, 23, "adjustment", -50_000),
        ],
        [
            (10 * USD, {"call": 900_000}, {"topup": 5 * USD}, 14_100_000),
            (
                14_100_000,
                {"adjustment": 50_000, "sms_out": 7_900},
                {"adjustment": 100_000},
                14_142_100,
            ),
            (14_142_100, {}, {}, 14_142_100),
        ],
    ),
    (
        "days without entries are listed, opening = closing",
        [(2, 0, "fee", -USD)],
        [
            (10 * USD, {}, {}, 10 * USD),
            (10 * USD, {}, {}, 10 * USD),
            (10 * USD, {"fee": USD}, {}, 9 * USD),
        ],
    ),
    (
        "an entry of zero moves nothing and names no kind",
        [(0, 12, "call", 0)],
        [(10 * USD, {}, {}, 10 * USD), (10 * USD, {}, {}, 10 * USD), (10 * USD, {}, {}, 10 * USD)],
    ),
]


@pytest.mark.parametrize(("what", "moves", "expected"), CASES, ids=[c[0] for c in CASES])
def test_days_of_movements(
    what: str,
    moves: list[tuple[int, int, str, int]],
    expected: list[tuple[int, dict[str, int], dict[str, int], int]],
) -> None:
    movements = [
        Movement(local(KYIV, DAY + timedelta(days=d), h), kind, amount)
        for d, h, kind, amount in moves
    ]
    days = daily_movements(10 * USD, movements, DAY, DAY + timedelta(days=2), KYIV)
    got = [
        (
            d.opening_balance_micros,
            dict(d.debits_by_kind_micros),
            dict(d.credits_by_kind_micros),
            d.closing_balance_micros,
        )
        for d in days
    ]
    assert got == expected, what
    assert [d.day for d in days] == [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]


def test_the_last_millisecond_of_a_local_day_is_that_day_and_midnight_the_next() -> None:
    midnight = local(NEW_YORK, DAY + timedelta(days=1))
    days = daily_movements(
        0,
        [
            Movement(midnight - timedelta(milliseconds=1), "call", -1),
            Movement(midnight, "call", -2),
        ],
        DAY,
        DAY + timedelta(days=1),
        NEW_YORK,
    )
    assert [dict(d.debits_by_kind_micros) for d in days] == [{"call": 1}, {"call": 2}]


def test_an_entry_outside_the_days_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        daily_movements(
            0,
            [Movement(local(KYIV, DAY), "call", -1)],
            DAY + timedelta(days=1),
            DAY + timedelta(days=1),
            KYIV,
        )
    with pytest.raises(ValueError, match="before"):
        daily_movements(0, [], DAY, DAY - timedelta(days=1), KYIV)
    with pytest.raises(ValueError, match="outside"):
        assemble(DAY, DAY, 0, [DaySum(1, "call", -1)])


def test_the_filter_keeps_debits_or_credits_and_all_keeps_zero() -> None:
    assert [shown(Show.DEBITS, a) for a in (-1, 0, 1)] == [True, False, False]
    assert [shown(Show.CREDITS, a) for a in (-1, 0, 1)] == [False, False, True]
    assert [shown(Show.ALL, a) for a in (-1, 0, 1)] == [True, True, True]


ZONES = st.sampled_from(
    [
        ZoneInfo(z)
        for z in (
            "UTC",
            "Europe/Kyiv",
            "America/New_York",
            "Asia/Kolkata",
            "Pacific/Chatham",
            "America/Santiago",
        )
    ]
)
KIND = st.sampled_from(["call", "sms_out", "topup", "fee", "adjustment", "recharge"])


@given(
    zone=ZONES,
    first=st.dates(date(2020, 1, 1), date(2030, 12, 31)),
    span=st.integers(0, 9),
    opening=st.integers(-(10**12), 10**12),
    moves=st.lists(
        st.tuples(st.floats(0, 1, exclude_max=True), KIND, st.integers(-(10**10), 10**10)),
        max_size=60,
    ),
)
def test_the_days_add_up_to_the_statement_of_the_same_range(
    zone: ZoneInfo,
    first: date,
    span: int,
    opening: int,
    moves: list[tuple[float, str, int]],
) -> None:
    last = first + timedelta(days=span)
    starts = day_starts(first, last, zone)
    start, end = starts[0], starts[-1]
    length_us = (end - start) // timedelta(microseconds=1)
    # Entries spread over the range to the millisecond, as ledger times are.
    movements = [
        Movement(start + timedelta(milliseconds=int(f * length_us) // 1000), kind, amount)
        for f, kind, amount in moves
    ]
    days = daily_movements(opening, movements, first, last, zone)

    assert [d.day for d in days] == [first + timedelta(days=n) for n in range(span + 1)]
    assert days[0].opening_balance_micros == opening
    for before, after in itertools.pairwise(days):
        assert before.closing_balance_micros == after.opening_balance_micros
    for d in days:
        assert d.closing_balance_micros == (
            d.opening_balance_micros
            + sum(d.credits_by_kind_micros.values())
            - sum(d.debits_by_kind_micros.values())
        )
        assert all(
            v > 0 for v in (*d.debits_by_kind_micros.values(), *d.credits_by_kind_micros.values())
        )
    # The statement of the same range, filtered, against the days' sums.
    debits = [m for m in movements if shown(Show.DEBITS, m.amount_micros)]
    credits = [m for m in movements if shown(Show.CREDITS, m.amount_micros)]
    assert sum(sum(d.debits_by_kind_micros.values()) for d in days) == -sum(
        m.amount_micros for m in debits
    )
    assert sum(sum(d.credits_by_kind_micros.values()) for d in days) == sum(
        m.amount_micros for m in credits
    )
    for kind in {m.kind for m in movements}:
        assert sum(d.debits_by_kind_micros.get(kind, 0) for d in days) == -sum(
            m.amount_micros for m in debits if m.kind == kind
        )
    assert days[-1].closing_balance_micros == opening + sum(m.amount_micros for m in movements)
    # Each entry is counted on the local day its instant falls in.
    for m in movements:
        index = next(i for i in range(len(days)) if starts[i] <= m.occurred_at < starts[i + 1])
        assert days[index].day == first + timedelta(days=index)


# ---- cursors ----
QUERY = StatementQuery(
    "acct-1", datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC), Show.ALL
)


@given(
    at=st.datetimes(datetime(1970, 1, 1), datetime(2999, 1, 1), timezones=st.just(UTC)),
    partition=st.integers(0, 4095),
    offset=st.integers(0, 2**62),
)
def test_a_cursor_names_the_position_it_was_made_for(
    at: datetime, partition: int, offset: int
) -> None:
    position = Position(at, partition, offset)
    cursor = encode_cursor(QUERY, position)
    assert decode_cursor(QUERY, cursor) == position
    assert cursor.isascii() and "/" not in cursor and "+" not in cursor  # fits a URL


@pytest.mark.parametrize(
    "other",
    [
        StatementQuery("acct-2", QUERY.start, QUERY.end, QUERY.show),
        StatementQuery(QUERY.account, QUERY.start + timedelta(days=1), QUERY.end, QUERY.show),
        StatementQuery(QUERY.account, QUERY.start, QUERY.end, Show.DEBITS),
    ],
)
def test_a_cursor_of_another_query_is_refused(other: StatementQuery) -> None:
    cursor = encode_cursor(QUERY, Position(QUERY.start, 3, 99))
    with pytest.raises(InvalidCursor):
        decode_cursor(other, cursor)


@pytest.mark.parametrize("cursor", ["", "x", "abc.def", "é.é", "....", "eyJ9.AAAAAAAAAAA"])
def test_a_made_up_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(QUERY, cursor)


def test_a_changed_cursor_is_refused() -> None:
    cursor = encode_cursor(QUERY, Position(QUERY.start, 3, 99))
    body, _, tag = cursor.partition(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    with pytest.raises(InvalidCursor):
        decode_cursor(QUERY, f"{flipped}.{tag}")
