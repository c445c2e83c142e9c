"""Recurring charges in local days and months: tables for the rules, hypothesis for the
arithmetic and for catching up. Every instant is built from explicit local times."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from charger.charging.scheduling import next_look_ms, plan_charges
from charger.charging.subscriptions import (
    Billing,
    Period,
    Progress,
    ScheduledCharge,
    Subscription,
    day_start_ms,
    due_charges,
    month_share,
    progress_after,
    prorated,
    subscription_problem,
)
from charger.protocol.fields import SubscriptionField

USD = 1_000_000
KYIV = "Europe/Kyiv"


def local_ms(zone: str, day: date, hour: int = 0, minute: int = 0) -> int:
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo(zone))
    return round(moment.timestamp()) * 1000


def subscription(**changes: object) -> Subscription:
    fields: dict[str, object] = {
        "subscription_id": "s",
        "item": "product",
        "description": "Product",
        "price_micros": 39 * USD,
        "period": Period.MONTH,
        "billing": Billing.ARREARS,
        "quantity": 1,
        "starts_at_ms": local_ms(KYIV, date(2026, 10, 1)),
    }
    return Subscription(**{**fields, **changes})  # type: ignore[arg-type]


def charge_all(
    sub: Subscription, zone: str, looks_ms: list[int], limit: int = 62
) -> list[ScheduledCharge]:
    """Ask at each instant of `looks_ms`, feeding the progress back, as the scheduler does."""
    progress, charged = Progress(), []
    for now_ms in looks_ms:
        while True:
            charges = due_charges(sub, zone, progress, now_ms, limit)
            for charge in charges:
                progress = progress_after(charge)
            charged += charges
            if len(charges) < limit:
                break
    return charged


def test_kyiv_arrears_charge_each_local_day_after_it_ends_and_a_month_sums_exactly() -> None:
    product = subscription()
    numbers = subscription(subscription_id="n", price_micros=5 * USD, quantity=3)
    november_first = local_ms(KYIV, date(2026, 11, 1))
    for sub, month_total in ((product, 39 * USD), (numbers, 15 * USD)):
        october = due_charges(sub, KYIV, Progress(), november_first, limit=100)
        assert [c.period_start for c in october] == [
            (date(2026, 10, 1) + timedelta(days=n)).isoformat() for n in range(31)
        ]
        assert sum(c.amount_micros for c in october) == month_total
        for charge in october:
            day = date.fromisoformat(charge.period_start)
            assert charge.due_at_ms == local_ms(KYIV, day + timedelta(days=1))
            assert charge.charge_id == f"{sub.subscription_id}:{charge.period_start}"
    # DST ends on Oct 25 in Kyiv: that day is 25 hours long and still charged once.
    dst_day = date(2026, 10, 25)
    assert local_ms(KYIV, dst_day + timedelta(days=1)) - local_ms(KYIV, dst_day) == 25 * 3600_000
    assert (
        due_charges(product, KYIV, Progress("2026-10-24"), november_first - 1, 1)[0]
        == (due_charges(product, KYIV, Progress(), november_first, 100)[24])
    )
    # Nothing for a day not over yet: one millisecond before local midnight.
    assert due_charges(product, KYIV, Progress("2026-10-24"), local_ms(KYIV, dst_day) - 1) == []


def test_a_caller_back_after_three_days_gets_each_missed_day_once_in_order() -> None:
    sub = subscription()
    looks = [local_ms(KYIV, date(2026, 11, 2), 0, 1), local_ms(KYIV, date(2026, 11, 5), 0, 1)]
    charged = charge_all(sub, KYIV, looks)
    assert [c.period_start for c in charged[-3:]] == ["2026-11-02", "2026-11-03", "2026-11-04"]
    assert len({c.charge_id for c in charged}) == len(charged) == 35


@pytest.mark.parametrize(
    ("starts", "ends", "days"),
    [
        ((date(2026, 3, 10), 15), None, ["2026-03-10", "2026-03-11", "2026-03-12"]),
        ((date(2026, 3, 10), 15), (date(2026, 3, 11), 9), ["2026-03-10", "2026-03-11"]),
        ((date(2026, 3, 10), 0), (date(2026, 3, 11), 0), ["2026-03-10"]),
    ],
)
def test_day_arrears_charge_every_day_touched_whole(
    starts: tuple[date, int], ends: tuple[date, int] | None, days: list[str]
) -> None:
    sub = subscription(
        period=Period.DAY,
        price_micros=2 * USD,
        quantity=3,
        starts_at_ms=local_ms("UTC", starts[0], starts[1]),
        ends_at_ms=None if ends is None else local_ms("UTC", ends[0], ends[1]),
    )
    charged = due_charges(sub, "UTC", Progress(), local_ms("UTC", date(2026, 3, 13)))
    assert [c.period_start for c in charged] == days
    assert {c.amount_micros for c in charged} == {6 * USD}


def test_licences_in_advance_the_april_example() -> None:
    starts = local_ms("UTC", date(2026, 4, 1))
    ten = subscription(
        billing=Billing.ADVANCE, price_micros=64 * USD, quantity=10, starts_at_ms=starts
    )
    (april,) = due_charges(ten, "UTC", Progress(), starts + 60_000)
    assert (april.charge_id, april.amount_micros, april.period_end) == (
        "s:2026-04",
        640 * USD,
        "2026-04-30",
    )
    progress = progress_after(april)
    seventeen = subscription(
        billing=Billing.ADVANCE, price_micros=64 * USD, quantity=17, starts_at_ms=starts
    )
    eighth = local_ms("UTC", date(2026, 4, 8), 9)
    (more,) = due_charges(seventeen, "UTC", progress, eighth)
    assert more.amount_micros == 343_466_666 == 7 * 64 * USD * 23 // 30
    assert (more.quantity, more.period_start, more.charge_id) == (
        7,
        "2026-04-08",
        "s:2026-04:q10-17",
    )
    progress = progress_after(more)
    assert due_charges(seventeen, "UTC", progress, local_ms("UTC", date(2026, 4, 30), 23)) == []
    (may,) = due_charges(seventeen, "UTC", progress, local_ms("UTC", date(2026, 5, 1)))
    assert (may.amount_micros, may.quantity) == (1_088_000_000, 17)


def test_advance_start_mid_month_is_pro_rata_and_a_decrease_or_end_waits_for_next_month() -> None:
    starts = local_ms("UTC", date(2026, 2, 15), 10)
    sub = subscription(
        billing=Billing.ADVANCE, price_micros=28 * USD, quantity=2, starts_at_ms=starts
    )
    (february,) = due_charges(sub, "UTC", Progress(), starts)
    assert february.amount_micros == 56 * USD * 14 // 28  # Feb 15..28 of 28 days
    progress = progress_after(february)
    fewer = subscription(
        billing=Billing.ADVANCE, price_micros=28 * USD, quantity=1, starts_at_ms=starts
    )
    assert due_charges(fewer, "UTC", progress, local_ms("UTC", date(2026, 2, 20))) == []
    (march,) = due_charges(fewer, "UTC", progress, local_ms("UTC", date(2026, 3, 1)))
    assert march.amount_micros == 28 * USD
    ended = subscription(
        billing=Billing.ADVANCE,
        price_micros=28 * USD,
        quantity=1,
        starts_at_ms=starts,
        ends_at_ms=local_ms("UTC", date(2026, 3, 20)),
    )
    progress = progress_after(march)
    assert due_charges(ended, "UTC", progress, local_ms("UTC", date(2026, 6, 1))) == []
    assert next_look_ms(ended, "UTC", progress) == -1


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"billing": Billing.ADVANCE, "period": Period.DAY}, "period must be month"),
        ({"quantity": 0}, "quantity"),
        ({"ends_at_ms": local_ms(KYIV, date(2026, 10, 1))}, "ends_at must be after"),
    ],
)
def test_what_cannot_be_scheduled_is_refused(changes: dict[str, object], says: str) -> None:
    problem = subscription_problem(subscription(**changes))
    assert problem is not None and says in problem


def test_a_valid_subscription_has_no_problem() -> None:
    assert subscription_problem(subscription()) is None


@given(
    price=st.integers(0, 10**10),
    quantity=st.integers(1, 1000),
    month=st.dates(date(2000, 1, 1), date(2100, 12, 1)).map(lambda d: d.replace(day=1)),
)
def test_a_month_split_over_its_days_sums_exactly_and_days_differ_by_at_most_one(
    price: int, quantity: int, month: date
) -> None:
    total = price * quantity
    days = [
        month + timedelta(days=n)
        for n in range(31)
        if (month + timedelta(days=n)).month == month.month
    ]
    shares = [month_share(total, day) for day in days]
    assert sum(shares) == total
    assert max(shares) - min(shares) <= 1
    assert prorated(total, month) == total


@settings(max_examples=60, deadline=None)
@given(
    billing=st.sampled_from(list(Billing)),
    zone=st.sampled_from(["UTC", KYIV, "America/New_York", "Asia/Kolkata"]),
    start_offset_h=st.integers(0, 24 * 60),
    looks_h=st.lists(st.integers(0, 24 * 120), min_size=1, max_size=8),
    limit=st.integers(1, 40),
)
def test_asking_often_or_once_charges_the_same_and_never_twice(
    billing: Billing, zone: str, start_offset_h: int, looks_h: list[int], limit: int
) -> None:
    starts = local_ms(zone, date(2026, 1, 1)) + start_offset_h * 3600_000
    sub = subscription(billing=billing, starts_at_ms=starts, price_micros=31 * USD, quantity=2)
    looks = sorted(starts + hours * 3600_000 for hours in looks_h)
    often = charge_all(sub, zone, looks, limit)
    once = charge_all(sub, zone, looks[-1:], 400)
    assert [(c.charge_id, c.amount_micros) for c in often] == [
        (c.charge_id, c.amount_micros) for c in once
    ]
    assert len({c.charge_id for c in often}) == len(often)
    assert all(c.due_at_ms <= looks[-1] for c in often)


def test_the_scheduler_plans_compare_and_set_ops_and_the_next_look() -> None:
    sub_fields = {
        SubscriptionField.ACCOUNT: "acc-1",
        SubscriptionField.SUBSCRIPTION_ID: "numbers",
        SubscriptionField.ITEM: "number_rental",
        SubscriptionField.DESCRIPTION: "Rented numbers",
        SubscriptionField.PRICE: "5000000",
        SubscriptionField.PERIOD: "month",
        SubscriptionField.BILLING: "arrears",
        SubscriptionField.QUANTITY: "3",
        SubscriptionField.STARTS_AT: str(local_ms(KYIV, date(2026, 10, 30))),
        SubscriptionField.ENDS_AT: "0",
        SubscriptionField.CHARGED_THROUGH: "",
        SubscriptionField.CHARGED_QUANTITY: "0",
    }
    fields = {name.value.encode(): value.encode() for name, value in sub_fields.items()}
    now = local_ms(KYIV, date(2026, 11, 1), 0, 5)
    ops = plan_charges(fields, "k:sub", "k:acc", KYIV, "USD", now, limit=62)
    assert [(op.charged_through_before, op.charged_through) for op in ops] == [
        ("", "2026-10-30"),
        ("2026-10-30", "2026-10-31"),
    ]
    assert [op.amount_micros for op in ops] == [
        -month_share(15 * USD, date(2026, 10, d)) for d in (30, 31)
    ]
    assert ops[-1].next_look_ms == day_start_ms(date(2026, 11, 2), ZoneInfo(KYIV))
    assert b'"id":"sub:acc-1:numbers:2026-10-30:fee"' in ops[0].ledger_head
    (idle,) = plan_charges(fields, "k:sub", "k:acc", KYIV, "USD", now - 3 * 86_400_000, 62)
    assert idle.amount_micros == 0 and idle.next_look_ms == local_ms(KYIV, date(2026, 10, 31))
