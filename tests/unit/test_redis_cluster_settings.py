"""Redis Cluster settings: the flag or the URL scheme, the client they build, and how the
worker tells a cluster that is not there yet from one that refuses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.exceptions import (
    AuthenticationError,
    ClusterDownError,
    NoPermissionError,
    RedisClusterException,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from charger.connections import describe_connections, redis_client, redis_location, redis_url
from charger.faults import REDIS, dependency_of
from charger.settings import Settings
from charger.store.client import not_there_yet
from tests.kit.certs import Pki, make_pki

SECRET = "cluster-pw-5d1e"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings(**kw: Any) -> Settings:
    return Settings(**{"kafka_bootstrap": "127.0.0.1:1", **kw})


@pytest.mark.parametrize(
    "kw",
    [
        {"redis_url": "redis+cluster://10.0.0.5:7000/0"},
        {"redis_url": "redis://10.0.0.5:7000/0", "redis_cluster": True},
        {"redis_url": "redis://10.0.0.5:7000", "redis_cluster": "true"},
    ],
)
def test_the_flag_or_the_scheme_builds_a_cluster_client(kw: dict[str, Any]) -> None:
    s = settings(**kw)
    assert s.redis_cluster_enabled() and not s.redis_tls_enabled()
    client = redis_client(s)
    assert isinstance(client, RedisCluster)
    # The nodes manager's copy: `RedisCluster.startup_nodes` only exists since redis-py 6.
    nodes = client.nodes_manager.startup_nodes.values()
    assert [(n.host, n.port) for n in nodes] == [("10.0.0.5", 7000)]
    assert redis_url(s).startswith("redis://10.0.0.5:7000")
    assert describe_connections(s)["redis"]["cluster"] is True


def test_a_plain_url_stays_one_server() -> None:
    s = settings(redis_url="redis://10.0.0.5:6379/0")
    assert not s.redis_cluster_enabled()
    assert isinstance(redis_client(s), Redis)
    assert "cluster" not in describe_connections(s)["redis"]


def test_every_node_gets_the_same_auth_and_tls(pki: Pki) -> None:
    s = settings(
        redis_url=f"rediss+cluster://charger:{SECRET}@cache.internal:7000/0",
        redis_tls_ca_file=str(pki.ca),
        redis_tls_cert_file=str(pki.client_cert),
        redis_tls_key_file=str(pki.client_key),
    )
    assert s.redis_tls_enabled() and s.redis_cluster_enabled()
    client = redis_client(s)
    assert isinstance(client, RedisCluster)
    kw = client.connection_kwargs
    assert (kw["username"], kw["password"]) == ("charger", SECRET)
    assert kw["connection_class"] is SSLConnection
    assert (kw["ssl_ca_certs"], kw["ssl_certfile"], kw["ssl_keyfile"]) == (
        str(pki.ca),
        str(pki.client_cert),
        str(pki.client_key),
    )
    assert kw["ssl_cert_reqs"] == "required" and kw["ssl_check_hostname"] is True
    assert redis_location(s) == "rediss://cache.internal:7000/0"
    # The flag with TLS on its own: the same.
    flagged = settings(redis_url="redis://h:7000/0", redis_cluster=True, redis_tls=True)
    assert redis_url(flagged) == "rediss://h:7000/0"
    assert redis_client(flagged).connection_kwargs["connection_class"] is SSLConnection


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"redis_url": "unix:///run/redis.sock", "redis_cluster": True}, "not unix://"),
        ({"redis_url": "redis+cluster://h:7000/2"}, "database 0 only"),
        (
            {"redis_cluster": True, "redis_sentinels": "s1:26379", "redis_sentinel_master": "m"},
            "exclude each other",
        ),
        ({"redis_url": "redis+cluster://h:7000", "redis_min_replicas": 1}, "not supported on"),
        ({"redis_url": "redis+cluster://h:7000", "redis_wait_aof": True}, "not supported on"),
    ],
)
def test_what_a_cluster_cannot_do_is_refused(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(**kw)


def wrapped(outer: Exception, inner: Exception) -> Exception:
    """`outer` raised from `inner`, as the cluster client wraps what its nodes answered."""
    try:
        raise outer from inner
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("error", "waiting_helps"),
    [
        (RedisConnectionError("refused"), True),
        (ClusterDownError("CLUSTERDOWN The cluster is down"), True),
        (wrapped(RedisClusterException("cannot be connected"), RedisConnectionError()), True),
        (RedisClusterException("All slots are not covered"), True),
        (AuthenticationError("WRONGPASS"), False),
        (wrapped(RedisClusterException("cannot be connected"), AuthenticationError()), False),
        (wrapped(RedisClusterException("not enabled"), NoPermissionError("NOPERM")), False),
        (ValueError("a bug"), False),
    ],
)
def test_waiting_at_start_only_for_a_redis_that_is_not_there_yet(
    error: Exception, waiting_helps: bool
) -> None:
    assert not_there_yet(error) is waiting_helps


def test_the_cluster_clients_own_errors_count_as_redis() -> None:
    assert dependency_of(RedisClusterException("Redis Cluster cannot be connected")) == REDIS


def test_no_module_builds_a_redis_client_but_connections() -> None:
    # One place builds clients (README, Security): a cluster client too.
    src = Path(__file__).resolve().parents[2] / "src" / "charger"
    builders = [
        str(path.relative_to(src))
        for path in src.rglob("*.py")
        if "RedisCluster.from_url(" in path.read_text() or "Redis.from_url(" in path.read_text()
    ]
    assert builders == ["connections.py"]
