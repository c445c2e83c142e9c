"""Clients from settings: Redis with AUTH and TLS, and the security arguments of Kafka clients.

Every worker-side client is built from here, so a secured cluster needs its settings once:

- `redis_client` — redis-py asyncio with the ACL user and password (from
  ``CHARGER_REDIS_USERNAME`` / ``CHARGER_REDIS_PASSWORD`` or the URL) and TLS
  (``CHARGER_REDIS_TLS`` or a ``rediss://`` URL; CA, client certificate and key files;
  certificate and host name verified unless ``CHARGER_REDIS_TLS_VERIFY=false``); with
  ``CHARGER_REDIS_SENTINELS`` a client of the primary the Sentinels name (see
  `charger.sentinel`), closed with `close_redis`; a
  cluster-aware client with the same settings for a Redis Cluster
  (``CHARGER_REDIS_CLUSTER`` or a ``redis+cluster://`` / ``rediss+cluster://`` URL);
- `kafka_security` — the keyword arguments every aiokafka client takes
  (``security_protocol``, ``sasl_mechanism``, ``sasl_plain_username`` /
  ``sasl_plain_password``, ``ssl_context``);
- `faust_credentials` — the same for Faust's own consumer and producer.

`describe_connections` is what the worker may say about its connections in a log line: locations,
protocols and user names, never a password; `safe_location` is the one way a URL reaches a log
(the Redis and the PostgreSQL locations alike).
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from aiokafka.helpers import create_ssl_context
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from charger.sentinel import close_sentinel, sentinel_client, sentinel_location
from charger.settings import CLUSTER_SCHEMES, Settings
from charger.store.client import RedisClient

if TYPE_CHECKING:
    from faust.auth import Credentials

__all__ = [
    "close_redis",
    "describe_connections",
    "faust_credentials",
    "kafka_security",
    "kafka_ssl_context",
    "redis_client",
    "redis_cluster_client",
    "redis_location",
    "redis_options",
    "redis_url",
    "safe_location",
]


def redis_url(s: Settings) -> str:
    """The Redis URL to connect to: ``rediss://`` whenever TLS is on (a cluster URL loses
    its ``+cluster``: redis-py knows only the plain schemes)."""
    url = s.redis_dsn()
    if url.lower().startswith(CLUSTER_SCHEMES):
        scheme, _, rest = url.partition("://")
        url = f"{scheme[: -len('+cluster')]}://{rest}"
    if s.redis_tls_enabled() and url.lower().startswith("redis://"):
        return "rediss://" + url[len("redis://") :]
    return url


def redis_options(s: Settings) -> dict[str, Any]:
    """Keyword arguments for ``Redis.from_url`` beyond the URL: AUTH and TLS."""
    opts: dict[str, Any] = {}
    if s.redis_username:
        opts["username"] = s.redis_username
    if s.redis_password.get_secret_value():
        opts["password"] = s.redis_password.get_secret_value()
    if s.redis_tls_enabled():
        opts["ssl_cert_reqs"] = "required" if s.redis_tls_verify else "none"
        opts["ssl_check_hostname"] = s.redis_tls_verify
        if s.redis_tls_ca_file:
            opts["ssl_ca_certs"] = s.redis_tls_ca_file
        if s.redis_tls_cert_file:
            opts["ssl_certfile"] = s.redis_tls_cert_file
        if s.redis_tls_key_file:
            opts["ssl_keyfile"] = s.redis_tls_key_file
    return opts


def redis_client(s: Settings, **extra: Any) -> RedisClient:
    """A redis-py asyncio client for `s` (nothing connects until the first command).

    With Sentinels it connects to whichever node they name the primary, and after a
    failover to the new one (close it with `close_redis`: the Sentinel clients too)."""
    if s.redis_cluster_enabled():
        return redis_cluster_client(s, **extra)
    if s.sentinels():
        return sentinel_client(s, redis_options(s), extra)
    return Redis.from_url(redis_url(s), **redis_options(s), **extra)


def redis_cluster_client(s: Settings, **extra: Any) -> RedisCluster:
    """A cluster-aware client: the URL names one node, the others are learned from it
    (CLUSTER SLOTS) and again whenever a node fails or a slot moves. Same AUTH and TLS
    for every node. `extra`'s retry is the cluster client's: how often a command is sent
    again after a connection error or CLUSTERDOWN, once the topology was read anew."""
    return RedisCluster.from_url(redis_url(s), **redis_options(s), **extra)


async def close_redis(client: RedisClient) -> None:
    """Close a client of `redis_client`, and its Sentinel clients if it has any."""
    await client.aclose()
    if isinstance(client, Redis):
        await close_sentinel(client)


def safe_location(url: str, *, keep_user: bool) -> str:
    """`url` fit for logs and status pages: scheme, host, port and path, and the user name
    when `keep_user`; never the password, nor the query or fragment (libpq options such as
    ``password=`` may sit there). An empty URL stays empty."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address keeps its brackets
        host = f"[{host}]"
    user = f"{parts.username}@" if keep_user and parts.username else ""
    netloc = f"{user}{host}:{parts.port}" if parts.port else f"{user}{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redis_location(s: Settings) -> str:
    """The Redis URL without user or password, fit for logs and status pages."""
    if s.sentinels():
        return sentinel_location(s)
    return safe_location(redis_url(s), keep_user=False)


