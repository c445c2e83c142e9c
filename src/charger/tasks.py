"""Background tasks a service starts and, when it stops, ends on purpose."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if there is one) and wait until it has ended.

    The cancellation it asked for is expected and swallowed; any other error the task
    ends with is raised here.
    """
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
