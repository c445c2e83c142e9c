"""Contract topics on a broker: created with their partitions and configs when missing.

`charger topics create` runs this against the production cluster; the embedded tooling
and the tests call it against their own brokers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from charger_topics.names import TOPICS, TopicSpec

__all__ = [
    "PartitionCountError",
    "TopicCreationError",
    "create_topics",
    "new_topic_configs",
    "partition_counts",
    "require_partitions",
]


class TopicCreationError(RuntimeError):
    """The broker refused to create one or more topics."""


class PartitionCountError(RuntimeError):
    """An input topic is missing or has another partition count than the key slots."""


def new_topic_configs(spec: TopicSpec, min_insync_replicas: int | None = None) -> dict[str, str]:
    """The configs a new topic of `spec` is created with.

    `min_insync_replicas` sets `min.insync.replicas` (with `acks=all` producers, how many
    replicas must hold a write before it is acknowledged); unset leaves the broker default.
    """
    configs = spec.topic_configs()
    if min_insync_replicas is not None:
        configs["min.insync.replicas"] = str(min_insync_replicas)
    return configs


async def create_topics(
    bootstrap: str,
    specs: Iterable[TopicSpec] | None = None,
    partitions: int | None = None,
    *,
    replication_factor: int = 1,
    min_insync_replicas: int | None = None,
    timeout: float = 30.0,
    security: dict[str, Any] | None = None,
) -> None:
    """Create the topics of `specs` (default: every topic of the contract) if missing.

    Each topic gets its spec's partition count and `topic_configs()`, plus
    `min.insync.replicas` when given. `partitions` overrides the count of every topic
    except those the contract pins to one partition. Existing topics are left as they are.
    Returns once the broker's metadata lists every topic with its partitions. `security`
    holds the client's security arguments (`charger.connections.kafka_security`) for a
    secured cluster.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    chosen = list(TOPICS.values() if specs is None else specs)
    if not chosen:
        return
    new_topics = [
        NewTopic(
            name=spec.name,
            num_partitions=(
                partitions if partitions is not None and spec.partitions != 1 else spec.partitions
            ),
            replication_factor=replication_factor,
            topic_configs=new_topic_configs(spec, min_insync_replicas),
        )
        for spec in chosen
    ]
    names = [spec.name for spec in chosen]
    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(security or {})
    )
    await client.start()
    try:
        response = await client.create_topics(new_topics, timeout_ms=int(timeout * 1000))
        failures = []
        for error in response.topic_errors:
            topic, code = error[0], error[1]
            message = error[2] if len(error) > 2 else None
            if code not in (0, TopicAlreadyExistsError.errno):
                failures.append(f"{topic}: {for_code(code).__name__} {message or ''}".strip())
        if failures:
            raise TopicCreationError("could not create topics: " + "; ".join(failures))
        await _wait_topics_visible(client, names, timeout)
    finally:
        await client.close()


async def _wait_topics_visible(client: Any, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        described = await client.describe_topics(names)
        ready = {d["topic"] for d in described if d.get("error_code") == 0 and d.get("partitions")}
        missing = sorted(set(names) - ready)
        if not missing:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics not visible in metadata after {timeout}s: {missing}")
        await asyncio.sleep(0.1)


async def require_partitions(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int,
    *,
    timeout: float = 30.0,
    security: dict[str, Any] | None = None,
) -> None:
    """Raise `PartitionCountError` unless every topic of `topics` has `partitions`.

    The worker's key slots are the murmur2 partitions of `partitions`: with another count
    on an input topic, every correctly produced record would land off its slot's partition.
    """
    names = sorted(topics)
    found = await partition_counts(bootstrap, names, timeout=timeout, security=security)
    wrong = [
        f"{name} has {found[name]}" if name in found else f"{name} is missing"
        for name in names
        if found.get(name) != partitions
    ]
    if wrong:
        raise PartitionCountError(
            f"the input topics must have CHARGER_PARTITIONS={partitions} partitions: "
            + "; ".join(wrong)
            + " (charger topics create makes them; a changed count needs a re-homing migration)"
        )


async def partition_counts(
    bootstrap: str,
    topics: Iterable[str],
    *,
    timeout: float = 30.0,
    security: dict[str, Any] | None = None,
) -> dict[str, int]:
    """The partition count of each topic of `topics` that exists (missing ones are left out).

    Asked explicitly: a client knows no topic's partitions until its metadata names the
    topic, and Kafka answers a metadata request for no topics with none (some brokers
    answer it with all of them).
    """
    from aiokafka.admin import AIOKafkaAdminClient

    client = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(security or {})
    )
    await client.start()
    try:
        described = await client.describe_topics(sorted(topics))
    finally:
        await client.close()
    return {
        d["topic"]: len(d.get("partitions") or ())
        for d in described
        if d["error_code"] == 0 and d.get("partitions")
    }
