"""Consumed records and the facts the planner reads about them before planning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from hashlib import blake2b
from typing import Any, NamedTuple

import orjson

from charger.rating.model import Increments, VoiceRate


class PlanResult(StrEnum):
    """What planning did with a valid record (the `result` label of charger_events_total)."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # its id was applied before with the same payload
    IGNORED = "ignored"  # moves nothing: a second start or end, a resent recharge result
    PARKED = "parked"  # an end kept until its call's start arrives


def source_name(topic: str, partition: int) -> str:
    """A source partition as watermarks and ops name it: "topic/partition"."""
    return f"{topic}/{partition}"


@dataclass(slots=True)
class Inbound:
    """One record as fetched from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int = 0
    timestamp_type: int = 0  # 0: CreateTime (set by the producer), 1: LogAppendTime
    # As aiokafka gives them: name, value (None for a null value); () for none.
    headers: Sequence[tuple[str, bytes | None]] = ()

    @property
    def source(self) -> str:
        return source_name(self.topic, self.partition)


@dataclass(frozen=True, slots=True)
class AccountInfo:
    """What rating needs of an account; the balance itself never leaves Redis."""

    currency: str
    rate_plan: str
    credit_limit_micros: int


class CallRate(NamedTuple):
    """The rate a call was answered at: stored with its session, its end is charged by it.

    A tuple: one is built for every answered call, in a fraction of a frozen dataclass' time.
    """

    plan_id: str
    plan_version: int
    rate: VoiceRate


@dataclass(slots=True)
class CallState:
    """What is known of a call session: active, ended (tombstone) or a parked end."""

    state: str  # a CallStatus value
    direction: str = ""
    number_from: str = ""
    number_to: str = ""
    answer_ms: int = 0
    duration_ms: int = 0
    end_id: str = ""
    end_time: str = ""
    charged: int = 0  # what a session that expired already charged
    rate: CallRate | None = None  # None: no session yet, or one older than stored rates

    @classmethod
    def from_fields(cls, values: list[bytes | None]) -> CallState | None:
        """From read.lua's values of `charger.protocol.fields.CALL_FIELDS`, in that order
        (all nil: no session)."""
        state, direction, number_from, number_to, answered_at_ms = values[:5]
        duration_ms, end_id, end_time, charged = values[5:9]
        per_minute, connect_fee, first_increment, next_increment = values[9:13]
        prefix, plan_id, version = values[13:]
        if state is None:
            return None
        rate = None
        if plan_id is not None and direction is not None:
            rate = CallRate(
                plan_id.decode(),
                int(version or 0),
                VoiceRate(
                    (prefix or b"").decode(),
                    direction.decode(),
                    int(per_minute or 0),
                    int(connect_fee or 0),
                    Increments(int(first_increment or 0), int(next_increment or 0)),
                ),
            )
        return cls(
            state=state.decode(),
            direction=(direction or b"").decode(),
            number_from=(number_from or b"").decode(),
            number_to=(number_to or b"").decode(),
            answer_ms=int(answered_at_ms or 0),
            duration_ms=int(duration_ms or 0),
            end_id=(end_id or b"").decode(),
            end_time=(end_time or b"").decode(),
            charged=int(charged or 0),
            rate=rate,
        )


@dataclass(slots=True)
class Reads:
    """Results of the batch's one read round trip, keyed by Redis key."""

    seen: dict[str, bytes | None] = field(default_factory=dict)
    accounts: dict[str, AccountInfo | None] = field(default_factory=dict)
    calls: dict[str, CallState | None] = field(default_factory=dict)
    # recharge request state by (account key, field)
    requests: dict[tuple[str, str], str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CurrencyPolicy:
    """The auto-recharge rule of one currency, worded as the billing pages word it: "the
    minimum threshold is $10" (a threshold of at least that), "the minimum amount must be
    greater than $50" (an amount above that)."""

    min_threshold_micros: int
    min_amount_micros: int


@dataclass(frozen=True, slots=True)
class RechargePolicy:
    """Deployment policy for auto-recharge settings, in micro-units of the account currency:
    one rule per currency, and the default for currencies without one."""

    min_threshold_micros: int = 10_000_000
    min_amount_micros: int = 50_000_000
    by_currency: Mapping[str, CurrencyPolicy] = field(default_factory=dict)

    def of(self, currency: str) -> CurrencyPolicy:
        rule = self.by_currency.get(currency)
        if rule is not None:
            return rule
        return CurrencyPolicy(self.min_threshold_micros, self.min_amount_micros)


def fingerprint(body: dict[str, Any]) -> str:
    """Content hash of a record, independent of key order: tells a resend from a conflict."""
    return blake2b(orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=10).hexdigest()
