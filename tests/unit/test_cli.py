"""The command line's manners: its own version, one line for an operator's error, and
`charger worker --help` offering only options that do something."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

import charger
from charger.cli import IGNORED_WORKER_OPTIONS, version
from charger.operator_errors import explain
from charger.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def charger_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`charger ARGS` in a fresh interpreter (the worker's path replaces `sys.argv`)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHARGER_")}
    return subprocess.run(
        [sys.executable, "-m", "charger", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_the_version_is_chargers_own() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert charger.__version__ == declared == version()
    out = charger_cli("--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"charger {declared}\n"
    assert "faust" not in out.stdout.lower()


def test_an_unreachable_broker_is_one_line_and_a_failure() -> None:
    port = closed_port()
    out = charger_cli("topics", "create", "--bootstrap", f"127.0.0.1:{port}")
    assert out.returncode == 1
    assert out.stdout == ""
    assert out.stderr.splitlines() == [
        f"charger topics: cannot reach the Kafka broker (bootstrap 127.0.0.1:{port})"
    ]


@pytest.mark.parametrize("command", [["worker"], ["topics", "create", "--bootstrap", "x:1"]])
def test_invalid_settings_are_one_line_naming_the_variable(command: list[str]) -> None:
    out = charger_cli(*command, CHARGER_PARTITIONS="eight", CHARGER_REDIS_PASSWORD="hunter2")
    assert out.returncode == 1
    (line,) = out.stderr.splitlines()
    assert line.startswith(f"charger {command[0]}: invalid settings: CHARGER_PARTITIONS: ")
    assert "Traceback" not in out.stderr and "hunter2" not in out.stderr


def test_settings_that_contradict_each_other_are_named_together() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(kafka_security_protocol="SASL_SSL", redis_tls_ca_file="/nowhere/ca.pem")
    line = explain(caught.value)
    assert line is not None and "\n" not in line
    assert line.startswith("invalid settings: ")
    assert "CHARGER_KAFKA_SASL_USERNAME" in line and "Value error" not in line


def test_bugs_keep_their_traceback() -> None:
    assert explain(KeyError("x")) is None
    assert explain(RuntimeError("worker did not start")) is None


def test_worker_help_offers_only_options_that_work() -> None:
    out = charger_cli("worker", "--help")
    assert out.returncode == 0, out.stderr
    offered = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", out.stdout))
    assert "--web-port" in offered
    for name in IGNORED_WORKER_OPTIONS:
        assert f"--{name.replace('_', '-')}" not in offered, name
    assert not re.search(r"^\s+-[lf],", out.stdout, re.M)
