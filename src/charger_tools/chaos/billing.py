"""What the chaos run charges beyond traffic: subscriptions, fees, adjustments. Pure.

Subscriptions are set up with the accounts and have all their periods due before the
stream starts (they ended at the start of the current UTC day or month), so the fees the
scheduler must make are known exactly whatever the run's pace: a fee id missing from the
ledger was missed, a period with two entries was charged twice. Fees (some with
`require_funds`) and operator adjustments come during the stream like the top-ups.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from charger.charging.subscriptions import Billing, Period, Progress, Subscription, due_charges
from charger.events.timefmt import format_time_ms
from charger.money import MICROS_PER_UNIT
from charger_tools.simulate import SimRecord
from charger_topics import names

DAY_MS = 24 * 3600 * 1000
EVERY_NTH_RENTS = 20  # one account in 20 rents numbers by the day
EVERY_NTH_LICENSES = 40  # one in 40 paid licences a month in advance


@dataclass(frozen=True)
class BillingSetup:
    records: list[SimRecord]
    scheduled_ids: set[str]  # the ledger ids of the fees the scheduler must make, once each


def _record(account: str, document: dict[str, object]) -> SimRecord:
    value = orjson.dumps({"account": account, **document})
    return SimRecord(names.BILLING_ACCOUNTS, account.encode(), value, "good")


def _upsert(account: str, subscription: Subscription, time: str) -> SimRecord:
    return _record(
        account,
        {
            "id": f"chaos-sub-{subscription.subscription_id}-{account}",
            "type": "subscription.upserted",
            "time": time,
            "subscription_id": subscription.subscription_id,
            "item": subscription.item,
            "description": subscription.description,
            "price_micros": subscription.price_micros,
            "period": subscription.period.value,
            "billing": subscription.billing.value,
            "quantity": subscription.quantity,
            "starts_at": format_time_ms(subscription.starts_at_ms),
            "ends_at": format_time_ms(subscription.ends_at_ms or 0),
        },
    )


def billing_setup(accounts: list[str], now_ms: int) -> BillingSetup:
    """Subscriptions of some accounts, and the fee ids they must leave (see the module)."""
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    today_ms = round(now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()) * 1000
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    month_ms = round(month.timestamp()) * 1000
    time = format_time_ms(now_ms)
    records: list[SimRecord] = []
    ids: set[str] = set()
    for n, account in enumerate(sorted(accounts)):
        subscriptions = []
        if n % EVERY_NTH_RENTS == 0:
            subscriptions.append(
                Subscription(
                    "numbers", "number_rental", "Rented numbers", 100_000, Period.DAY,
                    Billing.ARREARS, 2, today_ms - 3 * DAY_MS, today_ms,
                )
            )  # fmt: skip
        if n % EVERY_NTH_LICENSES == 0:
            subscriptions.append(
                Subscription(
                    "licences", "licence", "Licences", 3 * MICROS_PER_UNIT, Period.MONTH,
                    Billing.ADVANCE, 2, month_ms - 20 * DAY_MS, month_ms,
                )
            )  # fmt: skip
        for subscription in subscriptions:
            records.append(_upsert(account, subscription, time))
            for charge in due_charges(subscription, "UTC", Progress(), now_ms, limit=400):
                ids.add(f"sub:{account}:{charge.charge_id}:fee")
    return BillingSetup(records, ids)


def fee_or_adjustment(rng: random.Random, account: str, now_ms: int, n: int) -> SimRecord:
    """A fee (half of them requiring funds) or, one time in three, an adjustment."""
    time = format_time_ms(now_ms)
    if rng.random() < 1 / 3:
        amount = rng.choice((-1, 1)) * rng.choice((500_000, 1_000_000))
        return _record(
            account,
            {
                "id": f"chaos-adj-{now_ms}-{n}",
                "type": "balance.adjusted",
                "time": time,
                "amount_micros": amount,
                "reason": "chaos correction",
            },
        )
    return _record(
        account,
        {
            "id": f"chaos-fee-{now_ms}-{n}",
            "type": "fee.charged",
            "time": time,
            "amount_micros": rng.choice((1, 2, 5)) * MICROS_PER_UNIT,
            "item": rng.choice(("number_purchase", "number_renewal", "other")),
            "description": "chaos fee",
            "require_funds": rng.random() < 0.5,
        },
    )
