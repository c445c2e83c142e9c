"""Reading to a topic's end: an empty getmany before any fetch answered is not the end."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import AIOKafkaConsumer, TopicPartition

from charger_tools.reading import answered, drain

PARTITIONS = [TopicPartition("t", 0), TopicPartition("t", 1)]


class ScriptedConsumer:
    """getmany answers from a script; a partition's high watermark appears with its answer."""

    def __init__(self, script: list[tuple[set[int], dict[Any, list[int]]]]) -> None:
        self.script = script
        self.highwaters: dict[TopicPartition, int] = {}
        self.calls = 0
        self.records = 0

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.highwaters.get(partition)

    async def getmany(self, timeout_ms: int) -> dict[Any, list[int]]:
        self.calls += 1
        if not self.script:
            return {}
        now_answered, data = self.script.pop(0)
        for number in now_answered:
            self.highwaters[PARTITIONS[number]] = 10
        self.records += sum(len(records) for records in data.values())
        return data


def drained(script: list[tuple[set[int], dict[Any, list[int]]]]) -> ScriptedConsumer:
    consumer = ScriptedConsumer(script)
    asyncio.run(drain(cast(AIOKafkaConsumer, consumer), PARTITIONS))
    return consumer


def test_empty_before_any_answer_is_not_the_end() -> None:
    consumer = drained([(set(), {}), (set(), {}), ({0, 1}, {}), (set(), {PARTITIONS[0]: [1, 2]})])
    assert consumer.records == 2
    assert consumer.calls == 5  # the last one came back empty after every partition answered


def test_one_partition_answering_is_not_enough() -> None:
    consumer = drained([({0}, {}), (set(), {}), ({1}, {}), (set(), {PARTITIONS[1]: [7]})])
    assert consumer.records == 1


def test_answered_and_empty_ends_at_once() -> None:
    consumer = ScriptedConsumer([])
    consumer.highwaters = {partition: 0 for partition in PARTITIONS}
    assert answered(cast(AIOKafkaConsumer, consumer), PARTITIONS)
    asyncio.run(drain(cast(AIOKafkaConsumer, consumer), PARTITIONS))
    assert consumer.calls == 1
