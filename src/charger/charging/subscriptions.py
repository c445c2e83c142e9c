"""Recurring charges in the account's local days and months: what is due, and when. Pure.

A subscription is charged in one of two ways (the field `billing`):

- **arrears**, after each local day for that day, once the day is over (due at the next
  local midnight). Every local day the subscription was active for any part of is
  charged. A `day` price is charged whole each day; a `month` price is split over the
  days of each local month so that a full month adds up to exactly price × quantity:
  with T = price × quantity and D days in the month, day d is charged
  ⌊T·d/D⌋ − ⌊T·(d−1)/D⌋ (cumulative rounding: integers only, the days differ by at most
  one micro-unit, and the month sums to T whatever D is).
- **advance**, a `month` price only: each local month on its 1st (due at local midnight)
  for a subscription active then. A start mid-month is charged at once for the rest of
  that month, ⌊T·r/D⌋ with r the days from the start's local day to the month's end
  (both included); an increase of the quantity mid-month likewise for the added units,
  from the local day the scheduler sees it. A decrease or an end takes effect from the
  next month: nothing is refunded. Pro-rata amounts round down (in the customer's favour).

Days and months are the account's (`time_zone`, an IANA name): a day across a daylight
saving change is 23 or 25 hours, and is still one day.

Every charge has an id derived from the subscription and its period —
`<subscription>:<YYYY-MM-DD>` for an arrears day, `<subscription>:<YYYY-MM>` for an
advance month, `<subscription>:<YYYY-MM>:q<old>-<new>` for an increase — and a
`Progress` (the last day or month charged, and for advance the units charged for it):
feeding each charge's progress back before asking again yields every period once.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as wall_time
from enum import StrEnum
from functools import lru_cache
from zoneinfo import ZoneInfo


class Period(StrEnum):
    DAY = "day"
    MONTH = "month"


class Billing(StrEnum):
    ARREARS = "arrears"
    ADVANCE = "advance"


@dataclass(frozen=True, slots=True)
class Subscription:
    subscription_id: str
    item: str
    description: str
    price_micros: int  # per period and unit
    period: Period
    billing: Billing
    quantity: int
    starts_at_ms: int
    ends_at_ms: int | None = None  # active on [starts_at, ends_at)


@dataclass(frozen=True, slots=True)
class ScheduledCharge:
    charge_id: str
    subscription_id: str
    amount_micros: int  # what is debited: positive
    quantity: int
    period_start: str  # local dates, YYYY-MM-DD
    period_end: str
    due_at_ms: int  # the instant it may be charged
    charged_through: str  # the subscription's progress once it is applied
    charged_quantity: int


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a subscription was charged: strings and integers, as a Redis hash holds them."""

    charged_through: str = ""  # arrears: last local date charged; advance: last month
    charged_quantity: int = 0  # advance: the units charged for month `charged_through`


