"""What the core is given of a record fetched from Kafka: one home for the copy.

It lives on the Kafka side because the core (`charger.charging.records.Inbound`) knows
nothing of aiokafka. Every consumer that hands records to the core builds them here, so
a field added to `Inbound` (as the timestamps and headers were) reaches all of them.
"""

from __future__ import annotations

from aiokafka import ConsumerRecord, TopicPartition

from charger.charging.records import Inbound


def inbound_of(partition: TopicPartition, record: ConsumerRecord) -> Inbound:
    """`record`, fetched from `partition`, as the core reads it.

    Called once per consumed event on the charging path: one positional construction, no
    intermediate object. The headers are aiokafka's own tuple, not copied.
    """
    return Inbound(
        partition.topic,
        partition.partition,
        record.offset,
        record.key,
        record.value,
        record.timestamp,
        record.timestamp_type,
        record.headers,
    )
