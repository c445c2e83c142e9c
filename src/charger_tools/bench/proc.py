"""Process figures the benchmark reads: CPU time and peak RSS from /proc, Redis INFO."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

_TICKS = os.sysconf("SC_CLK_TCK")


def say(msg: str) -> None:
    """A progress line on stdout."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, or None when it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses and may contain spaces.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_ticks() -> tuple[int, int] | None:
    """(stolen, total) clock ticks of all CPUs since boot, from /proc/stat; None elsewhere.

    Stolen time is time the hypervisor ran something else while this machine had work:
    on a virtual machine it stalls every process at once, whatever they do."""
    try:
        line = Path("/proc/stat").read_text().split("\n", 1)[0]
    except OSError:
        return None
    ticks = [int(field) for field in line.split()[1:]]
    return ticks[7], sum(ticks[:8])  # user … steal; guest time is inside user already


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """VmHWM (peak resident set size) of a process in MiB, or None when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


async def redis_cpu_seconds(client: Redis) -> float:
    """CPU seconds the Redis server used so far (user + system, all its threads)."""
    info: dict[str, Any] = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def redis_used_memory(client: Redis) -> int:
    info: dict[str, Any] = await client.info("memory")
    return int(info["used_memory"])


async def redis_commands(client: Redis) -> int:
    info: dict[str, Any] = await client.info("stats")
    return int(info["total_commands_processed"])


async def redis_command_calls(client: Redis, names: tuple[str, ...]) -> int:
    """Calls of the named commands so far (commands a script runs count under their name)."""
    info: dict[str, Any] = await client.info("commandstats")
    return sum(int(info.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write atomically, so a reader polling the file never sees half of it."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(doc))
    tmp.replace(path)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None
