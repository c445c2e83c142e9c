"""Reads deploy/redis/users.acl for the tests, and renders it for another key prefix.

The file's key patterns for the worker's user (``~<CHARGER_REDIS_PREFIX>:*``) and the API's
(``%R~<CHARGER_REDIS_PREFIX>:*``, read only) follow the prefix; a test run with its own
prefix loads the same file with only those patterns changed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests/kit/acl.py
ACL_FILE = ROOT / "deploy" / "redis" / "users.acl"
WORKER_USER = "charger"
API_USER = "charger-api"
# Each user whose keys are the deployment's, and its key pattern for a prefix.
PREFIXED_PATTERNS = {WORKER_USER: "~{prefix}:*", API_USER: "%R~{prefix}:*"}
DEFAULT_PREFIX = "ch"


@dataclass(frozen=True)
class AclUser:
    """One `user` line: its name and rules in order."""

    name: str
    rules: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        return "on" in self.rules and "off" not in self.rules

    @property
    def key_patterns(self) -> list[str]:
        return [r for r in self.rules if r.startswith(("~", "%")) or r == "allkeys"]

    @property
    def allowed(self) -> set[str]:
        """Commands (``name`` or ``name|sub``) granted one by one, lower case."""
        return {r[1:].lower() for r in self.rules if r.startswith("+") and "@" not in r}

    @property
    def password_hashes(self) -> list[str]:
        return [r[1:] for r in self.rules if r.startswith("#")]

    def accepts(self, password: str) -> bool:
        return hashlib.sha256(password.encode()).hexdigest() in self.password_hashes


def parse(text: str) -> dict[str, AclUser]:
    users: dict[str, AclUser] = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        assert words[0] == "user" and len(words) >= 2, f"line {number}: {line!r}"
        assert words[1] not in users, f"line {number}: {words[1]} defined twice"
        users[words[1]] = AclUser(words[1], tuple(words[2:]))
    return users


def users() -> dict[str, AclUser]:
    return parse(ACL_FILE.read_text())


def render(prefix: str) -> str:
    """The deploy ACL file with the key patterns of the worker's and the API's users for
    `prefix` instead of the default."""
    out = []
    for line in ACL_FILE.read_text().splitlines():
        words = line.split()
        if words[:1] == ["user"] and words[1] in PREFIXED_PATTERNS:
            shape = PREFIXED_PATTERNS[words[1]]
            pattern = shape.format(prefix=DEFAULT_PREFIX)
            assert words.count(pattern) == 1, line
            words[words.index(pattern)] = shape.format(prefix=prefix)
            line = " ".join(words)
        out.append(line)
    return "\n".join(out) + "\n"