def kafka_ssl_context(s: Settings) -> ssl.SSLContext | None:
    """The TLS context of the Kafka clients, or None when the protocol has no TLS."""
    if not s.kafka_security_protocol.endswith("SSL"):
        return None
    ctx: ssl.SSLContext = create_ssl_context(
        cafile=s.kafka_ssl_ca_file or None,
        certfile=s.kafka_ssl_cert_file or None,
        keyfile=s.kafka_ssl_key_file or None,
    )
    if not s.kafka_ssl_verify:
        # The host name check must go first: the ssl module refuses CERT_NONE while it is on.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def kafka_security(s: Settings) -> dict[str, Any]:
    """Security keyword arguments for AIOKafkaConsumer, AIOKafkaProducer and the admin client."""
    kwargs: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    ctx = kafka_ssl_context(s)
    if ctx is not None:
        kwargs["ssl_context"] = ctx
    if s.kafka_security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = s.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = s.kafka_sasl_username
        kwargs["sasl_plain_password"] = s.kafka_sasl_password.get_secret_value()
    return kwargs


def faust_credentials(s: Settings) -> Credentials | None:
    """``broker_credentials`` for the Faust app, so its own clients match the worker's."""
    # Imported here: the tools that build clients from this module start without Faust.
    from faust.auth import SASLCredentials, SSLCredentials

    ctx = kafka_ssl_context(s)
    if s.kafka_security_protocol.startswith("SASL_"):
        return SASLCredentials(
            username=s.kafka_sasl_username,
            password=s.kafka_sasl_password.get_secret_value(),
            ssl_context=ctx,
            mechanism=s.kafka_sasl_mechanism,
        )
    if ctx is not None:
        return SSLCredentials(ctx)
    return None


def describe_connections(s: Settings) -> dict[str, Any]:
    """The connections in words for the startup log: no password, ever."""
    kafka: dict[str, Any] = {
        "bootstrap": s.kafka_bootstrap,
        "security_protocol": s.kafka_security_protocol,
    }
    if s.kafka_security_protocol.startswith("SASL_"):
        kafka["sasl_mechanism"] = s.kafka_sasl_mechanism
        kafka["sasl_username"] = s.kafka_sasl_username
    redis: dict[str, Any] = {"location": redis_location(s), "tls": s.redis_tls_enabled()}
    user = s.redis_username or urlsplit(s.redis_dsn()).username or ""
    if user:
        redis["username"] = user
    if s.redis_sentinel_username:
        redis["sentinel_username"] = s.redis_sentinel_username
    if s.waits_for_durability():
        redis["min_replicas"] = s.redis_min_replicas
        redis["wait_aof"] = s.redis_wait_aof
    if s.redis_tls_enabled():
        redis["tls_verify"] = s.redis_tls_verify
    if s.redis_cluster_enabled():
        redis["cluster"] = True
    return {"kafka": kafka, "redis": redis}
