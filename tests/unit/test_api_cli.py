"""`charger api` refuses to start, in one line, without what it needs: a token, Redis, and
a ledger store it can read when one is named."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from charger.settings import Settings

TOKEN = "0123456789abcdef0123"
REDIS = "redis://127.0.0.1:1/0"


def charger_api(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHARGER_")}
    return subprocess.run(
        [sys.executable, "-m", "charger", "api", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"CHARGER_REDIS_URL": REDIS}, "needs CHARGER_API_TOKENS"),
        ({"CHARGER_API_TOKENS": TOKEN}, "needs CHARGER_REDIS_URL"),
        ({"CHARGER_REDIS_URL": REDIS, "CHARGER_API_TOKENS": "short"}, "at least 16 characters"),
        (
            {"CHARGER_REDIS_URL": REDIS, "CHARGER_API_TOKENS": TOKEN, "CHARGER_DATABASE_URL": "x"},
            "CHARGER_DATABASE_URL must be a postgresql:// URL",
        ),
        (
            {
                "CHARGER_REDIS_URL": REDIS,
                "CHARGER_API_TOKENS": TOKEN,
                "CHARGER_DATABASE_URL": "postgresql://api:secret-password@127.0.0.1:1/ledger",
                "CHARGER_DATABASE_TIMEOUT_MS": "500",
            },
            "cannot use PostgreSQL",
        ),
    ],
)
def test_what_charger_api_needs_is_one_line(env: dict[str, str], line: str) -> None:
    done = charger_api(**env)
    assert done.returncode == 1
    (said,) = done.stderr.strip().splitlines()
    assert said.startswith("charger api: ") and line in said
    assert "short" not in said and "secret-password" not in said  # secrets never echoed


def test_tokens_are_a_secret_list() -> None:
    settings = Settings(api_tokens=f" {TOKEN} , other-token-0123456789,")  # type: ignore[arg-type]
    assert settings.api_token_list() == [TOKEN, "other-token-0123456789"]
    assert TOKEN not in repr(settings) and TOKEN not in str(settings.model_dump())
