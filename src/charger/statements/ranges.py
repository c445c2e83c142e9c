"""How a statement's `from` and `to` are read. Pure.

Each bound is either a calendar date or an instant:

- a **date** `YYYY-MM-DD` is a day of the account's time zone (its `time_zone`, as its
  subscriptions are charged): `from=2026-11-01` starts at that day's local midnight, and
  `to` is **inclusive**: `to=2026-11-30` ends at the local midnight that starts Dec 1st;
- an **instant** is RFC 3339 with an offset (`2026-11-01T08:00:00Z`,
  `2026-11-01T10:00:00+02:00`): `from` is inclusive, `to` exclusive.

Left out, `to` is today (a date, so today is included) and `from` is the local day 30 days
before `to`'s. A statement spans at most `MAX_DAYS`; the movements of funds take dates
only, since each of their rows is a local day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from charger.charging.subscriptions import day_start_ms

__all__ = ["DEFAULT_DAYS", "MAX_DAYS", "RangeError", "TimeRange", "day_range", "statement_range"]

MAX_DAYS: Final = 366
DEFAULT_DAYS: Final = 30

_DATE: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INSTANT: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


class RangeError(ValueError):
    """`from` / `to` that name no range; the message says which and why."""


@dataclass(frozen=True, slots=True)
class TimeRange:
    """start <= instant < end, both aware (UTC)."""

    start: datetime
    end: datetime


def _bound(name: str, text: str) -> date | datetime:
    try:
        if _DATE.fullmatch(text):
            return date.fromisoformat(text)
        if _INSTANT.fullmatch(text):
            return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):
        raise RangeError(f"{name}: {text!r} is not a real date or time") from None
    raise RangeError(
        f"{name}: {text!r} is neither a date (2026-11-01) nor an RFC 3339 instant "
        "with an offset (2026-11-01T08:00:00Z)"
    )


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of local `day`, in UTC."""
    return datetime.fromtimestamp(day_start_ms(day, zone) / 1000, UTC)


def _after(day: date, name: str) -> date:
    try:
        return day + timedelta(days=1)
    except OverflowError:
        raise RangeError(f"{name}: {day.isoformat()} is the last day there is") from None


def statement_range(
    from_text: str | None, to_text: str | None, zone: ZoneInfo, today: date
) -> TimeRange:
    """The instants a statement covers; `today` is the account's local date now."""
    try:
        return _statement_range(from_text, to_text, zone, today)
    except RangeError:
        raise
    except (ValueError, OverflowError, OSError):
        # Dates at the ends of the calendar, shifted by a time zone, leave it.
        raise RangeError("the range lies outside the calendar") from None


def _statement_range(
    from_text: str | None, to_text: str | None, zone: ZoneInfo, today: date
) -> TimeRange:
    to_bound = _bound("to", to_text) if to_text else today
    if isinstance(to_bound, datetime):
        end, to_day = to_bound, to_bound.astimezone(zone).date()
    else:
        end, to_day = day_start(_after(to_bound, "to"), zone), to_bound
    default_from = to_day - timedelta(days=DEFAULT_DAYS)
    from_bound = _bound("from", from_text) if from_text else default_from
    start = from_bound if isinstance(from_bound, datetime) else day_start(from_bound, zone)
    if start >= end:
        raise RangeError("from must come before to")
    if end - start > timedelta(days=MAX_DAYS + 1):
        raise RangeError(f"the range spans more than {MAX_DAYS} days")
    return TimeRange(start, end)


def day_range(from_text: str | None, to_text: str | None, today: date) -> tuple[date, date]:
    """First and last local day (inclusive) of the movements of funds."""
    last = _day("to", to_text) if to_text else today
    try:
        first = _day("from", from_text) if from_text else last - timedelta(days=DEFAULT_DAYS)
    except OverflowError:
        raise RangeError("from: the range lies outside the calendar") from None
    if first > last:
        raise RangeError("from must not come after to")
    if (last - first).days + 1 > MAX_DAYS:
        raise RangeError(f"the range spans more than {MAX_DAYS} days")
    return first, last


def _day(name: str, text: str) -> date:
    bound = _bound(name, text)
    if isinstance(bound, datetime):
        raise RangeError(f"{name}: the movements of funds take dates (2026-11-01), not instants")
    return bound
