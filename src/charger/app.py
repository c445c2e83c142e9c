"""The Faust application: process lifecycle, CLI, web server; the charging path runs inside it.

The web server answers:

- ``/metrics``: every metric of `charger.metrics`, in the Prometheus text format;
- ``/health`` (liveness): 200 while the batch loop is alive and fetching — a fetch that
  finds nothing counts, so an idle worker is healthy — and during startup; 503 once the
  loop has died or has not come back from a batch for `STALL_S` seconds;
- ``/ready`` (readiness): 200 once the charging path has started and Redis and the broker
  answer; 503 with the failing checks otherwise. Owning partitions is not required: with as
  many workers as partitions, the pod a rolling update adds (``maxSurge``) gets none until an
  old one leaves, and a readiness that waited for partitions would stall the rollout;
- ``/owns``: 200 while input partitions are assigned to this worker, 503 while none are (the
  same as the ``charger_assigned_partitions`` metric), for people and dashboards.

Logs are JSON lines on stdout (`charger.logs`); the worker runs quiet so nothing else is
printed there. On SIGTERM Faust stops its services: the charging service finishes and
commits the batch in hand, flushes the producer and exits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
import time
from typing import Any, NoReturn

import faust
from faust.web import Request, Response, View
from mode import Service
from prometheus_client import disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from charger.connections import describe_connections, faust_credentials
from charger.logs import logging_config
from charger.metrics import Metrics
from charger.runtime import Runtime
from charger.sampler import Sampler
from charger.settings import Settings
from charger.store.client import ping
from charger.tasks import cancel_and_wait

log = logging.getLogger("charger.app")

# Liveness: how long the batch loop may go without fetching, and how long startup may take.
STALL_S = 60.0
STARTUP_S = 180.0
# Readiness: how long each dependency may take to answer.
CHECK_TIMEOUT_S = 3.0


class ChargingService(Service):
    """Runs the batch charging path for as long as the Faust worker lives."""

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.runtime: Runtime | None = None
        self.started_at = time.monotonic()
        self._charging = False
        self._sampler: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        self.started_at = time.monotonic()
        s = self.settings
        log.info(
            "charging service starting",
            extra={
                "group_id": s.group_id,
                "partitions": s.partitions,
                "redis_prefix": s.redis_prefix,
                "connections": describe_connections(s),
            },
        )
        rt = self.runtime = Runtime(s, metrics=self.metrics)
        await rt.start()
        self._charging = True
        sampler = Sampler(self.metrics, rt.redis, rt.keys)
        self._sampler = asyncio.create_task(
            sampler.run(lambda: rt.worker.consumer, lambda: rt.worker.assigned_slots)
        )

    async def on_stop(self) -> None:
        await cancel_and_wait(self._sampler)
        if self.runtime is not None:
            log.info("charging service stopping: finishing the batch in hand")
            await self.runtime.stop()
            log.info("charging service stopped", extra={"batches": self.runtime.worker.batches})

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Liveness: is the batch loop alive and making progress (or idle)?"""
        now = time.monotonic()
        rt = self.runtime
        if rt is None or not self._charging:
            up = now - self.started_at
            return up < STARTUP_S, {"status": "starting", "uptime_s": round(up, 1)}
        if not rt.running():
            return False, {"status": "dead", "detail": "the batch loop has ended"}
        since = max(self.metrics.polled_at, self.started_at)
        age = now - since
        body = {"status": "ok", "last_poll_age_s": round(age, 3), "batches": rt.worker.batches}
        if age > STALL_S:
            body["status"] = "stalled"
            return False, body
        return True, body

    def assigned_partitions(self) -> int:
        """How many input partitions the charging consumer holds now."""
        rt = self.runtime
        consumer = rt.worker.consumer if rt is not None and self._charging else None
        return len(consumer.assignment()) if consumer is not None else 0

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Readiness: started, Redis and the broker reachable; partitions are not needed."""
        rt = self.runtime
        if rt is None or not self._charging:
            return False, {"ready": False, "checks": {"started": False}}
        checks: dict[str, Any] = {"assigned_partitions": self.assigned_partitions()}
        checks["redis"], checks["broker"] = await asyncio.gather(
            _check(ping(rt.redis)), _check(rt.producer.client.fetch_all_metadata())
        )
        ok = checks["redis"] == "ok" and checks["broker"] == "ok"
        return ok, {"ready": ok, "checks": checks}

    def owns(self) -> tuple[bool, dict[str, Any]]:
        """Does this worker hold input partitions (and so charge anything) right now?"""
        assigned = self.assigned_partitions()
        return assigned > 0, {"owns": assigned > 0, "assigned_partitions": assigned}


async def _check(call: Any) -> str:
    try:
        await asyncio.wait_for(call, CHECK_TIMEOUT_S)
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


class ChargerWorker(faust.Worker):
    """The Faust worker without its terminal spinner: logging is `charger.logs`' alone.

    The charging service is one of the worker's own services, started before the app:
    Faust starts app-level services only after its own consumer group has settled, which
    after a crash means waiting out the dead member's session. The charging path has its
    own group and must not wait for Faust's.
    """

    def __init__(self, app: faust.App, *services: Any, **kwargs: Any) -> None:
        charging = getattr(app, "charging", None)
        extra = (charging,) if charging is not None else ()
        super().__init__(app, *extra, *services, **kwargs)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        self.spinner = None  # it would write escape codes to stdout and lower the root level


class ChargerApp(faust.App):
    """The Faust app; its worker prints nothing but the JSON logs on stdout."""

    charging: ChargingService | None = None

    def main(self) -> NoReturn:
        args = sys.argv[1:]
        if not {"-q", "--quiet", "--no-quiet"}.intersection(args):
            sys.argv.insert(1, "--quiet")  # no banner or spinner between the log lines
        super().main()


def create_app(settings: Settings | None = None) -> faust.App:
    """Build the app; nothing connects until the worker starts."""
    settings = settings or Settings()
    # no `_created` twin of every counter and histogram
    disable_created_metrics()  # type: ignore[no-untyped-call]
    metrics = Metrics()
    bootstrap = settings.kafka_bootstrap or "localhost:9092"
    app = ChargerApp(
        f"{settings.group_id}-app",
        broker=f"kafka://{bootstrap}",
        broker_credentials=faust_credentials(settings),
        store="memory://",
        web_port=settings.web_port,
        # The app's own group only elects Faust's leader; keep its rebalances short.
        broker_rebalance_timeout=3.0,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        producer_acks=-1,
        autodiscover=False,
        # Faust keeps nothing we need on disk; keep its directory out of the working tree.
        datadir=os.path.join(tempfile.gettempdir(), f"{settings.group_id}-app-data"),
        logging_config=logging_config(settings.log_level),
        Worker=ChargerWorker,
    )
    service = app.charging = ChargingService(settings, metrics)

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body = generate_latest(metrics.registry)
            # aiohttp refuses a charset inside content_type: pass the whole header.
            return self.bytes(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    @app.page("/health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            ok, body = service.health()
            return self.json(body, status=200 if ok else 503)

    @app.page("/ready")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            ok, body = await service.ready()
            return self.json(body, status=200 if ok else 503)

    @app.page("/owns")
    class OwnsView(View):
        async def get(self, request: Request) -> Response:
            ok, body = service.owns()
            return self.json(body, status=200 if ok else 503)

    return app
