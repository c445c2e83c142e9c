"""A command run to its end with the moment each of its output lines came."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass
class TimedRun:
    """What a command wrote (stdout and stderr as one stream), line by line, and when."""

    code: int
    started: float  # time.monotonic() just before it was started
    ended: float  # ... once it had exited
    lines: list[tuple[float, str]] = field(default_factory=list)

    def gaps(self) -> list[float]:
        """Seconds from the start to the first line, between lines, and from the last
        line to the exit: how long anyone watching it saw nothing new."""
        moments = [self.started, *(at for at, _ in self.lines), self.ended]
        return [later - earlier for earlier, later in itertools.pairwise(moments)]

    def longest_silence(self) -> tuple[float, str]:
        """The longest gap, and the line that ended it (or "exit")."""
        gaps = self.gaps()
        at = max(range(len(gaps)), key=gaps.__getitem__)
        return gaps[at], self.lines[at][1] if at < len(self.lines) else "exit"

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def run_timed(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> TimedRun:
    """`python argv...` to its end (killed after `timeout`), each line stamped on arrival."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, *argv],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    run = TimedRun(code=-1, started=started, ended=started)
    watchdog = threading.Timer(timeout, proc.kill)  # a silent hang ends too
    watchdog.start()
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:  # lines as the pipe delivers them
            run.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))
        run.code = proc.wait()
        run.ended = time.monotonic()
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return run
