"""The charger contract: topic names and configs, record types, JSON Schemas, AsyncAPI."""

from charger_topics.names import TOPICS, TopicSpec
from charger_topics.records import RECORDS, Field, RecordType

__all__ = ["RECORDS", "TOPICS", "Field", "RecordType", "TopicSpec"]
