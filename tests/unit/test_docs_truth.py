"""The documents say what the code does: the README's settings table names every setting
(and no other), deploy/redis/README.md names exactly the commands users.acl grants the
worker and the API, and the contract's examples use the request ids the worker makes."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from charger.protocol import fields
from charger.settings import Settings
from tests.kit.acl import API_USER, WORKER_USER
from tests.kit.acl import users as acl_users

ROOT = Path(__file__).resolve().parents[2]
# Commands of two words as the Redis README writes them; every other word is one command.
SUBCOMMANDS = {("CLIENT", "SETINFO"), ("SCRIPT", "LOAD"), ("CLUSTER", "SLOTS"), ("COMMAND", "INFO")}


def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows of the Markdown table whose header line starts with `header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def documented_settings() -> set[str]:
    """CHARGER_* variables of the README's configuration table; `A_B_C` / `_D` names both
    `A_B_C` and `A_B_D` (the suffix replaces as many words of the first name as it has)."""
    found = set()
    for first, *_ in table_rows((ROOT / "README.md").read_text(), "| variable |"):
        names = re.findall(r"`(_?[A-Z0-9_]+)`", first)
        base = names[0]
        found.add(base)
        for suffix in names[1:]:
            words = suffix.strip("_").split("_")
            found.add("_".join(base.split("_")[: -len(words)] + words))
    return found


def test_the_readme_names_every_setting_and_no_other() -> None:
    fields = {f"CHARGER_{name.upper()}" for name in Settings.model_fields}
    documented = documented_settings()
    assert fields - documented == set(), "settings missing from the README"
    assert documented - fields == set(), "the README names settings that do not exist"


def test_the_suffix_rule_reads_the_shorthand() -> None:
    assert "CHARGER_REDIS_TLS_KEY_FILE" in documented_settings()
    assert "CHARGER_REDIS_SENTINEL_PASSWORD" in documented_settings()


def redis_readme_commands(header: str = "| commands |") -> set[str]:
    """The commands of the README's table under `header` (the worker's by default)."""
    text = (ROOT / "deploy" / "redis" / "README.md").read_text()
    commands = set()
    for first, *_ in table_rows(text, header):
        words = " ".join(re.findall(r"`([^`]+)`", first)).split()
        i = 0
        while i < len(words):
            pair = tuple(words[i : i + 2])
            if pair in SUBCOMMANDS:
                commands.add("|".join(pair).lower())
                i += 2
            else:
                commands.add(words[i].lower())
                i += 1
    return commands


def test_the_redis_readme_lists_exactly_the_grants_of_the_worker_user() -> None:
    granted = acl_users()[WORKER_USER].allowed
    listed = redis_readme_commands()
    assert listed - granted == set(), "documented but not granted"
    assert granted - listed == set(), "granted but not documented"


def test_the_redis_readme_lists_exactly_the_grants_of_the_api_user() -> None:
    granted = acl_users()[API_USER].allowed
    listed = redis_readme_commands("| API commands |")
    assert listed - granted == set(), "documented but not granted"
    assert granted - listed == set(), "granted but not documented"
    assert listed != redis_readme_commands(), "the API's table, not the worker's"


def test_the_contract_examples_use_the_request_ids_the_worker_makes() -> None:
    lua = (ROOT / "src" / "charger" / "lua" / "apply" / "accounts.lua").read_text()
    # The worker makes them from the protocol's prefix (the Lua prelude is generated from it).
    assert "local request_id = REQUEST_ID_PREFIX .. account" in lua
    prefix = fields.REQUEST_ID_PREFIX
    text = (ROOT / "src" / "topics" / "README.md").read_text()
    examples = [orjson.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    request_ids = [e["request_id"] for e in examples if "request_id" in e]
    assert len(request_ids) >= 2
    assert all(rid.startswith(prefix) for rid in request_ids), request_ids
