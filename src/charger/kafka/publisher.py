"""Relay passes in the background, so publishing a batch overlaps planning the next one.

apply.lua writes every output to the slot's outbox in the call that moves the money, so
an offset may be committed once its batch is applied: what is not yet published is in
Redis and the relay (this process's, or the next owner's) publishes it. Publishing is
therefore taken off the batch's critical path: the batch loop kicks a pass and goes on
fetching, planning and applying the next batch, and waits for that pass only before it
kicks the next one, which bounds the outbox to about two batches and surfaces a failing
relay as a failed batch (rewound and retried with backoff, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Iterable

from charger.kafka.relay import Relay
from charger.metrics import Metrics

log = logging.getLogger("charger.publisher")


class Publisher:
    """Runs relay passes one at a time, in order, over a set of slots.

    States: idle → passing (one background task publishing; `kick`s meanwhile add their
    slots to one more pass that the same task runs next) → idle, or failed (the task ended
    with the relay's error; `settle` raises it once, the next `kick` or `drain` starts
    afresh). Passes never overlap: a pass holds `lock`, and so does an inline `drain`.
    """

    def __init__(self, relay: Relay, metrics: Metrics) -> None:
        self.relay = relay
        self.metrics = metrics
        self.lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._pending: set[int] = set()
        self.passes = 0

    def kick(self, slots: Iterable[int]) -> None:
        """Publish what `slots` have pending, soon, without waiting for it."""
        task = self._task
        if task is not None and not task.done():
            self._pending.update(slots)  # the running task makes one more pass
            return
        if task is not None and not task.cancelled():
            task.exception()  # a failure nobody settled: superseded by this pass
        self._pending = set(slots)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._pending:
            slots, self._pending = self._pending, set()
            await self._pass(slots)

    async def _pass(self, slots: Iterable[int]) -> Counter[str]:
        async with self.lock:
            published = await self.relay.drain(slots)
        self.passes += 1
        for kind, n in published.items():
            self.metrics.outputs.labels(kind).inc(n)
        return published

    async def drain(self, slots: Iterable[int]) -> Counter[str]:
        """One pass now, after any background one; its counts by output kind."""
        await self.quiesce()
        return await self._pass(slots)

    async def settle(self) -> None:
        """Wait for the background passes; raise the error of a failed one (once)."""
        task = self._task
        if task is None:
            return
        try:
            await asyncio.shield(task)
        finally:
            if task.done():
                self._task = None
                if not task.cancelled() and task.exception() is not None:
                    self._pending.clear()  # the caller retries with a full drain

    async def quiesce(self) -> None:
        """Wait for the background passes, whatever their outcome."""
        task = self._task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    def failure(self) -> BaseException | None:
        """The error of the last background pass, if it failed and was not settled."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def stop(self) -> None:
        """Let the passes in hand finish (a last publish before the producer closes)."""
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), 30)
        except Exception:
            log.warning("relay pass unfinished at stop; the outbox keeps its outputs")
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
