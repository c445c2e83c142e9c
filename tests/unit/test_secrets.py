"""Secrets set in the settings show up on no output surface.

Real values are set for every secret (Redis password in the URL and on its own, Kafka
SASL password), then every place the worker writes to is searched for them: the settings'
repr, str and dumps, validation errors, the startup log line, the log line and exception
of a failed connection, and the /health and /ready bodies.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from charger.app import ChargingService, create_app
from charger.connections import (
    describe_connections,
    faust_credentials,
    kafka_security,
    redis_client,
)
from charger.logs import JsonFormatter
from charger.metrics import Metrics
from charger.runtime import Runtime
from charger.settings import Settings

REDIS_PW = "rEd1s-Pa55w0rd"
URL_PW = "url-pw@with-at"
SASL_PW = "sAsl-Pa55w0rd"
SECRETS = (REDIS_PW, URL_PW, SASL_PW)
NOWHERE = "127.0.0.1:1"  # nothing listens there: connections fail at once


def secured(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "kafka_bootstrap": NOWHERE,
        "redis_url": "redis://127.0.0.1:1/0",
        "redis_username": "charger",
        "redis_password": REDIS_PW,
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "SCRAM-SHA-256",
        "kafka_sasl_username": "charger",
        "kafka_sasl_password": SASL_PW,
        "redis_startup_wait_s": 0,
    }
    return Settings(**{**base, **kw})


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} shows a secret: {text}"
    # Nor a recognisable part of one (a mask cut in the middle of the password).
    assert "with-at" not in text, f"{where} shows part of a secret: {text}"


class Capture(logging.Handler):
    """Formats every record the way the worker writes it to stdout."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> Any:
    handler = Capture()
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old)


def test_settings_never_print_a_secret() -> None:
    for s in (
        secured(),
        secured(redis_username="", redis_password="", redis_url=f"redis://u:{URL_PW}@h:6379/0"),
    ):
        assert s.redis_password.get_secret_value() or URL_PW in s.redis_dsn()
        for where, text in {
            "repr": repr(s),
            "str": str(s),
            "model_dump": str(s.model_dump()),
            "model_dump json mode": orjson.dumps(s.model_dump(mode="json")).decode(),
            "model_dump_json": s.model_dump_json(),
            "describe": orjson.dumps(describe_connections(s)).decode(),
            "faust credentials": repr(faust_credentials(s)),
        }.items():
            assert_clean(text, where)


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        (
            {"redis_url": f"redis://u:{URL_PW}@h:6379/0", "redis_password": REDIS_PW},
            "both in CHARGER_REDIS_URL",
        ),
        # A secret pasted into the wrong variable: the error names the field, not the value.
        ({"redis_tls": REDIS_PW}, "redis_tls"),
        ({"kafka_sasl_mechanism": SASL_PW}, "kafka_sasl_mechanism"),
        ({"partitions": URL_PW}, "partitions"),
    ],
)
def test_validation_errors_do_not_echo_the_input(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(**kw)
    # What a log or a crash prints: str, repr and the traceback's last line.
    text = f"{err.value}\n{err.value!r}\n{err.value.errors(include_input=False)}"
    assert says in text
    assert_clean(text, "validation error")


def test_log_lines_mask_secrets_whatever_carries_them() -> None:
    s = secured()
    url = f"redis://charger:{URL_PW}@cache:6379/0"
    fmt = JsonFormatter()
    records = [
        ("settings %s", (s,), {}),
        ("kwargs %s", (kafka_security(s),), {}),
        ("connecting to %s", (url,), {}),
        ("client %r", (redis_client(s),), {}),
        ("options", (), {"redis_options": {"password": REDIS_PW}, "url": url}),
        ("sasl", (), {"sasl_plain_password": SASL_PW, "settings": s}),
        ("env", (), {"env": f"CHARGER_REDIS_PASSWORD={REDIS_PW} CHARGER_REDIS_URL={url}"}),
    ]
    for msg, args, extra in records:
        rec = logging.LogRecord("charger.test", logging.INFO, __file__, 1, msg, args or None, None)
        for k, v in extra.items():
            setattr(rec, k, v)
        assert_clean(fmt.format(rec), msg)


async def test_startup_and_failed_connections_say_nothing_secret(captured: Capture) -> None:
    svc = ChargingService(secured(), Metrics(CollectorRegistry()))
    with pytest.raises(Exception) as err:  # Redis refuses: nothing listens at NOWHERE
        await svc.on_start()
    logging.getLogger("charger.test").error("start failed", exc_info=err.value)
    assert any("charging service starting" in line for line in captured.lines)
    start = next(orjson.loads(x) for x in captured.lines if "charging service starting" in x)
    assert start["connections"]["kafka"]["sasl_username"] == "charger"
    for line in captured.lines:
        assert_clean(line, "log line")
    assert_clean(f"{err.value!s} {err.value!r}", "Redis connection error")

    producer = AIOKafkaProducer(bootstrap_servers=NOWHERE, **kafka_security(secured()))
    try:
        with pytest.raises(Exception) as kafka_err:
            await producer.start()
    finally:
        await producer.stop()
    assert_clean(f"{kafka_err.value!s} {kafka_err.value!r}", "Kafka connection error")
    for line in captured.lines:
        assert_clean(line, "log line")


async def test_health_and_ready_bodies_hold_no_secret() -> None:
    s = secured()
    svc = ChargingService(s, Metrics(CollectorRegistry()))
    assert_clean(orjson.dumps(svc.health()[1]).decode(), "/health while starting")
    rt = Runtime(s)
    svc.runtime = rt
    svc._charging = True
    try:
        ok, body = await svc.ready()
        assert not ok and body["checks"]["redis"].startswith("error")
        assert_clean(orjson.dumps(body).decode(), "/ready")
        assert_clean(orjson.dumps(svc.health()[1]).decode(), "/health")
    finally:
        await rt.redis.aclose()
    # The web app's configuration holds the credentials object; its repr masks them.
    assert_clean(repr(create_app(s).conf.broker_credentials), "Faust credentials")


def test_an_uncaught_exception_is_formatted_without_secrets() -> None:
    s = secured()
    try:
        raise ConnectionError(f"cannot reach redis://charger:{URL_PW}@cache:6379/0 with {s}")
    except ConnectionError:
        rec = logging.LogRecord("charger.test", logging.ERROR, __file__, 1, "boom", None, None)
        rec.exc_info = sys.exc_info()
    assert_clean(JsonFormatter().format(rec), "exception")
