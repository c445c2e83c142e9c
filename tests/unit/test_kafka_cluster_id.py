"""The cluster ids the embedded Apache Kafka is formatted with: Kafka's shape, never an
option to the storage tool's parser."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

from charger_tools.apache_kafka import new_cluster_id

# Its URL-safe base64 starts with "-" (index 62 of the alphabet: the first six bits 111110).
LEADING_DASH = uuid.UUID(bytes=b"\xf8" + bytes(15))
PLAIN = uuid.UUID(bytes=bytes(range(16)))


def scripted(*draws: uuid.UUID) -> Iterator[uuid.UUID]:
    yield from draws


def test_an_id_that_would_read_as_an_option_is_drawn_again() -> None:
    assert base64.urlsafe_b64encode(LEADING_DASH.bytes).startswith(b"-")
    draws = scripted(LEADING_DASH, LEADING_DASH, PLAIN)
    cluster_id = new_cluster_id(lambda: next(draws))
    assert cluster_id == base64.urlsafe_b64encode(PLAIN.bytes).rstrip(b"=").decode()


def test_random_ids_have_kafkas_shape() -> None:
    for _ in range(2000):
        cluster_id = new_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
