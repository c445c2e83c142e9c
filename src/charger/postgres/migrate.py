"""Schema migrations: numbered .sql files shipped in the package, applied once each, in order.

`migrations/NNNN_name.sql` are the schema's history: the runner applies those a database
has not seen, in version order, and records each in `charger_schema_migrations` with a
checksum of its text. Everything happens in one transaction under an advisory lock, so
several processes starting at once (sinks of one group, API replicas) apply each
migration once: the others wait for the lock, then find nothing left to do. A file that
changed after it was applied stops the runner (write a new migration instead); a database
with versions this build does not know (a newer build migrated it) is left alone and said
so. A migration must be able to run inside a transaction (no `CREATE INDEX CONCURRENTLY`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["MIGRATIONS_DIR", "Migration", "SchemaError", "migrate", "migrations", "schema_version"]

log = logging.getLogger("charger.postgres.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
TABLE = "charger_schema_migrations"
# The advisory lock every runner takes (one 64-bit key: "charger\0" in ASCII).
LOCK_KEY = int.from_bytes(b"charger\0", "big", signed=True)
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class SchemaError(RuntimeError):
    """The database's schema and this build disagree in a way the runner cannot fix."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations in `directory`, by version; numbered 1, 2, 3… without gaps."""
    found = []
    for path in directory.iterdir():
        if path.suffix != ".sql":
            continue
        match = _FILE.match(path.name)
        if match is None:
            raise SchemaError(f"migration file {path.name} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise SchemaError(f"migration versions must run 1, 2, 3… without gaps: {versions}")
    return found


async def _applied(conn: psycopg.AsyncConnection[Any]) -> dict[int, str]:
    cur = await conn.execute(f"SELECT version, checksum FROM {TABLE}")
    return {int(version): str(checksum) for version, checksum in await cur.fetchall()}


async def migrate(
    conn: psycopg.AsyncConnection[Any], known: list[Migration] | None = None
) -> list[int]:
    """Apply the migrations `conn`'s database lacks; returns the versions applied now."""
    todo = migrations() if known is None else known
    async with conn.transaction():
        # Held to the end of the transaction: concurrent runners apply nothing twice.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = await _applied(conn)
        for migration in todo:
            seen = applied.get(migration.version)
            if seen is not None and seen != migration.checksum:
                raise SchemaError(
                    f"migration {migration.version:04d}_{migration.name} was changed after "
                    "it was applied: add a new migration instead"
                )
        newer = sorted(set(applied) - {m.version for m in todo})
        if newer:
            log.warning(
                "the database has schema versions this build does not know; leaving them",
                extra={"versions": newer},
            )
        done = []
        for migration in todo:
            if migration.version in applied:
                continue
            # Without parameters psycopg sends the file as one simple query: its statements
            # run in order, inside this transaction.
            await conn.execute(migration.sql.encode())
            await conn.execute(
                f"INSERT INTO {TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            done.append(migration.version)
    if done:
        log.info("schema migrated", extra={"applied": done})
    return done


async def schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """The highest migration applied to `conn`'s database; 0 for a database never migrated."""
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (TABLE,))
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute(f"SELECT coalesce(max(version), 0) FROM {TABLE}")
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0
