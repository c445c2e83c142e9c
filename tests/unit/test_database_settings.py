"""The database settings: CHARGER_DATABASE_URL is a secret on every surface, the location a
log may name, connection options, one-line errors, and the sink's failures: the dependency
they came from, their count and their log lines."""

from __future__ import annotations

import logging

import orjson
import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from charger.faults import dependency_of
from charger.logs import JsonFormatter
from charger.metrics import SinkMetrics
from charger.operator_errors import explain
from charger.postgres.connect import connection_options, database_location
from charger.postgres.migrate import SchemaError, migrations
from charger.settings import Settings
from charger.sink.loop import LedgerSink

PASSWORD = "pg-Secret-7c1e"
URL = f"postgresql://ledger:{PASSWORD}@db.internal:6432/charger?sslmode=verify-full"


def settings(**kw: object) -> Settings:
    return Settings(database_url=URL, **kw)  # type: ignore[arg-type]


def test_the_database_url_never_prints() -> None:
    s = settings()
    assert s.database_dsn() == URL
    for text in (repr(s), str(s), str(s.model_dump()), s.model_dump_json()):
        assert PASSWORD not in text


def test_a_log_may_name_where_the_database_is_and_nothing_more() -> None:
    assert database_location(settings()) == "postgresql://ledger@db.internal:6432/charger"
    v6 = Settings(database_url=f"postgres://u:{PASSWORD}@[::1]/db")  # type: ignore[arg-type]
    assert database_location(v6) == "postgres://u@[::1]/db"
    assert database_location(Settings()) == ""


def test_a_log_line_masks_the_url_whatever_carries_it() -> None:
    record = logging.LogRecord("t", logging.INFO, "", 0, f"connecting to {URL}", None, None)
    record.database_url = URL
    line = JsonFormatter().format(record)
    assert PASSWORD not in line
    assert orjson.loads(line)["database_url"] == "***"


def test_another_scheme_is_refused_without_echoing_the_url() -> None:
    with pytest.raises(ValidationError) as err:
        Settings(database_url=f"mysql://u:{PASSWORD}@h/db")  # type: ignore[arg-type]
    assert "CHARGER_DATABASE_URL must be a postgresql:// URL" in str(err.value)
    assert PASSWORD not in f"{err.value}{err.value!r}"


def test_connections_give_up_after_the_timeout_and_name_their_service() -> None:
    options = connection_options(settings(database_timeout_ms=2500), "ledger-sink")
    assert options == {
        "connect_timeout": 3,
        "application_name": "charger-ledger-sink",
        "options": "-c statement_timeout=2500",
    }
    assert connection_options(settings(database_timeout_ms=100), "x")["connect_timeout"] == 2


def test_database_errors_are_one_line_without_the_password() -> None:
    unreachable = psycopg.OperationalError(
        'connection failed: connection to server at "10.0.0.5", port 5432 failed: timeout\n'
        "\tIs the server running on that host?"
    )
    assert explain(unreachable) == (
        'cannot use PostgreSQL: connection failed: connection to server at "10.0.0.5", '
        "port 5432 failed: timeout"
    )
    assert explain(SchemaError("changed")) == "database schema: changed"
    assert explain(psycopg.ProgrammingError("syntax")) is None  # a bug keeps its traceback


def test_the_sink_names_the_dependency_that_failed() -> None:
    assert dependency_of(psycopg.OperationalError("down")) == "postgres"
    assert dependency_of(KafkaConnectionError()) == "kafka"
    wrapped = RuntimeError("batch")
    wrapped.__cause__ = psycopg.errors.QueryCanceled("statement timeout")
    assert dependency_of(wrapped) == "postgres"
    assert dependency_of(ValueError("bug")) == "other"


async def test_the_sink_counts_its_failures_by_dependency_and_logs_each_streak_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backoff = {"retry_backoff_min_ms": 1, "retry_backoff_max_ms": 1}
    metrics = SinkMetrics(CollectorRegistry())
    sink = LedgerSink(settings(**backoff), metrics)
    caplog.set_level(logging.INFO, logger="charger.sink")
    await sink.retry.failed(psycopg.OperationalError("down"))
    await sink.retry.failed(KafkaConnectionError())
    assert sink.retry.backoff.attempts == 2
    sink.retry.succeeded()
    assert sink.retry.failing_since is None and sink.retry.backoff.attempts == 0
    errors = {
        dep: metrics.registry.get_sample_value("charger_sink_errors_total", {"dependency": dep})
        for dep in ("postgres", "kafka", "other")
    }
    assert errors == {"postgres": 1, "kafka": 1, "other": 0}
    # The lines the runbook names: the first with its traceback, then one line per attempt.
    first, again, recovered = caplog.records
    assert first.getMessage().startswith("ledger batch failed") and first.exc_info is not None
    assert first.dependency == "postgres"  # type: ignore[attr-defined]
    assert again.getMessage().startswith("ledger batch failed again") and not again.exc_info
    assert again.dependency == "kafka"  # type: ignore[attr-defined]
    assert recovered.getMessage() == "ledger batch recovered"
    assert recovered.attempts == 2  # type: ignore[attr-defined]


def test_the_migrations_run_from_one_without_gaps() -> None:
    found = migrations()
    assert [m.version for m in found] == list(range(1, len(found) + 1))
    assert all(m.sql.strip() and len(m.checksum) == 64 for m in found)
