"""What the Redis adapter talks to: one Redis server, or a Redis Cluster.

Both are redis-py asyncio clients with the same commands and pipelines; the cluster
client (`CHARGER_REDIS_CLUSTER`, see `charger.connections`) sends every command to the
primary serving its key's hash slot:

- every key of the worker carries its slot's hash tag ``{tN}`` (`protocol/keys.py`), so
  each script call, and each command of the batch read, the relay (XRANGE, XDEL), the
  sampler (XLEN, ZCARD, HGETALL) and the watermark check (HGET), has one home node. A
  pipeline is split by node and the parts run side by side; EVALSHA is routed by the
  keys it declares (apply.lua and read.lua declare one: the slot's watermark key);
- a node that no longer serves a slot answers MOVED (or ASK while the slot migrates):
  redis-py updates its slot map and sends that command again to the right node;
- a dead node (ConnectionError) or a cluster without a primary for some slots
  (CLUSTERDOWN, while a replica is being promoted) makes redis-py read the topology again
  and retry a few times; then the error reaches the batch loop, which backs off and runs
  the batch again (apply.lua skips what was applied);
- commands without a key go to one node of redis-py's choosing, which says nothing of
  the others: `ping` asks every primary.
"""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline, RedisCluster
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

RedisClient: TypeAlias = Redis | RedisCluster
RedisPipeline: TypeAlias = Pipeline | ClusterPipeline

# Errors a Redis that is down, starting, loading or failing over answers with: waiting helps.
_NOT_THERE_YET = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ClusterDownError,
    TryAgainError,
    # A cluster none of whose known nodes answers, or whose slots are not all served yet.
    RedisClusterException,
)


async def ping(client: RedisClient) -> None:
    """Every primary answers (one server: that server); raises otherwise."""
    if isinstance(client, RedisCluster):
        await client.ping(target_nodes=RedisCluster.PRIMARIES)
    else:
        await client.ping()


def not_there_yet(error: BaseException) -> bool:
    """True when `error` says Redis is unreachable or not ready yet, so that waiting may
    help; False when Redis refuses us (wrong credentials, a command not granted, no
    cluster support), also when the cluster client wraps that in an error of its own."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, AuthenticationError):
            return False
        if isinstance(cause, ResponseError) and not isinstance(cause, _NOT_THERE_YET):
            return False
        cause = cause.__cause__ or cause.__context__
    return isinstance(error, _NOT_THERE_YET)
