"""`charger api` in the demo: the billing page of the demo's accounts, with a token of its
own for the run, on a free loopback port."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from charger.settings import Settings
from charger_tools.embedded import free_port
from charger_tools.processes import stop_process


class DemoApi:
    def __init__(self, settings: Settings, logdir: Path) -> None:
        self.settings = settings
        self.log = logdir / "api.log"
        self.token = secrets.token_hex(16)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it once the ledger sink has migrated the database (the worker is up by
        then): the statement reader refuses a schema older than its build."""
        s = self.settings
        env = dict(os.environ)
        env.update(
            CHARGER_REDIS_URL=s.redis_dsn(),
            CHARGER_REDIS_PREFIX=s.redis_prefix,
            CHARGER_PARTITIONS=str(s.partitions),
            CHARGER_KAFKA_BOOTSTRAP=s.kafka_bootstrap,
            CHARGER_DATABASE_URL=s.database_dsn(),
            CHARGER_API_TOKENS=self.token,
        )
        argv = ["api", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "charger", *argv],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            if await asyncio.to_thread(self._answers):
                return True
            await asyncio.sleep(0.2)
        return False

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def page(self, account: str) -> str:
        """The billing page of `account`, signed in with the run's token (a URL fragment:
        never sent to the server)."""
        return f"{self.url}/billing/#account={account}&token={self.token}"

    def stop(self, timeout: float = 15.0) -> int | None:
        return None if self.proc is None else stop_process(self.proc, timeout)
