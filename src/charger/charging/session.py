"""Session maths of in-call holds: how far a hold covers a call and what it costs. Pure.

A call's hold is the cost of the talk time it covers, counted like the final charge: whole
billing increments, the connect fee included. `lua/apply/` implements the same functions
for the ticker; this module and :mod:`charger.charging.sharing` are the reference.

State machine of a call session (stored in the call hash, driven by apply.lua and tick.lua):

    (none) --call.started--> active --tick: extend--> active
    active --tick: its share of the account's money ran out--> cut   (call.cutoff published)
    active | cut --call.ended--> ended                          (hold released, charged)
    active | cut --tick: older than the max call length--> expired  (hold charged)
    (none) --call.ended without route--> pending_end --call.started--> ended
"""

from __future__ import annotations

from dataclasses import dataclass

from charger.money import ceil_div
from charger.rating import VoiceRate


@dataclass(frozen=True, slots=True)
class HoldRate:
    """What the hold maths needs of a voice rate."""

    per_minute_micros: int
    connect_fee_micros: int
    first: int
    next: int

    @classmethod
    def of(cls, rate: VoiceRate) -> HoldRate:
        return cls(
            rate.per_minute_micros,
            rate.connect_fee_micros,
            rate.increments.first,
            rate.increments.next,
        )

    @property
    def zero_rated(self) -> bool:
        return self.per_minute_micros == 0 and self.connect_fee_micros == 0


def billed(seconds: int, r: HoldRate) -> int:
    """Billed seconds for `seconds` of talk time under the increments."""
    if seconds <= 0:
        return 0
    if seconds <= r.first:
        return r.first
    return r.first + ceil_div(seconds - r.first, r.next) * r.next


def cost(covered: int, r: HoldRate) -> int:
    """Cost of `covered` billed seconds, connect fee included (0 covered costs the fee)."""
    return ceil_div(covered * r.per_minute_micros, 60) + r.connect_fee_micros


def next_coverage(covered: int, interval: int, r: HoldRate) -> int:
    """Coverage after extending `covered` billed seconds by one debit interval."""
    return billed(covered + interval, r)


def affordable(budget: int, r: HoldRate) -> int:
    """Most billed seconds whose cost fits in `budget` (0 if not even the first increment)."""
    if r.per_minute_micros == 0:
        raise ValueError("a zero-priced rate has no limit")
    usage = budget - r.connect_fee_micros
    if usage < 0:
        return 0
    seconds = usage * 60 // r.per_minute_micros  # the most seconds whose usage fits
    if seconds < r.first:
        return 0
    return r.first + (seconds - r.first) // r.next * r.next


@dataclass(frozen=True, slots=True)
class Step:
    """A call's reservation after one whole interval was added."""

    covered: int  # billed seconds covered
    hold: int  # micro-units held for the call


def reserve(
    covered: int, hold: int, available_above_floor: int, interval: int, r: HoldRate
) -> Step | None:
    """Grow a call's hold by one whole interval, or None when the account cannot cover it.

    `available_above_floor` is the account's balance minus all holds plus its credit
    limit: what may still be reserved. None means the account's money must be shared
    among its calls in the order it is spent (:mod:`charger.charging.sharing`).
    """
    want = next_coverage(covered, interval, r)
    want_cost = cost(want, r)
    if want_cost - hold <= available_above_floor:
        return Step(want, want_cost)
    return None
