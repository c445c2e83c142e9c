"""The Redis a chaos run stands on, and the Redis faults it can strike.

Three kinds, all started here on loopback and stopped by their pids:

- `SingleRedis`: one Valkey with its append-only file fsynced on every write, so it can
  be SIGKILLed and restarted from disk (the restart fault);
- `SentinelRedis`: a primary, one replica and three Sentinels (`charger_tools.topology`);
  the workers find the primary through the Sentinels. A failover SIGKILLs the primary,
  waits for the Sentinels to promote the replica, then starts the killed node again as
  the new primary's replica, so the next failover has a replica to promote;
- `ClusterRedis`: six nodes, three primaries with a replica each
  (`charger_tools.cluster`); a failover SIGKILLs one primary, waits for the cluster to
  promote its replica, then starts the killed node again, which the cluster makes a
  replica of the node that took its slots.

Each gives the workers' Redis settings and the run's own client, which must follow the
primary wherever it moves (the run reads lags, settles and makes Redis forget through it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from charger.store.client import RedisClient
from charger_tools.chaos.workload import CLUSTER_PARTITIONS, ChaosConfig
from charger_tools.cluster import Cluster, port_of, start_cluster
from charger_tools.embedded import HOST, EmbeddedServer, start_redis
from charger_tools.topology import SentinelTimers, Topology, start_topology

# Worker settings about where Redis is: each kind sets its own, and none leaks in from the
# environment the run was started in (CHARGER_REDIS_URL beside Sentinels is refused).
REDIS_SETTINGS = (
    "CHARGER_REDIS_URL",
    "CHARGER_REDIS_SENTINELS",
    "CHARGER_REDIS_SENTINEL_MASTER",
    "CHARGER_REDIS_CLUSTER",
    "CHARGER_REDIS_MIN_REPLICAS",
)
REDIS_DOWN_S = 2.0  # how long a restarted single server stays down
# The rollback's scripts copy and restore every key of the run at once, holding the
# primary for over a second late in a full-size run on a loaded machine: with the
# Sentinels' one-second default they failed it over on their own, and a rollback then
# landed on the old primary just before it was made a replica (and so came to nothing).
# Five seconds (Valkey answers BUSY to a script past five seconds, and a Sentinel kills
# such a script) keeps the failovers to the planned ones, at some seconds per promotion.
SENTINEL_TIMERS = SentinelTimers(down_after_ms=5000, quorum=2)


@dataclass(frozen=True)
class Failover:
    """One failover: which node died, which took over, and how long each step took."""

    killed: str
    promoted: str
    promotion_s: float  # SIGKILL until the replica serves as primary
    rejoined_s: float  # SIGKILL until the killed node follows the new primary


class RedisBackend:
    """What every kind offers; a fault a kind cannot strike raises."""

    mode = "single"
    partitions: int | None = None  # None: the run's default

    def worker_env(self) -> dict[str, str]:
        raise NotImplementedError

    def client(self) -> RedisClient:
        """The run's own client (nothing connects yet); close it with `close`."""
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError(f"a {self.mode} Redis is not restarted in place")

    def failover(self) -> Failover:
        raise NotImplementedError(f"a {self.mode} Redis has no replica to fail over to")

    def epoch(self) -> int:
        """A count that goes up with every failover, planned or not (0: none can happen)."""
        return 0

    def stop(self) -> None:
        raise NotImplementedError


class SingleRedis(RedisBackend):
    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server

    def worker_env(self) -> dict[str, str]:
        return {"CHARGER_REDIS_URL": self.server.address}

    def client(self) -> RedisClient:
        # One reconnect on a dropped connection: the restart fault strikes under it.
        return Redis.from_url(
            self.server.address, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError]
        )

    def restart(self) -> None:
        """SIGKILL, a while down, then up again from the append-only file."""
        self.server.kill()
        time.sleep(REDIS_DOWN_S)
        self.server.restart()

    def stop(self) -> None:
        self.server.stop()


