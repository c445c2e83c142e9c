"""Injectable clocks: the worker reads time only through one of these."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Wall-clock milliseconds since the epoch."""

    def now_ms(self) -> int: ...

    def from_wall_ms(self, wall_ms: int) -> int:
        """This clock's reading at a wall-clock instant (the broker client stamps its fetch
        answers with wall-clock times)."""
        ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def from_wall_ms(self, wall_ms: int) -> int:
        return wall_ms


class ManualClock:
    """A clock tests move by hand, so timers and cutoffs are deterministic."""

    def __init__(self, start_ms: int = 1_795_000_000_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def from_wall_ms(self, wall_ms: int) -> int:
        """The current setting: the clock stands still between moves, and tests move it
        once the system has seen what they sent, so what it saw belongs to this instant."""
        return self._now

    def advance(self, ms: int) -> None:
        if ms < 0:
            raise ValueError("time does not run backwards")
        self._now += ms

    def set(self, ms: int) -> None:
        self._now = ms
