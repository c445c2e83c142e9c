"""A deterministic telephony switch driven by simulated time.

Calls, texts and ring-through attempts arrive as Poisson processes. Every record is
scheduled at the instant the switch sends it; `Switch.advance` releases the ones that
are due. The output depends only on the configuration, the seed and the start time,
never on how simulated time is cut into `advance` steps.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from typing import Any

import orjson

from charger_tools.simulate.model import (
    RecordKind,
    SimConfig,
    SimRecord,
    account_profiles,
    destination,
    format_time,
    uk_number,
    us_number,
)
from charger_topics import names
from charger_topics.records import COMMON, MAX_DURATION_MS, RECORDS

Doc = dict[str, Any]

_UNKNOWN_TYPES = ("call.transferred", "fax.sent", "sms.deleted", "call.Started")
_BAD_TIMES: tuple[Any, ...] = (
    "2026-11-22 10:00:00",
    "2026-11-22T10:00:00Z",
    "2026-13-40T25:61:00.000Z",
    "yesterday",
    1_795_000_000_000,
)
_SEGMENTS = (1, 2, 3, 4)
_SEGMENT_WEIGHTS = (0.86, 0.09, 0.03, 0.02)


class Switch:
    """Plays call, SMS and ring-through traffic, plus duplicates, malformed and conflicts."""

    def __init__(
        self, cfg: SimConfig | None = None, *, start_ms: int | None = None, seed: int | None = None
    ) -> None:
        self.cfg = cfg if cfg is not None else SimConfig()
        self.seed = self.cfg.seed if seed is None else seed
        self.start_ms = self.cfg.start_ms if start_ms is None else start_ms
        self.now_ms = self.start_ms
        self._rng = random.Random(self.seed)
        self._accounts = account_profiles(self.cfg)
        self._cum_weights: list[float] = []
        total = 0.0
        for p in self._accounts:
            total += p.weight
            self._cum_weights.append(total)
        self._seq = 0
        self._ids = 0
        self._heap: list[tuple[int, int, SimRecord, Doc | None]] = []
        self._sent: deque[tuple[SimRecord, Doc]] = deque(maxlen=2000)
        self._arrivals = True
        self._next = [
            self._gap(self.cfg.call_rate_per_s),
            self._gap(self.cfg.sms_rate_per_s),
            self._gap(self.cfg.ring_through_rate_per_s),
        ]
        bad = self.cfg.duplicate_fraction + self.cfg.malformed_fraction
        keep = 1.0 - bad - self.cfg.conflict_fraction
        # Injected per good record, so each kind ends up as its fraction of all records.
        self._p_duplicate = self.cfg.duplicate_fraction / keep
        self._p_malformed = self.cfg.malformed_fraction / keep
        self._p_conflict = self.cfg.conflict_fraction / keep
        # Lognormal talk time whose mean (before the cap) is mean_call_s.
        self._mu = math.log(self.cfg.mean_call_s) - self.cfg.call_sigma**2 / 2

    # --- public -------------------------------------------------------------------------

    def advance(self, until_ms: int) -> list[SimRecord]:
        """Records sent in (previous until, until_ms], in the order the switch sends them."""
        if until_ms < self.now_ms:
            raise ValueError("simulated time does not run backwards")
        out: list[SimRecord] = []
        while True:
            arrival = self._next_arrival() if self._arrivals else math.inf
            due = self._heap[0][0] if self._heap else math.inf
            if arrival <= due and arrival <= until_ms:
                self._arrive()
            elif due <= until_ms:
                self._send(out)
            else:
                break
        self.now_ms = until_ms
        return out

    def finish(self) -> list[SimRecord]:
        """Stop new traffic; send all that is still scheduled (calls end when due)."""
        self._arrivals = False
        out: list[SimRecord] = []
        while self._heap:  # late duplicates may schedule more while draining
            out += self.advance(max(self.now_ms, *(entry[0] for entry in self._heap)))
        return out

    # --- arrivals -----------------------------------------------------------------------

    def _gap(self, rate_per_s: float) -> float:
        return self._rng.expovariate(rate_per_s) * 1000 if rate_per_s > 0 else math.inf

    def _next_arrival(self) -> float:
        soonest = min(self._next)
        return math.inf if math.isinf(soonest) else self.start_ms + math.floor(soonest)

    def _arrive(self) -> None:
        which = self._next.index(min(self._next))
        at = self.start_ms + math.floor(self._next[which])
        if which == 0:
            self._call(at)
            self._next[0] += self._gap(self.cfg.call_rate_per_s)
        elif which == 1:
            self._sms(at)
            self._next[1] += self._gap(self.cfg.sms_rate_per_s)
        else:
            self._attempt(at)
            self._next[2] += self._gap(self.cfg.ring_through_rate_per_s)

    def _new_id(self, prefix: str = "ev") -> str:
        self._ids += 1
        return f"{prefix}-{self.seed}-{self._ids}"

    def _doc(self, kind: str, account: str, at: int, **fields: Any) -> Doc:
        doc: Doc = {"id": self._new_id(), "type": kind, "account": account}
        doc["time"] = format_time(at)
        doc.update(fields)
        return doc

    def _account(self) -> tuple[str, str]:
        p = self._rng.choices(self._accounts, cum_weights=self._cum_weights)[0]
        return p.id, p.number

    def _duration_ms(self) -> int:
        seconds = min(self._rng.lognormvariate(self._mu, self.cfg.call_sigma), self.cfg.max_call_s)
        return max(1, round(seconds * 1000))

    def _route(self) -> tuple[str, str, str, str]:
        """Account, direction, from and to of a new call."""
        cfg = self.cfg
        weights = (cfg.outbound_fraction, cfg.inbound_fraction, cfg.forwarded_fraction)
        direction = self._rng.choices(("outbound", "inbound", "forwarded"), weights)[0]
        acct, own = self._account()
        caller = self._rng.choice((us_number, us_number, uk_number))(self._rng)
        if direction == "outbound":
            return acct, direction, own, destination(cfg, self._rng)
        if direction == "inbound":
            return acct, direction, caller, own
        return acct, direction, caller, destination(cfg, self._rng)

    def _call_docs(self, at: int) -> tuple[Doc, Doc]:
        acct, direction, src, dst = self._route()
        call_id = self._new_id("call")
        duration = self._duration_ms()
        leg = {"direction": direction, "from": src, "to": dst}
        started = self._doc("call.started", acct, at, call_id=call_id, **leg)
        ended = self._doc("call.ended", acct, at + duration, call_id=call_id)
        ended.update(duration_ms=duration, **leg)
        return started, ended

    def _call(self, at: int) -> None:
        started, ended = self._call_docs(at)
        self._schedule(at, started)
        self._schedule(at + ended["duration_ms"], ended)

    def _sms_doc(self, at: int, acct: str, received: bool) -> Doc:
        segments = self._rng.choices(_SEGMENTS, _SEGMENT_WEIGHTS)[0]
        message_id = self._new_id("msg")
        peer = destination(self.cfg, self._rng, sms=True)
        if received:
            fields: Doc = {"message_id": message_id, "from": peer, "segments": segments}
            return self._doc("sms.received", acct, at, **fields)
        return self._doc("sms.sent", acct, at, message_id=message_id, to=peer, segments=segments)

    def _sms(self, at: int) -> None:
        acct, _ = self._account()
        if self._rng.random() < self.cfg.sms_burst_fraction:
            offsets = sorted(self._rng.randrange(1000) for _ in range(self.cfg.sms_burst_size))
            for offset in offsets:
                self._schedule(at + offset, self._sms_doc(at + offset, acct, False))
            return
        received = self._rng.random() < self.cfg.sms_received_fraction
        self._schedule(at, self._sms_doc(at, acct, received))

    def _attempt(self, at: int) -> None:
        acct, _ = self._account()
        to = destination(self.cfg, self._rng)
        self._schedule(at, self._doc("call.attempt", acct, at, call_id=self._new_id("call"), to=to))

    # --- sending ------------------------------------------------------------------------

    def _push(self, at: int, record: SimRecord, doc: Doc | None = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, record, doc))

    def _schedule(self, at: int, doc: Doc, kind: RecordKind = "good") -> None:
        value = orjson.dumps(doc)
        key = str(doc.get("account", "")).encode()
        self._push(at, SimRecord(names.TELEPHONY_EVENTS, key, value, kind), doc)

    def _send(self, out: list[SimRecord]) -> None:
        at, _, record, doc = heapq.heappop(self._heap)
        out.append(record)
        if record.kind != "good" or doc is None:
            return
        self._sent.append((record, doc))
        rng = self._rng
        if rng.random() < self._p_duplicate:
            later = rng.random() < self.cfg.duplicate_later_fraction
            delay = round(rng.uniform(200, self.cfg.duplicate_max_delay_s * 1000)) if later else 0
            self._push(at + delay, record._replace(kind="duplicate"))
        if rng.random() < self._p_malformed:
            self._push(at, self._malformed(at))
        if rng.random() < self._p_conflict:
            self._push(at, self._conflict())

    def _conflict(self) -> SimRecord:
        """An earlier record's id with a different payload."""
        original, doc = self._sent[self._rng.randrange(len(self._sent))]
        changed = dict(doc)
        kind = changed["type"]
        if kind == "call.ended":
            changed["duration_ms"] += self._rng.randint(1000, 60_000)
        elif kind in ("sms.sent", "sms.received"):
            changed["segments"] = changed.get("segments", 1) % 4 + 1
        else:
            to = destination(self.cfg, self._rng)
            changed["to"] = to if to != doc["to"] else to[:-1] + str((int(to[-1]) + 1) % 10)
        return original._replace(value=orjson.dumps(changed), kind="conflict")

    def _malformed(self, at: int) -> SimRecord:
        """One of the ways a switch gets a record wrong."""
        rng = self._rng
        started, ended = self._call_docs(at)
        ended["time"] = started["time"]
        sms = self._sms_doc(at, started["account"], False)
        key = started["account"].encode()
        variant = rng.randrange(10)
        value: bytes
        if variant == 0:  # invalid JSON
            whole = orjson.dumps(started)
            value = rng.choice(
                (whole[: len(whole) // 2], b"\x00\x9f\x92\x96 not json", whole[:-1] + b",}")
            )
        elif variant == 1:  # a JSON array, not an object
            value = orjson.dumps([started])
        elif variant == 2:  # unknown type
            value = orjson.dumps({**started, "type": rng.choice(_UNKNOWN_TYPES)})
        elif variant == 3:  # a required field missing
            doc = rng.choice((started, ended, sms))
            required = [*COMMON, *RECORDS[doc["type"]].required]
            del doc[rng.choice(required)]
            value = orjson.dumps(doc)
        elif variant == 4:  # wrong JSON types
            wrong = rng.choice(
                (
                    {**ended, "duration_ms": str(ended["duration_ms"] // 1000)},
                    {**sms, "segments": str(sms["segments"])},
                    {**started, "call_id": rng.randint(1, 10**6)},
                    {**ended, "duration_ms": ended["duration_ms"] + 0.5},
                )
            )
            value = orjson.dumps(wrong)
        elif variant == 5:  # negative duration
            value = orjson.dumps({**ended, "duration_ms": -rng.randint(1, 60_000)})
        elif variant == 6:  # absurd sizes
            absurd = rng.choice(
                (
                    {**ended, "duration_ms": MAX_DURATION_MS + rng.randint(1, 10**12)},
                    {**sms, "segments": rng.randint(1000, 100_000)},
                    {**started, "to": "+1" + "5" * 400},
                )
            )
            value = orjson.dumps(absurd)
        elif variant == 7:  # unknown account
            ghost = f"acct-{self.cfg.accounts + 1000 + rng.randrange(1000):04d}"
            value = orjson.dumps({**rng.choice((started, sms)), "account": ghost})
            key = ghost.encode()
        elif variant == 8:  # bad time
            value = orjson.dumps({**rng.choice((started, sms)), "time": rng.choice(_BAD_TIMES)})
        else:  # a non-object JSON value
            value = rng.choice((b"null", b'"call.started"', b"42", b"{}"))
        return SimRecord(names.TELEPHONY_EVENTS, key, value, "malformed")
