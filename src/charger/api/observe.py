"""Request latency by route template, method and status (`charger_api_request_seconds`).

The label is the template the request matched (`/v1/accounts/{account}`), never its path:
account ids must not become label values, and neither may the arbitrary paths of requests
that matched nothing (`unmatched`).
"""

from __future__ import annotations

import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from charger.metrics import UNMATCHED_ROUTE, ApiMetrics

# Mounted static files carry no route object; their label is the mount's template.
STATIC_PREFIX: Final = "/billing"
# Any token is a method to HTTP: others are counted together.
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_of(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(template, str):
        return template
    if scope.get("path", "").startswith(STATIC_PREFIX):
        return f"{STATIC_PREFIX}/{{file}}"
    return UNMATCHED_ROUTE


class Observe:
    """ASGI middleware around everything else, the 401s of `RequireToken` included."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raised before it started one

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            seconds = time.perf_counter() - started
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.observe(route_of(scope), method, status, seconds)
