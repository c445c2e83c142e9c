"""The API in-process: tokens, problems, statements and their CSV, metrics, the OpenAPI
document. Accounts and statements come from fakes behind the project's own interfaces
(`AccountSource`, `StatementReader`); Redis and the worker's storage are the integration
tests' (tests/integration/test_api.py)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis.exceptions import ConnectionError as RedisConnectionError

from charger.api.app import ApiServices, create_api
from charger.api.auth import Tokens, bearer_of
from charger.clock import ManualClock
from charger.metrics import ApiMetrics
from tests.kit.api import (
    OTHER_TOKEN,
    TOKEN,
    MemoryAccounts,
    account_view,
    bearer,
    sample_plans,
)
from tests.kit.statements import MemoryStatements, ledger

# 2026-11-22T10:00:00Z; the statements below are dated relative to it.
NOW = datetime(2026, 11, 22, 10, tzinfo=UTC)
PROBLEM = "application/problem+json"


def at(days: int, hours: float = 0) -> datetime:
    return NOW + timedelta(days=days, hours=hours)


@pytest.fixture
def statements() -> MemoryStatements:
    moves = [
        (at(-3, -9), "topup", 5_000_000),
        (at(-3, -1), "call", -600_000),
        (at(-2, 0), "sms_out", -7_900),
        (at(-2, 1), "recharge", 50_000_000),
        (at(-1, 0), "fee", -1_000_000),
        (at(-1, 2), "call", -1_200_000),
        (at(0, -1), "sms_in", -2_500),
    ]
    return MemoryStatements(ledger("a1", 0, moves))


@pytest.fixture
def accounts() -> MemoryAccounts:
    return MemoryAccounts(
        account_view("a1", 52_189_600, time_zone="Europe/Kyiv"),
        account_view("broke", 0, suspended=True),
    )


@pytest.fixture
def metrics() -> ApiMetrics:
    return ApiMetrics()


def services(
    accounts: MemoryAccounts, statements: MemoryStatements | None, metrics: ApiMetrics
) -> ApiServices:
    return ApiServices(
        accounts=accounts,
        plans=sample_plans().current,
        tokens=Tokens([TOKEN, OTHER_TOKEN]),
        statements=statements,
        metrics=metrics,
        clock=ManualClock(int(NOW.timestamp() * 1000)),
    )


@pytest.fixture
def client(
    accounts: MemoryAccounts, statements: MemoryStatements, metrics: ApiMetrics
) -> Iterator[TestClient]:
    with TestClient(create_api(services(accounts, statements, metrics))) as c:
        yield c


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_v1_needs_one_of_the_tokens_and_says_how(client: TestClient) -> None:
    missing = client.get("/v1/accounts/a1")
    assert problem(missing, 401)["detail"].startswith("an Authorization: Bearer")
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = client.get("/v1/accounts/a1", headers=bearer("not-the-token-0000000"))
    assert problem(wrong, 401)["detail"] == "this token is not accepted"
    basic = client.get("/v1/accounts/a1", headers={"Authorization": f"Basic {TOKEN}"})
    problem(basic, 401)
    for token in (TOKEN, OTHER_TOKEN):  # both, so one can be rotated out
        assert client.get("/v1/accounts/a1", headers=bearer(token)).status_code == 200
    # Before the body is read: an unauthenticated malformed request is still a 401.
    garbage = client.post("/v1/authorize", content=b"{not json")
    problem(garbage, 401)
    for open_path in ("/openapi.json", "/health", "/metrics", "/billing/"):
        assert client.get(open_path).status_code == 200, open_path


def test_token_parsing_and_matching() -> None:
    assert bearer_of([(b"authorization", b"bearer abc")]) == b"abc"
    assert bearer_of([(b"authorization", b"Bearer")]) is None
    assert bearer_of([(b"x", b"Bearer abc")]) is None
    tokens = Tokens(["a" * 16, "b" * 16])
    assert tokens.accepts(b"b" * 16) and not tokens.accepts(b"b" * 15)
    assert "a" * 16 not in repr(tokens)
    with pytest.raises(ValueError):
        Tokens([])


def test_an_account(client: TestClient) -> None:
    body = client.get("/v1/accounts/a1", headers=bearer()).json()
    assert body["balance_micros"] == body["available_micros"] == 52_189_600
    assert body["status"] == "active" and body["time_zone"] == "Europe/Kyiv"
    assert body["auto_recharge"] == {
        "enabled": False,
        "threshold_micros": 0,
        "amount_micros": 0,
        "in_flight": False,
    }
    assert client.get("/v1/accounts/broke", headers=bearer()).json()["status"] == "suspended"
    body = problem(client.get("/v1/accounts/nobody", headers=bearer()), 404)
    assert body["instance"] == "/v1/accounts/nobody"


def test_redis_down_is_a_503_counted_by_backend(
    client: TestClient, accounts: MemoryAccounts, metrics: ApiMetrics
) -> None:
    accounts.failing = RedisConnectionError("Connection refused")
    problem(client.get("/v1/accounts/a1", headers=bearer()), 503)
    problem(
        client.post("/v1/authorize", json={"account": "a1", "kind": "sms"}, headers=bearer()), 503
    )
    errors = metrics.registry.get_sample_value(
        "charger_api_backend_errors_total", {"backend": "redis"}
    )
    assert errors == 2


def test_authorize_answers_and_refuses_in_problems(client: TestClient) -> None:
    def ask(**body: Any) -> Any:
        return client.post("/v1/authorize", json=body, headers=bearer())

    call = ask(account="a1", kind="call", to="+14155550100").json()
    assert call["allowed"] and call["max_duration_s"] == 5218  # $52.1896 at $0.60/min
    assert call["price"]["per_minute_micros"] == 600_000 and "reason" not in call
    text = ask(account="broke", kind="sms").json()
    assert text == {"allowed": False, "reason": "suspended", "available_micros": 0}
    fee = ask(account="a1", kind="fee", amount_micros=1_000_000).json()
    assert fee["allowed"] and fee["price"] == {"currency": "USD", "amount_micros": 1_000_000}
    assert "to" in problem(ask(account="a1", kind="call"), 400)["detail"]
    assert "amount_micros" in problem(ask(account="a1", kind="fee"), 400)["detail"]
    problem(ask(account="a1", kind="sms", direction="forwarded"), 400)
    invalid = problem(ask(account="a1", kind="sms", segments=0, direction="sideways"), 400)
    assert {e["location"] for e in invalid["errors"]} == {"body.sms.segments", "body.sms.direction"}
    problem(ask(account="a1", kind="coffee"), 400)
    problem(ask(account="a1", kind="sms", extra=1), 400)
    problem(ask(account="nobody", kind="sms"), 404)


def test_a_statement_pages_through_a_range_of_local_days(client: TestClient) -> None:
    # Kyiv is UTC+2: at(-3, -9) is 2026-11-19 03:00 local, at(0, -1) the 22nd 11:00.
    query = {"from": "2026-11-19", "to": "2026-11-21", "limit": 2}
    first = client.get("/v1/accounts/a1/statement", params=query, headers=bearer()).json()
    assert first["from"] == "2026-11-18T22:00:00Z" and first["to"] == "2026-11-21T22:00:00Z"
    assert [e["kind"] for e in first["entries"]] == ["topup", "call"]
    assert first["entries"][0]["local_date"] == "2026-11-19"
    ids = [e["id"] for e in first["entries"]]
    cursor = first["next_cursor"]
    while cursor:
        page = client.get(
            "/v1/accounts/a1/statement", params={**query, "cursor": cursor}, headers=bearer()
        ).json()
        ids += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
    assert ids == [f"a1-{n}" for n in range(1, 7)]  # the 22nd's text is outside
    debits = client.get(
        "/v1/accounts/a1/statement", params={**query, "show": "debits"}, headers=bearer()
    ).json()
    assert all(e["amount_micros"] < 0 for e in debits["entries"])
    bad = client.get(
        "/v1/accounts/a1/statement", params={**query, "cursor": "bm9wZQ"}, headers=bearer()
    )
    assert "cursor" in problem(bad, 400)["detail"]
    problem(client.get("/v1/accounts/a1/statement", params={"limit": 0}, headers=bearer()), 400)
    backwards = {"from": "2026-11-21", "to": "2026-11-19"}
    problem(client.get("/v1/accounts/a1/statement", params=backwards, headers=bearer()), 400)


def test_the_csv_is_the_whole_range_every_page(client: TestClient) -> None:
    params = {"from": "2026-11-19", "to": "2026-11-22", "show": "credits", "limit": 1}
    by_format = client.get(
        "/v1/accounts/a1/statement", params={**params, "format": "csv"}, headers=bearer()
    )
    assert by_format.headers["content-type"].startswith("text/csv")
    assert "attachment" in by_format.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(by_format.text, newline="")))
    assert [r["kind"] for r in rows] == ["topup", "recharge"]
    by_accept = client.get(
        "/v1/accounts/a1/statement", params=params, headers={**bearer(), "Accept": "text/csv"}
    )
    assert by_accept.text == by_format.text
    whole = client.get(
        "/v1/accounts/a1/statement",
        params={"from": "2026-11-19", "to": "2026-11-22", "format": "csv"},
        headers=bearer(),
    )
    assert len(list(csv.DictReader(io.StringIO(whole.text, newline="")))) == 7


def test_movements_per_local_day_add_up(client: TestClient) -> None:
    params = {"from": "2026-11-18", "to": "2026-11-22"}
    body = client.get("/v1/accounts/a1/movements", params=params, headers=bearer()).json()
    days = body["days"]
    assert [d["date"] for d in days] == [f"2026-11-{n}" for n in range(18, 23)]
    assert days[0]["opening_balance_micros"] == days[0]["closing_balance_micros"] == 0
    for before, after in itertools.pairwise(days):
        assert after["opening_balance_micros"] == before["closing_balance_micros"]
    for day in days:
        moved = day["credits_micros"] - day["debits_micros"]
        assert day["opening_balance_micros"] + moved == day["closing_balance_micros"]
    assert days[1]["credits_by_kind_micros"] == {"topup": 5_000_000}
    assert days[1]["debits_by_kind_micros"] == {"call": 600_000}
    instants = {"from": "2026-11-18T00:00:00Z"}
    problem(client.get("/v1/accounts/a1/movements", params=instants, headers=bearer()), 400)


def test_statements_without_a_store_or_with_a_failing_one_are_503(
    accounts: MemoryAccounts, statements: MemoryStatements, metrics: ApiMetrics
) -> None:
    with TestClient(create_api(services(accounts, None, metrics))) as c:
        body = problem(c.get("/v1/accounts/a1/statement", headers=bearer()), 503)
        assert body["detail"].startswith("statements are not configured")
        problem(c.get("/v1/accounts/a1/movements", headers=bearer()), 503)
        assert c.get("/v1/accounts/a1", headers=bearer()).status_code == 200
    statements.failing = OSError("connection refused")
    with TestClient(create_api(services(accounts, statements, metrics))) as c:
        problem(c.get("/v1/accounts/a1/statement", headers=bearer()), 503)
        problem(c.get("/v1/accounts/a1/statement?format=csv", headers=bearer()), 503)


def test_ready_says_whether_the_statement_store_answers(
    accounts: MemoryAccounts, statements: MemoryStatements, metrics: ApiMetrics
) -> None:
    """No store: ready, statements "not configured". A store that fails or hangs: 503, and
    a hung one is given up after `ready_timeout_s`, so the probe gets its answer."""
    with TestClient(create_api(services(accounts, None, metrics))) as c:
        answer = c.get("/ready")
        assert answer.status_code == 200, answer.text
        assert answer.json()["checks"]["statements"] == "not configured"
    with TestClient(create_api(services(accounts, statements, metrics))) as c:
        answer = c.get("/ready")
        assert answer.status_code == 200 and answer.json()["checks"]["statements"] == "ok"
        statements.failing = OSError("connection refused to 10.0.0.7")
        answer = c.get("/ready")
        assert answer.status_code == 503 and answer.json()["status"] == "unavailable"
        assert answer.json()["checks"]["statements"] == "error: OSError"  # the type alone
        assert "10.0.0.7" not in answer.text
    statements.failing = None

    async def hangs() -> None:
        await asyncio.Event().wait()

    statements.ping = hangs  # type: ignore[method-assign]
    hung = dataclasses.replace(services(accounts, statements, metrics), ready_timeout_s=0.2)
    with TestClient(create_api(hung)) as c:
        answer = c.get("/ready")
        assert answer.status_code == 503
        assert answer.json()["checks"] == {
            "statements": "error: no answer within 0.2s",
            "rate_plans": "ok",
        }


def test_latency_is_labelled_by_route_template_never_by_account(
    client: TestClient, metrics: ApiMetrics
) -> None:
    client.get("/v1/accounts/a1", headers=bearer())
    client.get("/v1/accounts/nobody", headers=bearer())
    client.get("/v1/accounts/a1")
    client.get("/no/such/path/a1")
    text = client.get("/metrics").text
    assert "a1" not in text and "nobody" not in text
    count = metrics.registry.get_sample_value

    def requests(route: str, status: str, method: str = "GET") -> float | None:
        labels = {"route": route, "method": method, "status": status}
        return count("charger_api_request_seconds_count", labels)

    assert requests("/v1/accounts/{account}", "200") == 1
    assert requests("/v1/accounts/{account}", "404") == 1
    assert requests("unmatched", "401") == 1  # refused before routing
    assert requests("unmatched", "404") == 1


def test_the_openapi_document_declares_what_the_api_answers(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    operations = [(path, op) for path, item in doc["paths"].items() for op in item.values()]
    assert {path for path, _ in operations} == {
        "/v1/accounts/{account}",
        "/v1/accounts/{account}/rates",
        "/v1/authorize",
        "/v1/accounts/{account}/statement",
        "/v1/accounts/{account}/movements",
    }
    for path, op in operations:
        assert op["security"] == [{"bearer": []}], path
        assert "422" not in op["responses"], path
        for status in ("400", "401", "404", "503"):
            content = op["responses"][status]["content"]
            assert list(content) == [PROBLEM], (path, status)


def test_the_billing_page_is_served_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/billing/")
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert (
        client.get("/billing/billing.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    assert client.get("/", follow_redirects=False).headers["location"] == "/billing/"


def test_a_bug_is_a_500_problem_and_counted(
    accounts: MemoryAccounts, statements: MemoryStatements, metrics: ApiMetrics
) -> None:
    accounts.failing = ZeroDivisionError("a bug")  # not a backend failure
    app = create_api(services(accounts, statements, metrics))
    with TestClient(app, raise_server_exceptions=False) as c:
        problem(c.get("/v1/accounts/a1", headers=bearer()), 500)
        problem(
            c.post("/v1/authorize", json={"account": "a1", "kind": "sms"}, headers=bearer()), 500
        )
    labels = {"route": "/v1/accounts/{account}", "method": "GET", "status": "500"}
    assert metrics.registry.get_sample_value("charger_api_request_seconds_count", labels) == 1


def test_an_oversized_authorization_is_refused_unread(client: TestClient) -> None:
    body = b'{"account": "a1", "kind": "sms", "to": "' + b"1" * 20_000 + b'"}'
    answer = client.post("/v1/authorize", content=body, headers=bearer())
    problem(answer, 413)
    doc = client.get("/openapi.json").json()
    assert "413" in doc["paths"]["/v1/authorize"]["post"]["responses"]
