"""Records keyed right but put on another partition than murmur2 gives their key.

librdkafka's default partitioner (confluent-kafka in Python, Go and Node clients) hashes
keys with CRC32, not murmur2 as the Java client and aiokafka do. Such a producer puts an
account's records on a partition whose worker does not own the account's key slot: the
worker must refuse them as `wrong_partition` (naming the expected partition), charge
nothing, and go on charging the records on the right partitions.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from charger.kafka.admin import PartitionCountError
from charger.protocol.keys import slot_of
from charger.runtime import Runtime
from charger_topics import headers as headers_of
from charger_topics import names
from tests.kit.harness import Run
from tests.kit.records import sms_sent
from tests.kit.worker import running

SMS_OUT = 7_900  # std-usd, one segment
OPENING = 1_000_000


def crc32_partitioner(key: bytes, partitions: Sequence[int], _available: Sequence[int]) -> int:
    """librdkafka's `consistent` choice for a keyed record: CRC32 of the key."""
    return partitions[zlib.crc32(key) % len(partitions)]


def crc32_partition(account: str, partitions: int) -> int:
    return zlib.crc32(account.encode()) % partitions


async def test_records_on_a_crc32_partition_go_to_the_dlq_and_charge_nothing(run: Run) -> None:
    partitions = names.TOPICS[names.TELEPHONY_EVENTS].partitions
    assert partitions == run.settings.partitions
    accounts = [run.acct(f"p{n}") for n in range(40)]
    misplaced = [a for a in accounts if crc32_partition(a, partitions) != slot_of(a, partitions)]
    placed = [a for a in accounts if a not in misplaced]
    # Both kinds are there: CRC32 agrees with murmur2 for about one key in `partitions`.
    assert len(misplaced) >= 20 and placed, (len(misplaced), len(placed))
    for account in accounts:
        await run.account(account, credit=OPENING)  # through the default partitioner

    crc32 = AIOKafkaProducer(
        bootstrap_servers=run.bootstrap, acks="all", partitioner=crc32_partitioner
    )
    await crc32.start()
    try:
        async with running(run.settings):
            await run.wait_idle(60)
            sent: dict[str, tuple[int, int]] = {}  # account -> (partition, offset)
            for account in accounts:
                event = orjson.dumps(sms_sent(run, account, f"x-{account}"))
                done = await crc32.send_and_wait(
                    names.TELEPHONY_EVENTS, event, key=account.encode()
                )
                sent[account] = (done.partition, done.offset)
                tp = TopicPartition(names.TELEPHONY_EVENTS, done.partition)
                run.produced[tp] = max(run.produced.get(tp, 0), done.offset + 1)
            await run.wait_idle(60)
    finally:
        await crc32.stop()

    dlq = {
        d.key.decode(): d
        for d in await run.outputs(names.DLQ)
        if d.key is not None and d.headers.get(headers_of.DLT_ORIGINAL_TOPIC) == b"telephony.events"
    }
    assert sorted(dlq) == sorted(misplaced)
    for account in misplaced:
        headers = dlq[account].headers
        assert headers[headers_of.ERROR] == b"wrong_partition", headers
        partition, offset = sent[account]
        assert headers_of.decode_int32(headers[headers_of.DLT_ORIGINAL_PARTITION]) == partition
        assert headers_of.decode_int64(headers[headers_of.DLT_ORIGINAL_OFFSET]) == offset
        expected = slot_of(account, partitions)
        assert f"expected {expected}" in headers[headers_of.DLT_EXCEPTION_MESSAGE].decode(), headers
        assert await run.balance(account) == OPENING  # nothing charged, by any worker
    for account in placed:  # CRC32 happened to agree: charged as usual
        assert await run.balance(account) == OPENING - SMS_OUT
    charged = {e["account"] for e in await run.ledger() if e["kind"] == "sms_out"}
    assert charged == set(placed)


async def test_the_worker_refuses_to_start_when_the_partition_counts_differ(run: Run) -> None:
    # The contract topics have 8 partitions; a worker told of 4 slots would put every
    # account's records off its slot's partition.
    runtime = Runtime(run.settings_with(partitions=4))
    try:
        with pytest.raises(PartitionCountError, match="CHARGER_PARTITIONS=4") as refused:
            await runtime.start()
    finally:
        await runtime.stop()
    for topic in names.CO_PARTITIONED:
        assert f"{topic} has 8" in str(refused.value)
