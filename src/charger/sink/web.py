"""The ledger sink's web port: `/metrics`, `/health` and `/ready`, on asyncio streams.

Three read-only pages need no web framework: each request is one GET answered with
`Connection: close`, which is all Prometheus and a probe do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

__all__ = ["StatusPage", "WebServer"]

log = logging.getLogger("charger.sink.web")

# A handler's answer: (status, body as JSON).
StatusPage = Callable[[], Awaitable[tuple[bool, dict[str, Any]]]]
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_READ_TIMEOUT_S = 5.0


class WebServer:
    """Serves the registry at /metrics and the status pages given (path: handler)."""

    def __init__(
        self, registry: CollectorRegistry, pages: dict[str, StatusPage], host: str, port: int
    ) -> None:
        self.registry = registry
        self.pages = pages
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen; returns the port (the one the OS chose for port 0)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        port: int = self._server.sockets[0].getsockname()[1]
        self.port = port
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            method, path = _request_line(head)
            status, content_type, body = await self._answer(method, path)
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that went away or never finished its request
        except Exception:
            log.exception("web request failed")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain", b"method not allowed\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE_PLAIN_0_0_4, generate_latest(self.registry)
        page = self.pages.get(path)
        if page is None:
            return 404, "text/plain", b"not found\n"
        ok, doc = await page()
        return (200 if ok else 503), "application/json", orjson.dumps(doc)


def _request_line(head: bytes) -> tuple[str, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, _, rest = line.partition(" ")
    target = rest.partition(" ")[0]
    return method.upper(), target.split("?", 1)[0]
