"""`charger api` on a real Valkey: accounts exactly as the worker leaves them, authorizations
(acceptance 3: $1.00 at $0.60/min with 1/1 increments says 100 s; a suspended account is
not allowed), and the `charger api` process itself, two of them side by side."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from charger.api.accounts import READS_IN_FLIGHT
from charger.api.app import create_api
from charger.clock import ManualClock
from charger.protocol.keys import Keys
from charger.store.client import RedisClient
from charger_tools.embedded import free_port
from charger_topics import names
from tests.kit import records as r
from tests.kit.api import (
    PARTITIONS,
    Accounts,
    api_process,
    api_services,
    bearer,
    store_ledger,
    valkey_url,
)
from tests.kit.cluster import redis_for
from tests.kit.harness import Run
from tests.kit.statements import MemoryStatements, ledger

T0 = "2026-11-22T10:00:00.000Z"
NOW_MS = 1_795_341_600_000  # T0
DOLLAR = 1_000_000


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with valkey_url() as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[RedisClient]:
    client = redis_for(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def prefix() -> str:
    return f"api{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def accounts(redis: RedisClient, prefix: str) -> Accounts:
    return Accounts(redis, Keys(prefix, PARTITIONS), ManualClock(NOW_MS))


@pytest.fixture
async def api(redis: RedisClient, prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    services = api_services(redis, prefix, MemoryStatements(), ManualClock(NOW_MS))
    transport = httpx.ASGITransport(app=create_api(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def authorize(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await api.post("/v1/authorize", json=body, headers=bearer())
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def test_an_account_as_the_worker_leaves_it(
    accounts: Accounts, api: httpx.AsyncClient
) -> None:
    auto = {"enabled": True, "threshold_micros": 10_000_000, "amount_micros": 60_000_000}
    await accounts.apply(
        [
            r.account_upserted(
                T0,
                "a1",
                "u1",
                credit_limit_micros=2 * DOLLAR,
                auto_recharge=auto,
                notify_email="billing@example.com",
                time_zone="Europe/Kyiv",
                low_balance_micros=5 * DOLLAR,
            ),
            r.balance_credited(T0, "a1", "t1", amount_micros=20 * DOLLAR),
            r.sms_sent(T0, "a1", "s1"),
            r.call_started(T0, "a1", "c1-start", call_id="c1"),
        ]
    )
    response = await api.get("/v1/accounts/a1", headers=bearer())
    assert response.status_code == 200, response.text
    body = response.json()
    # $20 − one text at $0.0079; the call holds its first 10 s at $0.60/min.
    assert body["balance_micros"] == 20 * DOLLAR - 7_900
    assert body["held_micros"] == 100_000 and body["active_calls"] == 1
    assert body["available_micros"] == body["balance_micros"] - body["held_micros"]
    assert body["credit_limit_micros"] == 2 * DOLLAR and body["status"] == "active"
    assert body["rate_plan"] == "std-usd" and body["currency"] == "USD"
    assert body["auto_recharge"] == {**auto, "in_flight": False}
    assert body["low_balance"] == {"threshold_micros": 5 * DOLLAR}
    assert body["time_zone"] == "Europe/Kyiv" and body["notify_email"] == "billing@example.com"
    missing = await api.get("/v1/accounts/a2", headers=bearer())
    assert missing.status_code == 404


async def test_a_dollar_at_sixty_cents_a_minute_says_100_seconds(
    accounts: Accounts, api: httpx.AsyncClient
) -> None:
    await accounts.apply(
        [
            r.account_upserted(T0, "a1", "u1"),
            r.balance_credited(T0, "a1", "t1", amount_micros=DOLLAR),
        ]
    )
    call = await authorize(api, account="a1", kind="call", to=r.US_NUMBER)
    assert call["allowed"] is True and call["max_duration_s"] == 100
    assert call["available_micros"] == DOLLAR
    assert call["price"]["per_minute_micros"] == 600_000 and call["price"]["increments"] == "1/1"
    # 60/6 with a $0.05 connect fee: 60 s (66 s would cost $1.04).
    uk = await authorize(api, account="a1", kind="call", to=r.UK_NUMBER)
    assert uk["max_duration_s"] == 60 and uk["price"]["connect_fee_micros"] == 50_000
    # A read, never a charge: the balance is where it was, nothing held.
    body = (await api.get("/v1/accounts/a1", headers=bearer())).json()
    assert body["balance_micros"] == DOLLAR and body["held_micros"] == 0


async def test_holds_of_active_calls_shorten_the_next_one(
    accounts: Accounts, api: httpx.AsyncClient
) -> None:
    await accounts.apply(
        [
            r.account_upserted(T0, "a1", "u1"),
            r.balance_credited(T0, "a1", "t1", amount_micros=DOLLAR),
            r.call_started(T0, "a1", "c1-start", call_id="c1"),  # holds $0.10
        ]
    )
    call = await authorize(api, account="a1", kind="call", to=r.US_NUMBER)
    assert call["available_micros"] == 900_000 and call["max_duration_s"] == 90


async def test_a_suspended_account_is_not_allowed(
    accounts: Accounts, api: httpx.AsyncClient
) -> None:
    # A text on an empty account is charged anyway and suspends it (the floor is 0).
    await accounts.apply([r.account_upserted(T0, "a1", "u1"), r.sms_sent(T0, "a1", "s1")])
    body = (await api.get("/v1/accounts/a1", headers=bearer())).json()
    assert body["status"] == "suspended" and body["available_micros"] == -7_900
    for request in (
        {"kind": "call", "to": r.US_NUMBER},
        {"kind": "sms"},
        {"kind": "fee", "amount_micros": 0},
    ):
        answer = await authorize(api, account="a1", **request)
        assert answer["allowed"] is False and answer["reason"] == "suspended", request
    # Money in restores it, and it may call again.
    await accounts.apply([r.balance_credited(T0, "a1", "t1", amount_micros=DOLLAR)])
    call = await authorize(api, account="a1", kind="call", to=r.US_NUMBER)
    assert call["allowed"] is True and call["max_duration_s"] == 99  # $0.992100


async def test_charger_api_processes_side_by_side(
    accounts: Accounts, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    await accounts.apply(
        [
            r.account_upserted(T0, "a1", "u1"),
            r.balance_credited(T0, "a1", "t1", amount_micros=DOLLAR),
        ]
    )
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    async with (
        api_process(redis_url, prefix, tmp_path / "one") as one,
        api_process(redis_url, prefix, tmp_path / "two") as two,
        httpx.AsyncClient() as client,
    ):
        for api in (one, two):
            account = await client.get(f"{api.url}/v1/accounts/a1", headers=bearer())
            assert account.json()["balance_micros"] == DOLLAR
            call = await client.post(
                f"{api.url}/v1/authorize",
                json={"account": "a1", "kind": "call", "to": r.US_NUMBER},
                headers=bearer(),
            )
            assert call.json()["max_duration_s"] == 100
            unauthorized = await client.get(f"{api.url}/v1/accounts/a1")
            assert unauthorized.status_code == 401
            statement = await client.get(f"{api.url}/v1/accounts/a1/statement", headers=bearer())
            assert statement.status_code == 503
            assert statement.json()["detail"].startswith("statements are not configured")
            doc = (await client.get(f"{api.url}/openapi.json")).json()
            assert doc["openapi"].startswith("3.1")
            page = await client.get(f"{api.url}/billing/")
            assert page.status_code == 200 and "statement-rows" in page.text
            metrics = (await client.get(f"{api.url}/metrics")).text
            assert 'route="/v1/accounts/{account}"' in metrics
            assert "a1" not in metrics
        proc = one.proc
    assert proc.returncode == 0, "SIGTERM ends charger api cleanly"
    log = (tmp_path / "one" / "api.log").read_text()
    assert '"level": "ERROR"' not in log
    frozen = [orjson.loads(line) for line in log.splitlines() if "objects frozen" in line]
    assert frozen and frozen[0]["objects"] > 10_000, "start-up objects frozen before serving"


async def test_charger_api_opens_its_redis_connections_before_serving(
    redis: RedisClient, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    """A pool filled on demand grows just when requests queue (charger.api.accounts)."""
    # Client ids only grow: counting those above the newest one now leaves out whatever
    # connections of earlier tests are still closing.
    newest = max(int(client["id"]) for client in await redis.client_list())
    async with api_process(redis_url, prefix, tmp_path):
        opened = [c for c in await redis.client_list() if int(c["id"]) > newest]
    assert len(opened) >= READS_IN_FLIGHT


@pytest.mark.parametrize("scheme", ["redis", "redis+cluster"])
async def test_charger_api_serves_not_ready_while_redis_is_unreachable(
    scheme: str, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    url = f"{scheme}://127.0.0.1:{port}/0"
    async with api_process(url, "unreachable", tmp_path, ready_status=503) as api:
        proc = api.proc
    assert proc.returncode == 0
    assert "Redis not reachable at start-up" in api.log.read_text()


async def test_redis_gone_is_a_503_and_not_ready(tmp_path: Path) -> None:
    from charger_tools.embedded import start_redis

    server = start_redis()
    try:
        prefix = "gone"
        async with api_process(server.address, prefix, tmp_path) as api, httpx.AsyncClient() as c:
            assert (await c.get(f"{api.url}/v1/accounts/a1", headers=bearer())).status_code == 404
            await asyncio.to_thread(server.stop)
            down = await c.get(f"{api.url}/v1/accounts/a1", headers=bearer())
            assert down.status_code == 503
            assert down.headers["content-type"] == "application/problem+json"
            assert (await c.get(f"{api.url}/ready")).status_code == 503
            metrics = (await c.get(f"{api.url}/metrics")).text
            assert 'charger_api_backend_errors_total{backend="redis"} 1.0' in metrics
    finally:
        server.stop()


async def test_the_api_rates_with_the_plans_the_worker_reads_from_the_topic(
    run: Run, tmp_path: Path
) -> None:
    """A plan published on billing.rate-plans, not in any file, is what the API rates by."""
    plan_id = f"topic-{run.uid}"
    plan = {
        "id": plan_id,
        "currency": "USD",
        "voice": [
            {"prefix": "", "direction": "outbound", "per_minute": "0.30", "increments": "1/1"}
        ],
    }
    await run.send(names.RATE_PLANS, plan_id, r.rate_plan_upserted(run, f"p-{run.uid}", plan))
    account = f"acc-{run.uid}"
    accounts = Accounts(run.redis, run.keys)
    await accounts.apply(
        [
            r.account_upserted(run, account, f"u-{run.uid}", rate_plan=plan_id),
            r.balance_credited(run, account, f"t-{run.uid}", amount_micros=DOLLAR),
        ]
    )
    async with (
        api_process(
            run.redis_url,
            run.settings.redis_prefix,
            tmp_path,
            CHARGER_KAFKA_BOOTSTRAP=run.bootstrap,
        ) as api,
        httpx.AsyncClient(base_url=api.url, headers=bearer()) as client,
    ):
        call = await client.post(
            "/v1/authorize", json={"account": account, "kind": "call", "to": r.US_NUMBER}
        )
        assert call.status_code == 200, call.text
        assert call.json()["max_duration_s"] == 200  # $1.00 at $0.30/min
        rates = (await client.get(f"/v1/accounts/{account}/rates")).json()
        assert rates["rate_plan"] == plan_id and rates["voice"][0]["per_minute_micros"] == 300_000


async def test_charger_api_reads_statements_from_the_ledger_store(
    accounts: Accounts, redis_url: str, prefix: str, database: str, tmp_path: Path
) -> None:
    """`CHARGER_DATABASE_URL` wired: the statement, its CSV and the movements of funds come
    from the PostgreSQL the ledger sink fills, days of the account's time zone."""
    await accounts.apply([r.account_upserted(T0, "a1", "u1", time_zone="Europe/Kyiv")])
    day = datetime(2026, 11, 20, 12, tzinfo=UTC)  # 14:00 in Kyiv
    moves = [
        (day, "topup", 5 * DOLLAR),
        (day + timedelta(hours=1), "sms_out", -7_900),
        (day + timedelta(days=1), "call", -600_000),
        (day + timedelta(days=2), "fee", -DOLLAR),
    ]
    entries = ledger("a1", 0, moves)
    await store_ledger(database, entries)
    async with (
        api_process(redis_url, prefix, tmp_path, CHARGER_DATABASE_URL=database) as api,
        httpx.AsyncClient(base_url=api.url, headers=bearer()) as client,
    ):
        params = {"from": "2026-11-20", "to": "2026-11-21", "show": "debits"}
        page = (await client.get("/v1/accounts/a1/statement", params=params)).json()
        assert [e["id"] for e in page["entries"]] == [entries[1].entry_id, entries[2].entry_id]
        assert page["from"] == "2026-11-19T22:00:00Z" and page["next_cursor"] is None
        whole = await client.get(
            "/v1/accounts/a1/statement",
            params={"from": "2026-11-01", "to": "2026-11-30", "format": "csv"},
        )
        rows = list(csv.DictReader(io.StringIO(whole.text, newline="")))
        assert [row["id"] for row in rows] == [e.entry_id for e in entries]
        assert [int(row["balance_after_micros"]) for row in rows] == [
            e.balance_after_micros for e in entries
        ]
        days = (
            await client.get(
                "/v1/accounts/a1/movements", params={"from": "2026-11-20", "to": "2026-11-22"}
            )
        ).json()["days"]
        assert [d["closing_balance_micros"] for d in days] == [
            entries[1].balance_after_micros,
            entries[2].balance_after_micros,
            entries[3].balance_after_micros,
        ]
        assert days[0]["debits_by_kind_micros"] == {"sms_out": 7_900}
        ready = (await client.get("/ready")).json()
        assert ready["checks"]["statements"] == "ok"
