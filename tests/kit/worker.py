"""Workers for the tests: `charger worker` as a real process, or the runtime in this process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO

import pytest

from charger.clock import Clock
from charger.runtime import Runtime
from charger.settings import Settings
from charger_tools.embedded import free_port
from charger_tools.processes import stop_process
from tests.kit.harness import Run
from tests.kit.http import get_async
from tests.kit.waits import Check, until

REPOSITORY = Path(__file__).resolve().parents[2]


def spawn_worker(
    run: Run,
    web_port: int = 0,
    *,
    log_level: str | None = "info",
    stdout: int | IO[bytes] = subprocess.PIPE,
    stderr: int | IO[bytes] = subprocess.STDOUT,
    env: Mapping[str, str] | None = None,
    failpoint: str = "",
) -> subprocess.Popen[bytes]:
    """`charger worker` as a real process (the same entry point operators run).

    It serves /metrics, /health and /ready on `web_port` (default: a free port). By default
    its JSON logs (stdout) and anything on stderr come out of `stdout`: drain it.
    `log_level` is Faust's `-l` option; None leaves it to the worker. `env` adds to the
    run's environment (CHARGER_* settings). A `failpoint` (`tests.kit.failpoint_worker`)
    is installed in the process before the worker starts.
    """
    port = web_port or free_port()
    level = ["-l", log_level] if log_level else []
    entry = ["-m", "charger"]
    child_env = run.env(**(env or {}))
    if failpoint:
        entry = ["-m", "tests.kit.failpoint_worker", failpoint]
        # The child imports `tests` from the repository, wherever it is started from.
        child_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPOSITORY), child_env.get("PYTHONPATH", "")])
        )
    return subprocess.Popen(
        [sys.executable, *entry, "worker", "--web-port", str(port), *level],
        env=child_env,
        stdout=stdout,
        stderr=stderr,
    )


def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    return stop_process(proc, timeout)


class Worker:
    """A spawned `charger worker` whose output is drained (a full pipe would stall it)."""

    def __init__(self, run: Run, failpoint: str = "", **env: str) -> None:
        self.web_port = free_port()
        self.proc = spawn_worker(run, self.web_port, env=env, failpoint=failpoint)
        self.err = bytearray()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.err += line

    @property
    def output(self) -> str:
        """Everything the worker wrote so far."""
        return self.err.decode(errors="replace")

    def tail(self) -> str:
        return self.err[-3000:].decode(errors="replace")

    async def wait(self, timeout: float) -> int:
        try:
            return await asyncio.to_thread(self.proc.wait, timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running after {timeout}s:\n{self.tail()}")

    async def run_to_exit(self, timeout: float) -> int:
        """The exit code of a worker expected to end by itself; killed if it does not."""
        try:
            return await self.wait(timeout)
        finally:
            self.kill()

    async def started(self, timeout: float = 60.0) -> None:
        """Until the whole worker (charging path, then Faust's app and web) says Ready."""
        await self.until(lambda: b"]: Ready" in self.err, "worker not ready", timeout, 0.1)

    async def until(self, check: Check, what: str, timeout: float, interval: float = 0.2) -> None:
        """`until` while this worker runs: its exit fails the wait at once, with its output."""
        await until(check, what, timeout, interval=interval, process=self.proc, detail=self.tail)

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET `path` from the worker's web server: /metrics, /health, /ready."""
        return await get_async(f"http://127.0.0.1:{self.web_port}{path}")

    def stop(self) -> int:
        code = stop_worker(self.proc)
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    """The worker's runtime in this process, started, and stopped however the block ends."""
    runtime = Runtime(settings, clock=clock)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()
