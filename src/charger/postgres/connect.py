"""PostgreSQL connections from settings, and what may be said about them in a log line.

`CHARGER_DATABASE_URL` is a libpq URL (`postgresql://user:password@host:port/database?
sslmode=verify-full&sslrootcert=…`): TLS, certificates and every other connection option
are libpq's own, as operators know them from psql. It is a secret: only
`database_location` (scheme, host, port, database, user) ever reaches a log.
"""

from __future__ import annotations

from typing import Any

import psycopg

from charger.connections import safe_location
from charger.settings import Settings

__all__ = ["connect", "connection_options", "database_location"]

APPLICATION_NAME = "charger"


def connection_options(s: Settings, application: str) -> dict[str, Any]:
    """Keyword arguments of `psycopg.AsyncConnection.connect` beyond the URL."""
    timeout_ms = s.database_timeout_ms
    return {
        # libpq counts whole seconds (and 1 would be taken as 2): at least 2.
        "connect_timeout": max(2, -(-timeout_ms // 1000)),
        "application_name": f"{APPLICATION_NAME}-{application}",
        # A statement stuck on a lock or a slow disk fails instead of holding a batch (or an
        # API request) forever.
        "options": f"-c statement_timeout={timeout_ms}",
    }


async def connect(
    s: Settings, application: str, *, autocommit: bool = False
) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    """A new connection to `CHARGER_DATABASE_URL`."""
    return await psycopg.AsyncConnection.connect(
        s.database_dsn(), autocommit=autocommit, **connection_options(s, application)
    )


def database_location(s: Settings) -> str:
    """The database URL without password or options, fit for logs and status pages."""
    return safe_location(s.database_dsn(), keep_user=True)
