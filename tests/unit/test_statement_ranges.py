"""Statements' date ranges and their CSV. Pure."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charger.statements.export import COLUMNS, csv_lines
from charger.statements.ranges import (
    MAX_DAYS,
    RangeError,
    day_range,
    statement_range,
)
from tests.kit.statements import entry

KYIV = ZoneInfo("Europe/Kyiv")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")
TODAY = date(2026, 11, 22)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("from_", "to", "zone", "start", "end"),
    [
        # Dates are local days, `to` included: Kyiv is UTC+2 in November.
        ("2026-11-01", "2026-11-30", KYIV, utc(2026, 10, 31, 22), utc(2026, 11, 30, 22)),
        ("2026-11-01", "2026-11-01", UTC_ZONE, utc(2026, 11, 1), utc(2026, 11, 2)),
        # A day across the autumn change in New York has 25 hours.
        ("2026-11-01", "2026-11-01", NEW_YORK, utc(2026, 11, 1, 4), utc(2026, 11, 2, 5)),
        # Instants: from included, to excluded, offsets honoured.
        (
            "2026-11-01T08:00:00Z",
            "2026-11-01T12:00:00+02:00",
            KYIV,
            utc(2026, 11, 1, 8),
            utc(2026, 11, 1, 10),
        ),
        (
            "2026-11-01T08:00:00.250Z",
            "2026-11-02",
            UTC_ZONE,
            utc(2026, 11, 1, 8, 0, 0, 250_000),
            utc(2026, 11, 3),
        ),
        # Left out: to is today, from 30 days before it.
        (None, None, UTC_ZONE, utc(2026, 10, 23), utc(2026, 11, 23)),
        ("2026-11-20", None, UTC_ZONE, utc(2026, 11, 20), utc(2026, 11, 23)),
    ],
)
def test_bounds_are_local_days_or_instants(
    from_: str | None, to: str | None, zone: ZoneInfo, start: datetime, end: datetime
) -> None:
    span = statement_range(from_, to, zone, TODAY)
    assert (span.start, span.end) == (start, end)


@pytest.mark.parametrize(
    ("from_", "to", "problem"),
    [
        ("2026-11-02", "2026-11-01", "before"),
        ("2026-11-01T08:00:00Z", "2026-11-01T10:00:00+02:00", "before"),  # the same instant
        ("2026-02-30", None, "not a real date"),
        ("yesterday", None, "neither a date"),
        ("2026-11-01T08:00:00", None, "neither a date"),  # no offset: which instant?
        ("2026-11-01 08:00:00Z", None, "neither a date"),
        ("2025-01-01", "2026-11-01", "more than 366 days"),
        (None, "9999-12-31", "last day"),
        ("0001-01-01T00:00:00+01:00", None, "not a real date"),
    ],
)
def test_bounds_that_name_no_range_are_refused(
    from_: str | None, to: str | None, problem: str
) -> None:
    with pytest.raises(RangeError, match=problem):
        statement_range(from_, to, KYIV, TODAY)


@given(st.text(max_size=40), st.text(max_size=40))
def test_any_text_is_a_range_or_a_range_error(from_: str, to: str) -> None:
    try:
        span = statement_range(from_ or None, to or None, NEW_YORK, TODAY)
    except RangeError:
        return
    assert span.start < span.end <= span.start + timedelta(days=MAX_DAYS + 1)


def test_movements_take_local_days_inclusive() -> None:
    assert day_range("2026-11-01", "2026-11-03", TODAY) == (date(2026, 11, 1), date(2026, 11, 3))
    assert day_range(None, None, TODAY) == (date(2026, 10, 23), TODAY)
    with pytest.raises(RangeError, match="dates"):
        day_range("2026-11-01T00:00:00Z", None, TODAY)
    with pytest.raises(RangeError, match="after"):
        day_range("2026-11-04", "2026-11-03", TODAY)
    with pytest.raises(RangeError, match="more than"):
        day_range("2025-11-01", "2026-11-03", TODAY)


def test_the_csv_parses_back_to_the_entries() -> None:
    entries = [
        entry(
            "a1", "ev:e1:call", "call", -600_000, 400_000, utc(2026, 11, 1, 21, 30), call_id="c1"
        ),
        entry("a1", "ac:t1:topup", "topup", 5_000_000, 5_400_000, utc(2026, 11, 1, 23)),
        entry(
            "a1",
            "ac:f1:fee",
            "fee",
            -1,
            5_399_999,
            utc(2026, 11, 2),
            description="=cmd|' /C calc'!A0",
        ),
    ]
    text = "".join(csv_lines(entries, KYIV))
    assert text.endswith("\r\n")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == COLUMNS
    assert [r["id"] for r in rows] == [e.entry_id for e in entries]
    assert [int(r["amount_micros"]) for r in rows] == [e.amount_micros for e in entries]
    assert [int(r["balance_after_micros"]) for r in rows] == [400_000, 5_400_000, 5_399_999]
    assert [r["amount"] for r in rows] == ["-0.600000", "5.000000", "-0.000001"]
    # Local days of Kyiv (UTC+2): 21:30 UTC is already the 1st's 23:30; 23:00 UTC the 2nd.
    assert [r["local_date"] for r in rows] == ["2026-11-01", "2026-11-02", "2026-11-02"]
    assert rows[0]["time"] == "2026-11-01T21:30:00.000Z" and rows[0]["call_id"] == "c1"
    assert rows[2]["description"].startswith("'=")  # a formula is shown, never run
