"""JSON logs: one object per line, context fields, exceptions, and never a secret."""

from __future__ import annotations

import logging
import logging.config
import re
import sys
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from charger.logs import JsonFormatter, logging_config, redact
from charger.settings import Settings

SECRET = "hunter2-s3cr3t"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def record(msg: str, *args: Any, level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("charger.test", level, __file__, 1, msg, args or None, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def fmt(rec: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    doc = orjson.loads(line)
    assert isinstance(doc, dict)
    return doc


def test_a_line_has_time_level_logger_message_and_the_context_passed() -> None:
    doc = fmt(record("charged %d events", 3, event_id="ev-1", account="acct-7", slot=4))
    assert TIME.match(doc.pop("time"))
    assert doc == {
        "level": "info",
        "logger": "charger.test",
        "message": "charged 3 events",
        "event_id": "ev-1",
        "account": "acct-7",
        "slot": 4,
    }


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise RuntimeError("redis went away")
    except RuntimeError:
        rec = record("batch failed", level=logging.ERROR)
        rec.exc_info = sys.exc_info()
    doc = fmt(rec)
    assert doc["level"] == "error"
    assert "RuntimeError: redis went away" in doc["exc"]


def test_secrets_never_reach_the_output() -> None:
    url = f"redis://default:{SECRET}@redis.internal:6379/0"
    settings = Settings(kafka_bootstrap="k:9092", redis_url=url)  # type: ignore[arg-type]
    lines = [
        JsonFormatter().format(r)
        for r in (
            record("connecting to %s", url),
            record("settings", settings=settings),
            record("dsn", redis_url=settings.redis_url),
            record("raw", redis_url=url, password=SECRET, nested={"token": SECRET, "u": url}),
            record("bytes", value=url.encode()),
            record("list", urls=[url, url]),
        )
    ]
    for line in lines:
        assert SECRET not in line, line
        orjson.loads(line)
    assert "redis.internal:6379/0" in lines[0]  # only the password is masked


def test_redact_masks_only_url_passwords() -> None:
    assert (
        redact("redis://:pw@h:6379/0 and kafka://h:9092")
        == "redis://:***@h:6379/0 and kafka://h:9092"
    )
    assert redact("rediss://user:p%40ss@h/1") == "rediss://user:***@h/1"
    assert redact("plain text: with colons @ and at") == "plain text: with colons @ and at"
    assert str(SecretStr(SECRET)) != SECRET


@pytest.fixture
def configured() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logging.config.dictConfig(logging_config("debug"))
    try:
        yield
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_the_worker_config_writes_json_lines_to_stdout(
    configured: None, capfd: pytest.CaptureFixture[str]
) -> None:
    log = logging.getLogger("charger.batch")
    log.info("record refused", extra={"event_id": "ev-9", "account": "a-1", "reason": "conflict"})
    log.debug("tick", extra={"sessions": 3})
    out, err = capfd.readouterr()
    docs = [orjson.loads(line) for line in out.splitlines()]
    assert [(d["level"], d["message"]) for d in docs] == [
        ("info", "record refused"),
        ("debug", "tick"),
    ]
    assert docs[0]["event_id"] == "ev-9" and docs[0]["account"] == "a-1"
    assert err == ""
