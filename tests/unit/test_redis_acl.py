"""deploy/redis/users.acl grants the worker and `charger api` exactly the Redis commands
their code sends.

The commands are read from the code itself: every redis-py call in the worker-side
modules and every ``redis.call`` in the Lua scripts; for the API, every redis-py call in
`charger/api` and its readiness PING. A new command in the code without a
line in the ACL file fails here (and would fail in production with NOPERM); a command in
the file that no code sends fails too, so the grant stays the least one.
"""

from __future__ import annotations

import re
from pathlib import Path

from charger.settings import Settings
from charger.store.scripts import apply_source, read_source
from tests.kit.acl import ACL_FILE, API_USER, DEFAULT_PREFIX, WORKER_USER, users

SRC = Path(__file__).resolve().parents[2] / "src" / "charger"
# Modules whose Redis calls run inside the worker process (tools like demo and bench
# connect as an operator, not as the worker's user; kafka/admin.py is the Kafka admin
# client of `charger topics create`, with no Redis).
WORKER_MODULES = [
    *sorted((SRC / "store").glob("*.py")),
    *sorted(path for path in (SRC / "kafka").glob("*.py") if path.name != "admin.py"),
    *sorted((SRC / "metrics").glob("*.py")),
    SRC / "sampler.py",
    SRC / "runtime.py",
    SRC / "app.py",
]
# `charger api` reads Redis only here (accounts.py), and pings it for /ready through
# `charger.store.client.ping` (service.py); it runs no Lua.
API_MODULES = sorted((SRC / "api").glob("*.py"))
_PINGS = re.compile(r"\bawait ping\(redis\)")
_PY_CALL = re.compile(r"(?<!producer\.)\b(?:pipe|redis|client)\.(\w+)\(")
# A command sent by its name (scripts.py queues EVALSHA so: see there why).
_BY_NAME = re.compile(r"\.execute_command\(\s*['\"](\w+)['\"]")
_LUA_CALL = re.compile(r"redis\.p?call\(\s*['\"](\w+)['\"]")
# A command sent by name, with its subcommand in the name ("COMMAND INFO").
_RAW_CALL = re.compile(r"execute_command\(\s*\"([A-Za-z]+)(?: ([A-Za-z]+))?\"")
# Client methods that send no command of their own.
_NOT_COMMANDS = {"pipeline", "execute", "execute_command", "aclose", "close", "register_script"}
# Sent by redis-py itself: naming the library on connect, SELECT for a database other
# than 0, and on a Redis Cluster the topology and the command table (where each
# command's keys are, to route it).
_BY_THE_CLIENT = {"client|setinfo", "select", "cluster|slots", "command"}
NEVER = {
    "flushall",
    "flushdb",
    "keys",
    "scan",
    "config",
    "config|get",
    "config|set",
    "debug",
    "shutdown",
    "eval",
    "script|flush",
    "script|kill",
    "acl",
    "acl|setuser",
    "module",
    "monitor",
    "save",
    "bgsave",
    "replicaof",
    "slaveof",
    "migrate",
    "del",
    "unlink",
    "rename",
}


# redis-py methods of container commands, by the ACL's name for the subcommand.
_SUBCOMMANDS = {"script_load": "script|load"}


def commands_in_code() -> set[str]:
    found = set()
    for path in WORKER_MODULES:
        text = path.read_text()
        found |= {_SUBCOMMANDS.get(m, m).lower() for m in _PY_CALL.findall(text)}
        found |= {"|".join(filter(None, m)).lower() for m in _RAW_CALL.findall(text)}
        found |= {m.lower() for m in _BY_NAME.findall(text)}
    for source in (apply_source(), read_source()):  # the scripts as the server gets them
        found |= {m.lower() for m in _LUA_CALL.findall(source)}
    return found - _NOT_COMMANDS


def api_commands_in_code() -> set[str]:
    found = set()
    for path in API_MODULES:
        text = path.read_text()
        found |= {m.lower() for m in _PY_CALL.findall(text)}
        found |= {"|".join(filter(None, m)).lower() for m in _RAW_CALL.findall(text)}
        found |= {m.lower() for m in _BY_NAME.findall(text)}
        if _PINGS.search(text):
            found.add("ping")
        assert "register_script" not in text and "evalsha" not in text.lower(), path
    return found - _NOT_COMMANDS


