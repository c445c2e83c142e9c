"""Errors as `application/problem+json` (RFC 9457): one shape for every failure the API
answers, and the OpenAPI responses that declare it."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any, Final

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

PROBLEM_JSON: Final = "application/problem+json"

log = logging.getLogger("charger.api")


class FieldError(BaseModel):
    """One invalid part of a request."""

    location: str = Field(description="Where: `query.limit`, `body.kind`, `path.account`…")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details. `type` is `about:blank`: the status says what kind of
    problem it is, `detail` what exactly went wrong."""

    model_config = ConfigDict(json_schema_extra={"additionalProperties": True})

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="The request's path.")
    errors: list[FieldError] | None = Field(None, description="400: every invalid part.")


class ApiProblem(Exception):
    """Raised by a route: answered as a problem with this status and detail."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def problem_response(
    status: int,
    detail: str,
    instance: str | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    if errors:
        body["errors"] = [e.model_dump() for e in errors]
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc)


def validation_errors(exc: RequestValidationError) -> list[FieldError]:
    return [
        FieldError(location=_location(error.get("loc", ())), message=str(error.get("msg", "")))
        for error in exc.errors()
    ]


async def on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiProblem)
    return problem_response(exc.status, exc.detail, request.url.path, headers=exc.headers)


async def on_invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc)
    detail = "; ".join(f"{e.location}: {e.message}" for e in errors) or "invalid request"
    return problem_response(400, detail, request.url.path, errors)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (an unknown route: 404, a wrong method: 405) as problems."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    return problem_response(exc.status_code, str(exc.detail), request.url.path, headers=headers)


# The detail of a 500: what went wrong is in the log, never in the answer.
UNEXPECTED: Final = "an unexpected error; it is logged"


async def on_unexpected(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback, answered as a problem like every other error."""
    log.error("unexpected error answering %s", request.url.path, exc_info=exc)
    return problem_response(500, UNEXPECTED, request.url.path)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the problems a route may answer."""
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }
