"""Plain HTTP GETs against a worker's or Prometheus's web server."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request


def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body); an error status comes back as such, no answer at all as (0, b"")."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


async def get_async(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """`get` off the event loop, so the servers of this process keep serving meanwhile."""
    return await asyncio.to_thread(get, url, timeout)


async def answers_ok(url: str) -> bool:
    return await answers_status(url, 200)


async def answers_status(url: str, expected: int) -> bool:
    status, _ = await get_async(url, 2.0)
    return status == expected
