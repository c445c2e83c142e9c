"""Making Redis forget: a consistent copy of a run's keys, and going back to it.

A replica that missed its primary's last writes, promoted by a failover, or a server
restarted from an older snapshot, holds the state of some earlier moment: every key as it
was then. `remember` copies a run's keys in one script call (atomic, so consistent even
while the worker writes), and `forget_since` puts them all back in one call.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

# Scripts reach keys they do not declare: a tool for tests and chaos runs on a single
# server, never the worker.
_REMEMBER = """
local out = {}
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  out[#out + 1] = key
  out[#out + 1] = redis.call('DUMP', key)
  out[#out + 1] = redis.call('PTTL', key)
end
return out
"""

_GO_BACK = """
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  redis.call('DEL', key)
end
for i = 2, #ARGV, 3 do
  local ttl = tonumber(ARGV[i + 2])
  if ttl < 0 then ttl = 0 end
  redis.call('RESTORE', ARGV[i], ttl, ARGV[i + 1], 'REPLACE')
end
return 1
"""


@dataclass(frozen=True)
class RedisState:
    pattern: str
    dumped: list[bytes | int]  # key, DUMP payload, PTTL, ...

    @property
    def keys(self) -> int:
        return len(self.dumped) // 3


async def remember(redis: Redis, prefix: str) -> RedisState:
    """Every key of `prefix`, as it is at this instant."""
    pattern = f"{prefix}:*"
    dumped: list[bytes | int] = await redis.eval(_REMEMBER, 0, pattern)
    return RedisState(pattern, dumped)


async def forget_since(redis: Redis, state: RedisState) -> None:
    """Redis goes back to `state`: what was written since is gone, at one instant."""
    await redis.eval(_GO_BACK, 0, state.pattern, *state.dumped)
