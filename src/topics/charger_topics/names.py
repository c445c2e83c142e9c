"""Topic names and their configurations: the single source for every topic charger touches."""

from __future__ import annotations

from dataclasses import dataclass, field

TELEPHONY_EVENTS = "telephony.events"
BILLING_ACCOUNTS = "billing.accounts"
RECHARGE_RESULTS = "billing.recharge-results"
RATE_PLANS = "billing.rate-plans"
TELEPHONY_COMMANDS = "telephony.commands"
RECHARGE_REQUESTS = "billing.recharge-requests"
LEDGER = "billing.ledger"
NOTIFICATIONS = "billing.notifications"
DLQ = "billing.dlq"
CHARGE_RESULTS = "billing.charge-results"

# Input topics that move money share one partition count and the default (murmur2) key
# partitioner, so an account's events, settings and recharge results land on the same
# partition number: the worker that owns partition N owns the account state of N.
CO_PARTITIONED = (TELEPHONY_EVENTS, BILLING_ACCOUNTS, RECHARGE_RESULTS)


@dataclass(frozen=True)
class TopicSpec:
    """One topic: name, who writes it, how it is keyed and configured."""

    name: str
    description: str
    producer: str
    key: str
    partitions: int
    compacted: bool = False
    configs: dict[str, str] = field(default_factory=dict)

    def topic_configs(self) -> dict[str, str]:
        out = dict(self.configs)
        if self.compacted:
            out["cleanup.policy"] = "compact"
        return out


DEFAULT_PARTITIONS = 8

TOPICS: dict[str, TopicSpec] = {
    t.name: t
    for t in (
        TopicSpec(
            TELEPHONY_EVENTS,
            "Call and SMS events from the telephony switch.",
            "telephony switch",
            "account id",
            DEFAULT_PARTITIONS,
            configs={"retention.ms": str(7 * 24 * 3600 * 1000)},
        ),
        TopicSpec(
            BILLING_ACCOUNTS,
            "Account settings and manual top-ups from the platform.",
            "platform",
            "account id",
            DEFAULT_PARTITIONS,
            compacted=False,
            configs={"retention.ms": "-1"},
        ),
        TopicSpec(
            RECHARGE_RESULTS,
            "Outcome of auto-recharge requests from the payment service.",
            "payments",
            "account id",
            DEFAULT_PARTITIONS,
        ),
        TopicSpec(
            RATE_PLANS,
            "Rate plans: the latest record per plan id, or per plan id and version.",
            "platform",
            "rate plan id, or `<id>@<version>` for a versioned plan",
            1,
            compacted=True,
        ),
        TopicSpec(
            TELEPHONY_COMMANDS,
            "Commands to the switch: cut a call off, suspend or restore an account.",
            "charger",
            "account id",
            DEFAULT_PARTITIONS,
        ),
        TopicSpec(
            RECHARGE_REQUESTS,
            "Auto-recharge requests to the payment service.",
            "charger",
            "account id",
            DEFAULT_PARTITIONS,
        ),
        TopicSpec(
            LEDGER,
            "One entry per balance movement, for invoicing and statements.",
            "charger",
            "account id",
            DEFAULT_PARTITIONS,
            configs={"retention.ms": "-1"},
        ),
        TopicSpec(
            NOTIFICATIONS,
            "Customer notifications: recharge failures, low balance, exhaustion, cutoffs.",
            "charger",
            "account id",
            DEFAULT_PARTITIONS,
        ),
        TopicSpec(
            CHARGE_RESULTS,
            "The outcome of every fee.charged: fee.applied or fee.refused, one per fee id.",
            "charger",
            "account id",
            DEFAULT_PARTITIONS,
        ),
        TopicSpec(
            DLQ,
            "Refused records: the original key, bytes and headers, with dead-letter headers "
            "naming where, when and why (charger_topics.headers).",
            "charger",
            "original key",
            DEFAULT_PARTITIONS,
            configs={"retention.ms": str(30 * 24 * 3600 * 1000)},
        ),
    )
}

# Record headers (trace context, the DLQ's) are declared in `charger_topics.headers`.
