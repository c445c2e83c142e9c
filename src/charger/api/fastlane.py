"""`POST /v1/authorize` without FastAPI's per-request machinery.

The switch asks before every call, so this route carries the API's load (docs/performance.md:
1,000 requests/s with p99 ≤ 5 ms). FastAPI's routing, dependency solving and its own
middleware cost about twice what answering does; this ASGI app answers the one route
itself: the same body model (`AuthorizeRequest`, validated from the raw JSON by pydantic),
the same `answer_authorization`, the same problems, the same JSON. It sits inside the
token check and the latency metrics, which see the route's template as usual, and outside
FastAPI's own middleware (`charger.api.app.ChargerApi`); every other request goes on to
FastAPI, where the route is also declared (and documented).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import orjson
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from charger.api.models import AuthorizeRequest
from charger.api.problems import UNEXPECTED, ApiProblem, FieldError, problem_response
from charger.api.routes import answer_authorization

if TYPE_CHECKING:
    from charger.api.app import ApiServices

log = logging.getLogger("charger.api")

PATH: Final = "/v1/authorize"
# A body bigger than this is no authorization request.
MAX_BODY: Final = 16 * 1024
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]


class FastLane:
    def __init__(self, app: ASGIApp, services: ApiServices, route: APIRoute) -> None:
        self.app = app
        self.services = services
        self.route = route
        self.adapter: TypeAdapter[AuthorizeRequest] = TypeAdapter(AuthorizeRequest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # the template label, as FastAPI would set it
        body = await _body(receive)
        try:
            if body is None:
                raise ApiProblem(413, f"an authorization request is at most {MAX_BODY} bytes")
            request = self.adapter.validate_json(body)
            answer = await answer_authorization(self.services, request)
        except ValidationError as exc:
            errors = [
                FieldError(
                    location=".".join(str(part) for part in ("body", *error["loc"])),
                    message=error["msg"],
                )
                for error in exc.errors()
            ]
            detail = "; ".join(f"{e.location}: {e.message}" for e in errors)
            await problem_response(400, detail, PATH, errors)(scope, receive, send)
            return
        except ApiProblem as problem:
            response = problem_response(problem.status, problem.detail, PATH)
            await response(scope, receive, send)
            return
        except Exception:
            # Outside FastAPI's error middleware: a bug is answered here, as there.
            log.exception("unexpected error answering %s", PATH)
            await problem_response(500, UNEXPECTED, PATH)(scope, receive, send)
            return
        payload = orjson.dumps(answer.model_dump(mode="json", exclude_none=True))
        headers = [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


async def _body(receive: Receive) -> bytes | None:
    """The request's body; None when it is longer than MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
