"""Session maths of in-call holds: how far a hold covers a call and what it costs. Pure.

A call's hold is the cost of the talk time it covers, counted like the final charge: whole
billing increments, the connect fee included. `lua/tick.lua` implements the same functions
for the ticker (tests check that both agree); this module is the reference.

State machine of a call session (stored in the call hash, driven by apply.lua and tick.lua):

    (none) --call.started--> active --tick: extend--> active
    active --tick: cannot extend, coverage ran out--> cut        (call.cutoff published)
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
    """One decision of the ticker for one session."""

    covered: int  # billed seconds covered after the step
    hold: int  # micro-units held for the call after the step
    exhausted: bool  # coverage could not grow by a whole interval: cutoff at its end


def extend(covered: int, hold: int, available_above_floor: int, interval: int, r: HoldRate) -> Step:
    """Grow a call's hold by one interval, or by what is left when that does not fit.

    `available_above_floor` is the account's balance minus all holds plus its credit
    limit: what may still be reserved.
    """
    want = next_coverage(covered, interval, r)
    want_cost = cost(want, r)
    if want_cost - hold <= available_above_floor:
        return Step(want, want_cost, False)
    if r.per_minute_micros == 0:
        # Only the connect fee is priced and it does not fit: no talk time can be bought
        # (apply.lua ends up in the same place, its division by zero comparing false).
        return Step(covered, hold, True)
    best = affordable(hold + max(available_above_floor, 0), r)
    if best > covered:
        return Step(best, cost(best, r), True)
    return Step(covered, hold, True)
