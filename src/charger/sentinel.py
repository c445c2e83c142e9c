"""Redis through Sentinel: a client of whichever node the Sentinels name the primary.

redis-py's `SentinelConnectionPool` asks the Sentinels for the primary's address each
time it opens a connection, and drops its idle connections when the address changed.
After a failover:

- a pooled connection to the dead primary fails (ConnectionError); the client's own
  retry reconnects, which asks the Sentinels again;
- while the Sentinels still vote, they name no healthy primary: `MasterNotFoundError`, a
  ConnectionError, reaches the batch loop and the ticker, which back off and try again
  (as for any Redis outage), so the worker goes on as soon as the replica is promoted;
- a connection to an old primary that came back as a replica answers writes with
  READONLY; the pool turns that into a ConnectionError and a reconnect to the new one.

The data nodes take the worker's AUTH and TLS settings. The Sentinels take the same TLS
settings (a deployment with TLS runs its Sentinels with it too) and their own user and
password (``CHARGER_REDIS_SENTINEL_USERNAME`` / ``_PASSWORD``): Sentinels keep users of
their own, apart from the data nodes'.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from charger.settings import Settings

# Options of the data nodes' connections that the Sentinel connections share.
_SHARED = ("socket_timeout", "socket_connect_timeout")


def sentinel_options(
    s: Settings, node_options: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    """Keyword arguments of the connections to the Sentinels themselves."""
    opts: dict[str, Any] = {k: v for k, v in extra.items() if k in _SHARED}
    opts.update({k: v for k, v in node_options.items() if k.startswith("ssl")})
    if s.redis_sentinel_username:
        opts["username"] = s.redis_sentinel_username
    if s.redis_sentinel_password.get_secret_value():
        opts["password"] = s.redis_sentinel_password.get_secret_value()
    return opts


def sentinel_client(s: Settings, node_options: dict[str, Any], extra: dict[str, Any]) -> Redis:
    """A client of the primary of ``CHARGER_REDIS_SENTINEL_MASTER`` (nothing connects yet)."""
    nodes = dict(node_options)
    if s.redis_tls_enabled():
        nodes["ssl"] = True  # the pool picks its TLS connection class by this flag
    sentinels = sentinel_options(s, nodes, extra)
    sentinel = Sentinel(s.sentinels(), sentinel_kwargs=sentinels, **nodes, **extra)
    client: Redis = sentinel.master_for(s.redis_sentinel_master.strip())
    return client


async def close_sentinel(client: Redis) -> None:
    """Close the Sentinel clients behind `client`, if it was made by `sentinel_client`."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        # One client per Sentinel, closed one by one: `Sentinel.aclose()` only exists since
        # redis-py 8.1, and the floor is older.
        sentinels: list[Redis] = pool.sentinel_manager.sentinels
        # Every one is closed even if another fails; the first failure is raised after.
        results = await asyncio.gather(
            *(sentinel.aclose() for sentinel in sentinels), return_exceptions=True
        )
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure


def sentinel_location(s: Settings) -> str:
    """Where the Sentinels are and which master they watch: no user, no password."""
    hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in s.sentinels())
    return f"sentinel://{hosts}/{s.redis_sentinel_master.strip()}"
