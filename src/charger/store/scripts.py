"""Lua scripts shipped as package files, registered once per Redis client."""

from __future__ import annotations

from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


def lua_source(name: str) -> str:
    """The text of ``charger/lua/<name>.lua``."""
    return resources.files("charger").joinpath("lua", f"{name}.lua").read_text("utf-8")


class Scripts:
    """The worker's scripts, bound to one client; EVALSHA with a reload on NOSCRIPT."""

    def __init__(self, client: Redis) -> None:
        self.apply: AsyncScript = client.register_script(lua_source("apply"))
        self.read: AsyncScript = client.register_script(lua_source("read"))
