"""A TCP proxy that can take a server "down" and bring it back, for the fault tests.

It runs on its own thread and event loop, so it keeps forwarding while the test blocks
(waiting for a process, say). `cut()` aborts every proxied connection and stops listening,
so clients see their connections reset and new ones refused, as when the server's host
goes away; `restore()` listens again on the same port. `cut_on(api_key)` cuts at a chosen
moment instead: when the next Kafka request of that kind arrives, which is not forwarded
(say the worker's offset commit, so the outage catches it mid-batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from charger_tools.embedded import free_port

T = TypeVar("T")
HOST = "127.0.0.1"
CHUNK = 64 * 1024


class Proxy:
    """Forwards `HOST:port` to `HOST:target`; `cut()` and `restore()` simulate an outage."""

    def __init__(self, target: int, port: int | None = None) -> None:
        self.target = target
        self.port = port or free_port()
        self.accepted = 0  # connections accepted while up
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._trip_on: int | None = None
        self.tripped = threading.Event()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self) -> Proxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        """Reset every open connection and refuse new ones."""
        self._call(self._cut())

    def cut_on(self, api_key: int) -> None:
        """Cut when the next Kafka request with `api_key` arrives (`tripped` is set then)."""
        self.tripped.clear()
        self._call(self._arm(api_key))

    def restore(self) -> None:
        self._call(self._listen())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- on the proxy's loop ----
    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, HOST, self.port, reuse_address=True
            )

    async def _arm(self, api_key: int) -> None:
        self._trip_on = api_key

    async def _cut(self) -> None:
        self._cut_now()

    def _cut_now(self) -> None:
        self.cuts += 1
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._open):
            writer.transport.abort()  # a reset, not a polite close
        self._open.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.target)
        except OSError:
            client_w.transport.abort()
            return
        pair = {client_w, server_w}
        if self._server is None:  # cut while connecting
            for w in pair:
                w.transport.abort()
            return
        self._open |= pair
        try:
            await asyncio.gather(self._requests(client_r, server_w), self._pipe(server_r, client_w))
        finally:
            self._open -= pair
            for w in pair:
                w.transport.abort()

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Client to server, one Kafka request frame (size, api key, …) at a time."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                size = await reader.readexactly(4)
                frame = await reader.readexactly(int.from_bytes(size, "big"))
                if self._trip_on is not None and int.from_bytes(frame[:2], "big") == self._trip_on:
                    self._trip_on = None
                    self._cut_now()
                    self.tripped.set()
                    return
                writer.write(size + frame)
                await writer.drain()
        writer.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        # One side ended: end the other, so neither waits forever.
        writer.transport.abort()
