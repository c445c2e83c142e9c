"""The Redis faults of a chaos run, struck one at a time while the stream goes on.

A fault takes seconds (a restart waits, a failover waits for a promotion and for the
killed node to come back as a replica), and the switch does not pause for Redis: each
fault runs beside the stream. They run one after another, in the order they fell due, so
a rollback planned during a failover acts on the primary that came out of it, and a
failover never starts before the previous one has its replica back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from charger.protocol.keys import Keys
from charger.store.client import RedisClient, not_there_yet
from charger_tools.chaos.backends import Failover, RedisBackend
from charger_tools.redis_state import (
    RedisState,
    forget_since,
    forget_slots,
    remember,
    remember_slots,
)

T = TypeVar("T")
ANSWER_WITHIN_S = 60.0  # how long a fault waits for Redis to answer again


async def once_redis_answers(work: Callable[[], Awaitable[T]]) -> T:
    """`work()`, tried again while Redis is away (a failover may be under way)."""
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while True:
        try:
            return await work()
        except Exception as exc:
            if not not_there_yet(exc) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


class RedisFaults:
    """Strikes the run's Redis faults on `backend`, through the run's own `client`."""

    def __init__(self, backend: RedisBackend, client: RedisClient, prefix: str, keys: Keys) -> None:
        self.backend = backend
        self.client = client
        self.prefix = prefix
        self.keys = keys
        self.restarts = 0
        self.rollbacks = 0
        self.failovers: list[Failover] = []
        self._remembered: list[RedisState] = []
        self._first_epoch: int | None = None
        self._last_epoch: int | None = None
        self._one_at_a_time = asyncio.Lock()  # fair: waiters go in the order they came

    async def count_epochs(self, first: bool) -> None:
        """Note the failover epoch at the start of the stream, or at its end."""
        epoch = await asyncio.to_thread(self.backend.epoch)
        if first:
            self._first_epoch = epoch
        else:
            self._last_epoch = epoch

    async def strike(self, action: str) -> None:
        async with self._one_at_a_time:
            if action == "redis_restart":
                await asyncio.to_thread(self.backend.restart)
                self.restarts += 1
            elif action == "redis_failover":
                self.failovers.append(await asyncio.to_thread(self.backend.failover))
            elif action == "redis_remember":
                self._remembered = await once_redis_answers(self._remember)
            elif action == "redis_rollback" and self._remembered:
                states, self._remembered = self._remembered, []
                await once_redis_answers(lambda: self._go_back(states))
                self.rollbacks += 1

    async def _remember(self) -> list[RedisState]:
        # One atomic copy on a single server (through Sentinels: on the primary); a
        # cluster runs a script on one node and one hash slot, so there slot by slot.
        if self.backend.mode == "cluster":
            return await remember_slots(self.client, self.keys)
        return [await remember(self.client, self.prefix)]

    async def _go_back(self, states: list[RedisState]) -> None:
        if self.backend.mode == "cluster":
            await forget_slots(self.client, states)
        else:
            await forget_since(self.client, states[0])

    def report(self) -> dict[str, Any]:
        unplanned = None
        if self._first_epoch is not None and self._last_epoch is not None:
            unplanned = self._last_epoch - self._first_epoch - len(self.failovers)
        return {
            "redis_mode": self.backend.mode,
            "redis_restarts": self.restarts,
            "redis_rollbacks": self.rollbacks,
            "redis_failovers": len(self.failovers),
            "redis_promotion_seconds": [round(f.promotion_s, 2) for f in self.failovers],
            "redis_replica_back_seconds": [round(f.rejoined_s, 2) for f in self.failovers],
            "redis_failed_over": [f"{f.killed} -> {f.promoted}" for f in self.failovers],
            # Failovers nobody planned: the Sentinels or the cluster found a primary
            # unresponsive on their own (a loaded machine, a long script).
            "redis_unplanned_failovers": unplanned,
        }
