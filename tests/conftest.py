"""Shared fixtures (the helpers they and the tests share live in tests/kit).

Integration tests talk to a real broker and a real Redis. Set CHARGER_KAFKA_BOOTSTRAP
and/or CHARGER_REDIS_URL to use running servers (for example the docker-compose stack);
whatever is not set is started once per session, and only when a test asks for it:
Valkey, and the broker `CHARGER_TEST_BROKER` names — `tansu` (the default: the embedded,
in-memory broker, fast) or `kafka` (Apache Kafka in KRaft mode, fetched with Maven; where
Java or Maven is missing its tests are skipped, except on CI, where they fail). Every
test under tests/integration, and every test using these fixtures, is marked
`integration`: `pytest -m "not integration"` runs the unit tests alone and starts nothing.

An external server may be shared: tests there must use unique accounts, key prefixes,
topics and consumer groups (the `uid` fixture helps). Only Redis that the session
started itself (`stack.redis_owned`) is flushed between tests.

`postgres` is a PostgreSQL server (CHARGER_DATABASE_URL, else an embedded one started once
per session) and `database` a new database on it for one test.

`redis_cluster` is a six-node Redis Cluster of embedded Valkey servers (three primaries,
three replicas), started once per session when a test asks for it; `wide_broker` is a
broker of the session's own whose topics a run may create with more partitions than the
contract's (the shared one has them already).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from charger_tools.cluster import Cluster, start_cluster
from charger_tools.embedded import embedded_stack, tansu_settings
from charger_tools.postgres import embedded_postgres
from tests.kit.brokers import own_broker, session_broker, test_broker
from tests.kit.harness import Stack
from tests.kit.ledger_sink import fresh_database

INTEGRATION_DIR = Path(__file__).parent / "integration"
STACK_FIXTURES = frozenset(
    {"stack", "redis_client", "redis_cluster", "wide_broker", "postgres", "database"}
)


def pytest_report_header(config: pytest.Config) -> str:
    return f"broker: {test_broker().describe()}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    # `pytest -q` (make test, CI) hides the header: say again which broker the suite ran on.
    if config.getoption("verbose") < 0:
        terminalreporter.write_line(f"broker: {test_broker().describe()}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        in_dir = INTEGRATION_DIR in Path(str(item.path)).parents
        uses_stack = bool(STACK_FIXTURES.intersection(getattr(item, "fixturenames", ())))
        if in_dir or uses_stack:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def broker_settings() -> Iterator[None]:
    """On Tansu, every worker a test starts (its own broker's too) is told what Tansu
    lacks; on Apache Kafka the production settings stand."""
    if test_broker().is_kafka:
        yield
        return
    with tansu_settings():
        yield


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    kafka = os.environ.get("CHARGER_KAFKA_BOOTSTRAP") or None
    redis_url = os.environ.get("CHARGER_REDIS_URL") or None
    with session_broker(kafka) as broker, embedded_stack(broker, redis_url) as (bootstrap, url):
        yield Stack(
            bootstrap=bootstrap,
            redis_url=url,
            kafka_owned=kafka is None,
            redis_owned=redis_url is None,
            broker=test_broker().name if kafka is None else "external",
        )


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[Cluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def wide_broker() -> Iterator[str]:
    broker = own_broker()  # of the session's kind
    try:
        yield broker.address
    finally:
        broker.stop()


@pytest.fixture
async def redis_client(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(stack.redis_url)
    try:
        if stack.redis_owned:
            await client.flushdb()
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server's URL: CHARGER_DATABASE_URL's, else an embedded one for the
    session (tests make databases of their own on it: `database`)."""
    with embedded_postgres(os.environ.get("CHARGER_DATABASE_URL") or None) as url:
        yield url


@pytest.fixture
def database(postgres: str) -> str:
    """The URL of a new, empty database of this test's own."""
    return fresh_database(postgres)


@pytest.fixture
def uid() -> str:
    """A short unique token for account ids, key prefixes, topics and group ids."""
    return uuid.uuid4().hex[:12]
