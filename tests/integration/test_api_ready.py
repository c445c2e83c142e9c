"""`charger api`'s /ready follows its PostgreSQL: ready while the statement store answers,
503 naming `statements` once the server is gone, and the answer comes within the API's
readiness timeout rather than the pool's or libpq's own.

The API is built in-process around the real `PostgresStatementReader` on a PostgreSQL
server of this test's own (so it can be stopped); accounts are in memory: Redis is not
what this test is about (tests/integration/test_api.py covers it).
"""

from __future__ import annotations

import httpx

from charger.api.app import ApiServices, create_api
from charger.api.auth import Tokens
from charger.postgres.connect import connect
from charger.postgres.migrate import migrate
from charger.postgres.statements import PostgresStatementReader
from charger.settings import Settings
from charger_tools.postgres import start_postgres
from tests.kit.api import TOKEN, MemoryAccounts, account_view, sample_plans


async def test_ready_turns_503_when_postgres_stops_answering() -> None:
    server = start_postgres()
    try:
        settings = Settings(database_url=server.address)  # type: ignore[arg-type]
        conn = await connect(settings, "tests", autocommit=True)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        reader = await PostgresStatementReader.connect(settings)
        try:
            services = ApiServices(
                accounts=MemoryAccounts(account_view("a1", 0)),
                plans=sample_plans().current,
                tokens=Tokens([TOKEN]),
                statements=reader,
                ready_timeout_s=1.0,
            )
            transport = httpx.ASGITransport(app=create_api(services))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                ready = await client.get("/ready")
                assert ready.status_code == 200, ready.text
                assert ready.json()["checks"]["statements"] == "ok"

                server.stop()
                ready = await client.get("/ready")
                assert ready.status_code == 503, ready.text
                body = ready.json()
                assert body["status"] == "unavailable"
                assert body["checks"]["statements"].startswith("error: "), body
                assert body["checks"]["rate_plans"] == "ok"
                assert server.address not in ready.text  # neither the URL nor its password
        finally:
            await reader.close()
    finally:
        server.stop()
