"""Wires the charging path from settings: Redis, producer, plans, relay, batch worker, probe."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from charger.clock import Clock, SystemClock
from charger.connections import close_redis, kafka_security, redis_client, redis_location
from charger.deps import Probe, Retrier, backoff_for
from charger.faults import KAFKA, REDIS
from charger.kafka.admin import require_partitions
from charger.kafka.batch import BatchWorker
from charger.kafka.plans_reader import PlanBook, RatePlanReader
from charger.kafka.relay import Relay
from charger.metrics import Metrics
from charger.protocol.keys import Keys
from charger.protocol.ops import ScriptConfig
from charger.published import Published
from charger.rating import load_plan_versions
from charger.settings import Settings
from charger.store.client import RedisClient, not_there_yet, ping
from charger.store.durability import Durability, check_server
from charger.store.redis_store import RedisStore
from charger.tasks import cancel_and_wait
from charger_topics import names

log = logging.getLogger("charger.runtime")

# A pooled connection idle this long is checked with a PING before it is used again.
REDIS_HEALTH_CHECK_S = 10


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
        if not settings.kafka_bootstrap or not settings.redis_given():
            raise ValueError(
                "CHARGER_KAFKA_BOOTSTRAP and CHARGER_REDIS_URL (or CHARGER_REDIS_SENTINELS) "
                "must be set"
            )
        self.settings = settings
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.keys = Keys(settings.redis_prefix, settings.partitions)
        timeout = settings.redis_timeout_ms / 1000
        self.redis: RedisClient = redis_client(
            settings,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=REDIS_HEALTH_CHECK_S,
            # Reconnect twice within 0.3 s, quietly: a pooled connection that a restart or
            # a failover dropped (with Sentinels, each reconnect asks them for the primary).
            # A real outage then reaches the loops' own backoff and metrics within a
            # second. A timeout is not retried here: the script may still be running, and
            # the batch is retried whole anyway. (A cluster client also retries timeouts
            # and CLUSTERDOWN, reading the topology again first; a script sent again skips
            # what it applied.)
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2, (RedisConnectionError,)),
            retry_on_error=[RedisConnectionError],
        )
        self.durability = Durability(
            settings.redis_min_replicas,
            settings.redis_wait_aof,
            settings.redis_wait_timeout_ms,
            observe=self.metrics.redis_waited,
        )
        self.store = RedisStore(self.redis, self.keys, script_config(settings), self.durability)
        path = Path(settings.rate_plans_path) if settings.rate_plans_path else default_plans_path()
        self.plans = PlanBook(load_plan_versions(path))
        self.plan_reader = RatePlanReader(
            settings.kafka_bootstrap,
            self.plans,
            self.store,
            self.metrics,
            security=kafka_security(settings),
        )
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id=settings.client_id,
            acks="all",
            enable_idempotence=settings.producer_idempotence,
            linger_ms=2,
            max_batch_size=256 * 1024,
            **kafka_security(settings),
        )
        self.relay = Relay(self.store, self.producer, relayed=Published(self.metrics))
        self.worker = BatchWorker(
            settings, self.store, self.relay, self.plans.current, self.clock, self.metrics
        )
        self.probe = Probe(
            self.metrics,
            {REDIS: self._redis_answers, KAFKA: self._broker_answers},
            logging.getLogger("charger.deps"),
        )
        self._task: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[None] | None = None

    async def _wait_for_redis(self) -> None:
        """Redis may be down or restarting when the worker starts: wait a while, then fail."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.redis_startup_wait_s
        delay = 0.1
        while True:
            try:
                await self._redis_answers()
                return
            except Exception as exc:
                # Wrong credentials do not get better by waiting; a cluster still forming
                # or failing over may.
                if not not_there_yet(exc) or loop.time() + delay > deadline:
                    raise
                log.warning("redis not reachable at start; retrying", extra={"in_s": delay})
                self.metrics.error("start", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def start(self) -> None:
        await self._wait_for_redis()
        await check_server(self.redis, self.durability, redis_location(self.settings))
        await self.producer.start()
        self._probe = asyncio.create_task(self.probe.run())
        await self.plan_reader.start()
        await asyncio.wait_for(self.plan_reader.caught_up.wait(), timeout=30)
        await require_partitions(
            self.settings.kafka_bootstrap,
            names.CO_PARTITIONED,
            self.settings.partitions,
            security=kafka_security(self.settings),
        )
        await self.worker.start()
        self._task = asyncio.create_task(self.worker.run())
        if self.settings.tick_ms > 0:
            self._ticker = asyncio.create_task(self._tick_forever())
        # What start-up built lives as long as the process: keep it out of the cyclic
        # collector's full passes, which otherwise walk it all in the middle of a batch.
        gc.collect()
        gc.freeze()
        log.info("charging path started", extra={"plans": len(self.plans.current())})

    async def _redis_answers(self) -> None:
        await ping(self.redis)  # on a cluster: every primary

    async def _broker_answers(self) -> None:
        # The producer's own metadata refresh: only the topics it writes, not the cluster's.
        if not await self.producer.client.force_metadata_update():
            raise KafkaConnectionError("no broker answered a metadata request")

    async def _tick_forever(self) -> None:
        period = self.settings.tick_ms / 1000
        retry = Retrier("tick", self.metrics, backoff_for(self.settings), log)
        while True:
            await asyncio.sleep(period)
            try:
                await self.worker.tick()
            except Exception as exc:
                await retry.failed(exc)
            else:
                retry.succeeded()

    def running(self) -> bool:
        """True while the batch loop is alive (started and not ended or crashed)."""
        return self._task is not None and not self._task.done()

    async def stop(self) -> None:
        """Finish the batch in hand, flush outputs, close connections."""
        if self._ticker is not None:
            # never in the middle of a tick's apply or of a relay pass
            async with self.worker.lock, self.worker.publisher.lock:
                self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        await self.worker.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await cancel_and_wait(self._probe)
        await self.plan_reader.stop()
        await self.producer.stop()
        await close_redis(self.redis)
