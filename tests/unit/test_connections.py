"""Security settings: validated combinations, and the arguments every client is built with.

The embedded broker speaks neither SASL nor TLS, so the Kafka side is checked here on the
clients' own configuration (built, not connected): the charging consumer, the producer,
the rate plan reader and the Faust app's clients all get the same security arguments.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from faust.auth import SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from pydantic import ValidationError

from charger.app import create_app
from charger.connections import (
    describe_connections,
    faust_credentials,
    kafka_security,
    redis_client,
    redis_location,
    redis_options,
    redis_url,
    safe_location,
)
from charger.runtime import Runtime
from charger.settings import Settings
from tests.kit.certs import Pki, make_pki

SECRET = "kafka-pw-7f3a"
REDIS_SECRET = "redis-pw-91c2"
# Nothing listens on port 1: a client that tries to connect fails at once.
NOWHERE = "127.0.0.1:1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {"kafka_bootstrap": NOWHERE, "redis_url": "redis://127.0.0.1:1/0"}
    return Settings(**{**base, **kw})


# ---- Kafka ----
def test_plaintext_is_the_default_and_adds_nothing_else() -> None:
    assert kafka_security(settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings()) is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_maps_every_mechanism_with_a_verifying_context(mechanism: str, pki: Pki) -> None:
    s = settings(
        kafka_security_protocol="sasl_ssl",  # case does not matter
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="charger",
        kafka_sasl_password=SECRET,
        kafka_ssl_ca_file=str(pki.ca),
        kafka_ssl_cert_file=str(pki.client_cert),
        kafka_ssl_key_file=str(pki.client_key),
    )
    kw = kafka_security(s)
    ctx = kw.pop("ssl_context")
    assert kw == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "charger",
        "sasl_plain_password": SECRET,
    }
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "charger test CA"),),)]
    creds = faust_credentials(s)
    assert isinstance(creds, SASLCredentials)
    faust_kw = credentials_to_aiokafka_auth(creds)
    assert faust_kw["ssl_context"] is not None
    assert {k: v for k, v in faust_kw.items() if k != "ssl_context"} == kw


def test_sasl_plaintext_has_no_tls_and_ssl_has_no_sasl() -> None:
    s = settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="u",
        kafka_sasl_password=SECRET,
    )
    kw = kafka_security(s)
    assert kw["security_protocol"] == "SASL_PLAINTEXT" and "ssl_context" not in kw
    assert credentials_to_aiokafka_auth(faust_credentials(s))["security_protocol"] == (
        "SASL_PLAINTEXT"
    )
    kw = kafka_security(settings(kafka_security_protocol="SSL"))
    assert kw["security_protocol"] == "SSL" and not any(k.startswith("sasl") for k in kw)
    assert isinstance(faust_credentials(settings(kafka_security_protocol="SSL")), SSLCredentials)


def test_kafka_verification_can_be_turned_off_explicitly() -> None:
    ctx = kafka_security(settings(kafka_security_protocol="SSL", kafka_ssl_verify=False))[
        "ssl_context"
    ]
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs CHARGER_KAFKA_SASL_USERNAME"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_username": "u"},
            "CHARGER_KAFKA_SASL_PASSWORD",
        ),
        ({"kafka_sasl_username": "u"}, "CHARGER_KAFKA_SASL_USERNAME is set but"),
        ({"kafka_sasl_mechanism": "SCRAM-SHA-512"}, "CHARGER_KAFKA_SASL_MECHANISM is set but"),
        ({"kafka_ssl_ca_file": "/ca.pem"}, "CHARGER_KAFKA_SSL_CA_FILE is set but"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_file": "/k.pem"},
            "CHARGER_KAFKA_SSL_KEY_FILE needs CHARGER_KAFKA_SSL_CERT_FILE",
        ),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol"),
    ],
)
def test_inconsistent_kafka_settings_are_refused_clearly(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(**kw)


# ---- Redis ----
def test_redis_auth_from_settings_or_from_the_url() -> None:
    s = settings(redis_username="charger", redis_password=REDIS_SECRET)
    assert redis_options(s) == {"username": "charger", "password": REDIS_SECRET}
    kw = redis_client(s).connection_pool.connection_kwargs
    assert kw["username"] == "charger" and kw["password"] == REDIS_SECRET
    s = settings(redis_url=f"redis://charger:{REDIS_SECRET}@10.0.0.5:6380/2")
    kw = redis_client(s).connection_pool.connection_kwargs
    assert (kw["username"], kw["password"], kw["host"], kw["port"], kw["db"]) == (
        "charger",
        REDIS_SECRET,
        "10.0.0.5",
        6380,
        2,
    )
    assert redis_location(s) == "redis://10.0.0.5:6380/2"


@pytest.mark.parametrize(
    ("url", "without_user", "with_user"),
    [
        (
            f"redis://charger:{REDIS_SECRET}@10.0.0.5:6380/2",
            "redis://10.0.0.5:6380/2",
            "redis://charger@10.0.0.5:6380/2",
        ),
        (f"redis://:{REDIS_SECRET}@cache:6379/0", "redis://cache:6379/0", "redis://cache:6379/0"),
        (
            f"postgresql://ledger:{REDIS_SECRET}@[fd00::5]:6432/charger",
            "postgresql://[fd00::5]:6432/charger",
            "postgresql://ledger@[fd00::5]:6432/charger",
        ),
        (f"redis://:{REDIS_SECRET}@[::1]/0", "redis://[::1]/0", "redis://[::1]/0"),
        ("rediss://cache.internal:7000/0", "rediss://cache.internal:7000/0", None),
        (
            f"postgresql://ledger@db.internal/charger?password={REDIS_SECRET}&sslmode=require",
            "postgresql://db.internal/charger",
            "postgresql://ledger@db.internal/charger",
        ),
        (f"redis://cache/0#{REDIS_SECRET}", "redis://cache/0", None),
        ("", "", None),
    ],
)
def test_a_location_keeps_host_port_and_path_and_never_a_password(
    url: str, without_user: str, with_user: str | None
) -> None:
    with_user = without_user if with_user is None else with_user
    assert safe_location(url, keep_user=False) == without_user
    assert safe_location(url, keep_user=True) == with_user
    assert REDIS_SECRET not in without_user + with_user


def test_redis_tls_by_flag_or_scheme_verifies_by_default(pki: Pki) -> None:
    s = settings(
        redis_tls=True,
        redis_tls_ca_file=str(pki.ca),
        redis_tls_cert_file=str(pki.client_cert),
        redis_tls_key_file=str(pki.client_key),
    )
    assert redis_url(s) == "rediss://127.0.0.1:1/0"
    pool = redis_client(s).connection_pool
    conn: Any = pool.connection_class(**pool.connection_kwargs)
    assert type(conn).__name__ == "SSLConnection"
    ctx = conn.ssl_context
    assert (ctx.ca_certs, ctx.certfile, ctx.keyfile) == (
        str(pki.ca),
        str(pki.client_cert),
        str(pki.client_key),
    )
    assert ctx.cert_reqs == ssl.CERT_REQUIRED and ctx.check_hostname is True
    s = settings(redis_url="rediss://cache.internal:6380/0", redis_tls_verify=False)
    assert s.redis_tls_enabled()
    opts = redis_options(s)
    assert opts["ssl_cert_reqs"] == "none" and opts["ssl_check_hostname"] is False
    # Plain Redis gets no TLS argument at all (the plain connection class refuses them).
    assert not any(k.startswith("ssl") for k in redis_options(settings()))


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        (
            {"redis_url": "redis://:a@h:6379/0", "redis_password": "b"},
            "both in CHARGER_REDIS_URL and CHARGER_REDIS_PASSWORD",
        ),
        ({"redis_url": "redis://u:a@h/0", "redis_username": "v"}, "CHARGER_REDIS_USERNAME"),
        ({"redis_username": "charger"}, "a Redis user needs a password"),
        ({"redis_tls_ca_file": "/ca.pem"}, "CHARGER_REDIS_TLS_CA_FILE is set but Redis TLS is"),
        ({"redis_tls": True, "redis_tls_key_file": "/k"}, "needs CHARGER_REDIS_TLS_CERT_FILE"),
        ({"redis_tls": True, "redis_url": "unix:///run/redis.sock"}, "not unix://"),
    ],
)
def test_inconsistent_redis_settings_are_refused_clearly(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        settings(**kw)


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ValidationError) as err:
        settings(kafka_security_protocol="SASL_SSL", redis_username="charger")
    assert "CHARGER_KAFKA_SASL_USERNAME" in str(err.value)
    assert "a Redis user needs a password" in str(err.value)


def test_describe_names_locations_protocols_and_users_only() -> None:
    s = settings(
        redis_url=f"rediss://charger:{REDIS_SECRET}@cache:6380/0",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="svc",
        kafka_sasl_password=SECRET,
    )
    assert describe_connections(s) == {
        "kafka": {
            "bootstrap": NOWHERE,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "svc",
        },
        "redis": {
            "location": "rediss://cache:6380/0",
            "tls": True,
            "username": "charger",
            "tls_verify": True,
        },
    }


# ---- every worker-side client gets them ----
def _client_security(client: Any) -> dict[str, Any]:
    return {
        "protocol": client._security_protocol,
        "mechanism": client._sasl_mechanism,
        "username": client._sasl_plain_username,
        "password": client._sasl_plain_password,
        "tls": isinstance(client._ssl_context, ssl.SSLContext),
    }


async def test_runtime_builds_every_client_from_the_security_settings(pki: Pki) -> None:
    s = settings(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="charger",
        kafka_sasl_password=SECRET,
        kafka_ssl_ca_file=str(pki.ca),
        redis_username="charger",
        redis_password=REDIS_SECRET,
        redis_tls=True,
        redis_tls_ca_file=str(pki.ca),
    )
    want = {
        "protocol": "SASL_SSL",
        "mechanism": "SCRAM-SHA-512",
        "username": "charger",
        "password": SECRET,
        "tls": True,
    }
    rt = Runtime(s)
    try:
        assert _client_security(rt.producer.client) == want
        assert _client_security(rt.plan_reader.new_consumer()._client) == want
        # The charging consumer is built in start(); nothing listens at NOWHERE.
        with pytest.raises(KafkaConnectionError):
            await rt.worker.start()
        assert rt.worker.consumer is not None
        assert _client_security(rt.worker.consumer._client) == want
        kw = rt.redis.connection_pool.connection_kwargs
        assert (kw["username"], kw["password"], kw["ssl_ca_certs"]) == (
            "charger",
            REDIS_SECRET,
            str(pki.ca),
        )
        app = create_app(s)
        creds = app.conf.broker_credentials
        assert isinstance(creds, SASLCredentials)
        auth = credentials_to_aiokafka_auth(creds)
        assert (auth["security_protocol"], auth["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
        assert (auth["sasl_plain_username"], auth["sasl_plain_password"]) == ("charger", SECRET)
        assert isinstance(auth["ssl_context"], ssl.SSLContext)
    finally:
        await rt.redis.aclose()


def test_missing_ca_file_fails_when_the_client_is_built(tmp_path: Path) -> None:
    s = settings(kafka_security_protocol="SSL", kafka_ssl_ca_file=str(tmp_path / "none.pem"))
    with pytest.raises(FileNotFoundError):
        kafka_security(s)
