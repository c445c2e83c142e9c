"""The chaos run's progress lines: the phase and its detail, also while the run is busy."""

from __future__ import annotations

import io
import threading
import time

from charger_tools.chaos.progress import Progress


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the timeout"
        time.sleep(0.01)


def test_a_phase_is_written_at_once_and_again_while_nothing_else_is() -> None:
    stream = io.StringIO()
    done = [0]
    with Progress(every_s=0.2, stream=stream) as progress:
        progress.phase("playing", lambda: f"{done[0]} events sent")
        assert lines(stream)[0].startswith("chaos: playing, 0 events sent, ")
        done[0] = 7
        # the main thread is busy (here: asleep); the progress thread writes meanwhile
        wait_for(lambda: any("7 events sent" in line for line in lines(stream)))
    # stopped: its thread is gone, so no line comes after the run
    assert "chaos-progress" not in {thread.name for thread in threading.enumerate()}


def test_a_line_written_by_the_run_resets_the_wait_and_a_failing_detail_is_said() -> None:
    now = [100.0]
    stream = io.StringIO()
    progress = Progress(every_s=5.0, stream=stream, clock=lambda: now[0])
    progress.phase("settling", lambda: str(1 // 0))
    progress.line("broker: up")
    assert lines(stream) == [
        "chaos: settling, (ZeroDivisionError), 0 s",
        "chaos: broker: up, 0 s",
    ]
    now[0] = 112.4
    progress.line()
    assert lines(stream)[-1] == "chaos: settling, (ZeroDivisionError), 12 s"
