"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.conftest import Stack
from tests.integration.harness import Run


@pytest.fixture
async def run(stack: Stack) -> AsyncIterator[Run]:
    """One isolated charging run (own key prefix, group and accounts) on the session stack."""
    r = Run(stack.bootstrap, stack.redis_url)
    await r.start()
    yield r
    await r.close()
