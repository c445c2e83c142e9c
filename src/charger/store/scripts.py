"""Lua scripts shipped as package files, registered once per Redis client.

Each script is its generated prelude (`charger.protocol.lua`: names for every key, field,
op and output) followed by its package files: read.lua alone; apply.lua assembled from
the files of ``lua/apply/`` by concern, in `APPLY_PARTS` order (a Lua local exists only
below its definition, so what is used comes first).

Pipelines send EVALSHA straight away. redis-py's registered scripts would first ask
SCRIPT EXISTS on every pipeline execution: one more round trip per batch step, which at
small batches cost more than the scripts. A script the server does not know (a restart
without persistence, SCRIPT FLUSH, a failover to a replica that never saw it) answers
NOSCRIPT; then every script is loaded and the pipeline runs again. Running it again is
harmless: read.lua reads, and apply.lua skips what its watermark and seen ids say was
applied.

On a Redis Cluster, SCRIPT LOAD goes to every primary, and each EVALSHA to the primary
serving the slot key it declares. Replicas do not get scripts from their primary, so a
replica promoted by a failover answers NOSCRIPT: the scripts are loaded on every primary
again and the pipeline runs again, on every node (the calls that had succeeded elsewhere
skip, as above).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

from charger.protocol.lua import apply_prelude, read_prelude
from charger.protocol.ops import Value
from charger.store.client import RedisClient, RedisPipeline

APPLY_PARTS = (
    "arithmetic",
    "accounts",
    "money",
    "subscriptions",
    "recharge",
    "sessions",
    "sharing",
    "holds",
    "calls",
    "tick",
    "dispatch",
)


def lua_source(*path: str) -> str:
    """The text of ``charger/lua/<path>.lua``."""
    *folders, name = path
    return resources.files("charger").joinpath("lua", *folders, f"{name}.lua").read_text("utf-8")


def apply_source() -> str:
    parts = [lua_source("apply", part) for part in APPLY_PARTS]
    return "\n".join([apply_prelude(), *parts])


def read_source() -> str:
    return "\n".join([read_prelude(), lua_source("read")])


class Script:
    """One script: its source and the SHA1 the server knows it by."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __call__(self, pipe: RedisPipeline, keys: list[str], args: list[Value]) -> None:
        """Queue one EVALSHA of this script on `pipe`."""
        # By name: redis-py's cluster pipeline refuses its evalsha method, as a script's
        # keys could be anywhere. Ours declare one slot key, by which EVALSHA is routed.
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)


class Scripts:
    """The worker's scripts, bound to one client; EVALSHA with a reload on NOSCRIPT."""

    def __init__(self, client: RedisClient) -> None:
        self.client = client
        self.apply = Script("apply", apply_source())
        self.read = Script("read", read_source())
        self.loads = 0

    async def load(self) -> None:
        # On a cluster: on every primary (redis-py's routing of SCRIPT LOAD).
        for script in (self.apply, self.read):
            await self.client.script_load(script.source)
        self.loads += 1

    async def run(self, queue: Callable[[RedisPipeline], None]) -> list[Any]:
        """Execute one pipeline that `queue` fills; once more after loading on NOSCRIPT."""
        try:
            return await self._execute(queue)
        except NoScriptError:
            await self.load()
        return await self._execute(queue)

    async def _execute(self, queue: Callable[[RedisPipeline], None]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        queue(pipe)
        res: list[Any] = await pipe.execute()
        return res
