"""The subscription scheduler: charges recurring fees of the slots this worker owns.

It runs with the ticker (at most once a second of the injectable clock), under the batch
lock, on each slot's event-time horizon (never ahead of a backlog). Due subscriptions are
read with their account's time zone; `charging.scheduling` plans their charges; they are
applied like a tick's ops, without source offsets: each charge carries the progress it was
planned from, so restarts, rebalances and a worker down for days charge every period
exactly once, the missed ones on return (`CHARGES_PER_LOOK` per subscription a look, the
rest next look).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from charger.charging.scheduling import plan_charges
from charger.events.tracecontext import for_id
from charger.protocol.ops import SlotPlan
from charger.store.redis_store import RedisStore

log = logging.getLogger("charger.scheduler")

# Periods fall due at local midnights: a look a second (not every tick) is prompt enough,
# and spares the ticks a round trip.
SCHEDULE_EVERY_MS = 1000
SUBSCRIPTIONS_PER_LOOK = 200  # per slot and look
CHARGES_PER_LOOK = 62  # per subscription and look: two months of days


async def schedule(store: RedisStore, slot_now: Mapping[int, int], now_ms: int) -> int:
    """Apply what is due of the slots' subscriptions; returns the charges applied."""
    if not slot_now:
        return 0
    due = await store.due_subscriptions(slot_now, SUBSCRIPTIONS_PER_LOOK)
    if not due:
        return 0
    plan = SlotPlan()
    for subscription in due:
        try:
            ops = plan_charges(
                subscription.fields,
                subscription.key,
                subscription.account_key,
                subscription.time_zone,
                subscription.currency.decode(),
                slot_now[subscription.slot],
                CHARGES_PER_LOOK,
            )
        except (ValueError, KeyError) as exc:
            # A hash this version cannot read: leave it due and say so, every other
            # subscription goes on.
            log.error(
                "subscription cannot be scheduled",
                extra={"subscription": subscription.key, "error": str(exc)},
            )
            continue
        batch = plan.slot(subscription.slot)
        for op in ops:
            # No input caused it: its trace context comes from its ledger entry's id, and
            # what it causes (a suspension, a recharge request) shares it.
            batch.add_scheduled(op, for_id(op.cause + op.kind) if op.amount_micros else b"")
    if not plan.slots:
        return 0
    applied, _skipped = await store.apply(plan, {}, now_ms, slot_now, wait=False)
    return applied
