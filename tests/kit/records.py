"""Builders of every input record type, one function each.

Each takes `when` first: a run (its records are dated at the run's start, `run.t0`, so
times stay relative to the day the suite runs) or a fixed RFC 3339 time for tests that
never meet the wall clock; `time=` dates one record otherwise (`run.at(5)`, say). Fields
the tests rarely vary have defaults; any field can be overridden or added by keyword
(`**{"from": ...}` for the one that is a Python keyword).
"""

from __future__ import annotations

from typing import Any, Protocol

from charger_topics.records import RECORDS

US_NUMBER = "+14155550100"  # std-usd "1": 0.60/min, 1/1 increments
UK_NUMBER = "+442071234567"  # std-usd "44": 0.90/min, 60/6 increments, 0.05 connect fee
FR_NUMBER = "+33142685300"  # std-usd other outbound: 1.20/min, 60/60 increments
CALLER = "+15550001"

Record = dict[str, Any]


class Clock(Protocol):
    """What a builder needs of a run: its start, and times relative to it."""

    @property
    def t0(self) -> str: ...

    def at(self, seconds: float) -> str: ...


When = Clock | str


def start_of(when: When) -> str:
    return when if isinstance(when, str) else when.t0


def event(typ: str, account: str, event_id: str, time: str, **fields: Any) -> Record:
    """A record of `typ` for `account`: the common fields first, then `fields`."""
    return {"id": event_id, "type": typ, "account": account, "time": time, **fields}


def call_started(
    when: When,
    account: str,
    event_id: str,
    *,
    call_id: str,
    to: str = US_NUMBER,
    direction: str = "outbound",
    caller: str = CALLER,
    time: str | None = None,
    **fields: Any,
) -> Record:
    route = {"direction": direction, "from": caller, "to": to}
    return event(
        "call.started",
        account,
        event_id,
        time or start_of(when),
        call_id=call_id,
        **route,
        **fields,
    )


def call_ended(
    when: When,
    account: str,
    event_id: str,
    *,
    call_id: str,
    duration_ms: int,
    time: str | None = None,
    **fields: Any,
) -> Record:
    """By default a run's call ends `duration_ms` after the run's start (it was answered then);
    with a fixed time for `when`, at that time."""
    if time is None:
        time = when if isinstance(when, str) else when.at(duration_ms / 1000)
    return event(
        "call.ended", account, event_id, time, call_id=call_id, duration_ms=duration_ms, **fields
    )


def call_attempt(
    when: When,
    account: str,
    event_id: str,
    *,
    call_id: str,
    to: str = US_NUMBER,
    time: str | None = None,
    **fields: Any,
) -> Record:
    return event(
        "call.attempt", account, event_id, time or start_of(when), call_id=call_id, to=to, **fields
    )


def sms_sent(
    when: When,
    account: str,
    event_id: str,
    *,
    message_id: str | None = None,
    to: str = US_NUMBER,
    time: str | None = None,
    **fields: Any,
) -> Record:
    message = message_id or f"m-{event_id}"
    return event(
        "sms.sent", account, event_id, time or start_of(when), message_id=message, to=to, **fields
    )


def sms_received(
    when: When,
    account: str,
    event_id: str,
    *,
    message_id: str | None = None,
    caller: str = US_NUMBER,
    time: str | None = None,
    **fields: Any,
) -> Record:
    message = message_id or f"m-{event_id}"
    return event(
        "sms.received",
        account,
        event_id,
        time or start_of(when),
        message_id=message,
        **{"from": caller},
        **fields,
    )


def account_upserted(
    when: When,
    account: str,
    event_id: str,
    *,
    currency: str = "USD",
    rate_plan: str = "std-usd",
    credit_limit_micros: int = 0,
    time: str | None = None,
    **fields: Any,
) -> Record:
    return event(
        "account.upserted",
        account,
        event_id,
        time or start_of(when),
        currency=currency,
        rate_plan=rate_plan,
        credit_limit_micros=credit_limit_micros,
        **fields,
    )


def balance_credited(
    when: When,
    account: str,
    event_id: str,
    *,
    amount_micros: int,
    reference: str | None = None,
    time: str | None = None,
    **fields: Any,
) -> Record:
    """A top-up; its payment reference is its event id unless given."""
    return event(
        "balance.credited",
        account,
        event_id,
        time or start_of(when),
        amount_micros=amount_micros,
        reference=reference or event_id,
        **fields,
    )


def fee_charged(
    when: When,
    account: str,
    event_id: str,
    *,
    amount_micros: int,
    item: str = "number_purchase",
    description: str = "Phone number",
    time: str | None = None,
    **fields: Any,
) -> Record:
    """A one-off fee (`require_funds=True` to have it refused when the money is short)."""
    return event(
        "fee.charged",
        account,
        event_id,
        time or start_of(when),
        amount_micros=amount_micros,
        item=item,
        description=description,
        **fields,
    )


def balance_adjusted(
    when: When,
    account: str,
    event_id: str,
    *,
    amount_micros: int,
    reason: str = "correction",
    time: str | None = None,
    **fields: Any,
) -> Record:
    return event(
        "balance.adjusted",
        account,
        event_id,
        time or start_of(when),
        amount_micros=amount_micros,
        reason=reason,
        **fields,
    )


def subscription_upserted(
    when: When,
    account: str,
    event_id: str,
    *,
    subscription_id: str,
    price_micros: int,
    starts_at: str,
    period: str = "month",
    billing: str = "arrears",
    quantity: int = 1,
    item: str = "product",
    description: str = "Product",
    time: str | None = None,
    **fields: Any,
) -> Record:
    """A recurring charge; `ends_at=` ends it."""
    return event(
        "subscription.upserted",
        account,
        event_id,
        time or start_of(when),
        subscription_id=subscription_id,
        item=item,
        description=description,
        price_micros=price_micros,
        period=period,
        billing=billing,
        quantity=quantity,
        starts_at=starts_at,
        **fields,
    )


def recharge_result(
    when: When,
    account: str,
    event_id: str,
    *,
    request_id: str,
    amount_micros: int,
    status: str = "succeeded",
    time: str | None = None,
    **fields: Any,
) -> Record:
    return event(
        "recharge.result",
        account,
        event_id,
        time or start_of(when),
        request_id=request_id,
        status=status,
        amount_micros=amount_micros,
        **fields,
    )


def rate_plan_upserted(
    when: When, event_id: str, plan: dict[str, Any], *, time: str | None = None, **fields: Any
) -> Record:
    """A rate plan record: keyed by the plan, not by an account, so it names none."""
    return {
        "id": event_id,
        "type": "rate_plan.upserted",
        "time": time or start_of(when),
        "plan": plan,
        **fields,
    }


def routed(record: Record) -> tuple[str, str, Record]:
    """(topic, key, record) for Run.send_all: the record's own topic, keyed by its account."""
    return RECORDS[record["type"]].topic, record["account"], record
