"""Redis clients for a test's URL, and where the slots of a run live on a Redis Cluster.

A ``redis+cluster://`` URL (as the worker takes it) names a cluster: the test's own client
is then cluster-aware too, so it reads balances and outboxes wherever they live.
"""

from __future__ import annotations

from collections import Counter

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from charger.protocol.keys import Keys
from charger.settings import CLUSTER_SCHEMES
from charger_tools.cluster import Cluster, tag_slot
from charger_tools.embedded import EmbeddedServer


def redis_for(url: str) -> Redis | RedisCluster:
    """A client of `url`: cluster-aware for a cluster URL."""
    if url.lower().startswith(CLUSTER_SCHEMES):
        scheme, _, rest = url.partition("://")
        # Patient: the failover tests read through a primary being replaced.
        return RedisCluster.from_url(
            f"{scheme.removesuffix('+cluster')}://{rest}",
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 20),
        )
    # One reconnect on a dropped connection: the fault tests restart Redis under it.
    return Redis.from_url(url, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])


def tag_of(keys: Keys, slot: int) -> str:
    """The hash tag of charger's slot `slot`, without its braces (``t5``)."""
    return keys.tag(slot).rsplit("{", 1)[1].rstrip("}")


def owners(cluster: Cluster, keys: Keys) -> dict[int, EmbeddedServer]:
    """The primary serving each of charger's slots (hash tags) right now."""
    return {slot: cluster.owner(tag_slot(tag_of(keys, slot))) for slot in range(keys.slots)}


def spread(cluster: Cluster, keys: Keys) -> dict[str, int]:
    """How many of charger's slots each primary serves, by the primary's address."""
    return dict(sorted(Counter(node.address for node in owners(cluster, keys).values()).items()))
