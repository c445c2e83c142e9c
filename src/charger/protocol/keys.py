"""Every Redis key charger uses, built here and nowhere else.

Keys are grouped under a hash tag ``{tN}``: N is the account's slot, the same murmur2 hash
Kafka's default partitioner uses, modulo the partition count. One Lua call touches keys of
one tag only, so it runs on Redis Cluster; with producers on the default partitioner a whole
partition's batch shares one tag and needs one call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from aiokafka.partitioner import murmur2


@lru_cache(maxsize=1 << 16)
def slot_of(account: str, slots: int) -> int:
    """The tag slot (== default Kafka partition) of an account.

    Cached: the pure-Python murmur2 cost more per record than decoding it.
    """
    h: int = murmur2(account.encode())
    return (h & 0x7FFFFFFF) % slots


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder for one namespace (``CHARGER_REDIS_PREFIX``) and slot count."""

    prefix: str
    slots: int
    # Every key of every record starts with its slot's tag: built once per slot.
    _tags: tuple[str, ...] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        tags = tuple(f"{self.prefix}:{{t{slot}}}" for slot in range(self.slots))
        object.__setattr__(self, "_tags", tags)  # frozen: set once, here

    def tag(self, slot: int) -> str:
        if 0 <= slot < self.slots:
            return self._tags[slot]
        return f"{self.prefix}:{{t{slot}}}"

    def slot_of_key(self, key: str) -> int:
        """The slot in the hash tag of a key built here."""
        start = len(self.prefix) + 3  # "<prefix>:{t"
        return int(key[start : key.index("}", start)])

    # --- per slot ---
    def watermark(self, slot: int) -> str:
        """Hash: "topic/partition" -> last source offset applied into this slot."""
        return f"{self.tag(slot)}:wm"

    def outbox(self, slot: int) -> str:
        """Stream of outputs written with the money they describe, relayed to Kafka."""
        return f"{self.tag(slot)}:outbox"

    def relay_probe(self, slot: int) -> str:
        """Counter the relay increments before it waits for replicas: a write of its own
        connection that comes after every outbox entry it read (see store.durability)."""
        return f"{self.tag(slot)}:probe"

    def held(self, slot: int) -> str:
        """Hash: currency -> micro-units held by the slot's active calls (kept by apply.lua)."""
        return f"{self.tag(slot)}:held"

    def accounts(self, slot: int) -> str:
        """Set of account ids living in this slot."""
        return f"{self.tag(slot)}:accounts"

    def sessions(self, slot: int) -> str:
        """Sorted set of active call session keys, scored by when the ticker is due (ms)."""
        return f"{self.tag(slot)}:sessions"

    def recharges(self, slot: int) -> str:
        """Sorted set of account keys with a recharge request in flight, by its deadline."""
        return f"{self.tag(slot)}:recharges"

    def subscriptions(self, slot: int) -> str:
        """Sorted set of subscription keys, scored by when the scheduler looks at each (ms)."""
        return f"{self.tag(slot)}:subscriptions"

    # --- per account ---
    def account(self, slot: int, account: str) -> str:
        """Hash: balance, holds, settings and state of one account."""
        return f"{self.tag(slot)}:a:{account}"

    def account_calls(self, slot: int, account: str) -> str:
        """Set of the account's active call session keys."""
        return f"{self.tag(slot)}:ac:{account}"

    def call(self, slot: int, account: str, call_id: str) -> str:
        """Hash: one call session (active, or a tombstone once settled)."""
        return f"{self.tag(slot)}:c:{account}:{call_id}"

    def subscription(self, slot: int, account: str, subscription_id: str) -> str:
        """Hash: one subscription as last upserted, and how far it was charged."""
        return f"{self.tag(slot)}:sub:{account}:{subscription_id}"

    def seen(self, slot: int, source: str, event_id: str) -> str:
        """String: fingerprint of an applied record, kept for the dedupe window."""
        return f"{self.tag(slot)}:s:{source}:{event_id}"

    # --- account key from the outside (demo, tests, reconcile) ---
    def account_of(self, account: str) -> str:
        return self.account(slot_of(account, self.slots), account)
