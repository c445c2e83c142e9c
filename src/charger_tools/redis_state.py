"""Making Redis forget: a consistent copy of a run's keys, and going back to it.

A replica that missed its primary's last writes, promoted by a failover, or a server
restarted from an older snapshot, holds the state of some earlier moment: every key as it
was then. `remember` copies a run's keys in one script call (atomic, so consistent even
while the worker writes), and `forget_since` puts them all back in one call.

A Redis Cluster runs a script on one node, over keys of one hash slot: there
`remember_slots` copies each of charger's slots (one hash tag) in a call of its own, sent
to the node serving it by the one key it declares, and `forget_slots` puts each back. Each
slot goes back to an instant of its own, as each primary's replica lags by its own amount;
a slot is what the worker keeps consistent (its watermark lives with its money).
"""

from __future__ import annotations

from dataclasses import dataclass

from charger.protocol.keys import Keys
from charger.store.client import RedisClient

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
    route: str = ""  # a key of the pattern's hash slot, declared so a cluster routes the call

    @property
    def keys(self) -> int:
        return len(self.dumped) // 3


async def remember(redis: RedisClient, prefix: str, route: str = "") -> RedisState:
    """Every key of `prefix`, as it is at this instant (on a cluster, `route` names a key
    of the one hash slot `prefix` ends in)."""
    pattern = f"{prefix}:*"
    routing = (1, route) if route else (0,)
    dumped: list[bytes | int] = await redis.eval(_REMEMBER, *routing, pattern)
    return RedisState(pattern, dumped, route)


async def forget_since(redis: RedisClient, state: RedisState) -> None:
    """Redis goes back to `state`: what was written since is gone, at one instant."""
    routing = (1, state.route) if state.route else (0,)
    await redis.eval(_GO_BACK, *routing, state.pattern, *state.dumped)


async def remember_slots(redis: RedisClient, keys: Keys) -> list[RedisState]:
    """Every key of every slot of `keys`, each slot copied atomically on its own node."""
    return [
        await remember(redis, keys.tag(slot), route=keys.watermark(slot))
        for slot in range(keys.slots)
    ]


async def forget_slots(redis: RedisClient, states: list[RedisState]) -> None:
    """Every slot goes back to its state in `states`."""
    for state in states:
        await forget_since(redis, state)
