"""Contract times <-> epoch milliseconds, in integer arithmetic only.

A contract time is RFC 3339 in UTC with exactly three fractional digits, e.g.
``2026-11-22T10:00:00.123Z`` (see ``charger_topics.schema.TIME_PATTERN``). Years 0000-9999 are
representable; the conversions use the proleptic Gregorian calendar, like RFC 3339.
"""

from __future__ import annotations

import re
from typing import Final

from charger_topics.schema import TIME_PATTERN

__all__ = [
    "MAX_TIME_MS",
    "MILLIS",
    "MIN_TIME_MS",
    "SECONDS",
    "TIME_RE",
    "format_time_ms",
    "is_time",
    "parse_time_ms",
]

TIME_RE: Final = re.compile(TIME_PATTERN)

_MS_PER_DAY: Final = 86_400_000
_UNIX_EPOCH_DAYS: Final = 719_468  # days from 0000-03-01 to 1970-01-01


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - _UNIX_EPOCH_DAYS


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """The (year, month, day) ``days`` after 1970-01-01; inverse of _days_from_civil."""
    days += _UNIX_EPOCH_DAYS
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (month <= 2), month, day


# Every valid time is a valid "YYYY-MM-DDTHH:MM:SS" followed by one of these.
MILLIS: Final = frozenset(f".{n:03d}Z" for n in range(1000))
# Valid times seen, to the second -> epoch ms of that second. A stream's times share few
# seconds, and the calendar regex and the parse cost more than the rest of a record's check.
SECONDS: Final[dict[str, int]] = {}
_MAX_SECONDS: Final = 1 << 15


def _learn(value: str) -> int | None:
    """Epoch ms of ``value`` if it is a contract time (its second is remembered), else None."""
    if TIME_RE.fullmatch(value) is None:
        return None
    days = _days_from_civil(int(value[0:4]), int(value[5:7]), int(value[8:10]))
    seconds = int(value[11:13]) * 3600 + int(value[14:16]) * 60 + int(value[17:19])
    base = days * _MS_PER_DAY + seconds * 1000
    if len(SECONDS) >= _MAX_SECONDS:
        SECONDS.clear()
    SECONDS[value[:19]] = base
    return base + int(value[20:23])


def is_time(value: str) -> bool:
    """Whether the string ``value`` is a contract time (``TIME_RE.fullmatch`` accepts it)."""
    if len(value) == 24 and value[19:] in MILLIS and value[:19] in SECONDS:
        return True
    return _learn(value) is not None


def parse_time_ms(value: str) -> int:
    """Epoch milliseconds of a contract time; ValueError if ``value`` is not one."""
    if isinstance(value, str):
        if len(value) == 24 and value[19:] in MILLIS:
            base = SECONDS.get(value[:19])
            if base is not None:
                return base + int(value[20:23])
        ms = _learn(value)
        if ms is not None:
            return ms
    raise ValueError(
        f"time must be RFC 3339 UTC with milliseconds (2026-11-22T10:00:00.000Z), got {value!r:.80}"
    )


MIN_TIME_MS: Final = _days_from_civil(0, 1, 1) * _MS_PER_DAY
MAX_TIME_MS: Final = _days_from_civil(10_000, 1, 1) * _MS_PER_DAY - 1


def format_time_ms(ms: int) -> str:
    """The contract time of epoch milliseconds ``ms``, e.g. ``2026-11-22T10:00:00.123Z``."""
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"ms must be an int, got {type(ms).__name__}")
    if not MIN_TIME_MS <= ms <= MAX_TIME_MS:
        raise ValueError(f"{ms} ms is outside years 0000-9999")
    days, rest = divmod(ms, _MS_PER_DAY)
    year, month, day = _civil_from_days(days)
    seconds, millis = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{year:04d}-{month:02d}-{day:02d}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"
