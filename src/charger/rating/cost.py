"""What a call or a text costs under a rate, in integer micro-units.

Every rounding goes up and happens once, at the end: seconds are rounded up from the
switch's milliseconds, billed seconds up to the increments, and the price up to the
micro-unit. A customer is never charged for less than they used and never twice for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from charger.money import ceil_div
from charger.rating.model import Increments, RatePlan, VoiceRate

__all__ = ["CallCharge", "billed_seconds", "call_charge", "charge_parts", "sms_charge"]

_MS_PER_SECOND = 1000
_SECONDS_PER_MINUTE = 60


def _non_negative_int(name: str, value: object) -> int:
    if type(value) is int and value >= 0:  # the hot path: bool is refused below
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class CallCharge:
    """The charge for one answered call.

    ``amount_micros`` is the total to debit and already includes ``connect_fee_micros``.
    """

    billed_seconds: int
    amount_micros: int
    connect_fee_micros: int

    def __post_init__(self) -> None:
        _non_negative_int("billed_seconds", self.billed_seconds)
        _non_negative_int("amount_micros", self.amount_micros)
        _non_negative_int("connect_fee_micros", self.connect_fee_micros)
        if self.connect_fee_micros > self.amount_micros:
            raise ValueError(
                f"amount_micros ({self.amount_micros}) must include the connect fee "
                f"({self.connect_fee_micros})"
            )


def billed_seconds(duration_ms: int, inc: Increments) -> int:
    """Seconds to bill for ``duration_ms`` of talk time under ``inc``.

    A started second counts as a whole second. Zero seconds bill nothing; up to ``first``
    seconds bill ``first``; beyond that every started ``next`` seconds bill ``next``.
    """
    _non_negative_int("duration_ms", duration_ms)
    seconds = ceil_div(duration_ms, _MS_PER_SECOND)
    if seconds == 0:
        return 0
    if seconds <= inc.first:
        return inc.first
    return inc.first + ceil_div(seconds - inc.first, inc.next) * inc.next


def call_charge(duration_ms: int, rate: VoiceRate) -> CallCharge:
    """Charge for an answered call of ``duration_ms`` at ``rate``.

    The connect fee is due even for a zero-length call: reaching ``call.started`` means the
    call was answered. Usage is ``ceil(billed * per_minute / 60)`` micro-units.
    """
    billed, amount = charge_parts(duration_ms, rate)
    return CallCharge(
        billed_seconds=billed, amount_micros=amount, connect_fee_micros=rate.connect_fee_micros
    )


def charge_parts(duration_ms: int, rate: VoiceRate) -> tuple[int, int]:
    """``(billed_seconds, amount_micros)`` of :func:`call_charge`, without building (and
    checking) a :class:`CallCharge`: the charging path rates every call end with it."""
    billed = billed_seconds(duration_ms, rate.increments)
    # Multiply before dividing so odd per-minute prices lose nothing before the single round-up.
    usage = ceil_div(billed * rate.per_minute_micros, _SECONDS_PER_MINUTE)
    return billed, usage + rate.connect_fee_micros


def sms_charge(plan: RatePlan, outbound: bool, segments: int) -> int:
    """Charge in micro-units for a text of ``segments`` segments (at least one)."""
    if isinstance(segments, bool) or not isinstance(segments, int):
        raise ValueError(f"segments must be an int, got {type(segments).__name__} {segments!r}")
    if segments < 1:
        raise ValueError(f"a text has at least one segment, got {segments}")
    per_segment = plan.sms_out_micros if outbound else plan.sms_in_micros
    return per_segment * segments
