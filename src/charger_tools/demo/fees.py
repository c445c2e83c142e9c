"""Billing beyond traffic for the demo: subscriptions charged by the day, numbers bought.

Some customers rent two numbers and one also pays for a product, both billed in arrears
by the day since three days before the demo starts: the worker's scheduler charges the
three days that are over as soon as it owns their partitions, each dated its own day.
Those customers also buy a number with `require_funds`, and the poorest customer tries
one it cannot afford: charge results say which were applied and which refused.
"""

from __future__ import annotations

import zlib

import orjson

from charger.events.timefmt import format_time_ms
from charger.money import MICROS_PER_UNIT
from charger_tools.simulate import SimRecord
from charger_tools.simulate.model import AccountProfile
from charger_topics import names

DAY_MS = 24 * 3600 * 1000
RENTING = 6  # customers that rent numbers and buy one
_PRICES = {  # per currency, in units: a number a month, the product a month, a number
    "UAH": (200, 1500, 120),
}
_DEFAULT_PRICES = (5, 39, 3)


def _record(profile: AccountProfile, document: dict[str, object]) -> SimRecord:
    key = profile.id.encode()
    return SimRecord(names.BILLING_ACCOUNTS, key, orjson.dumps(document), "good")


def fee_records(profiles: list[AccountProfile], now_ms: int) -> list[SimRecord]:
    """The subscriptions and number purchases of the demo's customers (see the module)."""
    time = format_time_ms(now_ms)
    starts = format_time_ms(now_ms - 3 * DAY_MS)
    chosen = sorted(profiles, key=lambda p: p.id)[:RENTING]
    out: list[SimRecord] = []
    for n, profile in enumerate(chosen):
        number, product, purchase = _PRICES.get(profile.currency, _DEFAULT_PRICES)
        common = {"account": profile.id, "time": time, "starts_at": starts, "period": "month"}
        out.append(
            _record(
                profile,
                {
                    "id": f"demo-numbers-{profile.id}",
                    "type": "subscription.upserted",
                    **common,
                    "subscription_id": "numbers",
                    "item": "number_rental",
                    "description": "Rented numbers",
                    "price_micros": number * MICROS_PER_UNIT,
                    "billing": "arrears",
                    "quantity": 2,
                },
            )
        )
        if n < 2:
            out.append(
                _record(
                    profile,
                    {
                        "id": f"demo-product-{profile.id}",
                        "type": "subscription.upserted",
                        **common,
                        "subscription_id": "call-tracking",
                        "item": "product",
                        "description": "Call tracking",
                        "price_micros": product * MICROS_PER_UNIT,
                        "billing": "arrears",
                        "quantity": 1,
                    },
                )
            )
        out.append(_purchase(profile, "number", time, purchase * MICROS_PER_UNIT))
    poorest = min(profiles, key=lambda p: p.opening_micros)
    out.append(_purchase(poorest, "dear-number", time, poorest.opening_micros + MICROS_PER_UNIT))
    return out


def _purchase(profile: AccountProfile, what: str, time: str, amount_micros: int) -> SimRecord:
    return _record(
        profile,
        {
            "id": f"demo-{what}-{profile.id}",
            "type": "fee.charged",
            "account": profile.id,
            "time": time,
            "amount_micros": amount_micros,
            "item": "number_purchase",
            "description": "A new phone number",
            "reference": f"+38044{zlib.crc32(f'{what}{profile.id}'.encode()) % 10_000_000:07d}",
            "require_funds": True,
        },
    )
