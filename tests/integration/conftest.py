"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.kit.harness import Run, Stack, started_run
from tests.kit.servers import Locked, locked_run


@pytest.fixture
async def run(stack: Stack) -> AsyncIterator[Run]:
    """One isolated charging run (own key prefix, group and accounts) on the session stack."""
    async with started_run(stack.bootstrap, stack.redis_url) as started:
        yield started


@pytest.fixture
async def locked(stack: Stack) -> AsyncIterator[Locked]:
    """A run whose Redis is a Valkey of its own, running the deploy ACL file."""
    async with locked_run(stack.bootstrap) as run:
        yield run
