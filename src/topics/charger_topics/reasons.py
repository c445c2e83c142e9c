"""DLQ reason codes: the value of the ``charger.error`` header and of the metric label.

A consumer of ``billing.dlq`` switches on these codes, so they are part of the contract and
are declared once, here, with what each one means. The worker's decoder, planner and rate
plan reader only ever use codes from this catalogue (a test checks it), the AsyncAPI
document lists them for the header, and the README table is checked against it.

Codes are grouped by the step that gives them. Where two problems need different fixes by
whoever produced the record, they get two codes; the ``kafka_dlt-exception-message``
header then names the field and the value.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ALL", "DECODER", "PLANNER", "RATE_PLANS", "explain"]

# Refused by the decoder: the bytes do not make a record of the contract.
DECODER: Final[dict[str, str]] = {
    "empty_record": "The record has no value (a null or empty Kafka value).",
    "record_too_large": "The value is longer than the limit (64 KiB; 1 MiB for rate plans).",
    "invalid_utf8": "The value is not valid UTF-8.",
    "malformed_json": (
        "The value is not one JSON document: truncated, trailing data, NaN or Infinity, "
        "a byte order mark, a lone surrogate escape."
    ),
    "too_deeply_nested": "JSON nested deeper than the worker can re-encode (254 levels).",
    "not_an_object": "The JSON value is an array, a string, a number, true, false or null.",
    "unknown_type": "`type` is not a record type of the contract.",
    "wrong_topic": "`type` is a record type of the contract that travels on another topic.",
    "missing_field": "A required field (`type` included) is absent.",
    "wrong_type": (
        "A field has the wrong JSON type: a string for a number, a fraction (even 1.0) "
        "where an integer is due, null."
    ),
    "negative_value": "An amount, duration or count that cannot be negative is negative.",
    "value_too_large": (
        "A value beyond the contract's bound: a call longer than a week, an amount above "
        "10 million currency units, too many segments, a string too long, an integer "
        "beyond 64 bits."
    ),
    "out_of_range": (
        "Below a positive minimum (0 segments, a zero top-up), an empty string, or not "
        "one of the allowed values (direction, status)."
    ),
    "invalid_time": "`time` is not RFC 3339 UTC with milliseconds, or not a real date.",
}

# Refused while planning: a well-formed record that cannot be charged as it stands.
PLANNER: Final[dict[str, str]] = {
    "key_mismatch": (
        "The Kafka key is not the record's account id: the record would be charged by "
        "a worker that does not own the account."
    ),
    "wrong_partition": (
        "The record is on another partition than its key's murmur2 partition (Kafka's "
        "default partitioner; librdkafka clients need partitioner=murmur2_random): the "
        "worker owning the account's slot would not see it. The detail names the expected "
        "partition."
    ),
    "unknown_account": "No `account.upserted` was seen for the account.",
    "conflict": (
        "The same `id` was seen with another payload, or a recharge result contradicts "
        "the result its request already has."
    ),
    "unknown_rate_plan": "The account's rate plan is not loaded.",
    "currency_mismatch": "The account's rate plan is in another currency than the account.",
    "no_rate_plan_in_force": (
        "Every version of the account's rate plan starts after the event's time (a call's "
        "answer time): no version was in force."
    ),
    "no_rate": "The rate plan has no rate for the call's direction and destination.",
    "charge_too_large": "The rated charge exceeds the largest single movement (10 million units).",
    "currency_change": "An `account.upserted` tries to change an existing account's currency.",
    "invalid_account_settings": (
        "`account.upserted` with a currency that is not an ISO 4217 style code, a "
        "notify_email that is not an e-mail address, or a time_zone the IANA database "
        "does not have."
    ),
    "invalid_auto_recharge": "Auto-recharge settings below the policy minimums; the old ones stay.",
    "unknown_request": "A recharge result for a request the account never made.",
    "invalid_adjustment": "A `balance.adjusted` of zero: it would move nothing.",
    "invalid_subscription": (
        "A `subscription.upserted` that cannot be scheduled: `advance` billing with a `day` "
        "period, or `ends_at` not after `starts_at`."
    ),
}

# Refused by the rate plan reader of `billing.rate-plans` (besides the decoder's codes).
RATE_PLANS: Final[dict[str, str]] = {
    "invalid_rate_plan": (
        "A `rate_plan.upserted` whose plan document is invalid, whose key is not the plan "
        "id, or a tombstone without a key; the plan's previous version stays in force."
    ),
}

ALL: Final[dict[str, str]] = {**DECODER, **PLANNER, **RATE_PLANS}


def explain(reason: str) -> str:
    """What ``reason`` means; KeyError for a code the contract does not have."""
    return ALL[reason]
