"""`charger api` in tests: accounts put into a real Redis by the worker's own code, the API
built in-process around them, and a `charger api` process.

- `Accounts` applies contract records (`tests.kit.records`) to Redis through the worker's
  planner and `apply.lua` — the charging path without the broker, the same code that
  seeds `charger bench --only api` (`charger_tools.seeding`) — so the API reads accounts
  exactly as the worker leaves them.
- `api_services` builds the API's services over that Redis, the sample plans and a
  `StatementReader` of the test's choosing.
- `store_ledger` puts ledger entries into a PostgreSQL database exactly as
  `charger ledger-sink` stores them (the schema migrated, `store_batch`), and
  `api_in_thread` serves the API over HTTP with the PostgreSQL statement reader on it:
  the whole-API tests (browser, schemathesis) read statements as `charger api` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from charger.api.accounts import AccountReader
from charger.api.app import ApiServices
from charger.api.auth import Tokens
from charger.charging.authorization import AccountView
from charger.clock import Clock, SystemClock
from charger.postgres.connect import connect
from charger.postgres.ledger_store import LedgerRecord, store_batch
from charger.postgres.migrate import migrate
from charger.postgres.statements import PostgresStatementReader
from charger.protocol.keys import Keys
from charger.protocol.ops import Refuse
from charger.settings import Settings
from charger.statements.entries import Verdict
from charger.statements.model import StatementEntry
from charger.statements.reader import StatementReader
from charger.store.client import RedisClient
from charger_tools.embedded import free_port
from charger_tools.processes import stop_process
from charger_tools.seeding import RecordWriter, redis_url_or_embedded, sample_plans
from tests.kit.http import answers_status
from tests.kit.waits import until

TOKEN = "test-token-0123456789abcdef"
OTHER_TOKEN = "rotated-token-fedcba9876543210"
PARTITIONS = 8


class Accounts:
    """Applies records to Redis the way the worker does (the tooling's `RecordWriter`:
    planner + apply.lua, no broker), at the time of `clock`."""

    def __init__(self, redis: RedisClient, keys: Keys, clock: Clock | None = None) -> None:
        self.keys = keys
        self.clock = clock or SystemClock()
        self.writer = RecordWriter(redis, keys)

    async def apply(self, records: Iterable[dict[str, Any]]) -> None:
        """One batch, in order; refused records fail the test (they would be a typo)."""
        outcome = await self.writer.apply(records, self.clock.now_ms())
        refused = [op for op in outcome.plan.all_ops() if isinstance(op, Refuse)]
        assert not refused, f"records refused: {refused}"


def api_services(
    redis: RedisClient,
    prefix: str,
    statements: StatementReader | None,
    clock: Clock | None = None,
    **more: Any,
) -> ApiServices:
    return ApiServices(
        accounts=AccountReader(redis, Keys(prefix, PARTITIONS)),
        plans=sample_plans().current,
        tokens=Tokens([TOKEN, OTHER_TOKEN]),
        statements=statements,
        clock=clock or SystemClock(),
        **more,
    )


async def store_ledger(database_url: str, entries: Iterable[StatementEntry]) -> None:
    """`entries` in the database at `database_url` as `charger ledger-sink` stores them:
    its schema migrated, the documents stored by `store_batch` in offset order."""
    settings = Settings(database_url=database_url)  # type: ignore[arg-type]
    conn = await connect(settings, "tests", autocommit=True)
    try:
        await migrate(conn)
        records = [
            LedgerRecord(0, offset, orjson.dumps(dict(entry.document)))
            for offset, entry in enumerate(entries)
        ]
        async with conn.transaction():
            report = await store_batch(conn, records)
        assert report.results[Verdict.STORED] == len(records), report
    finally:
        await conn.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class ApiProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def api_process_env(redis_url: str, prefix: str, **extra: str) -> Iterator[dict[str, str]]:
    env = {
        **os.environ,
        "CHARGER_REDIS_URL": redis_url,
        "CHARGER_REDIS_PREFIX": prefix,
        "CHARGER_PARTITIONS": str(PARTITIONS),
        "CHARGER_API_TOKENS": f"{TOKEN},{OTHER_TOKEN}",
        **extra,
    }
    for name in ("CHARGER_KAFKA_BOOTSTRAP", "CHARGER_DATABASE_URL"):
        if name not in extra:
            env.pop(name, None)
    yield env


@asynccontextmanager
async def api_process(
    redis_url: str, prefix: str, workdir: Path, *, ready_status: int = 200, **extra: str
) -> AsyncIterator[ApiProcess]:
    """A `charger api` process on a free loopback port, once `/ready` answers
    `ready_status` (503: serving, not ready); stopped (SIGTERM) on exit."""
    port = free_port()
    log = workdir / "api.log"
    with api_process_env(redis_url, prefix, **extra) as env, open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "charger", "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await until(
                lambda: answers_status(f"{url}/ready", ready_status),
                f"charger api's /ready answering {ready_status}",
                30,
                interval=0.1,
                process=proc,
                detail=lambda: log.read_text()[-2000:],
            )
            yield ApiProcess(url, proc, log)
        finally:
            await asyncio.to_thread(stop_process, proc, 10)


class MemoryAccounts:
    """An `AccountSource` over views held in memory: for unit tests of the routes. Real
    accounts come from Redis through `AccountReader` (see `Accounts` above)."""

    def __init__(self, *views: AccountView) -> None:
        self.views = {view.account: view for view in views}
        self.failing: Exception | None = None

    async def account(self, account: str, full: bool = True) -> AccountView | None:
        if self.failing is not None:
            raise self.failing
        return self.views.get(account)


def account_view(account: str, balance_micros: int, **changes: Any) -> AccountView:
    """An account as the worker leaves it after an upsert and `balance_micros` of credit."""
    view = AccountView(
        account=account,
        currency="USD",
        rate_plan="std-usd",
        balance_micros=balance_micros,
        held_micros=0,
        credit_limit_micros=0,
        suspended=False,
        active_calls=0,
        time_zone="UTC",
        auto_recharge_enabled=False,
        auto_recharge_threshold_micros=0,
        auto_recharge_amount_micros=0,
        recharge_in_flight=False,
        low_balance_micros=0,
        notify_email="",
    )
    return dataclasses.replace(view, **changes)


# `CHARGER_REDIS_URL` when set, else a Valkey of our own (no broker: the API needs none).
valkey_url = redis_url_or_embedded


@contextmanager
def api_in_thread(redis_url: str, prefix: str, database_url: str) -> Iterator[str]:
    """The API served by uvicorn on a free loopback port, in a thread of this process with
    an event loop, a Redis client and the PostgreSQL statement reader of its own; yields
    its base URL. As `charger api` would be, but built in-process, so that a test can see
    the API's state."""
    import threading

    import uvicorn

    from charger.api.app import create_api
    from tests.kit.cluster import redis_for

    port = free_port()
    servers: list[uvicorn.Server] = []
    failed: list[BaseException] = []

    async def serve() -> None:
        redis = redis_for(redis_url)
        settings = Settings(database_url=database_url)  # type: ignore[arg-type]
        statements = await PostgresStatementReader.connect(settings)
        try:
            app = create_api(api_services(redis, prefix, statements))
            config = uvicorn.Config(
                app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
            )
            servers.append(uvicorn.Server(config))
            await servers[0].serve()
        finally:
            await statements.close()
            await redis.aclose()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # told to the waiting test below
            failed.append(exc)

    thread = threading.Thread(target=run, name="api", daemon=True)
    thread.start()
    try:
        deadline = 30.0
        while not (servers and servers[0].started):
            assert not failed, failed
            assert thread.is_alive() and deadline > 0, "the API thread did not start"
            deadline -= 0.02
            threading.Event().wait(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        if servers:
            servers[0].should_exit = True
        thread.join(15)
