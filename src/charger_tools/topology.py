"""A replicated Redis on loopback for tests and benchmarks: a primary, replicas, Sentinels.

Every node is an `EmbeddedServer` (`charger_tools.embedded`): the bundled Valkey, or
another Redis server binary (Debian's `redis-server`), each on a free loopback port with a
temporary directory of its own, stopped by its own pid. A replica starts with
``--replicaof`` and counts as started once its link to the primary is up. A Sentinel is
the same binary with a config file and ``--sentinel`` (it rewrites that file as it
learns, so the file lives in its directory).

The Sentinels' timers are short, so a failover takes seconds: a primary that answers
nothing for `down_after_ms` is down, `quorum` Sentinels agreeing on it start a failover.
`Topology.wait_watching` returns once every Sentinel sees the primary, its replicas and
the other Sentinels (before that, a failover could not be voted).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from charger_tools.embedded import (
    HOST,
    START_TIMEOUT,
    EmbeddedServer,
    EmbeddedServerError,
    redis_binary,
    start_redis,
    start_server,
    wait_redis_ready,
)

# A replica's full sync starts at once instead of after the default 5 s wait for others.
DATA_NODE_OPTIONS = ("--repl-diskless-sync-delay", "0")


@dataclass(frozen=True)
class SentinelTimers:
    down_after_ms: int = 1000
    failover_timeout_ms: int = 3000
    quorum: int = 2


def _ask(port: int, *command: Any) -> Any:
    """One command to the node or Sentinel on `port`, on a connection of its own."""
    with redis.Redis(host=HOST, port=port, socket_timeout=1, socket_connect_timeout=1) as client:
        return client.execute_command(*command)


def _port(server: EmbeddedServer) -> int:
    return int(server.address.rsplit(":", 1)[1].split("/", 1)[0])


def _until(check: Any, what: str, timeout: float) -> Any:
    """Poll `check()` until it returns something true; TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except redis.RedisError:
            found = None
        if found:
            return found
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s")
        time.sleep(0.05)


def replica_argv(argv: list[str], primary_port: int) -> list[str]:
    """`argv` of a data node, made to start as a replica of the primary on `primary_port`."""
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
        elif arg == "--replicaof":
            skip = 2
        else:
            out.append(arg)
    return [*out, "--replicaof", HOST, str(primary_port)]


def wait_in_sync(server: EmbeddedServer, timeout: float = START_TIMEOUT) -> None:
    """Until the replica `server` has its link to the primary up (its first sync done)."""

    def linked() -> bool:
        info = _ask(_port(server), "INFO", "replication")
        return bool(info.get("role") == "slave" and info.get("master_link_status") == "up")

    _until(linked, f"{server.name} in sync with its primary", timeout)


def start_data_node(
    name: str, *, replica_of: int | None = None, durable: bool = False, binary: str | None = None
) -> EmbeddedServer:
    """A primary, or with `replica_of` (the primary's port) a replica in sync with it."""
    extra = [*DATA_NODE_OPTIONS]
    if replica_of is not None:
        extra += ["--replicaof", HOST, str(replica_of)]
    server = start_redis(durable=durable, extra=extra, binary=binary, name=name)
    if replica_of is not None:
        try:
            wait_in_sync(server)
        except BaseException:
            server.stop()
            raise
    return server


def start_sentinel(
    master: str, primary_port: int, timers: SentinelTimers, binary: str | None = None
) -> EmbeddedServer:
    """A Sentinel watching the primary on `primary_port` under the name `master`."""
    server_binary = binary or redis_binary()

    def argv_for(port: int, workdir: Path) -> list[str]:
        conf = workdir / "sentinel.conf"
        conf.write_text(
            "\n".join(
                [
                    f"port {port}",
                    f"bind {HOST}",
                    f"dir {workdir}",
                    f"sentinel monitor {master} {HOST} {primary_port} {timers.quorum}",
                    f"sentinel down-after-milliseconds {master} {timers.down_after_ms}",
                    f"sentinel failover-timeout {master} {timers.failover_timeout_ms}",
                    f"sentinel parallel-syncs {master} 1",
                    "",
                ]
            )
        )
        return [server_binary, str(conf), "--sentinel"]

    def ready(server: EmbeddedServer, port: int, wait: float) -> None:
        wait_redis_ready(f"redis://{HOST}:{port}/0", wait, server)

    return start_server("sentinel", argv_for, lambda port: f"{HOST}:{port}", ready, START_TIMEOUT)


