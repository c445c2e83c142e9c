"""Record types of the contract, declared once as field specs.

The JSON Schemas in ``schemas/`` are generated from these specs
(``python -m charger_topics.schema``) and a test checks that the files on disk match.
charger's decoder validates records against the same specs, so the schemas a producer
reads are the rules the worker enforces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from charger_topics import names

Kind = Literal["string", "time", "integer", "boolean", "enum", "object"]

# Bounds that make a value absurd rather than merely large.
MAX_MICROS = 10**13  # 10 million currency units in one movement
MAX_BALANCE_MICROS = 10**15  # stays exact in every runtime that reads it (< 2**53)
MAX_DURATION_MS = 7 * 24 * 3600 * 1000  # a week-long call is a broken switch
MAX_SEGMENTS = 255  # concatenated SMS cap
MAX_STRING = 256


@dataclass(frozen=True)
class Field:
    """One field: its JSON kind and the bounds a valid value respects."""

    kind: Kind
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None
    values: tuple[str, ...] = ()
    max_length: int = MAX_STRING
    fields: dict[str, Field] = field(default_factory=dict)  # for kind == "object"
    optional: frozenset[str] = frozenset()  # optional members of an object


def s(description: str = "", max_length: int = MAX_STRING) -> Field:
    return Field("string", description, max_length=max_length)


def i(description: str = "", minimum: int | None = None, maximum: int | None = None) -> Field:
    return Field("integer", description, minimum=minimum, maximum=maximum)


def e(description: str, *values: str) -> Field:
    return Field("enum", description, values=values)


def micros(description: str, minimum: int = 0, maximum: int = MAX_MICROS) -> Field:
    return Field("integer", description + " (micro-units)", minimum=minimum, maximum=maximum)


def balance(description: str = "Balance") -> Field:
    """A signed balance or movement, bounded so it stays exact wherever it is read."""
    return micros(description, -MAX_BALANCE_MICROS, MAX_BALANCE_MICROS)


@dataclass(frozen=True)
class RecordType:
    """A record `type`: the topic it travels on and its fields beyond the common ones."""

    type: str
    topic: str
    description: str
    required: dict[str, Field]
    optional: dict[str, Field] = field(default_factory=dict)
    keyed_by_account: bool = True


COMMON: dict[str, Field] = {
    "id": s("Unique per producer; the idempotency key of the record.", 128),
    "type": s("Record type."),
    "account": s("Account id; also the Kafka key.", 128),
    "time": Field("time", "RFC 3339 UTC with milliseconds, e.g. 2026-11-22T10:00:00.000Z."),
}

DIRECTION = e("Call direction.", "outbound", "inbound", "forwarded")
CURRENCY = Field("string", "ISO 4217 code.", max_length=3)

# Outputs charger issues (commands, requests, notifications) all date them the same way.
ISSUED = "`time` is when charger issued it: its clock when it made the decision."
AVAILABLE = balance("Available balance: balance minus what active calls hold")
FLOOR_REQUIRED: dict[str, Field] = {
    "reason": s("Why."),
    "available_micros": AVAILABLE,
    "effective_at": Field(
        "time",
        "When, in event time, the account crossed its floor: the time of the record that "
        "moved it, the instant a call's share ran out, or when a lost call was closed.",
    ),
}
FLOOR_OPTIONAL: dict[str, Field] = {
    "balance_micros": balance(
        "Balance after the movement that crossed the floor; only when one did"
    ),
}

FEE_ITEM = e(
    "What a fee is for.",
    "number_purchase",
    "number_renewal",
    "number_rental",
    "product",
    "licence",
    "other",
)


def local_date(description: str) -> Field:
    return Field("string", description + ", a local date YYYY-MM-DD.", max_length=10)


AUTO_RECHARGE = Field(
    "object",
    "Auto-recharge settings.",
    fields={
        "enabled": Field("boolean", "Whether auto-recharge is on."),
        "threshold_micros": micros("Recharge when the available balance falls below this"),
        "amount_micros": micros("Amount to recharge"),
    },
)


def text_message(record_type: str, description: str, party: str) -> RecordType:
    """A text message either way: only the party named besides the account differs."""
    return RecordType(
        record_type,
        names.TELEPHONY_EVENTS,
        description,
        {"message_id": s("Message id.", 128), party: s()},
        {"segments": i("Segments, default 1.", 1, MAX_SEGMENTS)},
    )


RECORDS: dict[str, RecordType] = {
    r.type: r
    for r in (
        # --- telephony.events (from the switch) ---
        RecordType(
            "call.started",
            names.TELEPHONY_EVENTS,
            "A call was answered; `time` is the answer time.",
            {"call_id": s("Call id.", 128), "direction": DIRECTION, "from": s(), "to": s()},
        ),
        RecordType(
            "call.ended",
            names.TELEPHONY_EVENTS,
            "A call ended; `duration_ms` is the billable talk time measured by the switch.",
            {"call_id": s("Call id.", 128), "duration_ms": i("Talk time.", 0, MAX_DURATION_MS)},
            # A switch that repeats the route on hangup lets an end settle without its start.
            {"direction": DIRECTION, "from": s(), "to": s()},
        ),
        RecordType(
            "call.attempt",
            names.TELEPHONY_EVENTS,
            "A ring-through connection attempt, charged per attempt.",
            {"call_id": s("Call id.", 128), "to": s()},
        ),
        text_message("sms.sent", "An outgoing text message.", "to"),
        text_message("sms.received", "An incoming text message.", "from"),
        # --- billing.accounts (from the platform) ---
        RecordType(
            "account.upserted",
            names.BILLING_ACCOUNTS,
            "Create or update an account's settings.",
            {
                "currency": CURRENCY,
                "rate_plan": s("Rate plan id.", 128),
                "credit_limit_micros": micros("How far below zero the balance may go"),
            },
            {
                "auto_recharge": AUTO_RECHARGE,
                "notify_email": s("Recharge failure e-mail."),
                "time_zone": s(
                    "IANA time zone of the account's days and months (subscriptions, daily "
                    "movements), default UTC.",
                    64,
                ),
                "low_balance_micros": micros(
                    "Send low_balance once each time the available balance crosses below this"
                ),
            },
        ),
        RecordType(
            "balance.credited",
            names.BILLING_ACCOUNTS,
            "A manual top-up (Pay Now).",
            {"amount_micros": micros("Amount credited", 1), "reference": s("Payment reference.")},
        ),
        RecordType(
            "fee.charged",
            names.BILLING_ACCOUNTS,
            "A one-off fee (a number bought or renewed, a product, a licence) debited from "
            "the balance; its outcome goes to billing.charge-results.",
            {
                "amount_micros": micros("Fee", 1),
                "item": FEE_ITEM,
                "description": s("What the fee is for, as the customer reads it."),
            },
            {
                "reference": s("What it concerns, e.g. the phone number.", 128),
                "period_start": local_date("First day the fee covers"),
                "period_end": local_date("Last day the fee covers"),
                "require_funds": Field(
                    "boolean",
                    "Refuse the fee instead of charging it when it would take the available "
                    "balance to or below the floor (default false: charged, and the account "
                    "suspended as for usage).",
                ),
            },
        ),
        RecordType(
            "balance.adjusted",
            names.BILLING_ACCOUNTS,
            "An operator's correction or refund: credits positive, debits negative.",
            {
                "amount_micros": micros("Signed, not zero", -MAX_MICROS, MAX_MICROS),
                "reason": s("Why, as the customer reads it."),
            },
            {"reference": s("What it concerns (a ticket, an invoice).", 128)},
        ),
        RecordType(
            "subscription.upserted",
            names.BILLING_ACCOUNTS,
            "A recurring charge charger schedules in the account's time zone; upsert it "
            "again to change it, with `ends_at` to cancel it.",
            {
                "subscription_id": s("Subscription id, unique within the account.", 128),
                "item": FEE_ITEM,
                "description": s("What it is for, as the customer reads it."),
                "price_micros": micros("Price per period, per unit"),
                "period": e("The period the price is for.", "day", "month"),
                "billing": e(
                    "arrears: charged after each local day for that day; advance: each "
                    "local month on its 1st (a start or an increase mid-month pro rata).",
                    "arrears",
                    "advance",
                ),
                "quantity": i("Units (numbers, licences).", 1, 1_000_000),
                "starts_at": Field("time", "When it starts."),
            },
            {"ends_at": Field("time", "When it ends (set it to cancel).")},
        ),
        # --- billing.recharge-results (from payments) ---
        RecordType(
            "recharge.result",
            names.RECHARGE_RESULTS,
            "Outcome of a recharge request.",
            {
                "request_id": s("The request's id.", 128),
                "status": e("Outcome.", "succeeded", "failed"),
                "amount_micros": micros("Amount charged to the card"),
            },
            {"reason": s("Why it failed.")},
        ),
        # --- billing.rate-plans (compacted, keyed by plan id) ---
        RecordType(
            "rate_plan.upserted",
            names.RATE_PLANS,
            "A rate plan version, in the same shape as a rate plan file, under `plan`.",
            {
                "plan": Field(
                    "object",
                    "Rate plan document (see docs/rate-plans.md); optional `version` and "
                    "`effective_from` make it one version of the plan id.",
                )
            },
            keyed_by_account=False,
        ),
        # --- telephony.commands (to the switch) ---
        RecordType(
            "call.cutoff",
            names.TELEPHONY_COMMANDS,
            "Disconnect a call now. " + ISSUED,
            {"call_id": s("Call id.", 128), "reason": s("Why.")},
            {"cutoff_at": Field("time", "The instant the call's share of the money ran out.")},
        ),
        RecordType(
            "account.suspended",
            names.TELEPHONY_COMMANDS,
            "The account's money is spent: its available balance reached its floor, or no "
            "call of it could go on. Refuse new calls and texts. " + ISSUED,
            FLOOR_REQUIRED,
            FLOOR_OPTIONAL,
        ),
        RecordType(
            "account.restored",
            names.TELEPHONY_COMMANDS,
            "The account is above its floor again. " + ISSUED,
            FLOOR_REQUIRED,
            FLOOR_OPTIONAL,
        ),
        # --- billing.recharge-requests (to payments) ---
        RecordType(
            "recharge.requested",
            names.RECHARGE_REQUESTS,
            "Charge the card on file and credit the account. " + ISSUED,
            {
                "request_id": s("Deterministic request id.", 128),
                "amount_micros": micros("Amount to charge"),
                "available_micros": AVAILABLE,
                "threshold_micros": micros("Threshold crossed"),
                "currency": CURRENCY,
            },
            {"balance_micros": balance("Balance when requested, holds of active calls included")},
        ),
        # --- billing.ledger (to invoicing) ---
        RecordType(
            "ledger.entry",
            names.LEDGER,
            "One balance movement. `id` is derived from its cause: dedupe by it.",
            {
                "kind": e(
                    "What moved the balance.",
                    "call",
                    "sms_out",
                    "sms_in",
                    "ring_through",
                    "recharge",
                    "topup",
                    "adjustment",
                    "session_expired",
                    "fee",
                ),
                "amount_micros": balance("Signed: debits negative, credits positive."),
                "currency": CURRENCY,
                "balance_after_micros": balance("Balance right after this movement."),
                "source_event_id": s("Id of the record that caused it.", 128),
                "source_topic": s("Topic of that record."),
                "quantity": i(
                    "Billed quantity (seconds, segments, attempts, 1).", 0, MAX_BALANCE_MICROS
                ),
                "unit": e(
                    "Unit of quantity.",
                    "second",
                    "segment",
                    "attempt",
                    "payment",
                    "item",
                    "adjustment",
                ),
                "unit_price_micros": i(
                    "Price per minute for calls, per unit otherwise.", 0, MAX_MICROS
                ),
            },
            {
                "call_id": s("Call id.", 128),
                "message_id": s("Message id.", 128),
                "rate_plan": s("Rate plan id.", 128),
                "rate_plan_version": i(
                    "Version of the rate plan rated with (a call: the one in force at its "
                    "answer); absent for a plan without versions.",
                    1,
                    2**31 - 1,
                ),
                "prefix": s("Destination prefix rated."),
                "direction": DIRECTION,
                "connect_fee_micros": i("Connect fee included in amount.", 0, MAX_MICROS),
                "increments": s("Billing increments first/next, e.g. 60/6."),
                "duration_ms": i("Duration measured by the switch.", 0, MAX_DURATION_MS),
                "reference": s("Payment reference, or what a fee or adjustment concerns."),
                "item": FEE_ITEM,
                "subscription_id": s("The subscription a scheduled fee is for.", 128),
                "period_start": local_date("First day a fee covers"),
                "period_end": local_date("Last day a fee covers"),
                "reason": s("Why an adjustment was made."),
                "description": s("What a fee is for."),
            },
        ),
        # --- billing.charge-results (to the platform) ---
        RecordType(
            "fee.applied",
            names.CHARGE_RESULTS,
            "A fee.charged was debited. " + ISSUED,
            {
                "fee_id": s("Id of the fee.charged record.", 128),
                "ledger_entry_id": s("Id of its ledger entry.", 256),
                "amount_micros": micros("Fee", 1),
                "balance_after_micros": balance("Balance right after the fee."),
            },
        ),
        RecordType(
            "fee.refused",
            names.CHARGE_RESULTS,
            "A fee.charged with require_funds was not charged. " + ISSUED,
            {
                "fee_id": s("Id of the fee.charged record.", 128),
                "reason": e("Why.", "insufficient_funds"),
                "available_micros": AVAILABLE,
            },
        ),
        # --- billing.notifications ---
        RecordType(
            "recharge_failed",
            names.NOTIFICATIONS,
            "An automatic recharge was declined; sent to notify_email. " + ISSUED,
            {"email": s(), "reason": s(), "request_id": s(max_length=128)},
        ),
        RecordType(
            "low_balance",
            names.NOTIFICATIONS,
            "Available balance crossed below the account's low_balance_micros (once per "
            "crossing), or a recharge was declined below its threshold. " + ISSUED,
            {"available_micros": AVAILABLE, "threshold_micros": micros("Threshold")},
            {"email": s()},
        ),
        RecordType(
            "balance_exhausted",
            names.NOTIFICATIONS,
            "The account's money is spent (sent with account.suspended). " + ISSUED,
            FLOOR_REQUIRED,
            {**FLOOR_OPTIONAL, "email": s()},
        ),
        RecordType(
            "call_cut_off",
            names.NOTIFICATIONS,
            "A call was cut off for lack of credit. " + ISSUED,
            {"call_id": s(max_length=128), "reason": s()},
            {"email": s()},
        ),
        RecordType(
            "session_expired",
            names.NOTIFICATIONS,
            "A call's end never arrived; its session was closed and what it held was charged.",
            {"call_id": s(max_length=128), "charged_micros": balance("Amount charged")},
            {"email": s()},
        ),
    )
}


def types_on(topic: str) -> list[RecordType]:
    """Record types that travel on `topic`."""
    return [r for r in RECORDS.values() if r.topic == topic]
