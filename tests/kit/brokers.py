"""Which broker the integration tests run on: `CHARGER_TEST_BROKER=tansu|kafka`.

Tansu (the default) is the fast inner loop; Apache Kafka is what production runs. Where
Kafka cannot be had (no Java or Maven), its run is skipped with the reason — except on CI
(`CI` set), where a missing broker must fail the run rather than pass it vacuously.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import pytest

from charger_tools.apache_kafka import start_kafka
from charger_tools.embedded import EmbeddedServer, start_broker
from charger_tools.kafka_install import KafkaUnavailableError, install_kafka

BROKERS = ("tansu", "kafka")


@dataclass(frozen=True)
class TestBroker:
    """The broker a test session starts when no CHARGER_KAFKA_BOOTSTRAP is given."""

    __test__ = False  # not a test class, whatever its name says
    name: str

    @property
    def is_kafka(self) -> bool:
        return self.name == "kafka"

    def describe(self) -> str:
        if os.environ.get("CHARGER_KAFKA_BOOTSTRAP"):
            return f"external at {os.environ['CHARGER_KAFKA_BOOTSTRAP']}"
        if not self.is_kafka:
            return "tansu (embedded, in memory)"
        try:
            return f"Apache Kafka {install_kafka().version} (KRaft)"
        except KafkaUnavailableError as exc:
            return f"Apache Kafka unavailable: {exc}"


@cache
def test_broker() -> TestBroker:
    name = os.environ.get("CHARGER_TEST_BROKER", "tansu").strip().lower() or "tansu"
    if name not in BROKERS:
        raise pytest.UsageError(f"CHARGER_TEST_BROKER={name!r}: expected one of {BROKERS}")
    return TestBroker(name)


test_broker.__test__ = False  # type: ignore[attr-defined]


def unavailable(exc: KafkaUnavailableError) -> None:
    """Skip the test asking for Kafka, or fail it on CI."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the suite on Apache Kafka: {exc}", pytrace=False)
    pytest.skip(f"Apache Kafka unavailable: {exc}")


@contextlib.contextmanager
def session_broker(given: str | None) -> Iterator[str | None]:
    """The bootstrap of the session's broker; None: let the embedded stack start Tansu."""
    if given or not test_broker().is_kafka:
        yield given
        return
    try:
        cluster = start_kafka(1)
    except KafkaUnavailableError as exc:
        unavailable(exc)
        raise  # unreachable: skip and fail raise
    with cluster:
        yield cluster.bootstrap


def own_broker(*, port: int | None = None, advertised: str | None = None) -> EmbeddedServer:
    """A broker of the session's kind for one test alone (a fault test kills or cuts it)."""
    if not test_broker().is_kafka:
        return start_broker(port=port, advertised=advertised)
    try:
        cluster = start_kafka(1, port=port, advertised=advertised)
    except KafkaUnavailableError as exc:
        unavailable(exc)
        raise
    return cluster.nodes[0]
