"""Waiting for replicas: what a wait adds to a pipeline, how its replies are judged, where
the store and the relay put it, and the start-up check of WAITAOF. Redis is faked behind
the project's own interface (`WaitPipeline`, `ServerCommands`); the real servers are in
tests/integration/test_redis_sentinel.py and test_redis_durability.py."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ResponseError

from charger.faults import dependency_of
from charger.metrics import Metrics
from charger.protocol.keys import Keys
from charger.protocol.ops import ScriptConfig, SlotPlan
from charger.store.durability import (
    REPLIES,
    Durability,
    DurabilityConfigError,
    NotDurable,
    Stage,
    WaitOutcome,
    check_server,
)
from charger.store.redis_store import RedisForgot, RedisStore

CONFIG = ScriptConfig(600, 600, 10, 2000, 3_600_000, 600_000, 3_600_000)
# TIME replies 2.5 ms apart: the wait held the pipeline that long on the server.
BEFORE, AFTER = [1_700_000_000, 997_500], [1_700_000_001, 0]


class FakePipeline:
    """Records the commands queued on it; `execute` answers with `replies`."""

    def __init__(self, replies: list[Any] | None = None) -> None:
        self.commands: list[tuple[Any, ...]] = []
        self.replies = replies or []

    def execute_command(self, name: str, *args: Any) -> None:
        self.commands.append((name, args[0]))

    def incr(self, key: str) -> None:
        self.commands.append(("INCR", key))

    def time(self) -> None:
        self.commands.append(("TIME",))

    def wait(self, num_replicas: int, timeout: int) -> None:
        self.commands.append(("WAIT", num_replicas, timeout))

    def waitaof(self, num_local: int, num_replicas: int, timeout: int) -> None:
        self.commands.append(("WAITAOF", num_local, num_replicas, timeout))

    async def execute(self) -> list[Any]:
        return self.replies


class Seen:
    """An observer that keeps what it was told."""

    def __init__(self) -> None:
        self.waits: list[tuple[Stage, WaitOutcome, float]] = []

    def __call__(self, stage: Stage, outcome: WaitOutcome, seconds: float) -> None:
        self.waits.append((stage, outcome, seconds))


def test_nothing_is_added_when_nothing_waits() -> None:
    pipe = FakePipeline()
    assert not Durability().waits
    assert Durability().queue(pipe) == 0
    assert pipe.commands == []


def test_the_wait_follows_the_writes_and_is_timed_on_the_server_clock() -> None:
    seen = Seen()
    durability = Durability(replicas=2, timeout_ms=750, observe=seen)
    pipe = FakePipeline()
    pipe.execute_command("EVALSHA", "sha")
    assert durability.queue(pipe) == REPLIES
    assert pipe.commands == [("EVALSHA", "sha"), ("TIME",), ("WAIT", 2, 750), ("TIME",)]
    seconds = durability.check("apply", [["applied"], BEFORE, 2, AFTER])
    assert seconds == pytest.approx(0.0025)
    assert seen.waits == [("apply", WaitOutcome.ACKNOWLEDGED, pytest.approx(0.0025))]


def test_too_few_replicas_raise_a_redis_error_and_are_counted_as_a_timeout() -> None:
    seen = Seen()
    durability = Durability(replicas=2, timeout_ms=750, observe=seen)
    with pytest.raises(NotDurable, match=r"WAIT timed out after 750 ms \(relay\): 1 of 2") as err:
        durability.check("relay", [BEFORE, 1, AFTER])
    # A Redis fault: the loops count it against Redis and retry with backoff.
    assert dependency_of(err.value) == "redis"
    assert seen.waits == [("relay", WaitOutcome.TIMED_OUT, pytest.approx(0.0025))]


@pytest.mark.parametrize(
    ("answer", "durable"),
    [([1, 1], True), ([1, 2], True), ([1, 0], False), ([0, 1], False)],
)
def test_waitaof_needs_the_primarys_fsync_and_the_replicas(
    answer: list[int], durable: bool
) -> None:
    durability = Durability(replicas=1, aof=True, timeout_ms=100)
    pipe = FakePipeline()
    durability.queue(pipe)
    assert pipe.commands[1] == ("WAITAOF", 1, 1, 100)
    if durable:
        durability.check("apply", [BEFORE, answer, AFTER])
    else:
        with pytest.raises(NotDurable, match="WAITAOF"):
            durability.check("apply", [BEFORE, answer, AFTER])


def test_waitaof_alone_waits_for_the_primarys_own_fsync() -> None:
    durability = Durability(aof=True, timeout_ms=100)
    pipe = FakePipeline()
    assert durability.waits and durability.queue(pipe) == REPLIES
    assert pipe.commands[1] == ("WAITAOF", 1, 0, 100)


def store_with(durability: Durability, replies: list[Any]) -> tuple[RedisStore, FakePipeline]:
    """A store whose pipelines are one fake answering `replies`."""
    pipe = FakePipeline(replies)

    class Client:
        def pipeline(self, transaction: bool = True) -> FakePipeline:
            return pipe

    store = RedisStore(Client(), Keys("t", 8), CONFIG, durability)  # type: ignore[arg-type]

    async def run(queue: Any) -> list[Any]:
        queue(pipe)
        return await pipe.execute()

    store.scripts.run = run  # type: ignore[method-assign]
    return store, pipe


HIGHEST = {"telephony.events/1": 5, "telephony.events/3": 7}


def two_slots() -> SlotPlan:
    plan = SlotPlan()
    plan.touch(1, "telephony.events/1")
    plan.touch(3, "telephony.events/3")
    return plan


async def test_apply_waits_in_its_own_pipeline_and_counts_only_the_scripts_replies() -> None:
    store, pipe = store_with(Durability(replicas=1), [[2, 0], [1, 1], BEFORE, 1, AFTER])
    assert await store.apply(two_slots(), HIGHEST, 0) == (3, 1)
    assert [c[0] for c in pipe.commands] == ["EVALSHA", "EVALSHA", "TIME", "WAIT", "TIME"]


async def test_a_tick_applies_without_waiting() -> None:
    store, pipe = store_with(Durability(replicas=1), [[2, 0], [1, 1]])
    assert await store.apply(two_slots(), HIGHEST, 0, wait=False) == (3, 1)
    assert [c[0] for c in pipe.commands] == ["EVALSHA", "EVALSHA"]


async def test_a_batch_not_durable_fails_whole_before_a_forgotten_slot_is_looked_at() -> None:
    forgot = [0, 0, [b"telephony.events/3", 41]]
    store, _ = store_with(Durability(replicas=1), [[2, 0], forgot, BEFORE, 0, AFTER])
    # Nothing of it may count: not even the slots that applied (their offsets would be
    # committed on the way to reading the forgotten ones again).
    with pytest.raises(NotDurable):
        await store.apply(two_slots(), HIGHEST, 0)
    store, _ = store_with(Durability(replicas=1), [[2, 0], forgot, BEFORE, 1, AFTER])
    with pytest.raises(RedisForgot):
        await store.apply(two_slots(), HIGHEST, 0)


async def test_the_relay_writes_in_every_slot_it_read_then_waits() -> None:
    store, pipe = store_with(Durability(replicas=1), [1, 7, BEFORE, 1, AFTER])
    await store.make_durable([1, 3])
    keys = store.keys
    assert pipe.commands == [
        ("INCR", keys.relay_probe(1)),
        ("INCR", keys.relay_probe(3)),
        ("TIME",),
        ("WAIT", 1, 1000),
        ("TIME",),
    ]
    store, pipe = store_with(Durability(replicas=1), [1, BEFORE, 0, AFTER])
    with pytest.raises(NotDurable):
        await store.make_durable([1])
    store, pipe = store_with(Durability(), [])
    await store.make_durable([1, 3])
    assert pipe.commands == []  # nothing to wait for: no round trip at all


class FakeServer:
    """Answers COMMAND INFO and WAITAOF as a server of some version and configuration."""

    def __init__(self, knows_waitaof: bool, appendonly: bool = True) -> None:
        self.knows_waitaof = knows_waitaof
        self.appendonly = appendonly
        self.asked: list[tuple[Any, ...]] = []

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.asked.append(args)
        return [["waitaof", 4]] if self.knows_waitaof else [None]

    async def waitaof(self, num_local: int, num_replicas: int, timeout: int, **kw: Any) -> Any:
        self.asked.append(("WAITAOF", num_local, num_replicas, timeout))
        if not self.appendonly:
            raise ResponseError(
                "WAITAOF cannot be used when numlocal is set but appendonly is disabled."
            )
        return [1, 0]


async def test_wait_aof_on_a_server_without_waitaof_is_a_one_line_configuration_error() -> None:
    with pytest.raises(DurabilityConfigError) as err:
        await check_server(FakeServer(False), Durability(aof=True), "redis://cache:6379/0")
    message = str(err.value)
    assert "\n" not in message
    assert "CHARGER_REDIS_WAIT_AOF" in message and "redis://cache:6379/0" in message
    with pytest.raises(DurabilityConfigError, match="appendonly yes"):
        await check_server(FakeServer(True, appendonly=False), Durability(aof=True), "here")
    server = FakeServer(True)
    await check_server(server, Durability(replicas=1, aof=True, timeout_ms=50), "here")
    assert server.asked == [("COMMAND INFO", "WAITAOF"), ("WAITAOF", 1, 0, 50)]


async def test_plain_wait_asks_the_server_nothing_at_start() -> None:
    server = FakeServer(False)
    await check_server(server, Durability(replicas=1), "here")
    assert server.asked == []


def test_waits_are_exported_by_stage() -> None:
    metrics = Metrics(CollectorRegistry())
    sample = metrics.registry.get_sample_value
    for stage in ("apply", "relay"):  # there before the first wait, at 0
        assert sample("charger_redis_wait_timeouts_total", {"stage": stage}) == 0
        assert sample("charger_redis_wait_seconds_count", {"stage": stage}) == 0
    metrics.redis_waited("apply", WaitOutcome.ACKNOWLEDGED, 0.002)
    metrics.redis_waited("relay", WaitOutcome.TIMED_OUT, 0.2)
    assert sample("charger_redis_wait_seconds_count", {"stage": "apply"}) == 1
    assert sample("charger_redis_wait_seconds_sum", {"stage": "relay"}) == pytest.approx(0.2)
    assert sample("charger_redis_wait_timeouts_total", {"stage": "apply"}) == 0
    assert sample("charger_redis_wait_timeouts_total", {"stage": "relay"}) == 1
