"""Child processes this program started: stopped by their own pid, politely first."""

from __future__ import annotations

import signal
import subprocess


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM a process we started, wait up to `timeout`, then SIGKILL it if it lingers.

    Returns its exit code (negative: the signal that ended it).
    """
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
