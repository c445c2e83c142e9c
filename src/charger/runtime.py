"""Wires the charging path from settings: Redis, producer, plans, relay, batch worker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from charger.charging.ops import ScriptConfig
from charger.clock import Clock, SystemClock
from charger.kafka.batch import BatchWorker
from charger.kafka.plans_reader import PlanBook, RatePlanReader
from charger.kafka.relay import Relay
from charger.metrics import Metrics
from charger.rating import load_plans
from charger.settings import Settings
from charger.store.keys import Keys
from charger.store.redis_store import RedisStore

log = logging.getLogger("charger.runtime")


def script_config(s: Settings) -> ScriptConfig:
    return ScriptConfig(
        seen_ttl_s=s.dedupe_ttl_s,
        tombstone_ttl_s=s.call_tombstone_ttl_s,
        hold_interval_s=s.hold_interval_s,
        hold_lead_ms=s.hold_lead_ms,
        max_call_ms=s.max_call_s * 1000,
        recharge_timeout_ms=s.recharge_timeout_s * 1000,
        recharge_backoff_ms=s.recharge_backoff_s * 1000,
    )


def default_plans_path() -> Path:
    """The sample plans shipped with the package (used when no path is configured)."""
    return Path(__file__).parent / "sample" / "plans.yaml"


class Runtime:
    """Everything one worker process runs, created from one Settings object."""

    def __init__(
        self, settings: Settings, clock: Clock | None = None, metrics: Metrics | None = None
    ) -> None:
        if not settings.kafka_bootstrap or not settings.redis_dsn():
            raise ValueError("CHARGER_KAFKA_BOOTSTRAP and CHARGER_REDIS_URL must be set")
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.keys = Keys(settings.redis_prefix, settings.partitions)
        self.redis: Redis = Redis.from_url(settings.redis_dsn())
        self.store = RedisStore(self.redis, self.keys, script_config(settings))
        path = Path(settings.rate_plans_path) if settings.rate_plans_path else default_plans_path()
        self.plans = PlanBook(load_plans(path))
        self.plan_reader = RatePlanReader(
            settings.kafka_bootstrap, self.plans, self.store, self.metrics
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=settings.client_id,
            acks="all",
            linger_ms=2,
            max_batch_size=256 * 1024,
        )
        self.relay = Relay(self.store, self.producer, metrics=self.metrics)
        self.worker = BatchWorker(
            settings, self.store, self.relay, self.plans.current, self.clock, self.metrics
        )
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.redis.ping()
        await self.producer.start()
        await self.plan_reader.start()
        await asyncio.wait_for(self.plan_reader.caught_up.wait(), timeout=30)
        await self.worker.start()
        self._task = asyncio.create_task(self.worker.run())
        if self.settings.tick_ms > 0:
            self._ticker = asyncio.create_task(self._tick_forever())
        log.info("charging path started", extra={"plans": len(self.plans.current())})

    async def _tick_forever(self) -> None:
        period = self.settings.tick_ms / 1000
        while True:
            await asyncio.sleep(period)
            try:
                await self.worker.tick()
            except Exception as exc:
                log.exception("tick failed; retrying next period")
                self.metrics.error("tick", exc)

    def running(self) -> bool:
        """True while the batch loop is alive (started and not ended or crashed)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish the batch in hand, flush outputs, close connections."""
        if self._ticker is not None:
            async with self.worker.lock:  # never in the middle of a tick's apply or relay
                self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.worker.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.plan_reader.stop()
        await self.producer.stop()
        await self.redis.aclose()
