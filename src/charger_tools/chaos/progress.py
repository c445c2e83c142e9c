"""A chaos run's progress lines: one at least every few seconds, whatever the run is doing.

A run takes minutes and has phases that block in different ways: servers start in plain
calls, the stream plays in the event loop, reading back and checking are long stretches of
CPU. So the lines come from a thread of their own: it looks four times a second and writes
the phase and what it last heard of it whenever `every_s` seconds would otherwise pass
without a line (half a second early, for a loaded machine's scheduling); the run tells it
the phase, and may write a line itself (which resets the wait). The GIL lets the thread
in every few milliseconds even while the run computes.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

Detail = Callable[[], str]

EVERY_S = 5.0


class Progress:
    """Writes `chaos: <phase>[, detail], <seconds> s` lines to `stream` (stderr)."""

    def __init__(
        self,
        every_s: float = EVERY_S,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.every_s = every_s
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.began = clock()
        self._lock = threading.Lock()
        self._phase = "starting"
        self._detail: Detail | None = None
        self._written = self.began
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Progress:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="chaos-progress", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def phase(self, name: str, detail: Detail | None = None) -> None:
        """The run is now at `name`; `detail` says how far (asked from the thread)."""
        with self._lock:
            self._phase, self._detail = name, detail
        self.line()

    def line(self, text: str = "") -> None:
        """Write a line now: `text`, or the phase and its detail."""
        with self._lock:
            self._write(text or self._describe())

    def _describe(self) -> str:
        detail = ""
        if self._detail is not None:
            try:
                detail = self._detail()
            except Exception as exc:  # a detail read mid-change: say so, keep going
                detail = f"({type(exc).__name__})"
        parts = [self._phase, detail] if detail else [self._phase]
        return ", ".join(parts)

    def _write(self, text: str) -> None:
        now = self.clock()
        self._written = now
        print(f"chaos: {text}, {now - self.began:.0f} s", file=self.stream, flush=True)

    def _run(self) -> None:
        look_s = min(0.25, self.every_s / 4)
        due_s = self.every_s - min(0.5, self.every_s / 4)
        while not self._stop.wait(look_s):
            with self._lock:
                if self.clock() - self._written >= due_s:
                    self._write(self._describe())
