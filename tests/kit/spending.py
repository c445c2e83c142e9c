"""Reference of how an account's calls spend its money, independent of holds and ticks.

Every call buys its next billing increment at the instant that increment starts, all calls
of the account drawing on one pool (balance plus credit limit), in the order the money is
really spent: earliest first; at one instant an answer (its connect fee, spent whatever is
left) before purchases, then the earlier answer, then the call id. A call that cannot pay
for its next increment is cut at that instant; a call that never needs money is never cut.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from charger.charging.session import HoldRate, billed, cost

ANSWER, PURCHASE = 0, 1


@dataclass(frozen=True, slots=True)
class SpendingCall:
    call_id: str
    answer_ms: int
    rate: HoldRate


def cutoff_instants(calls: list[SpendingCall], budget_micros: int) -> dict[str, int]:
    """The instant (epoch ms) each call is cut; calls that never run out are left out."""
    pool = budget_micros
    covered = {c.call_id: 0 for c in calls}
    by_id = {c.call_id: c for c in calls}
    steps = [(c.answer_ms, ANSWER, c.answer_ms, c.call_id) for c in calls]
    heapq.heapify(steps)
    cuts: dict[str, int] = {}
    while steps:
        at_ms, kind, answer_ms, call_id = heapq.heappop(steps)
        rate = by_id[call_id].rate
        if kind == ANSWER:
            pool -= rate.connect_fee_micros
            heapq.heappush(steps, (at_ms, PURCHASE, answer_ms, call_id))
            continue
        if rate.per_minute_micros == 0:
            continue  # free talk time: nothing more to buy
        now_covered = covered[call_id]
        next_covered = billed(now_covered + 1, rate)
        price = cost(next_covered, rate) - cost(now_covered, rate)
        if price <= pool:
            pool -= price
            covered[call_id] = next_covered
            heapq.heappush(steps, (answer_ms + next_covered * 1000, PURCHASE, answer_ms, call_id))
        else:
            cuts[call_id] = answer_ms + now_covered * 1000
    return cuts
