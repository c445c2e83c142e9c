"""The background relay passes: ordering, coalescing, failures surfacing once, stop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from charger.kafka.publisher import Publisher
from charger.metrics import Metrics


class FakeRelay:
    """Records each pass's slots; a pass waits on `gate` and may be told to fail."""

    def __init__(self) -> None:
        self.passes: list[set[int]] = []
        self.running = 0
        self.overlapped = False
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: list[BaseException] = []

    async def drain(self, slots: Iterable[int]) -> Counter[str]:
        self.running += 1
        self.overlapped |= self.running > 1
        try:
            await self.gate.wait()
            self.passes.append(set(slots))
            if self.fail:
                raise self.fail.pop(0)
            return Counter({"ledger": len(self.passes)})
        finally:
            self.running -= 1


def publisher() -> tuple[Publisher, FakeRelay, Metrics]:
    relay = FakeRelay()
    metrics = Metrics(CollectorRegistry())
    relay_any: Any = relay
    return Publisher(relay_any, metrics), relay, metrics


def published(m: Metrics, kind: str) -> float:
    v = m.registry.get_sample_value("charger_outputs_total", {"kind": kind})
    return v or 0.0


async def test_kicks_while_a_pass_runs_coalesce_into_one_more_pass() -> None:
    p, relay, m = publisher()
    relay.gate.clear()
    p.kick({1})
    await asyncio.sleep(0)
    p.kick({2})
    p.kick({3, 2})
    relay.gate.set()
    await p.settle()
    assert relay.passes == [{1}, {2, 3}]
    assert not relay.overlapped
    assert published(m, "ledger") == 1 + 2  # counted per pass
    assert p.passes == 2


async def test_a_failed_pass_is_raised_once_by_settle_and_the_next_kick_starts_afresh() -> None:
    p, relay, _ = publisher()
    relay.fail = [ConnectionError("broker away")]
    p.kick({0})
    await asyncio.sleep(0.01)
    assert isinstance(p.failure(), ConnectionError)
    with pytest.raises(ConnectionError):
        await p.settle()
    assert p.failure() is None
    await p.settle()  # nothing left to raise
    p.kick({4})
    await p.settle()
    assert relay.passes == [{0}, {4}]


async def test_an_inline_drain_waits_for_the_background_pass_and_never_overlaps() -> None:
    p, relay, _ = publisher()
    relay.gate.clear()
    p.kick({1})
    drain = asyncio.create_task(p.drain({7}))
    await asyncio.sleep(0.01)
    assert relay.passes == []  # both wait behind the gate, the drain behind the pass
    relay.gate.set()
    counts = await drain
    assert relay.passes == [{1}, {7}]
    assert counts == Counter({"ledger": 2})
    assert not relay.overlapped


async def test_stop_lets_the_pass_in_hand_finish() -> None:
    p, relay, _ = publisher()
    relay.gate.clear()
    p.kick({5})
    stopping = asyncio.create_task(p.stop())
    await asyncio.sleep(0.01)
    assert not stopping.done()
    relay.gate.set()
    await stopping
    assert relay.passes == [{5}]


async def test_a_failure_nobody_settled_does_not_block_the_next_kick() -> None:
    p, relay, _ = publisher()
    relay.fail = [ConnectionError("once")]
    p.kick({0})
    await asyncio.sleep(0.01)
    p.kick({1})  # supersedes the unsettled failure
    await p.settle()
    assert relay.passes == [{0}, {1}]
