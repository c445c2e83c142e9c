"""Rating of one usage or credit record into a signed amount and its ledger head. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from charger.charging import ledger
from charger.charging.records import AccountInfo
from charger.rating import RatePlan, sms_charge
from charger.rating.cost import charge_parts
from topics import names
from topics.records import MAX_MICROS

_SOURCE_OF = {
    "call.ended": names.TELEPHONY_EVENTS,
    "call.attempt": names.TELEPHONY_EVENTS,
    "sms.sent": names.TELEPHONY_EVENTS,
    "sms.received": names.TELEPHONY_EVENTS,
    "balance.credited": names.BILLING_ACCOUNTS,
    "recharge.result": names.RECHARGE_RESULTS,
}


class RatingError(ValueError):
    """A record that cannot be charged; `reason` is the DLQ reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Usage:
    """A signed balance movement (debits negative) and its ledger entry head."""

    amount_micros: int
    head: bytes


def plan_for(info: AccountInfo, plan: RatePlan | None, account: str) -> RatePlan:
    """The account's plan, or the reason it cannot be used."""
    if plan is None:
        raise RatingError(
            "unknown_rate_plan",
            f"account {account!r} uses rate plan {info.rate_plan!r}, not loaded",
        )
    if plan.currency != info.currency:
        raise RatingError(
            "currency_mismatch",
            f"rate plan {plan.id!r} is in {plan.currency}, account {account!r} in {info.currency}",
        )
    return plan


def rate_record(
    body: dict[str, Any],
    info: AccountInfo,
    plan: RatePlan | None,
    call_type: str | None = None,
    already_charged: int = 0,
    route: tuple[str, str] | None = None,
) -> Usage:
    """Price `body` (a call.ended with its route, an attempt, an SMS or a top-up).

    `already_charged` is what an expired session of this call charged: the end charges
    only the difference. `route` (direction, number called) replaces the body's: an end
    learns it from the call's session.
    """
    typ = call_type or body["type"]
    account: str = body["account"]
    topic = _SOURCE_OF[typ]
    if typ == "balance.credited":
        amt: int = body["amount_micros"]
        extra: dict[str, Any] = {"reference": body["reference"]}
        return _usage(typ, topic, account, body, info, "topup", amt, 1, "payment", amt, extra)
    if typ == "recharge.result":
        amt = body["amount_micros"]
        extra = {"reference": body["request_id"]}
        return _usage(typ, topic, account, body, info, "recharge", amt, 1, "payment", amt, extra)
    p = plan if plan is not None and plan.currency == info.currency else None
    if p is None:
        p = plan_for(info, plan, account)  # raises: says why the plan is unusable
    if typ == "call.ended":
        direction, to = route if route is not None else (body["direction"], body["to"])
        rate = p.voice_rate(direction, to)
        if rate is None:
            raise RatingError("no_rate", f"plan {p.id!r} has no {direction} rate for {to!r}")
        billed, charge = charge_parts(body["duration_ms"], rate)
        inc = rate.increments
        extra = {
            "call_id": body["call_id"],
            "rate_plan": p.id,
            "prefix": rate.prefix,
            "direction": direction,
            "connect_fee_micros": rate.connect_fee_micros,
            "increments": f"{inc.first}/{inc.next}",
            "duration_ms": body["duration_ms"],
        }
        if already_charged:
            extra = {"already_charged_micros": already_charged, **extra}
        amount = -charge + already_charged
        price = rate.per_minute_micros
        return _usage(
            typ,
            topic,
            account,
            body,
            info,
            "call",
            amount,
            billed,
            "second",
            price,
            extra,
        )
    if typ == "call.attempt":
        price = p.ring_through_micros
        extra = {"call_id": body["call_id"], "rate_plan": p.id}
        return _usage(
            typ, topic, account, body, info, "ring_through", -price, 1, "attempt", price, extra
        )
    segments: int = body.get("segments", 1)
    outbound = typ == "sms.sent"
    amount = sms_charge(p, outbound, segments)
    price = p.sms_out_micros if outbound else p.sms_in_micros
    extra = {"message_id": body["message_id"], "rate_plan": p.id}
    kind = "sms_out" if outbound else "sms_in"
    return _usage(typ, topic, account, body, info, kind, -amount, segments, "segment", price, extra)


def _usage(
    typ: str,
    topic: str,
    account: str,
    body: dict[str, Any],
    info: AccountInfo,
    kind: str,
    amount: int,
    quantity: int,
    unit: str,
    price: int,
    extra: dict[str, Any],
) -> Usage:
    """The movement and its ledger head; `extra` fields follow the common ones in order."""
    if abs(amount) > MAX_MICROS:
        # The ledger contract bounds one movement; beyond it the plan or the record is
        # wrong, and apply.lua's doubles would stop being exact not far above.
        raise RatingError(
            "charge_too_large",
            f"{typ} {body['id']!r} rates to {abs(amount)} micros, above the limit "
            f"of {MAX_MICROS} for one movement",
        )
    event_id = body["id"]
    return Usage(
        amount,
        ledger.ledger_head(
            entry=ledger.entry_id(ledger.SOURCE_TAGS[topic], event_id, kind),
            account=account,
            time=body["time"],
            kind=kind,
            amount_micros=amount,
            currency=info.currency,
            source_event_id=event_id,
            source_topic=topic,
            quantity=quantity,
            unit=unit,
            unit_price_micros=price,
            extra=extra,
        ),
    )
