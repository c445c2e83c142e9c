"""/health: alive while the batch loop runs and fetches; idle is fine, stalled or dead is not."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry

import charger.app as app_module
from charger.app import ChargingService
from charger.metrics import Metrics
from charger.settings import Settings


def service(running: bool = True) -> ChargingService:
    svc = ChargingService(Settings(), Metrics(CollectorRegistry()))
    fake: Any = SimpleNamespace(running=lambda: running, worker=SimpleNamespace(batches=7))
    svc.runtime = fake
    svc._charging = True
    return svc


def test_starting_is_alive_until_the_startup_deadline() -> None:
    svc = ChargingService(Settings(), Metrics(CollectorRegistry()))
    ok, body = svc.health()
    assert ok and body["status"] == "starting"
    svc.started_at -= app_module.STARTUP_S + 1
    assert svc.health()[0] is False


def test_a_loop_that_fetches_is_alive_even_with_nothing_to_do() -> None:
    svc = service()
    svc.metrics.polled({})  # an empty fetch
    ok, body = svc.health()
    assert ok and body["status"] == "ok" and body["batches"] == 7


def test_a_stalled_or_dead_loop_is_not() -> None:
    svc = service()
    svc.started_at = svc.metrics.polled_at = time.monotonic() - app_module.STALL_S - 1
    ok, body = svc.health()
    assert not ok and body["status"] == "stalled"
    ok, body = service(running=False).health()
    assert not ok and body["status"] == "dead"
