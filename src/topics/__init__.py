"""The charger contract: topic names and configs, record types, JSON Schemas, AsyncAPI."""

from topics.names import TOPICS, TopicSpec
from topics.records import RECORDS, Field, RecordType

__all__ = ["RECORDS", "TOPICS", "Field", "RecordType", "TopicSpec"]
