"""Dependency faults: which dependency failed, how long to back off, and whether each answers.

The worker depends on Redis (balances, outbox) and on the Kafka broker (inputs, outputs,
offsets). When one of them fails, a loop (the batch loop, the ticker) neither exits nor
spins: it counts the failure by dependency, waits a capped exponential backoff and tries
again; the first success resets the wait. A `Probe` asks both dependencies every second
whether they answer, so `charger_dependency_up` is right also while no traffic flows.
`charger ledger-sink` retries its batches with the same `Retrier`, on its own metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from charger.faults import dependency_of, summarize_error

if TYPE_CHECKING:
    from charger.metrics import Metrics
    from charger.settings import Settings


class Backoff:
    """Capped exponential backoff: `min_s`, 2·`min_s`, 4·`min_s` … up to `max_s`.

    Each wait is shortened by up to `jitter` of itself at random, so that workers that
    failed together do not all come back at the same instant; it never exceeds `max_s`.
    """

    def __init__(
        self,
        min_s: float,
        max_s: float,
        jitter: float = 0.2,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.min_s = min_s
        self.max_s = max(min_s, max_s)
        self.jitter = jitter
        self.rand = rand
        self.attempts = 0

    def next(self) -> float:
        """The wait before the next attempt (and count this attempt)."""
        base = min(self.max_s, self.min_s * 2.0 ** min(self.attempts, 62))
        self.attempts += 1
        return base * (1 - self.jitter * self.rand())

    def reset(self) -> None:
        self.attempts = 0


def backoff_for(s: Settings) -> Backoff:
    """A loop's backoff after a failure, from `CHARGER_RETRY_BACKOFF_MIN_MS` / `_MAX_MS`."""
    return Backoff(s.retry_backoff_min_ms / 1000, s.retry_backoff_max_ms / 1000)


class RetryMetrics(Protocol):
    """What a `Retrier` records: the worker's `Metrics`, the ledger sink's `SinkMetrics`."""

    def error(self, stage: str, exc: BaseException) -> None: ...

    def backing_off(self, stage: str, dependency: str, delay: float) -> None: ...


class Retrier:
    """The failure handling of one loop: count, log and back off; reset on success.

    The first failure of a streak is logged with its traceback, the following ones as one
    line each, and the recovery once, with how many attempts and seconds it took.
    """

    def __init__(
        self, stage: str, metrics: RetryMetrics, backoff: Backoff, logger: logging.Logger
    ) -> None:
        self.stage = stage
        self.metrics = metrics
        self.backoff = backoff
        self.log = logger
        self.failing_since: float | None = None

    async def failed(self, exc: BaseException, stop: asyncio.Event | None = None) -> float:
        """Record `exc` and wait the next backoff (cut short by `stop`). Returns the wait."""
        dep = dependency_of(exc)
        self.metrics.error(self.stage, exc)
        delay = self.backoff.next()
        info = {
            "stage": self.stage,
            "dependency": dep,
            "attempt": self.backoff.attempts,
            "retry_in_s": round(delay, 3),
            "error": summarize_error(exc),
        }
        if self.failing_since is None:
            self.failing_since = time.monotonic()
            self.log.error(
                "%s failed; backing off and retrying", self.stage, extra=info, exc_info=exc
            )
        else:
            self.log.warning("%s failed again; backing off", self.stage, extra=info)
        self.metrics.backing_off(self.stage, dep, delay)
        try:
            if stop is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
        finally:
            self.metrics.backing_off(self.stage, dep, 0.0)  # the wait is over
        return delay

    def succeeded(self) -> None:
        if self.failing_since is None:
            return
        self.log.info(
            "%s recovered",
            self.stage,
            extra={
                "stage": self.stage,
                "attempts": self.backoff.attempts,
                "failing_s": round(time.monotonic() - self.failing_since, 3),
            },
        )
        self.failing_since = None
        self.backoff.reset()


Check = Callable[[], Awaitable[object]]


class Probe:
    """Asks each dependency every `period` seconds whether it answers within `timeout`.

    Sets `charger_dependency_up{dependency}` to 1 or 0, counts failed probes as errors of
    stage `probe`, and logs each change of state once.
    """

    def __init__(
        self,
        metrics: Metrics,
        checks: Mapping[str, Check],
        logger: logging.Logger,
        *,
        period: float = 1.0,
        timeout: float = 2.0,
    ) -> None:
        self.metrics = metrics
        self.checks = dict(checks)
        self.log = logger
        self.period = period
        self.timeout = timeout
        self.up: dict[str, bool] = dict.fromkeys(self.checks, True)
        self.down_since: dict[str, float] = {}

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            await self.probe_once()
            await asyncio.sleep(self.period)

    async def probe_once(self) -> None:
        names = list(self.checks)
        results = await asyncio.gather(*(self._check(n) for n in names))
        for name, error in zip(names, results, strict=True):
            self._record(name, error)

    async def _check(self, name: str) -> BaseException | None:
        try:
            await asyncio.wait_for(self.checks[name](), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return exc
        return None

    def _record(self, name: str, error: BaseException | None) -> None:
        self.metrics.dependency_up.labels(name).set(0 if error else 1)
        was_up = self.up[name]
        self.up[name] = error is None
        if error is not None:
            self.metrics.dependency_errors.labels(name, "probe").inc()
            if was_up:
                self.down_since[name] = time.monotonic()
                info = {"dependency": name, "error": summarize_error(error)}
                self.log.warning("%s unreachable", name, extra=info)
        elif not was_up:
            down_s = time.monotonic() - self.down_since.pop(name, time.monotonic())
            self.log.info(
                "%s reachable again", name, extra={"dependency": name, "down_s": round(down_s, 3)}
            )
