"""The errors an operator causes or meets, told in one line: invalid settings, servers that
cannot be reached or refuse. Everything else is a bug and keeps its traceback.

`charger.cli` prints these lines for its commands (`charger topics create`, the worker's
start, the tooling commands) and exits with status 1.
"""

from __future__ import annotations

from pydantic import ValidationError

from charger.logs import redact

__all__ = ["CommandError", "explain", "settings_problems"]


class CommandError(Exception):
    """An error whose message is already the one line to show."""


def settings_problems(exc: ValidationError) -> str:
    """Every problem of a `Settings` validation, each named by its CHARGER_* variable."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        location = "_".join(str(part) for part in error["loc"])
        # Problems between settings (the model validator) name their variables themselves.
        problems.append(f"CHARGER_{location.upper()}: {message}" if location else message)
    return "; ".join(problems)


def explain(exc: BaseException) -> str | None:
    """One line saying what went wrong, or None when `exc` is not an operator's error."""
    # Imported here: the worker's command line must not pay for clients it does not use.
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from psycopg import OperationalError as DatabaseUnavailable
    from psycopg.errors import InsufficientPrivilege
    from redis.exceptions import AuthenticationError, RedisError
    from redis.exceptions import ConnectionError as RedisConnectionError

    from charger.postgres.migrate import SchemaError

    if isinstance(exc, ValidationError):
        return f"invalid settings: {settings_problems(exc)}"
    if isinstance(exc, KafkaConnectionError):
        return "cannot reach the Kafka broker"
    if isinstance(exc, KafkaError):
        return redact(f"the Kafka broker refused: {exc}")
    if isinstance(exc, AuthenticationError):
        return "Redis refused the user or password"
    if isinstance(exc, RedisConnectionError):
        return redact(f"cannot reach Redis: {exc}")
    if isinstance(exc, RedisError):
        return redact(f"Redis refused: {exc}")
    if isinstance(exc, DatabaseUnavailable):
        # libpq's message names the host and the user, never the password.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return redact(f"cannot use PostgreSQL: {first}")
    if isinstance(exc, InsufficientPrivilege):
        return redact(f"PostgreSQL refused: {exc}".splitlines()[0])
    if isinstance(exc, SchemaError):
        return f"database schema: {exc}"
    if isinstance(exc, ConnectionError | TimeoutError):
        return redact(f"connection failed: {type(exc).__name__}: {exc}".rstrip(": "))
    if isinstance(exc, OSError) and exc.filename is not None:
        return redact(f"cannot read {exc.filename}: {exc.strerror}")
    return None
