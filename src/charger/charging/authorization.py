"""May this account place this call, send this text, pay this fee — and for how long? Pure.

The question a switch asks before it acts (RFC 4006's initial credit-control request,
CGRateS' authorize with max usage). It is a read: nothing is held or charged, and the
answer is true of the moment it is given. The rules are the worker's own:

- the **floor** is minus the credit limit, and what may still be spent is the available
  balance (balance − holds of active calls) down to it: `budget = available + credit_limit`;
- a **suspended** account is refused whatever its balance says (the worker suspends at the
  floor and restores only when money comes in);
- a **call** is rated like the worker rates it: the plan version in force now, the longest
  prefix for the direction, connect fee and increments. It may last the most billed
  seconds whose cost (connect fee included, rounded up to the micro-unit) fits the budget,
  in whole increments — the first increment, then whole next increments — capped by the
  session TTL, where the worker closes a call whose end never came. A call with only a
  connect fee, or free, is allowed for the whole TTL once the fee fits;
- a **text** costs its segments at the plan's price per segment of its direction; a
  **fee** costs its amount. Either is allowed when it leaves the available balance at or
  above the floor (the rule `fee.charged` with `require_funds` follows).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from charger.charging.records import AccountInfo
from charger.charging.session import HoldRate, affordable, cost
from charger.charging.usage import RatingError, call_rate, plan_for
from charger.rating import PlanSource, VoiceRate, sms_charge

__all__ = [
    "AccountView",
    "Authorization",
    "Kind",
    "Refusal",
    "Request",
    "authorize",
    "max_call_seconds",
]


class Kind(StrEnum):
    CALL = "call"
    SMS = "sms"
    FEE = "fee"


class Refusal(StrEnum):
    """Why an authorization says no. The rating reasons are the DLQ reasons of the worker:
    the same event would be refused there for the same cause."""

    SUSPENDED = "suspended"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNKNOWN_RATE_PLAN = "unknown_rate_plan"
    NO_RATE_PLAN_IN_FORCE = "no_rate_plan_in_force"
    CURRENCY_MISMATCH = "currency_mismatch"
    NO_RATE = "no_rate"


@dataclass(frozen=True, slots=True)
class AccountView:
    """An account as Redis holds it, read in one round trip (`charger.api.accounts`)."""

    account: str
    currency: str
    rate_plan: str
    balance_micros: int
    held_micros: int
    credit_limit_micros: int
    suspended: bool
    active_calls: int
    time_zone: str
    auto_recharge_enabled: bool
    auto_recharge_threshold_micros: int
    auto_recharge_amount_micros: int
    recharge_in_flight: bool
    low_balance_micros: int
    notify_email: str

    @property
    def available_micros(self) -> int:
        return self.balance_micros - self.held_micros

    @property
    def budget_micros(self) -> int:
        """What may still be spent: the available balance down to the floor."""
        return self.available_micros + self.credit_limit_micros

    def info(self) -> AccountInfo:
        return AccountInfo(self.currency, self.rate_plan, self.credit_limit_micros)


@dataclass(frozen=True, slots=True)
class Request:
    kind: Kind
    direction: str = "outbound"
    to: str = ""
    segments: int = 1
    amount_micros: int = 0


@dataclass(frozen=True, slots=True)
class CallPrice:
    """The rate a call placed now would be answered at."""

    rate_plan: str
    rate_plan_version: int
    prefix: str
    per_minute_micros: int
    connect_fee_micros: int
    increments: str


@dataclass(frozen=True, slots=True)
class Authorization:
    allowed: bool
    available_micros: int
    reason: Refusal | None = None
    # Calls: how long it may last (0 when refused for want of money).
    max_duration_s: int | None = None
    # Texts and fees: what it would cost; calls: the rate.
    price_micros: int | None = None
    call_price: CallPrice | None = None


def max_call_seconds(budget_micros: int, rate: VoiceRate, cap_s: int) -> int:
    """The longest call `budget_micros` pays for at `rate`, in whole increments, at most
    `cap_s` (the session TTL). 0: not even the connect fee and the first increment fit.

    What it returns is affordable (`cost(d) <= budget`) and, below the cap, one more
    increment is not: a call that long is charged no more than the budget, and the
    worker would cut one that went on for the next increment.
    """
    if cap_s < 0:
        raise ValueError(f"cap_s must be >= 0, got {cap_s}")
    if rate.zero_rated:
        return cap_s  # never held nor cut by the worker
    hold_rate = HoldRate.of(rate)
    if budget_micros < cost(0, hold_rate):
        return 0  # not even the connect fee
    if rate.per_minute_micros == 0:
        return cap_s
    return min(affordable(budget_micros, hold_rate), cap_s)


def call_cost_micros(seconds: int, rate: VoiceRate) -> int:
    """What `seconds` of billed talk time cost at `rate`, connect fee included."""
    return cost(seconds, HoldRate.of(rate))


def authorize(
    view: AccountView, request: Request, plans: PlanSource | None, now: str, max_call_s: int
) -> Authorization:
    """The answer for `request` on the account `view`, with `plans` (the versions of the
    account's plan id, None when none is loaded) at contract time `now`."""
    available = view.available_micros
    if view.suspended:
        return Authorization(False, available, Refusal.SUSPENDED)
    if request.kind is Kind.FEE:
        return _spend(view, request.amount_micros)
    try:
        plan = plan_for(view.info(), plans, view.account, now)
        if request.kind is Kind.SMS:
            return _spend(view, sms_charge(plan, request.direction == "outbound", request.segments))
        answered = call_rate(plan, request.direction, request.to)
    except RatingError as exc:
        return Authorization(False, available, Refusal(exc.reason))
    rate = answered.rate
    seconds = max_call_seconds(view.budget_micros, rate, max_call_s)
    call_price = CallPrice(
        rate_plan=answered.plan_id,
        rate_plan_version=answered.plan_version,
        prefix=rate.prefix,
        per_minute_micros=rate.per_minute_micros,
        connect_fee_micros=rate.connect_fee_micros,
        increments=str(rate.increments),
    )
    reason = None if seconds > 0 else Refusal.INSUFFICIENT_FUNDS
    return Authorization(
        seconds > 0, available, reason, max_duration_s=seconds, call_price=call_price
    )


def _spend(view: AccountView, price: int) -> Authorization:
    allowed = price <= view.budget_micros
    reason = None if allowed else Refusal.INSUFFICIENT_FUNDS
    return Authorization(allowed, view.available_micros, reason, price_micros=price)
