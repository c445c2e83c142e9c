"""Servers for the security tests: a Valkey running an ACL file, a TLS front for any port,
a broker behind such a front, and a run whose Redis is that Valkey; and for the
replication tests, a run on a primary with a replica and Sentinels.

The bundled Valkey is built without TLS and the embedded broker offers none either, so TLS
is terminated by `TlsFront`, a small proxy in this process: clients do a real handshake
against a certificate from a throwaway CA (optionally requiring their own certificate),
and the plain bytes go on to the real server behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import ssl
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from charger.connections import close_redis, redis_client
from charger.settings import Settings
from charger_tools.embedded import HOST, free_port, redis_binary, wait_port_sync
from charger_tools.processes import stop_process
from charger_tools.topology import Topology, start_topology
from tests.kit.acl import ROOT, WORKER_USER, render, users
from tests.kit.brokers import own_broker
from tests.kit.harness import Run

OPS_PASSWORD = "ops-dev-password"  # deploy/redis/README.md: the development password


def redis_server_binary() -> str:
    """Debian's `redis-server` (Redis 7, not Valkey): `.ci/run` installs it, so a missing
    one fails on CI and skips the test elsewhere."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is required on CI (Debian package redis-server)")
        pytest.skip("redis-server is not installed: the Redis 7 run is skipped")
    return binary


@contextlib.contextmanager
def valkey_with_acl(acl_text: str) -> Iterator[int]:
    """A Valkey on a free loopback port loading `acl_text` as its ACL file; yields the port.

    Stopped by its own pid afterwards, its directory removed.
    """
    workdir = Path(tempfile.mkdtemp(prefix="charger-acl-"))
    acl = workdir / "users.acl"
    acl.write_text(acl_text)
    port = free_port()
    log = open(workdir / "valkey.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            redis_binary(),
            *("--port", str(port), "--bind", HOST, "--aclfile", str(acl)),
            *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        try:
            wait_port_sync(HOST, port, timeout=20)
        except TimeoutError:
            proc.kill()
            raise RuntimeError((workdir / "valkey.log").read_text()) from None
        yield port
    finally:
        stop_process(proc, 5)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


class TlsFront:
    """Accepts TLS on a loopback port and relays the plain bytes to `HOST:upstream`.

    Runs its own event loop in a thread, so it serves in-process clients and child
    processes alike. `handshakes` counts completed TLS handshakes.
    """

    def __init__(self, upstream: int, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.upstream = upstream
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        if client_ca is not None:  # mutual TLS: the client must show a certificate of this CA
            self.ctx.verify_mode = ssl.CERT_REQUIRED
            self.ctx.load_verify_locations(client_ca)
        self.handshakes = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> TlsFront:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        self.port = started.result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> int:
        self._server = await asyncio.start_server(self._serve, HOST, 0, ssl=self.ctx)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1  # the handler runs only after a completed handshake
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        finally:
            with contextlib.suppress(Exception):
                dst.close()


@contextlib.contextmanager
def broker_behind(front_port: int, listen: int) -> Iterator[None]:
    """A broker of the session's kind on `listen` that advertises the TLS front's port."""
    with own_broker(port=listen, advertised=f"{HOST}:{front_port}"):
        yield


def worker_password() -> str:
    """The workers' development password, as docker-compose.yml gives it."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    password: str = doc["services"]["worker"]["environment"]["CHARGER_REDIS_PASSWORD"]
    return password


def api_password() -> str:
    """The API's Redis password (user `charger-api`), as docker-compose.yml gives it."""
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    password: str = doc["services"]["api"]["environment"]["CHARGER_REDIS_PASSWORD"]
    return password


@dataclass
class Locked:
    """A run whose Redis is a Valkey running the deploy ACL file for the run's prefix."""

    run: Run
    port: int
    password: str
    ops: Redis

    def client(self, **kw: Any) -> Redis:
        kw.setdefault("username", WORKER_USER)
        kw.setdefault("password", self.password)
        return Redis(host=HOST, port=self.port, **kw)


@contextlib.asynccontextmanager
async def locked_run(bootstrap: str) -> AsyncIterator[Locked]:
    """A started run on `bootstrap` whose Redis is a Valkey of its own, locked down."""
    password = worker_password()
    acl = users()
    assert acl[WORKER_USER].accepts(password) and acl["ops"].accepts(OPS_PASSWORD)
    run = Run(bootstrap, f"redis://{HOST}:1/0")  # pointed at the Valkey below
    await run.redis.aclose()
    with valkey_with_acl(render(run.settings.redis_prefix)) as port:
        run.redis_url = f"redis://{HOST}:{port}/0"
        # The harness reads balances and outbox backlogs as the worker's user too.
        run.redis = Redis(host=HOST, port=port, username=WORKER_USER, password=password)
        ops = Redis(host=HOST, port=port, username="ops", password=OPS_PASSWORD)
        await run.start()
        try:
            yield Locked(run, port, password, ops)
        finally:
            await run.close()
            await ops.aclose()


@dataclass
class Replicated:
    """A run whose Redis is a primary with replicas (and Sentinels, when started)."""

    run: Run
    topology: Topology

    def settings(self, **changes: Any) -> Settings:
        """The run's settings, through the Sentinels when there are any, else the primary."""
        if not self.topology.sentinels:
            return self.run.settings_with(**changes)
        where = {
            "redis_url": "",
            "redis_sentinels": self.topology.sentinel_addresses,
            "redis_sentinel_master": self.topology.master,
        }
        return self.run.settings_with(**where, **changes)


@contextlib.asynccontextmanager
async def replicated_run(
    bootstrap: str, *, replicas: int = 1, sentinels: int = 3, durable: bool = False
) -> AsyncIterator[Replicated]:
    """A started run on a replicated Redis of its own, every process of it stopped after.

    The harness's own client follows the primary the Sentinels name, as the worker does."""
    topology = await asyncio.to_thread(
        start_topology, replicas, sentinels, durable=durable, master="charger-test"
    )
    try:
        run = Run(bootstrap, topology.nodes[0].address)
        replicated = Replicated(run, topology)
        if sentinels:
            await run.redis.aclose()
            run.redis = redis_client(
                replicated.settings(),
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 20),
                retry_on_error=[RedisConnectionError],
            )
        await run.start()
        try:
            yield replicated
        finally:
            await run.producer.stop()
            await close_redis(run.redis)
    finally:
        await asyncio.to_thread(topology.stop)
