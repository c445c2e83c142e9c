"""The embedded broker and Redis, the topic bootstrap, and the session stack fixtures."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from charger.kafka.admin import create_topics
from charger_tools.embedded import (
    EmbeddedServer,
    embedded_stack,
    free_port,
    start_broker,
    start_redis,
    wait_port,
)
from charger_topics.names import RATE_PLANS, TELEPHONY_EVENTS, TOPICS, TopicSpec


def accepts(address: str) -> bool:
    host, _, port = address.removeprefix("redis://").partition("/")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="module")
def own_broker() -> Iterator[EmbeddedServer]:
    """A broker of this module alone, so partition counts are ours to check."""
    with start_broker() as server:
        yield server


async def describe(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, dict]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(names)
        partitions = {d["topic"]: len(d["partitions"]) for d in described}
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    finally:
        await admin.close()
    configs: dict[str, dict] = {}
    for response in responses:
        for resource in response.resources:
            name, entries = resource[3], resource[4]
            configs[name] = {entry[0]: entry[1] for entry in entries}
    return partitions, configs


async def test_broker_and_topics(own_broker: EmbeddedServer) -> None:
    assert own_broker.alive()
    assert own_broker.address.startswith("127.0.0.1:")
    host, port = own_broker.address.split(":")
    await wait_port(host, int(port), timeout=1)

    await create_topics(own_broker.address, TOPICS.values(), partitions=4)
    await create_topics(own_broker.address, TOPICS.values(), partitions=4)  # idempotent

    names = list(TOPICS)
    partitions, configs = await describe(own_broker.address, names)
    for name, spec in TOPICS.items():
        assert partitions[name] == (1 if spec.partitions == 1 else 4), name
    assert partitions[RATE_PLANS] == 1
    assert configs[RATE_PLANS]["cleanup.policy"] == "compact"
    events = TOPICS[TELEPHONY_EVENTS]
    assert configs[TELEPHONY_EVENTS]["retention.ms"] == events.configs["retention.ms"]


async def test_create_topics_uses_spec_partitions(own_broker: EmbeddedServer) -> None:
    spec = TopicSpec("test.spec-partitions", "test", "test", "test", 3, compacted=True)
    await create_topics(own_broker.address, [spec])
    partitions, configs = await describe(own_broker.address, [spec.name])
    assert partitions[spec.name] == 3
    assert configs[spec.name]["cleanup.policy"] == "compact"


async def test_produce_consume_commit(stack, uid: str) -> None:
    topic, group = f"test.roundtrip-{uid}", f"test-group-{uid}"
    await create_topics(stack.bootstrap, [TopicSpec(topic, "test", "test", "key", 2)])
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        first = await producer.send_and_wait(topic, b'{"n":1}', key=b"acct-1")
        second = await producer.send_and_wait(topic, b'{"n":2}', key=b"acct-1")
        assert second.partition == first.partition
        tp = TopicPartition(topic, first.partition)

        # A group member (subscribe: join, assignment) reads the first record and commits.
        member = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        await member.start()
        try:
            async with asyncio.timeout(30):
                record = None
                while record is None:
                    batch = await member.getmany(tp, timeout_ms=200, max_records=1)
                    record = next(iter(batch.get(tp, [])), None)
            assert (record.value, record.offset) == (b'{"n":1}', first.offset)
            await member.commit({tp: record.offset + 1})
            assert await member.committed(tp) == first.offset + 1
        finally:
            await member.stop()

        # The group's committed offset survives the member: a reader of the same group
        # resumes right after it.
        reader = AIOKafkaConsumer(
            bootstrap_servers=stack.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await reader.start()
        try:
            reader.assign([tp])
            assert await reader.committed(tp) == first.offset + 1
            async with asyncio.timeout(30):
                records = []
                while not records:
                    records = (await reader.getmany(tp, timeout_ms=200)).get(tp, [])
            assert [(r.value, r.offset) for r in records] == [(b'{"n":2}', second.offset)]
        finally:
            await reader.stop()
    finally:
        await producer.stop()


async def test_redis_ping_and_lua(redis_client, uid: str) -> None:
    assert await redis_client.ping() is True
    key = f"test:{{{uid}}}:balance"
    script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    assert await redis_client.eval(script, 1, key, 250) == 250
    assert await redis_client.eval(script, 1, key, -100) == 150
    await redis_client.delete(key)


def test_stop_ends_processes() -> None:
    broker, valkey = start_broker(), start_redis()
    assert valkey.address.startswith("redis://127.0.0.1:") and valkey.address.endswith("/0")
    servers = [broker, valkey]
    for server in servers:
        assert server.alive() and pid_exists(server.pid) and accepts(server.address)
        assert server.log_path.exists()
    for server in servers:
        server.stop()
        server.stop()  # idempotent
        assert not server.alive()
        assert not pid_exists(server.pid)
        assert not accepts(server.address)
        assert not server.workdir.exists()


def test_embedded_stack_stops_on_interrupt() -> None:
    with pytest.raises(KeyboardInterrupt), embedded_stack(None, None) as (bootstrap, url):
        addresses = (bootstrap, url)
        assert accepts(bootstrap) and accepts(url)
        raise KeyboardInterrupt
    assert not any(accepts(a) for a in addresses)


def test_embedded_stack_passes_given_addresses_through() -> None:
    with embedded_stack("kafka.example:9092", "redis://redis.example:6379/0") as given:
        assert given == ("kafka.example:9092", "redis://redis.example:6379/0")


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_durable_redis_survives_sigkill_and_restart() -> None:
    import redis

    server = start_redis(durable=True)
    try:
        client = redis.Redis.from_url(server.address)
        client.hincrby("acct", "bal", 1_500_000)
        client.close()
        server.kill()
        assert not server.alive()
        server.restart()
        client = redis.Redis.from_url(server.address)
        # appendfsync always: the acknowledged write is back after the crash.
        assert client.hget("acct", "bal") == b"1500000"
        client.close()
    finally:
        server.stop()
    assert not server.alive()
    assert not server.workdir.exists()
