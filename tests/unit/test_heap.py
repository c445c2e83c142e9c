"""charger.heap: start-up objects frozen out of the collector's walks, garbage freed first."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from charger.heap import freeze_startup_objects


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def thawed_afterwards() -> Iterator[None]:
    # The test process goes on collecting as usual after these tests.
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("thawed_afterwards")
def test_the_survivors_of_start_up_are_frozen() -> None:
    kept = [Node() for _ in range(1000)]
    frozen = freeze_startup_objects()
    assert frozen.frozen_objects == gc.get_freeze_count()
    assert frozen.frozen_objects > len(kept)
    walked = {id(value) for value in gc.get_objects()}  # the generations the collector walks
    assert not any(id(node) in walked for node in kept)
    fresh = Node()
    assert id(fresh) in {id(value) for value in gc.get_objects()}


@pytest.mark.usefixtures("thawed_afterwards")
def test_start_up_garbage_is_collected_not_frozen() -> None:
    first, second = Node(), Node()
    first.other, second.other = second, first  # a cycle only the collector can free
    gone = weakref.ref(first)
    del first, second
    frozen = freeze_startup_objects()
    assert gone() is None
    assert frozen.unreachable_collected >= 2