class SentinelRedis(RedisBackend):
    mode = "sentinel"

    def __init__(self, topology: Topology) -> None:
        self.topology = topology

    def worker_env(self) -> dict[str, str]:
        return {
            "CHARGER_REDIS_SENTINELS": self.topology.sentinel_addresses,
            "CHARGER_REDIS_SENTINEL_MASTER": self.topology.master,
            # A batch counts only once the replica has it: the replica promoted then
            # lacks nothing that was committed or published. (The rollback fault still
            # makes Redis forget, and a cluster run goes without waits, so the
            # worker's recovery from a forgetful Redis is proven there.)
            "CHARGER_REDIS_MIN_REPLICAS": "1",
        }

    def client(self) -> RedisClient:
        addresses = (s.address.rsplit(":", 1) for s in self.topology.sentinels)
        sentinels = [(host, int(port)) for host, port in addresses]
        options: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        sentinel = Sentinel(sentinels, sentinel_kwargs=options, **options)
        client: Redis = sentinel.master_for(self.topology.master)
        return client

    def failover(self) -> Failover:
        topology = self.topology
        old = topology.primary()
        killed = time.monotonic()
        old.kill()
        new = topology.wait_promoted(old, timeout=60)
        promoted = time.monotonic()
        topology.rejoin(old)
        # The Sentinels must see the replica again before they could vote another failover.
        topology.wait_watching()
        done = time.monotonic()
        return Failover(old.address, new.address, promoted - killed, done - killed)

    def epoch(self) -> int:
        """The master's configuration epoch: one more for every failover the Sentinels
        carried out, also one they voted on their own (a primary that answered nothing
        for `down_after_ms`, say while a rollback's script held it)."""
        live = next(s for s in self.topology.sentinels if s.alive())
        port = int(live.address.rsplit(":", 1)[1])
        with redis.Redis(host=HOST, port=port, socket_timeout=2) as sentinel:
            state = sentinel.execute_command("SENTINEL MASTER", self.topology.master)
        return int(state["config-epoch"])

    def stop(self) -> None:
        self.topology.stop()


class ClusterRedis(RedisBackend):
    mode = "cluster"
    partitions = CLUSTER_PARTITIONS

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.failovers = 0
        self.struck: list[EmbeddedServer] = []  # killed or promoted: their shard was struck

    def worker_env(self) -> dict[str, str]:
        # No CHARGER_REDIS_MIN_REPLICAS: a cluster refuses replica waits, so a promoted
        # replica may lack the last batches and the worker must apply them again.
        return {"CHARGER_REDIS_URL": self.cluster.url}

    def client(self) -> RedisClient:
        scheme, _, rest = self.cluster.url.partition("://")
        # Patient: it reads through a primary being replaced (CLUSTERDOWN, dead node).
        return RedisCluster.from_url(
            f"{scheme.removesuffix('+cluster')}://{rest}",
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 20),
        )

    def failover(self) -> Failover:
        cluster = self.cluster
        # Never the first node: the cluster URL names it, and a worker restarted while it
        # is down could not learn the cluster from it. A shard not struck yet goes first,
        # so that two failovers take two thirds of the slots through a promotion.
        primaries = [n for n in cluster.alive() if n is not cluster.nodes[0]]
        primaries = [n for n in primaries if cluster.role(n) == "master"]
        fresh = [n for n in primaries if n not in self.struck]
        victim = fresh[0] if fresh else primaries[self.failovers % len(primaries)]
        self.failovers += 1
        replica = next(n for n in cluster.alive() if _follows(cluster, n, victim))
        self.struck += [victim, replica]
        killed = time.monotonic()
        cluster.kill(victim)
        cluster.wait_promoted(replica, timeout=60)
        promoted = time.monotonic()
        # Its cluster configuration file survived: the node rejoins, learns that its slots
        # have a newer owner, and becomes that owner's replica (its data copied anew).
        victim.restart()
        back = "the killed primary back as a replica"
        cluster.wait(lambda: _follows(cluster, victim, replica) and cluster.healthy(), back, 60)
        done = time.monotonic()
        return Failover(victim.address, replica.address, promoted - killed, done - killed)

    def epoch(self) -> int:
        """The cluster's current epoch: a replica taking over raises it (so does an
        election that failed, which is rare)."""
        epochs = []
        for node in self.cluster.alive():
            info = str(self.cluster.command(node, "CLUSTER", "INFO"))
            line = next(x for x in info.splitlines() if x.startswith("cluster_current_epoch:"))
            epochs.append(int(line.split(":", 1)[1]))
        return max(epochs)

    def stop(self) -> None:
        self.cluster.stop()


def _follows(cluster: Cluster, node: EmbeddedServer, primary: EmbeddedServer) -> bool:
    """`node` is a replica of `primary` with its replication link up."""
    try:
        role = cluster.command(node, "ROLE")
    except redis.RedisError:
        return False
    assert isinstance(role, list)
    return role[0] == "slave" and int(role[2]) == port_of(primary) and role[3] == "connected"


def start_backend(cfg: ChaosConfig) -> RedisBackend:
    """The Redis `cfg` asks for, started and ready."""
    if cfg.redis_mode == "cluster":
        return ClusterRedis(start_cluster())
    if cfg.redis_mode == "sentinel":
        # Nothing persisted: a killed node comes back as a replica and copies the new
        # primary in full, so its own disk would be thrown away anyway.
        return SentinelRedis(start_topology(replicas=1, sentinels=3, timers=SENTINEL_TIMERS))
    return SingleRedis(start_redis(durable=True))
