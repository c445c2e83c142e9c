"""Worker processes of a chaos run: started, SIGKILLed, restarted and stopped by their pid."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from charger_tools.embedded import free_port
from charger_tools.processes import stop_process


class Workers:
    """Named `charger worker` processes sharing one environment (one consumer group).

    Each start gets a fresh log file, so a killed worker's last words stay readable.
    """

    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = env
        self.logdir = logdir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.starts = 0
        self.kills = 0

    def start(self, name: str) -> None:
        self.starts += 1
        port = self.ports[name] = free_port()
        log = open(self.logdir / f"{name}-{self.starts}.log", "wb")  # noqa: SIM115 - the child's
        with log:
            self.procs[name] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "charger",
                    "worker",
                    "--web-port",
                    str(port),
                    "-l",
                    "warn",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, name: str) -> None:
        """SIGKILL: no shutdown hook runs, whatever the worker was in the middle of."""
        proc = self.procs.get(name)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
            self.kills += 1

    def detach(self, name: str) -> subprocess.Popen[bytes] | None:
        """Take a worker out of the set (no longer watched) for the caller to stop."""
        return self.procs.pop(name, None)

    def stop(self, name: str, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL only if it does not exit in time."""
        proc = self.detach(name)
        return None if proc is None else stop_process(proc, timeout)

    def unhealthy(self) -> list[str]:
        """Workers whose /health answers 503: alive, but the batch loop died or stalled.

        A worker that does not answer yet (starting) or any more (killed) is not counted.
        """
        bad = []
        # A snapshot: this runs in a thread while the run starts and stops workers.
        for name, proc in list(self.procs.items()):
            if proc.poll() is not None:
                continue
            url = f"http://127.0.0.1:{self.ports[name]}/health"
            try:
                with urllib.request.urlopen(url, timeout=2):
                    pass
            except urllib.error.HTTPError as exc:
                if exc.code == 503:
                    bad.append(name)
            except OSError:
                pass
        return bad

    def crashed(self) -> list[str]:
        """Workers that exited on their own (not killed or stopped by the run)."""
        return [n for n, p in self.procs.items() if p.poll() is not None]

    def stop_all(self) -> dict[str, int | None]:
        codes = {}
        for name in list(self.procs):
            with contextlib.suppress(Exception):
                codes[name] = self.stop(name)
        return codes
