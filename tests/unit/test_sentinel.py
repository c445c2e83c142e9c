"""Redis through Sentinel and the durability settings: validation, the client built from
them, and what may be said about them (never a password)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydantic import ValidationError
from redis.asyncio.sentinel import SentinelConnectionPool

from charger.connections import close_redis, describe_connections, redis_client, redis_location
from charger.runtime import Runtime
from charger.settings import Settings, sentinel_addresses

NOWHERE = "127.0.0.1:1"
DATA_PW = "data-Pa55-3e1f"
SENTINEL_PW = "sentinel-Pa55-77ab"
SENTINELS = "10.0.0.1:26379, 10.0.0.2:26379,[fd00::3]:26380"


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"kafka_bootstrap": NOWHERE, "redis_url": "redis://127.0.0.1:1/0"}
    return Settings(**{**base, **kw})


def through_sentinels(**kw: Any) -> Settings:
    return settings(redis_url="", redis_sentinels=SENTINELS, redis_sentinel_master="charger", **kw)


def test_sentinel_addresses_are_host_port_pairs_ipv6_in_brackets() -> None:
    assert sentinel_addresses(SENTINELS) == [
        ("10.0.0.1", 26379),
        ("10.0.0.2", 26379),
        ("fd00::3", 26380),
    ]
    assert through_sentinels().sentinels() == sentinel_addresses(SENTINELS)
    assert settings().sentinels() == []


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"redis_url": "", "redis_sentinels": "h:26379"}, "CHARGER_REDIS_SENTINEL_MASTER"),
        ({"redis_sentinel_master": "charger"}, "needs both CHARGER_REDIS_SENTINELS"),
        (
            {"redis_sentinels": "h:26379", "redis_sentinel_master": "m"},
            "CHARGER_REDIS_URL and CHARGER_REDIS_SENTINELS both",
        ),
        (
            {"redis_url": "", "redis_sentinels": "h", "redis_sentinel_master": "m"},
            "'h' is not host:port",
        ),
        (
            {"redis_url": "", "redis_sentinels": "h:0", "redis_sentinel_master": "m"},
            "'h:0' is not host:port",
        ),
        (
            {"redis_url": "", "redis_sentinels": " , ", "redis_sentinel_master": "m"},
            "names no Sentinel",
        ),
        ({"redis_sentinel_password": "x"}, "CHARGER_REDIS_SENTINEL_PASSWORD is set but no"),
        (
            {
                "redis_url": "",
                "redis_sentinels": "h:1",
                "redis_sentinel_master": "m",
                "redis_sentinel_username": "watcher",
            },
            "a Sentinel user needs a password",
        ),
        ({"redis_wait_timeout_ms": 300}, "CHARGER_REDIS_WAIT_TIMEOUT_MS is set but nothing waits"),
        (
            {"redis_min_replicas": 1, "redis_wait_timeout_ms": 5000},
            "must be below CHARGER_REDIS_TIMEOUT_MS",
        ),
        ({"redis_min_replicas": -1}, "redis_min_replicas"),
    ],
)
def test_inconsistent_sentinel_and_durability_settings_are_refused(
    kw: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(**kw)


def test_consistent_settings_pass() -> None:
    s = through_sentinels(redis_min_replicas=1, redis_wait_aof=True, redis_wait_timeout_ms=200)
    assert s.redis_given() and s.waits_for_durability()
    assert settings(redis_wait_aof=True).waits_for_durability()  # the primary's fsync alone
    assert not settings().waits_for_durability()
    # Dumped and read back (as tools pass settings on), the defaults raise nothing.
    Settings(**{**settings().model_dump(), "redis_url": "redis://127.0.0.1:1/0"})


def test_the_client_asks_the_sentinels_with_the_nodes_auth_and_tls(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("unused: nothing connects")
    s = through_sentinels(
        redis_username="charger",
        redis_password=DATA_PW,
        redis_sentinel_username="watcher",
        redis_sentinel_password=SENTINEL_PW,
        redis_tls=True,
        redis_tls_ca_file=str(ca),
    )
    client = redis_client(s, socket_timeout=2.0, socket_connect_timeout=2.0)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "charger" and pool.is_master
    assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    node = pool.connection_kwargs
    assert (node["username"], node["password"], node["ssl_ca_certs"]) == (
        "charger",
        DATA_PW,
        str(ca),
    )
    sentinels = pool.sentinel_manager.sentinels
    assert len(sentinels) == 3
    for sentinel in sentinels:
        kw = sentinel.connection_pool.connection_kwargs
        assert (kw["username"], kw["password"]) == ("watcher", SENTINEL_PW)
        assert kw["ssl_ca_certs"] == str(ca) and kw["socket_timeout"] == 2.0
        assert sentinel.connection_pool.connection_class.__name__ == "SSLConnection"
    # Plain Sentinels get no TLS argument (the plain connection class refuses them).
    plain = redis_client(through_sentinels()).connection_pool
    assert isinstance(plain, SentinelConnectionPool)
    assert plain.connection_class.__name__ == "SentinelManagedConnection"
    for sentinel in plain.sentinel_manager.sentinels:
        assert not any(k.startswith("ssl") for k in sentinel.connection_pool.connection_kwargs)


def test_where_redis_is_is_said_without_a_password() -> None:
    s = through_sentinels(
        redis_username="charger",
        redis_password=DATA_PW,
        redis_sentinel_username="watcher",
        redis_sentinel_password=SENTINEL_PW,
        redis_min_replicas=1,
    )
    location = "sentinel://10.0.0.1:26379,10.0.0.2:26379,[fd00::3]:26380/charger"
    assert redis_location(s) == location
    described = describe_connections(s)["redis"]
    assert described == {
        "location": location,
        "tls": False,
        "username": "charger",
        "sentinel_username": "watcher",
        "min_replicas": 1,
        "wait_aof": False,
    }
    client = redis_client(s)
    pool: Any = client.connection_pool
    surfaces = {
        "settings": f"{s!r} {s} {s.model_dump()} {s.model_dump_json()}",
        "describe": orjson.dumps(describe_connections(s)).decode(),
        "client": f"{client!r} {pool!r} {pool.sentinel_manager!r}",
    }
    for where, text in surfaces.items():
        for secret in (DATA_PW, SENTINEL_PW):
            assert secret not in text, f"{where} shows a secret: {text}"


async def test_the_runtime_takes_sentinels_instead_of_a_url_and_closes_them() -> None:
    rt = Runtime(through_sentinels())
    pool = rt.redis.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    await close_redis(rt.redis)
    with pytest.raises(ValueError, match="CHARGER_REDIS_SENTINELS"):
        Runtime(settings(redis_url=""))
