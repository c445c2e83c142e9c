"""The scheduler's plan for one subscription: the charges due now, as ops. Pure.

The worker reads a due subscription's hash and its account's time zone and currency, and
this module turns them into `ChargeSubscription` ops: one per period due (oldest first,
at most `limit` a look, the rest at the next look), each carrying the progress it was
planned from and the progress after it, so apply.lua applies it only once. The last op
also says when to look again: when the next period falls due, or never once the
subscription has ended. A subscription with nothing due gets one op with no amount that
only moves its next look.

A scheduled fee's ledger entry is dated in its period: an arrears day's charge at the last
millisecond of that local day (it is applied just after it), an advance month's at the
instant it fell due.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from charger.charging import ledger
from charger.charging.subscriptions import (
    Billing,
    Period,
    Progress,
    ScheduledCharge,
    Subscription,
    due_charges,
    progress_after,
)
from charger.events.timefmt import format_time_ms, parse_time_ms
from charger.protocol.fields import SubscriptionField
from charger.protocol.ops import ChargeSubscription

# Where a scheduled fee's ledger entry says it came from: no Kafka record caused it.
SOURCE_TOPIC = "charger.subscriptions"
# Far enough ahead to find the next period of any subscription, near enough to stay exact.
_FAR_AHEAD_MS = 400 * 24 * 3600 * 1000


def _text(fields: Mapping[bytes, bytes], name: SubscriptionField) -> str:
    return fields.get(name.value.encode(), b"").decode()


def _number(fields: Mapping[bytes, bytes], name: SubscriptionField) -> int:
    return int(fields.get(name.value.encode()) or b"0")


def subscription_from_fields(fields: Mapping[bytes, bytes]) -> tuple[str, Subscription, Progress]:
    """The account, the subscription and its progress, from its Redis hash."""
    ends_at_ms = _number(fields, SubscriptionField.ENDS_AT)
    subscription = Subscription(
        subscription_id=_text(fields, SubscriptionField.SUBSCRIPTION_ID),
        item=_text(fields, SubscriptionField.ITEM),
        description=_text(fields, SubscriptionField.DESCRIPTION),
        price_micros=_number(fields, SubscriptionField.PRICE),
        period=Period(_text(fields, SubscriptionField.PERIOD)),
        billing=Billing(_text(fields, SubscriptionField.BILLING)),
        quantity=_number(fields, SubscriptionField.QUANTITY),
        starts_at_ms=_number(fields, SubscriptionField.STARTS_AT),
        ends_at_ms=ends_at_ms or None,
    )
    progress = Progress(
        charged_through=_text(fields, SubscriptionField.CHARGED_THROUGH),
        charged_quantity=_number(fields, SubscriptionField.CHARGED_QUANTITY),
    )
    return _text(fields, SubscriptionField.ACCOUNT), subscription, progress


def subscription_from_record(body: Mapping[str, Any]) -> Subscription:
    """The subscription a valid `subscription.upserted` record describes."""
    ends_at = body.get("ends_at")
    return Subscription(
        subscription_id=body["subscription_id"],
        item=body["item"],
        description=body["description"],
        price_micros=body["price_micros"],
        period=Period(body["period"]),
        billing=Billing(body["billing"]),
        quantity=body["quantity"],
        starts_at_ms=parse_time_ms(body["starts_at"]),
        ends_at_ms=None if ends_at is None else parse_time_ms(ends_at),
    )


def _ledger_head(
    account: str, currency: str, subscription: Subscription, charge: ScheduledCharge
) -> bytes:
    dated_ms = charge.due_at_ms
    if subscription.billing is Billing.ARREARS:
        dated_ms -= 1  # the last instant of the day it is for
    return ledger.ledger_head(
        entry=f"sub:{account}:{charge.charge_id}:fee",
        account=account,
        time=format_time_ms(dated_ms),
        kind="fee",
        amount_micros=-charge.amount_micros,
        currency=currency,
        source_event_id=charge.charge_id,
        source_topic=SOURCE_TOPIC,
        quantity=charge.quantity,
        unit="item",
        unit_price_micros=subscription.price_micros,
        extra={
            "item": subscription.item,
            "description": subscription.description,
            "subscription_id": subscription.subscription_id,
            "period_start": charge.period_start,
            "period_end": charge.period_end,
        },
    )


def next_look_ms(subscription: Subscription, time_zone: str, progress: Progress) -> int:
    """When the next period of `subscription` falls due; -1 when none will."""
    ahead = max(subscription.starts_at_ms, 0) + _FAR_AHEAD_MS
    upcoming = due_charges(subscription, time_zone, progress, ahead, limit=1)
    return upcoming[0].due_at_ms if upcoming else -1


def plan_charges(
    fields: Mapping[bytes, bytes],
    subscription_key: str,
    account_key: str,
    time_zone: str,
    currency: str,
    now_ms: int,
    limit: int,
) -> list[ChargeSubscription]:
    """The ops that charge what is due of one subscription at `now_ms` (see the module)."""
    account, subscription, progress = subscription_from_fields(fields)
    charges = due_charges(subscription, time_zone, progress, now_ms, limit)
    ops: list[ChargeSubscription] = []
    for charge in charges:
        after = progress_after(charge)
        ops.append(
            ChargeSubscription(
                account_key,
                subscription_key,
                progress.charged_through,
                progress.charged_quantity,
                after.charged_through,
                after.charged_quantity,
                -charge.amount_micros,
                _ledger_head(account, currency, subscription, charge),
                "fee",
                account,
                f"sub:{account}:{charge.charge_id}:",
                format_time_ms(charge.due_at_ms),
                0,  # set below on the last one
            )
        )
        progress = after
    # More due than one look may take: look again at once; else when the next falls due.
    look = now_ms if len(charges) == limit else next_look_ms(subscription, time_zone, progress)
    if ops:
        ops[-1] = ops[-1]._replace(next_look_ms=look)
        return ops
    return [
        ChargeSubscription(
            account_key,
            subscription_key,
            progress.charged_through,
            progress.charged_quantity,
            progress.charged_through,
            progress.charged_quantity,
            0,
            b"",
            "fee",
            account,
            "",
            "",
            look,
        )
    ]
