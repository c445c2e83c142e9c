"""Kafka adapters: the batch consumer, the outbox relay, the rate plan reader."""