def test_the_scan_finds_the_calls_it_must() -> None:
    found = commands_in_code()
    # One from each place: the batch read, the relay, the sampler, start-up, apply.lua,
    # the durability wait and its start-up check.
    assert {"mget", "xdel", "xlen", "ping", "hincrby", "xadd", "wait", "command|info"} <= found


def test_the_worker_user_may_run_exactly_what_the_worker_sends() -> None:
    user = users()[WORKER_USER]
    used = commands_in_code() | _BY_THE_CLIENT
    missing = used - user.allowed
    assert not missing, f"add +{' +'.join(sorted(missing))} to the {WORKER_USER} user"
    extra = user.allowed - used
    assert not extra, f"no worker code sends {sorted(extra)}: remove them from {ACL_FILE.name}"


def test_the_api_user_may_run_exactly_what_charger_api_sends() -> None:
    used = api_commands_in_code()
    assert {"hmget", "scard", "ping"} <= used  # the scan sees the account read and /ready
    user = users()[API_USER]
    used |= _BY_THE_CLIENT
    missing = used - user.allowed
    assert not missing, f"add +{' +'.join(sorted(missing))} to the {API_USER} user"
    extra = user.allowed - used
    assert not extra, f"charger api never sends {sorted(extra)}: remove them from {ACL_FILE.name}"


def test_the_api_user_reads_only_its_prefix_and_can_write_nothing() -> None:
    user = users()[API_USER]
    rules = list(user.rules)
    assert user.enabled and "-@all" in rules
    first_grant = min(i for i, r in enumerate(rules) if r.startswith("+"))
    assert rules.index("-@all") < first_grant
    assert not [r for r in rules if r.startswith("+@") or r in ("allcommands", "nocommands")]
    assert "resetkeys" in rules and "resetchannels" in rules
    # Read-only key permission (Redis 7+ / Valkey): even a granted command cannot write.
    assert user.key_patterns == [f"%R~{DEFAULT_PREFIX}:*"]
    assert not user.allowed & NEVER
    assert not user.allowed & users()[WORKER_USER].allowed - {
        "ping",
        "hmget",
        *_BY_THE_CLIENT,
    }, "the API needs none of the worker's other commands"
    assert "nopass" not in rules and len(user.password_hashes) == 1
    assert user.password_hashes != users()[WORKER_USER].password_hashes


def test_the_worker_user_starts_from_nothing_and_sees_only_its_prefix() -> None:
    user = users()[WORKER_USER]
    rules = list(user.rules)
    assert user.enabled
    assert "-@all" in rules
    first_grant = min(i for i, r in enumerate(rules) if r.startswith("+"))
    assert rules.index("-@all") < first_grant
    assert not [r for r in rules if r.startswith("+@") or r in ("allcommands", "nocommands")]
    assert "resetkeys" in rules and "resetchannels" in rules
    assert not [r for r in rules if r.startswith("&") or r == "allchannels"]
    # The pattern follows CHARGER_REDIS_PREFIX (default `ch`).
    assert Settings.model_fields["redis_prefix"].default == DEFAULT_PREFIX
    assert user.key_patterns == [f"~{DEFAULT_PREFIX}:*"]
    assert not user.allowed & NEVER
    assert "nopass" not in rules and len(user.password_hashes) == 1


def test_nobody_gets_in_without_a_password_except_to_ping() -> None:
    acl = users()
    assert set(acl) == {"default", "probe", "ops", WORKER_USER, API_USER}
    assert not acl["default"].enabled and "-@all" in acl["default"].rules
    probe = acl["probe"]
    assert probe.allowed == {"ping"} and probe.key_patterns == []
    for name, user in acl.items():
        if user.enabled and name != "probe":
            assert "nopass" not in user.rules and user.password_hashes, name
            assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in user.password_hashes), name
    # Cleartext passwords (`>secret`) never sit in the file.
    assert not re.search(r"(^|\s)>", ACL_FILE.read_text())
