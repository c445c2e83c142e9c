"""The API application: built from its services, so tests and `charger api` wire it alike.

`create_api(services)` is the one factory. Its services are interfaces: accounts from
Redis (`charger.api.accounts.AccountReader`), rate plans as the worker has them (a
`PlanBook`), statements from a `StatementReader` (None: the statement routes answer 503).
Nothing here builds a client from settings: that is `charger.api.service`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import charger
from charger.api.auth import RequireToken, Tokens
from charger.api.fastlane import FastLane
from charger.api.models import Health
from charger.api.observe import STATIC_PREFIX, Observe
from charger.api.problems import (
    PROBLEM_JSON,
    ApiProblem,
    FieldError,
    Problem,
    on_http_error,
    on_invalid_request,
    on_problem,
    on_unexpected,
)
from charger.api.routes import v1_router
from charger.api.statements import statements_router
from charger.charging.authorization import AccountView
from charger.clock import Clock, SystemClock
from charger.metrics import ApiMetrics
from charger.rating.versions import PlanVersions
from charger.statements.reader import StatementReader

STATIC_DIR: Final = Path(__file__).parent / "static"
# The billing page runs only its own script and talks only to this server.
PAGE_HEADERS: Final = (
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        b"img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
)


class AccountSource(Protocol):
    async def account(self, account: str, full: bool = True) -> AccountView | None:
        """The account, or None when it does not exist; `full=False` may leave all but
        what an authorization needs (currency, plan, balance, held, credit limit,
        suspended) at their empty values."""
        ...


@dataclass
class ApiServices:
    accounts: AccountSource
    # The plans in force, as `PlanBook.current` gives them, and whether they are complete
    # (the rate plan topic read up to its end).
    plans: Callable[[], Mapping[str, PlanVersions]]
    tokens: Tokens
    statements: StatementReader | None = None
    plans_ready: Callable[[], bool] = lambda: True
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    clock: Clock = field(default_factory=SystemClock)
    # The session TTL (`CHARGER_MAX_CALL_S`): no call lasts longer.
    max_call_s: int = 4 * 3600
    # Readiness: name -> an awaitable that raises when that backend does not answer.
    checks: Mapping[str, Callable[[], Awaitable[Any]]] = field(default_factory=dict)
    # How long /ready waits for each backend (these checks and the statement store's
    # ping): a database or Redis that hangs makes the pod not ready, never a probe that
    # times out. Below the readinessProbe's timeoutSeconds (deploy/k8s/statements).
    ready_timeout_s: float = 2.0


class PageHeaders:
    """ASGI wrapper adding `PAGE_HEADERS` to every answer of the wrapped app."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *PAGE_HEADERS]
            await send(message)

        await self.app(scope, receive, sending)


class ChargerApi(FastAPI):
    """FastAPI with charger's own layers outside its middleware stack, not inside it.

    Every request is timed (`Observe`), the 401s of the token check included; the token is
    checked before anything else reads the request (`RequireToken`); `POST /v1/authorize`
    is answered right there (`FastLane`). FastAPI's own outer middleware (its error
    page, exception telemetry, body limit) wraps only what reaches its router: those
    layers cost the authorization about a fifth of its CPU (docs/performance.md).
    """

    # Set by `create_api`: the layers around FastAPI's stack, given that stack.
    outer_layers: Callable[[ASGIApp], ASGIApp] | None = None

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        return inner if self.outer_layers is None else self.outer_layers(inner)


def create_api(services: ApiServices) -> FastAPI:
    app = ChargerApi(
        title="charger API",
        version=charger.__version__,
        description=(
            "Balances, authorization, statements and the movements of funds of charger's "
            "accounts. Money is integer micro-units of the account's currency. Every /v1 "
            "route needs `Authorization: Bearer <token>`; errors are "
            "`application/problem+json` (RFC 9457)."
        ),
        docs_url=None,
        redoc_url=None,
        # charger's metrics are Prometheus' (charger.api.observe); FastAPI's own
        # OpenTelemetry hooks (newer releases) would only cost time on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.add_exception_handler(ApiProblem, on_problem)
    app.add_exception_handler(RequestValidationError, on_invalid_request)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
    v1 = v1_router(services)
    app.include_router(v1)
    app.include_router(statements_router(services))
    _operations(app, services)
    app.mount(STATIC_PREFIX, PageHeaders(StaticFiles(directory=STATIC_DIR, html=True)))
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    authorize_route = _route(v1.routes, "/v1/authorize")
    app.outer_layers = lambda inner: Observe(
        RequireToken(FastLane(inner, services, authorize_route), services.tokens),
        services.metrics,
    )
    return app


def _route(routes: Sequence[BaseRoute], path: str) -> APIRoute:
    (route,) = [r for r in routes if isinstance(r, APIRoute) and r.path == path]
    return route


def _operations(app: FastAPI, services: ApiServices) -> None:
    """Health, readiness, metrics and the way to the billing page: no token, no schema."""

    @app.get("/", include_in_schema=False)
    async def home() -> Response:
        return RedirectResponse(f"{STATIC_PREFIX}/")

    @app.get("/health", include_in_schema=False)
    async def health() -> Health:
        return Health(status="ok", checks={})

    @app.get("/ready", include_in_schema=False)
    async def ready() -> Response:
        waits = dict(services.checks)
        # Statements are optional: without a store /ready says so and stays ready; with
        # one, a store that does not answer makes the instance not ready.
        if services.statements is not None:
            waits["statements"] = services.statements.ping
        names = list(waits)
        answers = await asyncio.gather(
            *(_answer(waits[name], services.ready_timeout_s) for name in names)
        )
        checks = dict(zip(names, answers, strict=True))
        checks["rate_plans"] = "ok" if services.plans_ready() else "loading"
        checks.setdefault("statements", "not configured")
        ok = all(checks[name] == "ok" for name in (*names, "rate_plans"))
        body = Health(status="ok" if ok else "unavailable", checks=checks)
        return JSONResponse(body.model_dump(), 200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        services.metrics.rate_plans.set(len(services.plans()))
        body = generate_latest(services.metrics.registry)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})


async def _answer(check: Callable[[], Awaitable[Any]], timeout_s: float) -> str:
    """ "ok", or the error's type (never its text: it may hold an address or a secret)."""
    try:
        await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return f"error: no answer within {timeout_s:g}s"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the API's real error shapes: problems instead of the 422
    FastAPI declares by default (validation errors are answered 400), and the bearer scheme
    every /v1 operation needs."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for model in (Problem, FieldError):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        schemas[model.__name__] = schema
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            answers = operation.setdefault("responses", {})
            answers.pop("422", None)
            if path.startswith("/v1/"):
                operation["security"] = [{"bearer": []}]
                answers.setdefault("401", _problem("Unauthorized"))
                answers.setdefault("400", _problem("Bad Request"))
    app.openapi_schema = doc
    return doc


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
