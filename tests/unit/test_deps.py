"""Dependency faults without I/O: backoff, classification, retries, the probe, the batch loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaConnectionError, KafkaTimeoutError
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from charger.clock import ManualClock
from charger.deps import Backoff, Probe, Retrier
from charger.faults import dependency_of
from charger.kafka.batch import BatchWorker
from charger.metrics import Metrics
from charger.protocol.keys import Keys
from charger.settings import Settings
from charger_topics import names

log = logging.getLogger("charger.test")


def value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


# ---- backoff ----
def test_backoff_doubles_from_min_to_max_and_resets() -> None:
    b = Backoff(0.1, 5.0, jitter=0)
    waits = [b.next() for _ in range(10)]
    assert waits == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0])
    assert b.attempts == 10
    b.reset()
    assert b.next() == pytest.approx(0.1)


def test_jitter_only_shortens_a_wait() -> None:
    low, high = (
        Backoff(1, 4, jitter=0.2, rand=lambda: 0.999),
        Backoff(1, 4, jitter=0.2, rand=lambda: 0),
    )
    for _ in range(5):
        a, b = low.next(), high.next()
        assert 0.8 * b <= a <= b <= 4
    assert Backoff(1, 4).next() <= 1
    assert Backoff(2, 1, jitter=0).next() == 2  # a max below the min is the min


# ---- which dependency ----
def test_errors_are_attributed_to_their_dependency_also_when_wrapped() -> None:
    assert dependency_of(RedisConnectionError("refused")) == "redis"
    assert dependency_of(RedisTimeoutError("slow")) == "redis"
    assert dependency_of(KafkaConnectionError()) == "kafka"
    assert dependency_of(CommitFailedError()) == "kafka"
    assert dependency_of(ValueError("a bug")) == "other"
    try:
        try:
            raise RedisConnectionError("refused")
        except RedisConnectionError as inner:
            raise RuntimeError("while applying") from inner
    except RuntimeError as outer:
        assert dependency_of(outer) == "redis"


def test_metrics_count_errors_by_dependency_and_stage() -> None:
    m = Metrics(CollectorRegistry())
    m.error("batch", RedisConnectionError())
    m.error("tick", KafkaTimeoutError())
    m.error("sample", RedisTimeoutError())
    assert value(m, "charger_batch_errors_total", stage="batch") == 1
    assert value(m, "charger_batch_errors_total", stage="tick") == 1
    assert m.registry.get_sample_value("charger_batch_errors_total", {"stage": "sample"}) is None
    assert value(m, "charger_redis_errors_total", stage="batch") == 1
    assert value(m, "charger_redis_errors_total", stage="tick") == 0
    assert value(m, "charger_dependency_errors_total", dependency="kafka", stage="tick") == 1
    assert value(m, "charger_dependency_errors_total", dependency="redis", stage="sample") == 1
    # every series exists before its first occurrence (alerts and panels have data)
    assert m.registry.get_sample_value("charger_dependency_up", {"dependency": "kafka"}) == 0
    labels = {"dependency": "other", "stage": "probe"}
    assert m.registry.get_sample_value("charger_dependency_errors_total", labels) == 0


# ---- a loop's retries ----
async def test_a_failure_is_counted_logged_and_waited_out(caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics(CollectorRegistry())
    r = Retrier("batch", m, Backoff(0.02, 0.05, jitter=0), log)
    caplog.set_level(logging.INFO, logger="charger.test")
    seen: list[float] = []

    async def watch() -> None:
        await asyncio.sleep(0.01)
        seen.append(value(m, "charger_retry_delay_seconds", stage="batch"))

    began = time.monotonic()
    await asyncio.gather(r.failed(RedisConnectionError("refused")), watch())
    await r.failed(RedisConnectionError("refused"))
    await r.failed(KafkaTimeoutError("commit"))
    took = time.monotonic() - began
    assert seen == [pytest.approx(0.02)]  # the wait shows while it lasts
    assert value(m, "charger_retry_delay_seconds", stage="batch") == 0
    assert took >= 0.02 + 0.04 + 0.05
    assert value(m, "charger_backoff_seconds_total", dependency="redis") == pytest.approx(0.06)
    assert value(m, "charger_backoff_seconds_total", dependency="kafka") == pytest.approx(0.05)
    assert value(m, "charger_batch_errors_total", stage="batch") == 3
    # the first failure with its traceback, then one line each, then the recovery once
    first, *again = [rec for rec in caplog.records if "failed" in rec.getMessage()]
    assert first.levelno == logging.ERROR and first.exc_info is not None
    assert [a.levelno for a in again] == [logging.WARNING] * 2
    assert all(a.exc_info is None for a in again)
    r.succeeded()
    r.succeeded()
    recovered = [rec for rec in caplog.records if "recovered" in rec.getMessage()]
    assert len(recovered) == 1 and recovered[0].attempts == 3  # type: ignore[attr-defined]
    assert r.backoff.attempts == 0


async def test_stopping_cuts_a_wait_short() -> None:
    r = Retrier("batch", Metrics(CollectorRegistry()), Backoff(30, 30), log)
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, stop.set)
    began = time.monotonic()
    await r.failed(RedisConnectionError(), stop)
    assert time.monotonic() - began < 5


# ---- the probe ----
async def test_the_probe_sets_up_down_and_logs_each_change_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = Metrics(CollectorRegistry())
    redis_ok = [True]

    async def redis() -> None:
        if not redis_ok[0]:
            raise RedisConnectionError("refused")

    async def kafka() -> None:
        await asyncio.sleep(10)  # a broker that does not answer at all

    caplog.set_level(logging.INFO, logger="charger.test")
    p = Probe(m, {"redis": redis, "kafka": kafka}, log, timeout=0.05)
    await p.probe_once()
    assert value(m, "charger_dependency_up", dependency="redis") == 1
    assert value(m, "charger_dependency_up", dependency="kafka") == 0
    redis_ok[0] = False
    await p.probe_once()
    await p.probe_once()
    assert value(m, "charger_dependency_up", dependency="redis") == 0
    assert value(m, "charger_dependency_errors_total", dependency="redis", stage="probe") == 2
    assert value(m, "charger_dependency_errors_total", dependency="kafka", stage="probe") == 3
    redis_ok[0] = True
    await p.probe_once()
    assert value(m, "charger_dependency_up", dependency="redis") == 1
    messages = [rec.getMessage() for rec in caplog.records]
    assert messages.count("redis unreachable") == 1
    assert messages.count("redis reachable again") == 1
    assert messages.count("kafka unreachable") == 1


# ---- the batch loop ----
class Msg(SimpleNamespace):
    """A consumer record: what the test gives, and what every record has besides."""

    timestamp_type = 0
    headers = ()


class FakeConsumer:
    """Hands out one batch until committed; `assignment` may lose a partition meanwhile."""

    def __init__(self, data: dict[TopicPartition, list[Msg]]) -> None:
        self.data = data
        self.assigned = set(data)
        self.seeks: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.fail_commit: BaseException | None = None

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Msg]]:
        return self.data

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert tp in self.assigned, "seek on a partition that is not assigned"
        self.seeks[tp] = offset

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail_commit is not None:
            raise self.fail_commit
        self.commits.append(offsets)


def worker_with(consumer: FakeConsumer, failures: list[BaseException]) -> BatchWorker:
    settings = Settings(retry_backoff_min_ms=1, retry_backoff_max_ms=4)
    store: Any = SimpleNamespace(keys=Keys("t", 8))
    drained: list[set[int]] = []

    async def drain(slots: set[int]) -> Counter[str]:
        drained.append(set(slots))
        return Counter()

    relay: Any = SimpleNamespace(drain=drain, drained=drained)
    w = BatchWorker(settings, store, relay, dict, ManualClock(), Metrics(CollectorRegistry()))
    w.consumer = consumer  # type: ignore[assignment]

    async def process(batch: Any, first: Any) -> set[TopicPartition]:
        if failures:
            raise failures.pop(0)
        return set()  # every partition applied: all are committed

    w.process = process  # type: ignore[method-assign]
    return w


async def test_a_failed_batch_commits_nothing_rewinds_backs_off_and_succeeds_later() -> None:
    ev0, ev1 = TopicPartition(names.TELEPHONY_EVENTS, 0), TopicPartition(names.TELEPHONY_EVENTS, 1)
    consumer = FakeConsumer(
        {
            ev0: [Msg(offset=10, key=b"a", value=b"{}", timestamp=0)],
            ev1: [
                Msg(offset=4, key=b"b", value=b"{}", timestamp=0),
                Msg(offset=5, key=b"b", value=b"{}", timestamp=0),
            ],
        }
    )
    w = worker_with(consumer, [RedisConnectionError("refused"), RedisConnectionError("refused")])
    assert await w.run_once() == 0
    assert await w.run_once() == 0
    assert consumer.commits == [] and consumer.seeks == {ev0: 10, ev1: 4}
    assert w.needs_drain and w.retry.backoff.attempts == 2
    assert len(w.publisher.relay.drained) == 2  # type: ignore[attr-defined]  # the outbox first, each time
    assert (
        value(w.metrics, "charger_dependency_errors_total", dependency="redis", stage="batch") == 2
    )
    assert await w.run_once() == 3
    assert consumer.commits == [{ev0: 11, ev1: 6}]
    assert w.retry.backoff.attempts == 0  # reset by the success


async def test_a_refused_commit_after_a_rebalance_does_not_end_the_loop() -> None:
    ev0, ev1 = TopicPartition(names.TELEPHONY_EVENTS, 0), TopicPartition(names.TELEPHONY_EVENTS, 1)
    consumer = FakeConsumer(
        {
            ev0: [Msg(offset=1, key=b"a", value=b"{}", timestamp=0)],
            ev1: [Msg(offset=2, key=b"b", value=b"{}", timestamp=0)],
        }
    )
    consumer.fail_commit = CommitFailedError("rebalanced")
    consumer.assigned = {ev1}  # ev0 went to another worker meanwhile
    w = worker_with(consumer, [])
    assert await w.run_once() == 0
    assert consumer.seeks == {ev1: 2}
    assert (
        value(w.metrics, "charger_dependency_errors_total", dependency="kafka", stage="batch") == 1
    )


async def test_an_outbox_that_cannot_be_drained_stops_fetching_but_not_the_loop() -> None:
    consumer = FakeConsumer({})
    w = worker_with(consumer, [])

    async def drain(slots: set[int]) -> Counter[str]:
        raise RedisConnectionError("refused")

    w.publisher.relay.drain = drain  # type: ignore[method-assign]
    fetched: list[int] = []

    async def getmany(timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Msg]]:
        fetched.append(1)
        return {}

    consumer.getmany = getmany  # type: ignore[method-assign]
    assert await w.run_once() == 0
    assert fetched == []  # nothing new is taken on while the outbox waits
    assert w.needs_drain and w.retry.failing_since is not None
    # /health counts a loop that backs off as alive: it came back from its wait
    assert w.metrics.polled_at > 0
