"""Bearer tokens on /v1: every request names one of `CHARGER_API_TOKENS`.

Several tokens are accepted at once so that one can be rotated without downtime: add the
new one to every instance, move the clients, withdraw the old one. A presented token is
compared with every configured one in constant time (`hmac.compare_digest`, and no early
exit), so neither the answer's timing nor its text says how close a guess came.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from charger.api.problems import problem_response

PROTECTED_PREFIX: Final = "/v1/"
CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="charger"'}


class Tokens:
    """The accepted tokens (kept as bytes; never logged, never shown)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(token.encode() for token in tokens)
        if not self._tokens:
            raise ValueError("at least one API token is needed (CHARGER_API_TOKENS)")

    def __repr__(self) -> str:
        return f"Tokens({len(self._tokens)} configured)"

    def accepts(self, presented: bytes) -> bool:
        match = False
        for token in self._tokens:
            match |= hmac.compare_digest(presented, token)
        return match


def bearer_of(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class RequireToken:
    """ASGI middleware: a /v1 request without an accepted token is answered 401 before it
    is routed or its body read."""

    def __init__(self, app: ASGIApp, tokens: Tokens) -> None:
        self.app = app
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        presented = bearer_of(scope["headers"])
        if presented is not None and self.tokens.accepts(presented):
            await self.app(scope, receive, send)
            return
        detail = (
            "this token is not accepted"
            if presented is not None
            else "an Authorization: Bearer <token> header is required"
        )
        response = problem_response(401, detail, scope["path"], headers=CHALLENGE)
        await response(scope, receive, send)
