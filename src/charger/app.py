"""The Faust application: process lifecycle, CLI, web server; the charging path runs inside it."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, cast

import faust
from faust.web import Request, Response, View
from mode import Service
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from charger.metrics import Metrics
from charger.runtime import Runtime
from charger.settings import Settings

log = logging.getLogger("charger.app")


class ChargingService(Service):
    """Runs the batch charging path for as long as the Faust worker lives."""

    def __init__(self, settings: Settings, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics
        self.runtime: Runtime | None = None

    async def on_start(self) -> None:
        self.runtime = Runtime(self.settings, metrics=self.metrics)
        await self.runtime.start()

    async def on_stop(self) -> None:
        if self.runtime is not None:
            await self.runtime.stop()

    def ready(self) -> bool:
        rt = self.runtime
        return bool(rt is not None and rt.worker.consumer is not None and rt.worker.assigned_slots)


def create_app(settings: Settings | None = None) -> faust.App:
    """Build the app; nothing connects until the worker starts."""
    settings = settings or Settings()
    metrics = Metrics()
    bootstrap = settings.kafka_bootstrap or "localhost:9092"
    app = faust.App(
        f"{settings.group_id}-app",
        broker=f"kafka://{bootstrap}",
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
    )
    service = ChargingService(settings, metrics)
    app.service(cast(Any, service))

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body = generate_latest(metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST)

    @app.page("/health")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            ok = service.runtime is not None
            return self.json({"status": "ok" if ok else "starting"}, status=200 if ok else 503)

    @app.page("/ready")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            ok = service.ready()
            return self.json({"ready": ok}, status=200 if ok else 503)

    return app
