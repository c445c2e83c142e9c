"""The gauges no event updates, read every few seconds: lag, backlog, active calls, holds."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from charger.metrics import MICROS, Metrics

if TYPE_CHECKING:
    from charger.protocol.keys import Keys
    from charger.store.client import RedisClient

log = logging.getLogger("charger.metrics")


class Sampler:
    """Reads the gauges that no event updates: lag, backlog, active calls, holds.

    Lag comes from the consumer's own state (no broker round trip) every `lag_period`
    seconds; the Redis gauges take one pipelined round trip of three commands per slot
    every `redis_period` seconds over the slots this worker owns.
    """

    def __init__(
        self,
        metrics: Metrics,
        redis: RedisClient,
        keys: Keys,
        *,
        lag_period: float = 1.0,
        redis_period: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.redis = redis
        self.keys = keys
        self.lag_period = lag_period
        self.redis_period = redis_period
        self._currencies_seen: set[str] = set()
        self._redis_due = 0.0

    async def run(self, consumer: Any, slots: Any) -> None:
        """Sample until cancelled; `consumer()` and `slots()` give the current ones."""
        while True:
            try:
                await self.sample_lag(consumer())
                now = time.monotonic()
                if now >= self._redis_due:
                    self._redis_due = now + self.redis_period
                    await asyncio.wait_for(self.sample_redis(sorted(slots())), self.redis_period)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("sampling metrics failed", exc_info=True)
                self.metrics.error("sample", exc)
            await asyncio.sleep(self.lag_period)

    async def sample_lag(self, consumer: Any) -> None:
        if consumer is None:
            self.metrics.set_lag({})
            self.metrics.assigned_partitions.set(0)
            return
        assigned = list(consumer.assignment())
        lags: dict[tuple[str, int], int] = {}
        for tp in assigned:
            try:
                high = consumer.highwater(tp)
                if high is None:
                    continue  # nothing fetched from it yet
                lags[(tp.topic, tp.partition)] = high - await consumer.position(tp)
            except Exception:  # revoked meanwhile: left out of this sample
                continue
        self.metrics.set_lag(lags)
        self.metrics.assigned_partitions.set(len(assigned))

    async def sample_redis(self, slots: Sequence[int]) -> None:
        m = self.metrics
        totals = dict.fromkeys(self._currencies_seen, 0)
        backlog = calls = 0
        if slots:
            # Three commands per slot, whatever the number of calls: apply.lua keeps the
            # slot's held total per currency as it moves holds.
            pipe = self.redis.pipeline(transaction=False)
            for slot in slots:
                pipe.xlen(self.keys.outbox(slot))
                pipe.zcard(self.keys.sessions(slot))
                pipe.hgetall(self.keys.held(slot))
            res: list[Any] = await pipe.execute()
            backlog, calls = sum(res[0::3]), sum(res[1::3])
            for held in res[2::3]:
                for raw, amount in held.items():
                    if raw:  # an account without a currency holds nothing worth a label
                        cur = raw.decode()
                        totals[cur] = totals.get(cur, 0) + int(amount)
        m.outbox_backlog.set(backlog)
        m.active_calls.set(calls)
        for currency, amount in totals.items():
            self._currencies_seen.add(currency)
            m.holds.labels(currency).set(amount / MICROS)
