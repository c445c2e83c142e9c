"""Rating of one usage or credit record into a signed amount and its ledger head. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from charger.charging import ledger
from charger.charging.records import AccountInfo, CallRate, CallState
from charger.events.timefmt import format_time_ms
from charger.rating import PlanSource, RatePlan, sms_charge
from charger.rating.cost import charge_parts
from charger_topics import names
from charger_topics.records import MAX_MICROS

_SOURCE_OF = {
    "call.ended": names.TELEPHONY_EVENTS,
    "call.attempt": names.TELEPHONY_EVENTS,
    "sms.sent": names.TELEPHONY_EVENTS,
    "sms.received": names.TELEPHONY_EVENTS,
    "balance.credited": names.BILLING_ACCOUNTS,
    "balance.adjusted": names.BILLING_ACCOUNTS,
    "fee.charged": names.BILLING_ACCOUNTS,
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
    kind: str  # the ledger entry's kind


def plan_for(info: AccountInfo, plans: PlanSource | None, account: str, time: str) -> RatePlan:
    """The version of the account's plan in force at ``time``, or the reason there is none."""
    plan = plans.at(time) if plans is not None else None
    if plan is not None and plan.currency == info.currency:
        return plan
    if plans is None:
        raise RatingError(
            "unknown_rate_plan",
            f"account {account!r} uses rate plan {info.rate_plan!r}, not loaded",
        )
    if plan is None:
        raise RatingError(
            "no_rate_plan_in_force",
            f"rate plan {info.rate_plan!r} of account {account!r} has no version in force "
            f"at {time}",
        )
    raise RatingError(
        "currency_mismatch",
        f"rate plan {plan.id!r} is in {plan.currency}, account {account!r} in {info.currency}",
    )


def call_rate(plan: RatePlan, direction: str, to: str) -> CallRate:
    """The rate of a call to ``to`` under ``plan``; RatingError if the plan has none."""
    rate = plan.voice_rate(direction, to)
    if rate is None:
        raise RatingError("no_rate", f"plan {plan.id!r} has no {direction} rate for {to!r}")
    return CallRate(plan.id, plan.version, rate)


def answered_rate(
    body: dict[str, Any], info: AccountInfo, plans: PlanSource | None, state: CallState | None
) -> CallRate:
    """The rate the end ``body`` of a call is charged at: the one its session stored."""
    if state is None:
        # No session (never started, or its tombstone expired): the route is the end's
        # own and its time the only one known.
        plan = plan_for(info, plans, body["account"], body["time"])
        return call_rate(plan, body["direction"], body["to"])
    if state.rate is not None:
        return state.rate
    # A session written before rates were stored (a rolling upgrade): rate it again, with
    # the plan version in force at its answer.
    plan = plan_for(info, plans, body["account"], format_time_ms(state.answer_ms))
    return call_rate(plan, state.direction, state.number_to)


def rate_call(
    body: dict[str, Any],
    info: AccountInfo,
    answered: CallRate,
    already_charged: int = 0,
) -> Usage:
    """Price the end ``body`` of a call answered at rate ``answered``.

    ``already_charged`` is what an expired session of this call charged: the end charges
    only the difference.
    """
    rate = answered.rate
    billed, charge = charge_parts(body["duration_ms"], rate)
    inc = rate.increments
    extra: dict[str, Any] = {"call_id": body["call_id"], "rate_plan": answered.plan_id}
    if answered.plan_version:  # absent for plans without versions: entries as before
        extra["rate_plan_version"] = answered.plan_version
    extra |= {
        "prefix": rate.prefix,
        "direction": rate.direction,
        "connect_fee_micros": rate.connect_fee_micros,
        "increments": f"{inc.first}/{inc.next}",
        "duration_ms": body["duration_ms"],
    }
    if already_charged:
        extra = {"already_charged_micros": already_charged, **extra}
    amount = -charge + already_charged
    price = rate.per_minute_micros
    return _usage(
        "call.ended",
        names.TELEPHONY_EVENTS,
        body["account"],
        body,
        info,
        "call",
        amount,
        billed,
        "second",
        price,
        extra,
    )


def rate_record(body: dict[str, Any], info: AccountInfo, plans: PlanSource | None) -> Usage:
    """Price ``body``: an attempt, an SMS (by the plan version in force at its time), a
    top-up, or the end of a call without a session (its own route and time; an end with a
    session is priced by :func:`rate_call` at the rate stored at answer)."""
    typ = body["type"]
    account: str = body["account"]
    topic = _SOURCE_OF[typ]
    if typ == "balance.credited":
        amt: int = body["amount_micros"]
        extra: dict[str, Any] = {"reference": body["reference"]}
        return _usage(typ, topic, account, body, info, "topup", amt, 1, "payment", amt, extra)
    if typ == "fee.charged":
        return rate_fee(body, info)
    if typ == "balance.adjusted":
        amt = body["amount_micros"]
        if amt == 0:
            raise RatingError("invalid_adjustment", f"adjustment {body['id']!r} moves nothing")
        extra = _optional({"reason": body["reason"]}, body, ("reference",))
        unit, price = "adjustment", abs(amt)
        return _usage(typ, topic, account, body, info, "adjustment", amt, 1, unit, price, extra)
    if typ == "recharge.result":
        amt = body["amount_micros"]
        extra = {"reference": body["request_id"]}
        return _usage(typ, topic, account, body, info, "recharge", amt, 1, "payment", amt, extra)
    if typ == "call.ended":
        return rate_call(body, info, answered_rate(body, info, plans, None))
    p = plans.at(body["time"]) if plans is not None else None
    if p is None or p.currency != info.currency:  # inline first: the common case is fine
        p = plan_for(info, plans, account, body["time"])  # raises: says why it is unusable
    if typ == "call.attempt":
        price = p.ring_through_micros
        extra = _plan_extra({"call_id": body["call_id"]}, p)
        return _usage(
            typ, topic, account, body, info, "ring_through", -price, 1, "attempt", price, extra
        )
    segments: int = body.get("segments", 1)
    outbound = typ == "sms.sent"
    amount = sms_charge(p, outbound, segments)
    price = p.sms_out_micros if outbound else p.sms_in_micros
    extra = _plan_extra({"message_id": body["message_id"]}, p)
    kind = "sms_out" if outbound else "sms_in"
    return _usage(typ, topic, account, body, info, kind, -amount, segments, "segment", price, extra)


def rate_fee(body: dict[str, Any], info: AccountInfo) -> Usage:
    """A one-off fee: debited whole, with what it is for."""
    amount: int = body["amount_micros"]
    extra = _optional(
        {"item": body["item"], "description": body["description"]},
        body,
        ("reference", "period_start", "period_end"),
    )
    topic = names.BILLING_ACCOUNTS
    return _usage(
        "fee.charged", topic, body["account"], body, info, "fee", -amount, 1, "item", amount, extra
    )


def _optional(
    extra: dict[str, Any], body: dict[str, Any], wanted: tuple[str, ...]
) -> dict[str, Any]:
    """``extra`` with those of ``wanted`` that ``body`` has, in that order."""
    for name in wanted:
        if name in body:
            extra[name] = body[name]
    return extra


def _plan_extra(extra: dict[str, Any], plan: RatePlan) -> dict[str, Any]:
    """``extra`` with the plan rated by; its version only if it has one (else as before)."""
    extra["rate_plan"] = plan.id
    if plan.version:
        extra["rate_plan_version"] = plan.version
    return extra


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
        kind,
    )