class Topology:
    """A primary, its replicas and the Sentinels watching them, all started here."""

    def __init__(self, master: str, nodes: list[EmbeddedServer], timers: SentinelTimers) -> None:
        self.master = master
        self.nodes = nodes  # data nodes; nodes[0] was the first primary
        self.sentinels: list[EmbeddedServer] = []
        self.timers = timers

    @property
    def sentinel_addresses(self) -> str:
        """``host:port,…`` as CHARGER_REDIS_SENTINELS takes them."""
        return ",".join(s.address for s in self.sentinels)

    def node_on(self, port: int) -> EmbeddedServer:
        return next(n for n in self.nodes if _port(n) == port)

    def named_primary(self, sentinel: EmbeddedServer) -> int | None:
        """The port of the primary `sentinel` names, None if it names none or is down."""
        if not sentinel.alive():
            return None
        reply = _ask(_port(sentinel), "SENTINEL GET-MASTER-ADDR-BY-NAME", self.master)
        return int(reply[1]) if reply else None

    def primary(self) -> EmbeddedServer:
        """The node the Sentinels name the primary now."""
        ports = {self.named_primary(s) for s in self.sentinels if s.alive()} - {None}
        if len(ports) != 1:
            raise EmbeddedServerError(f"the Sentinels disagree on the primary: {ports}")
        port = ports.pop()
        assert port is not None
        return self.node_on(port)

    def wait_watching(self, timeout: float = START_TIMEOUT) -> None:
        """Until every Sentinel sees the primary, every live replica and the other Sentinels."""
        replicas = sum(1 for n in self.nodes if n.alive()) - 1
        others = len(self.sentinels) - 1

        def watching(sentinel: EmbeddedServer) -> bool:
            state = _ask(_port(sentinel), "SENTINEL MASTER", self.master)
            seen = _ask(_port(sentinel), "SENTINEL SLAVES", self.master)
            healthy = [r for r in seen if not r["is_sdown"] and r["master-link-status"] == "ok"]
            return (
                not state["is_sdown"]
                and len(healthy) >= replicas
                and state["num-other-sentinels"] >= others
            )

        _until(lambda: all(watching(s) for s in self.sentinels), "Sentinels watching", timeout)

    def wait_promoted(self, old: EmbeddedServer, timeout: float = 30.0) -> EmbeddedServer:
        """Until every Sentinel names another primary than `old` and that node is primary."""

        def promoted() -> EmbeddedServer | None:
            ports = {self.named_primary(s) for s in self.sentinels}
            if len(ports) != 1 or _port(old) in ports or None in ports:
                return None
            node = self.node_on(next(p for p in ports if p is not None))
            role = _ask(_port(node), "INFO", "replication").get("role")
            return node if role == "master" else None

        found: EmbeddedServer = _until(promoted, f"a replica promoted in place of {old}", timeout)
        return found

    def rejoin(self, server: EmbeddedServer, timeout: float = START_TIMEOUT) -> None:
        """Start a stopped node again as a replica of the primary now, as a supervisor
        that asks the Sentinels would; returns once it is in sync."""
        server.argv = replica_argv(server.argv, _port(self.primary()))
        server.restart(timeout)
        wait_in_sync(server, timeout)

    def stop(self) -> None:
        """Stop every process started here: the Sentinels first, so they vote no failover."""
        for server in [*self.sentinels, *self.nodes]:
            server.stop()

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_topology(
    replicas: int = 1,
    sentinels: int = 3,
    *,
    master: str = "charger",
    durable: bool = False,
    binary: str | None = None,
    timers: SentinelTimers | None = None,
) -> Topology:
    """A primary, `replicas` replicas in sync, and `sentinels` Sentinels watching them all."""
    timers = timers or SentinelTimers(quorum=max(1, sentinels // 2 + 1))
    topology = Topology(master, [], timers)
    try:
        primary = start_data_node("primary", durable=durable, binary=binary)
        topology.nodes.append(primary)
        for number in range(replicas):
            topology.nodes.append(
                start_data_node(
                    f"replica{number + 1}",
                    replica_of=_port(primary),
                    durable=durable,
                    binary=binary,
                )
            )
        for _ in range(sentinels):
            topology.sentinels.append(start_sentinel(master, _port(primary), timers, binary))
        if sentinels:
            topology.wait_watching()
    except BaseException:
        topology.stop()
        raise
    return topology
