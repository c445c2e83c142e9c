"""Reading a topic to its end, for the tools and the tests that check what was published.

Two things make "the end" slippery. The embedded broker reports a partition's end as one
past the first record of its last batch, so after a multi-record batch the reported end
lags: readers go on until a fetch brings nothing. And a fetch that has not answered yet
also brings nothing: on a loaded machine the first `getmany` can return empty before any
answer arrived. Only an answer sets a partition's high watermark, and its records are
buffered for the next `getmany`, so "nothing" counts only once every partition has one.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

EMPTY_FETCH_WAIT_MS = 300


def answered(consumer: AIOKafkaConsumer, partitions: Iterable[TopicPartition]) -> bool:
    """Whether a fetch has answered for every one of `partitions`."""
    return all(consumer.highwater(partition) is not None for partition in partitions)


async def drain(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> None:
    """Read and drop records until every partition has answered and a fetch is empty."""
    while True:
        ready = answered(consumer, partitions)
        if not await consumer.getmany(timeout_ms=EMPTY_FETCH_WAIT_MS) and ready:
            return
