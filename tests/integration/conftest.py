"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.kit.harness import Run, Stack, started_run
from tests.kit.servers import Locked, Replicated, locked_run, replicated_run


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


@pytest.fixture
async def sentinel_run(stack: Stack) -> AsyncIterator[Replicated]:
    """A run on a primary with one replica and three Sentinels of its own."""
    async with replicated_run(stack.bootstrap) as run:
        yield run


@pytest.fixture
async def replica_run(stack: Stack) -> AsyncIterator[Replicated]:
    """A run on a primary with one replica of its own, no Sentinels."""
    async with replicated_run(stack.bootstrap, sentinels=0) as run:
        yield run
