"""Sharing an account's money among its calls, in the order it is spent. Pure.

While every call of an account can reserve a whole hold interval ahead, reservations never
compete. When one cannot, what is left is shared out again as of an instant `at`: each call
buys its next billing increment at the instant that increment starts, earliest first (at
one instant an answer, whose connect fee is spent whatever is left, before purchases; then
the earlier answer; then the call id). A call that cannot pay for its next increment is
exhausted there, which is its cutoff instant; a call still buying one interval after `at`
is covered that far and looked at again before its coverage ends.

What a call consumed by `at` is the increment in progress (never more than it had
reserved); a call cut earlier keeps what it holds. `lua/apply/sharing.lua` (`share`) implements
the same for the ticker; this module is the reference.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass

from charger.charging.session import HoldRate, billed, cost
from charger.money import ceil_div

ANSWER, PURCHASE = 0, 1


@dataclass(frozen=True, slots=True)
class SharedCall:
    """One call of the account as the sharing sees it."""

    call_id: str
    answer_ms: int
    covered: int  # billed seconds reserved so far
    hold: int  # micro-units held for it
    rate: HoldRate
    cut: bool = False  # already cut: keeps its hold, buys nothing


@dataclass(frozen=True, slots=True)
class Share:
    """A call's coverage and hold after sharing, and whether it runs out at its end."""

    covered: int
    hold: int
    exhausted: bool


def share(
    calls: Iterable[SharedCall], budget_micros: int, at_ms: int, window_ms: int
) -> dict[str, Share]:
    """Share `budget_micros` (balance plus credit limit) among `calls` as of `at_ms`."""
    pool = budget_micros
    window_end_ms = at_ms + window_ms
    covered: dict[str, int] = {}
    exhausted: set[str] = set()
    buying: dict[str, SharedCall] = {}
    steps: list[tuple[int, int, int, str]] = []
    for call in calls:
        rate = call.rate
        if call.cut:
            pool -= call.hold
            continue
        if rate.zero_rated:
            continue
        buying[call.call_id] = call
        free_talk = rate.per_minute_micros == 0  # only a connect fee: nothing more to buy
        if free_talk:
            reach_s = ceil_div(max(window_end_ms - call.answer_ms, 1000), 1000)
            covered[call.call_id] = billed(reach_s, rate)
        if call.answer_ms > at_ms:
            if not free_talk:
                covered[call.call_id] = 0
            steps.append((call.answer_ms, ANSWER, call.answer_ms, call.call_id))
        elif free_talk:
            pool -= rate.connect_fee_micros
        else:
            consumed = min(billed(ceil_div(at_ms - call.answer_ms, 1000), rate), call.covered)
            covered[call.call_id] = consumed
            pool -= cost(consumed, rate)
            steps.append((call.answer_ms + consumed * 1000, PURCHASE, call.answer_ms, call.call_id))
    heapq.heapify(steps)
    while steps:
        at, kind, answer_ms, call_id = heapq.heappop(steps)
        rate = buying[call_id].rate
        if kind == ANSWER:
            pool -= rate.connect_fee_micros
            if rate.per_minute_micros:
                heapq.heappush(steps, (at, PURCHASE, answer_ms, call_id))
        elif at < window_end_ms:
            now_covered = covered[call_id]
            next_covered = billed(now_covered + 1, rate)
            price = cost(next_covered, rate) - cost(now_covered, rate)
            if price <= pool:
                pool -= price
                covered[call_id] = next_covered
                heapq.heappush(
                    steps, (answer_ms + next_covered * 1000, PURCHASE, answer_ms, call_id)
                )
            else:
                exhausted.add(call_id)
    return {
        call_id: Share(c, cost(c, buying[call_id].rate), call_id in exhausted)
        for call_id, c in covered.items()
    }