def subscription_problem(subscription: Subscription) -> str | None:
    """None when `subscription` can be scheduled, else why not."""
    if subscription.billing is Billing.ADVANCE and subscription.period is not Period.MONTH:
        return "advance billing charges months: its period must be month"
    if subscription.quantity < 1:
        return f"quantity must be at least 1, got {subscription.quantity}"
    if subscription.price_micros < 0:
        return f"price_micros must not be negative, got {subscription.price_micros}"
    ends = subscription.ends_at_ms
    if ends is not None and ends <= subscription.starts_at_ms:
        return "ends_at must be after starts_at"
    return None


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_date(instant_ms: int, zone: ZoneInfo) -> date:
    return datetime.fromtimestamp(instant_ms // 1000, zone).date()


def day_start_ms(day: date, zone: ZoneInfo) -> int:
    """The first instant of local `day` (local midnight, or the first instant after a gap)."""
    return round(datetime.combine(day, wall_time(), tzinfo=zone).timestamp()) * 1000


def _month_key(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def _days_in(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def _next_month(day: date) -> date:
    return (day.replace(day=1) + timedelta(days=31)).replace(day=1)


def _month_end(day: date) -> date:
    return day.replace(day=_days_in(day))


def month_share(total_micros: int, day: date) -> int:
    """Day `day`'s part of `total_micros` split over its month (see the module)."""
    days = _days_in(day)
    return total_micros * day.day // days - total_micros * (day.day - 1) // days


def prorated(total_micros: int, first_day: date) -> int:
    """The part of a month's `total_micros` from `first_day` to the month's end."""
    days = _days_in(first_day)
    return total_micros * (days - first_day.day + 1) // days


def due_charges(
    subscription: Subscription, time_zone: str, progress: Progress, now_ms: int, limit: int = 62
) -> list[ScheduledCharge]:
    """Every charge due at `now_ms` that `progress` does not cover, oldest first, at most
    `limit` (the caller comes back for the rest)."""
    zone = _zone(time_zone)
    if subscription.billing is Billing.ARREARS:
        return _arrears(subscription, zone, progress, now_ms, limit)
    return _advance(subscription, zone, progress, now_ms, limit)


def progress_after(charge: ScheduledCharge) -> Progress:
    """The progress once `charge` is applied."""
    return Progress(charge.charged_through, charge.charged_quantity)


def _arrears(
    subscription: Subscription, zone: ZoneInfo, progress: Progress, now_ms: int, limit: int
) -> list[ScheduledCharge]:
    day = local_date(subscription.starts_at_ms, zone)
    if progress.charged_through:
        day = max(day, date.fromisoformat(progress.charged_through) + timedelta(days=1))
    last = None
    if subscription.ends_at_ms is not None:
        last = local_date(subscription.ends_at_ms - 1, zone)  # the day of its last instant
    total = subscription.price_micros * subscription.quantity
    charges: list[ScheduledCharge] = []
    while len(charges) < limit and (last is None or day <= last):
        next_day = day + timedelta(days=1)
        due_at_ms = day_start_ms(next_day, zone)
        if due_at_ms > now_ms:
            break
        amount = total if subscription.period is Period.DAY else month_share(total, day)
        charges.append(
            ScheduledCharge(
                f"{subscription.subscription_id}:{day.isoformat()}",
                subscription.subscription_id,
                amount,
                subscription.quantity,
                day.isoformat(),
                day.isoformat(),
                due_at_ms,
                day.isoformat(),
                subscription.quantity,
            )
        )
        day = next_day
    return charges


def _advance(
    subscription: Subscription, zone: ZoneInfo, progress: Progress, now_ms: int, limit: int
) -> list[ScheduledCharge]:
    sid, price, quantity = (
        subscription.subscription_id,
        subscription.price_micros,
        subscription.quantity,
    )
    start_day = local_date(subscription.starts_at_ms, zone)
    month = start_day.replace(day=1)
    if progress.charged_through:
        month = max(month, _next_month(date.fromisoformat(progress.charged_through + "-01")))
    charges: list[ScheduledCharge] = []
    charged_through, charged_quantity = progress.charged_through, progress.charged_quantity
    while len(charges) < limit:
        first_day = start_day if month == start_day.replace(day=1) else month
        due_at_ms = max(day_start_ms(month, zone), subscription.starts_at_ms)
        ends = subscription.ends_at_ms
        if due_at_ms > now_ms or (ends is not None and ends <= due_at_ms):
            break
        charges.append(
            ScheduledCharge(
                f"{sid}:{_month_key(month)}",
                sid,
                prorated(price * quantity, first_day),
                quantity,
                first_day.isoformat(),
                _month_end(month).isoformat(),
                due_at_ms,
                _month_key(month),
                quantity,
            )
        )
        charged_through, charged_quantity = _month_key(month), quantity
        month = _next_month(month)
    today = local_date(now_ms, zone)
    ends = subscription.ends_at_ms
    increase = (
        len(charges) < limit
        and charged_through == _month_key(today)
        and charged_quantity < quantity
        and (ends is None or ends > now_ms)
    )
    if increase:
        added = quantity - charged_quantity
        charges.append(
            ScheduledCharge(
                f"{sid}:{charged_through}:q{charged_quantity}-{quantity}",
                sid,
                prorated(price * added, today),
                added,
                today.isoformat(),
                _month_end(today).isoformat(),
                now_ms,
                charged_through,
                quantity,
            )
        )
    return charges
