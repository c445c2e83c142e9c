"""Apache Kafka in KRaft mode on loopback: one broker, or a cluster of three.

Every node is a combined broker and controller (`process.roles=broker,controller`) with a
static controller quorum of all nodes: one JVM per node keeps a three-node cluster within
what a two-core machine runs beside the tests. Each node gets its own temporary directory
(its log dirs and `kafka.log`), storage formatted by `kafka.tools.StorageTool` before the
first start, and free loopback ports. A node is an `EmbeddedServer`: stopped by its own
pid, killed and restarted in place (its data stays) for broker faults.

Broker settings follow docker-compose.yml: no automatic topic creation (the contract
topics are created by `charger topics create`), no initial rebalance delay, and the
internal topics replicated to every node up to three, with a minimum in-sync count of two
on a cluster.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from charger_tools.embedded import (
    HOST,
    EmbeddedServer,
    EmbeddedServerError,
    _run_coroutine,
    _spawn,
    free_port,
    kafka_metadata_ready,
    wait_port_sync,
)
from charger_tools.kafka_install import KafkaInstall, install_kafka

__all__ = ["KafkaCluster", "kafka_cluster", "start_kafka"]

START_TIMEOUT = 120.0  # a JVM per node, two cores: tens of seconds under load
STOP_TIMEOUT = 20.0  # a controlled shutdown moves leaders away first
HEAP_MB = 512
_FORMAT_TIMEOUT = 120.0
# The offsets and transaction topics default to 50 partitions, each one a few files and
# a leader election at the first group: 8 serve a test machine and start in a blink.
_INTERNAL_PARTITIONS = 8


@dataclass(frozen=True)
class _Node:
    node_id: int
    port: int  # clients
    controller_port: int
    workdir: Path
    advertised: str

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"


@dataclass
class KafkaCluster:
    """Running Kafka nodes started here; `bootstrap` lists every one of them."""

    version: str
    cluster_id: str
    nodes: list[EmbeddedServer] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.address for node in self.nodes)

    @property
    def address(self) -> str:
        return self.bootstrap

    def stop(self) -> None:
        """Stop every node: all are asked at once, so none waits for a quorum already gone."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.stop(STOP_TIMEOUT)

    def __enter__(self) -> KafkaCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _properties(node: _Node, voters: str, size: int) -> str:
    replicas = min(size, 3)
    settings = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{node.address},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.advertised}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": node.workdir / "data",
        "num.partitions": 8,
        "default.replication.factor": replicas,
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": 0,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": _INTERNAL_PARTITIONS,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min(replicas, 2),
        "transaction.state.log.num.partitions": _INTERNAL_PARTITIONS,
        "share.coordinator.state.topic.replication.factor": replicas,
        "share.coordinator.state.topic.min.isr": min(replicas, 2),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def new_cluster_id(draw: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A random cluster id as Kafka writes them (URL-safe base64 of 16 bytes), never one
    starting with "-": the storage tool's argument parser would read it as an option (Kafka's
    own `Uuid.randomUuid` draws again for the same reason)."""
    while True:
        text = base64.urlsafe_b64encode(draw().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _format(install: KafkaInstall, nodes: list[_Node], cluster_id: str) -> None:
    """Format every node's log dirs for `cluster_id`, all nodes at once."""
    running = []
    for node in nodes:
        argv = install.java(
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",  # one argument, whatever the id starts with
            *("-c", str(node.workdir / "server.properties")),
            heap_mb=256,
        )
        log = open(node.workdir / "format.log", "wb")  # noqa: SIM115 - closed below
        running.append((node, log, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)))
    failed = []
    for node, log, process in running:
        try:
            code = process.wait(_FORMAT_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        log.close()
        if code != 0:
            failed.append(f"node {node.node_id}: {(node.workdir / 'format.log').read_text()}")
    if failed:
        raise EmbeddedServerError("formatting Kafka storage failed:\n" + "\n".join(failed))


def start_kafka(
    size: int = 1,
    *,
    timeout: float = START_TIMEOUT,
    port: int | None = None,
    advertised: str | None = None,
    install: KafkaInstall | None = None,
) -> KafkaCluster:
    """Start `size` Kafka nodes on free loopback ports and wait until all serve metadata.

    `port` and `advertised` (single node only) place the client listener and the address
    the broker tells clients, so a proxy there sees every connection. Raises
    `KafkaUnavailableError` when Java or Maven is missing.
    """
    if size < 1 or (size > 1 and (port or advertised)):
        raise ValueError("a port or an advertised address is for a single node")
    install = install or install_kafka()
    cluster = KafkaCluster(install.version, new_cluster_id())
    nodes = []
    for node_id in range(1, size + 1):
        client_port = port or free_port()
        workdir = Path(tempfile.mkdtemp(prefix=f"charger-kafka-{node_id}-"))
        advertised_as = advertised or f"{HOST}:{client_port}"
        nodes.append(_Node(node_id, client_port, free_port(), workdir, advertised_as))
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
    try:
        for node in nodes:
            (node.workdir / "server.properties").write_text(_properties(node, voters, size))
        _format(install, nodes, cluster.cluster_id)
        for node in nodes:
            argv = install.java(
                "kafka.Kafka", str(node.workdir / "server.properties"), heap_mb=HEAP_MB
            )
            server = _spawn(f"kafka-{node.node_id}", argv, node.workdir, node.address)
            cluster.nodes.append(server)
        for server in cluster.nodes:
            wait_port_sync(HOST, int(server.address.rsplit(":", 1)[1]), timeout, server)
        _run_coroutine(kafka_metadata_ready(cluster.bootstrap, timeout, size))
    except BaseException as exc:
        tails = "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in cluster.nodes)
        cluster.stop()
        for node in nodes[len(cluster.nodes) :]:  # never spawned: their directories
            shutil.rmtree(node.workdir, ignore_errors=True)
        if isinstance(exc, Exception):
            raise EmbeddedServerError(f"Apache Kafka did not start: {exc}\n{tails}") from exc
        raise
    return cluster


@contextlib.contextmanager
def kafka_cluster(size: int = 1) -> Iterator[KafkaCluster]:
    """`start_kafka(size)` as a context: every node stopped on the way out."""
    cluster = start_kafka(size)
    try:
        yield cluster
    finally:
        cluster.stop()
