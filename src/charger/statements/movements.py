"""The daily movement of funds: an account's entries summed per local day. Pure.

A local day of a time zone runs from its first instant (local midnight, or the first
instant after a daylight-saving gap that swallows midnight: `day_start_ms`, the rule the
subscriptions charge by) to the first instant of the next day; 23 or 25 hours across a
change, and always one day. An entry belongs to the day whose span holds its
`occurred_at`, so every instant falls in exactly one day.

A day's opening balance is the sum of every amount dated before it — an account starts at
zero and every balance movement is a ledger entry (guarantee 3) — so closing = opening +
credits − debits, and each day's closing is the next day's opening, even when an entry
reached the ledger after entries dated later (a fee charged on a worker's return for a day
it missed). `balance_after_micros` on each entry is the balance the worker left at that
movement, in the order it moved the money; the days are the booking view.

Debits are entries with a negative amount, credits with a positive one, each summed per
kind as a positive number; an entry of amount zero (a free call) moves nothing and is
listed by a statement of all entries only.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from charger.charging.subscriptions import day_start_ms
from charger.statements.model import DayMovement, Show

__all__ = [
    "DaySum",
    "Movement",
    "assemble",
    "daily_movements",
    "day_starts",
    "days_between",
    "shown",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Movement:
    """What a day's sums need of one entry."""

    occurred_at: datetime
    kind: str
    amount_micros: int


@dataclass(frozen=True)
class DaySum:
    """The signed sum of one kind's debits, or of its credits, on the `day_index`-th day."""

    day_index: int
    kind: str
    amount_micros: int


def shown(show: Show, amount_micros: int) -> bool:
    """Whether a statement with filter `show` lists an entry of this amount."""
    if show is Show.DEBITS:
        return amount_micros < 0
    if show is Show.CREDITS:
        return amount_micros > 0
    return True


def days_between(first_day: date, last_day: date) -> list[date]:
    """Every day from first_day to last_day, both included; ValueError if they are reversed."""
    if last_day < first_day:
        raise ValueError(f"last day {last_day} is before first day {first_day}")
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]


def day_starts(first_day: date, last_day: date, zone: ZoneInfo) -> list[datetime]:
    """The first instant (UTC) of every day from first_day to last_day, and of the day
    after: day i spans [starts[i], starts[i + 1])."""
    days = [*days_between(first_day, last_day), last_day + timedelta(days=1)]
    return [EPOCH + timedelta(milliseconds=day_start_ms(day, zone)) for day in days]


def assemble(
    first_day: date, last_day: date, opening_balance_micros: int, sums: Iterable[DaySum]
) -> list[DayMovement]:
    """One DayMovement per day from the opening balance of the first day and the sums of
    each day's debits and credits by kind (several sums of one day and kind add up)."""
    days = days_between(first_day, last_day)
    debits: list[dict[str, int]] = [defaultdict(int) for _ in days]
    credits: list[dict[str, int]] = [defaultdict(int) for _ in days]
    for item in sums:
        if not 0 <= item.day_index < len(days):
            raise ValueError(f"day index {item.day_index} is outside {first_day}..{last_day}")
        if item.amount_micros < 0:
            debits[item.day_index][item.kind] -= item.amount_micros
        elif item.amount_micros > 0:
            credits[item.day_index][item.kind] += item.amount_micros
    out = []
    balance = opening_balance_micros
    for index, day in enumerate(days):
        closing = balance + sum(credits[index].values()) - sum(debits[index].values())
        out.append(
            DayMovement(
                day=day,
                opening_balance_micros=balance,
                debits_by_kind_micros=dict(sorted(debits[index].items())),
                credits_by_kind_micros=dict(sorted(credits[index].items())),
                closing_balance_micros=closing,
            )
        )
        balance = closing
    return out


def daily_movements(
    opening_balance_micros: int,
    movements: Iterable[Movement],
    first_day: date,
    last_day: date,
    zone: ZoneInfo,
) -> list[DayMovement]:
    """The days from first_day to last_day of `zone` from the balance before the first day
    and the entries dated within them (in any order); ValueError for one dated outside."""
    starts = day_starts(first_day, last_day, zone)
    sums = []
    for movement in movements:
        index = bisect_right(starts, movement.occurred_at) - 1
        if not 0 <= index < len(starts) - 1:
            raise ValueError(
                f"an entry of {movement.occurred_at.isoformat()} is outside "
                f"{first_day}..{last_day} in {zone.key}"
            )
        sums.append(DaySum(index, movement.kind, movement.amount_micros))
    return assemble(first_day, last_day, opening_balance_micros, sums)
