"""Accounts put into Redis by the worker's own code, without a broker.

`charger bench --only api` seeds its accounts here, and the API tests (through their kit)
theirs, so both read accounts exactly as the worker leaves them:

- `redis_url_or_embedded` — ``CHARGER_REDIS_URL`` when set, else a Valkey of its own
  (stopped on exit): the API needs no broker;
- `RecordWriter` — contract records applied as the charging path applies them: planned by
  the worker's `Planner` over the sample rate plans and written by ``apply.lua``, each
  record at the next offset of its topic's partition.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from charger.charging.planner import Outcome, Planner
from charger.charging.records import Inbound
from charger.kafka.plans_reader import PlanBook
from charger.protocol.keys import Keys, slot_of
from charger.rating import load_plan_versions
from charger.runtime import default_plans_path, script_config
from charger.settings import Settings
from charger.store.client import RedisClient
from charger.store.redis_store import RedisStore
from charger_tools.embedded import start_redis
from charger_topics.records import RECORDS

__all__ = ["RecordWriter", "redis_url_or_embedded", "sample_plans"]


def sample_plans() -> PlanBook:
    """The rate plans shipped with charger (the worker's default)."""
    return PlanBook(load_plan_versions(default_plans_path()))


@contextlib.contextmanager
def redis_url_or_embedded() -> Iterator[str]:
    """`CHARGER_REDIS_URL` when set, else the URL of a Valkey started here and stopped on exit."""
    given = os.environ.get("CHARGER_REDIS_URL")
    if given:
        yield given
        return
    server = start_redis()
    try:
        yield server.address
    finally:
        server.stop()


class RecordWriter:
    """Applies contract records to Redis the way the worker does (planner + apply.lua)."""

    def __init__(self, redis: RedisClient, keys: Keys) -> None:
        settings = Settings()
        self.keys = keys
        self.store = RedisStore(redis, keys, script_config(settings))
        self.planner = Planner(keys, sample_plans().current, policy=settings.recharge_policy())
        # The next offset of each (topic, partition), across batches: the worker's
        # progress marks only ever move forward.
        self._offsets: dict[tuple[str, int], int] = {}

    def inbound(self, records: Iterable[dict[str, Any]]) -> list[Inbound]:
        """`records` as the consumer would hand them over, in order."""
        batch = []
        for record in records:
            topic = RECORDS[record["type"]].topic
            partition = slot_of(record["account"], self.keys.slots)
            offset = self._offsets.get((topic, partition), 0)
            self._offsets[(topic, partition)] = offset + 1
            value = orjson.dumps(record)
            batch.append(Inbound(topic, partition, offset, record["account"].encode(), value))
        return batch

    async def apply(self, records: Iterable[dict[str, Any]], now_ms: int) -> Outcome:
        """One batch, planned and written at `now_ms`; the caller judges refusals."""
        batch = self.inbound(records)
        prepared = self.planner.prepare(batch)
        outcome = self.planner.plan(prepared, await self.store.read(prepared))
        highest = {rec.source: rec.offset for rec in batch}
        await self.store.apply(outcome.plan, highest, now_ms)
        return outcome
