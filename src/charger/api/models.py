"""What the API takes and answers; the OpenAPI document is generated from these."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from charger.charging.authorization import Kind, Refusal
from charger.statements.model import Show
from charger_topics.records import MAX_MICROS, MAX_SEGMENTS

Micros = int
ACCOUNT_ID_CHARS = 128


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccountStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class AutoRecharge(Strict):
    enabled: bool
    threshold_micros: Micros = Field(description="A recharge is requested below this.")
    amount_micros: Micros = Field(description="What a recharge adds.")
    in_flight: bool = Field(description="A recharge request waits for its result.")


class LowBalance(Strict):
    threshold_micros: Micros = Field(
        description="`low_balance` is sent when the available balance crosses below it; 0: off."
    )


class Account(Strict):
    account: str
    currency: str = Field(description="ISO 4217 code; every amount is in its micro-units.")
    balance_micros: Micros
    held_micros: Micros = Field(description="Reserved by the account's active calls.")
    available_micros: Micros = Field(description="balance − held.")
    credit_limit_micros: Micros = Field(description="The floor is minus this.")
    status: AccountStatus
    rate_plan: str
    active_calls: int
    auto_recharge: AutoRecharge
    low_balance: LowBalance
    notify_email: str = Field(description="Where recharge failures are told; may be empty.")
    time_zone: str = Field(description="IANA name: the account's days on statements.")


class CallAuthorization(Strict):
    """May the account place this call, and for how long?"""

    account: str = Field(min_length=1, max_length=ACCOUNT_ID_CHARS)
    kind: Literal[Kind.CALL]
    to: str = Field(min_length=1, max_length=256, description="The number called.")
    direction: Literal["outbound", "inbound", "forwarded"] = "outbound"


class SmsAuthorization(Strict):
    """May the account send (outbound) or receive (inbound) this text?"""

    account: str = Field(min_length=1, max_length=ACCOUNT_ID_CHARS)
    kind: Literal[Kind.SMS]
    direction: Literal["outbound", "inbound"] = "outbound"
    to: str | None = Field(None, min_length=1, max_length=256)
    segments: int = Field(1, ge=1, le=MAX_SEGMENTS)


class FeeAuthorization(Strict):
    """May the account pay this fee (a number bought, a licence) without going below its
    floor?"""

    account: str = Field(min_length=1, max_length=ACCOUNT_ID_CHARS)
    kind: Literal[Kind.FEE]
    amount_micros: Micros = Field(ge=0, le=MAX_MICROS)


AuthorizeRequest = Annotated[
    CallAuthorization | SmsAuthorization | FeeAuthorization, Field(discriminator="kind")
]


class Price(Strict):
    """Texts and fees: `amount_micros`. Calls: the rate a call placed now is answered at."""

    currency: str
    amount_micros: Micros | None = None
    rate_plan: str | None = None
    rate_plan_version: int | None = None
    prefix: str | None = None
    per_minute_micros: Micros | None = None
    connect_fee_micros: Micros | None = None
    increments: str | None = Field(None, description="first/next seconds, e.g. 60/6.")


class AuthorizeResponse(Strict):
    allowed: bool
    reason: Refusal | None = None
    available_micros: Micros
    max_duration_s: int | None = Field(
        None,
        description="Calls: the longest call the available balance (down to the floor) pays "
        "for, in whole increments, at most the session TTL.",
    )
    price: Price | None = None


class VoiceRate(Strict):
    direction: str
    prefix: str = Field(description="Digits a number starts with; empty: every number.")
    per_minute_micros: Micros
    connect_fee_micros: Micros
    increments: str = Field(description="first/next seconds, e.g. 60/6.")


class Rates(Strict):
    """The version of the account's rate plan in force now."""

    rate_plan: str
    version: int
    effective_from: str | None
    currency: str
    voice: list[VoiceRate]
    sms_outbound_per_segment_micros: Micros
    sms_inbound_per_segment_micros: Micros
    ring_through_attempt_micros: Micros


class Entry(Strict):
    id: str
    time: dt.datetime
    local_date: dt.date = Field(description="The day in the account's time zone.")
    kind: str
    amount_micros: Micros = Field(description="Signed: debits negative, credits positive.")
    balance_after_micros: Micros
    currency: str
    document: dict[str, Any] = Field(description="The ledger entry as published.")


class Statement(Strict):
    account: str
    currency: str
    time_zone: str
    from_: dt.datetime = Field(alias="from", description="Inclusive.")
    to: dt.datetime = Field(description="Exclusive.")
    show: Show
    entries: list[Entry]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: done.")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Day(Strict):
    date: dt.date
    opening_balance_micros: Micros
    debits_micros: Micros = Field(description="Sum of the day's debits, positive.")
    credits_micros: Micros = Field(description="Sum of the day's credits, positive.")
    debits_by_kind_micros: dict[str, Micros]
    credits_by_kind_micros: dict[str, Micros]
    closing_balance_micros: Micros


class Movements(Strict):
    account: str
    currency: str
    time_zone: str
    from_: dt.date = Field(alias="from")
    to: dt.date
    days: list[Day]

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Health(BaseModel):
    status: str
    checks: dict[str, str]
