"""Waiting for a condition, with a deadline and a message that says what never happened."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
from collections.abc import Awaitable, Callable

import pytest

Check = Callable[[], bool | Awaitable[bool]]


async def until(
    check: Check,
    what: str,
    timeout: float = 30.0,
    *,
    interval: float = 0.1,
    process: subprocess.Popen[bytes] | None = None,
    detail: Callable[[], str] | None = None,
) -> None:
    """Until `check()` (plain or async) is true; fails the test after `timeout` seconds.

    With `process`, fails at once when it exits (the check cannot come true then);
    `detail` adds to the failure message (a worker's last output, say).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        done = check()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        more = f"\n{detail()}" if detail is not None else ""
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}{more}")
        if loop.time() > deadline:
            pytest.fail(f"{what}: not within {timeout}s{more}")
        await asyncio.sleep(interval)
