"""Every document charger publishes, rendered from what apply.lua left in the outbox. Pure.

The core plans a movement's ledger entry whole but for the balance it leaves
(`charging.ledger`); apply.lua records that balance, and the commands, notices and
requests a movement or a tick decided (`charger.protocol.outputs`). `render` turns each
output into the Kafka records it stands for; the relay only moves them to the broker.
Ids are deterministic: the same output always renders the same ids, so a republished
record is a duplicate readers drop by id, and so are the headers: every record carries the
trace context of its cause (`charger.events.tracecontext`), a refused record also its own
headers and Spring's dead-letter headers (`charger_topics.headers`). `time` is when charger issued
the output.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from charger.charging import ledger
from charger.charging.refusals import unpack_headers
from charger.events.timefmt import format_time_ms
from charger.events.tracecontext import for_id, trace_headers
from charger.protocol import outputs as out
from charger_topics import headers as header_names
from charger_topics import names

Headers = list[tuple[str, bytes | None]]


class Document(NamedTuple):
    """One Kafka record to publish; `kind` labels charger_outputs_total."""

    topic: str
    key: bytes | None
    value: bytes | None  # None only for a refused record that had a null value
    headers: Headers | None
    kind: str


def _json(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)


def _ledger(output: out.LedgerEntry, headers: Headers) -> list[Document]:
    value = ledger.complete(output.ledger_head, output.balance_after_micros)
    return [Document(names.LEDGER, output.account, value, headers, "ledger")]


def _floor(output: out.FloorCrossed, headers: Headers) -> list[Document]:
    """account.suspended / account.restored, and the exhaustion notice with a suspension."""
    account, cause = output.account.decode(), output.cause.decode()
    typ = "account.suspended" if output.suspended else "account.restored"
    reason = "balance_exhausted" if output.suspended else "balance_above_floor"
    if output.effective_time is not None:
        effective = output.effective_time.decode()
    else:
        at_ms = output.effective_at_ms
        effective = format_time_ms(at_ms if at_ms is not None else output.issued_at_ms)
    common: dict[str, Any] = {
        "account": account,
        "time": format_time_ms(output.issued_at_ms),
        "reason": reason,
        "available_micros": output.available_micros,
        "effective_at": effective,
    }
    if output.balance_micros is not None:  # a movement crossed the floor: what it left
        common["balance_micros"] = output.balance_micros
    command = {"id": f"{cause}{typ}", "type": typ, **common}
    kind = "suspended" if output.suspended else "restored"
    documents = [Document(names.TELEPHONY_COMMANDS, output.account, _json(command), headers, kind)]
    if output.suspended:
        note: dict[str, Any] = {
            "id": f"{cause}balance_exhausted",
            "type": "balance_exhausted",
            **common,
        }
        if output.notify_email:
            note["email"] = output.notify_email.decode()
        documents.append(
            Document(names.NOTIFICATIONS, output.account, _json(note), headers, "notification")
        )
    return documents


def _cutoff(output: out.CallCut, headers: Headers) -> list[Document]:
    account, call_id = output.account.decode(), output.call_id.decode()
    common = {
        "account": account,
        "time": format_time_ms(output.issued_at_ms),
        "call_id": call_id,
        "reason": "balance_exhausted",
    }
    command = {
        "id": f"cutoff:{account}:{call_id}",
        "type": "call.cutoff",
        **common,
        "cutoff_at": format_time_ms(output.cutoff_at_ms),
    }
    note: dict[str, Any] = {
        "id": f"cutoff:{account}:{call_id}:notice",
        "type": "call_cut_off",
        **common,
    }
    if output.notify_email:
        note["email"] = output.notify_email.decode()
    return [
        Document(names.TELEPHONY_COMMANDS, output.account, _json(command), headers, "cutoff"),
        Document(names.NOTIFICATIONS, output.account, _json(note), headers, "notification"),
    ]


def _expired(output: out.SessionExpired, headers: Headers) -> list[Document]:
    account, call_id = output.account.decode(), output.call_id.decode()
    time = format_time_ms(output.issued_at_ms)
    head = ledger.ledger_head(
        entry=f"ttl:{account}:{call_id}:session_expired",
        account=account,
        time=time,
        kind="session_expired",
        amount_micros=output.amount_micros,
        currency=output.currency.decode(),
        source_event_id=f"ttl:{call_id}",
        source_topic="charger.sessions",
        quantity=output.covered_s,
        unit="second",
        unit_price_micros=output.price_per_minute_micros,
        extra={"call_id": call_id},
    )
    note = {
        "id": f"ttl:{account}:{call_id}:notice",
        "type": "session_expired",
        "account": account,
        "time": time,
        "call_id": call_id,
        "charged_micros": -output.amount_micros,
    }
    entry = ledger.complete(head, output.balance_after_micros)
    return [
        Document(names.LEDGER, output.account, entry, headers, "ledger"),
        Document(names.NOTIFICATIONS, output.account, _json(note), headers, "notification"),
    ]


def _requested(output: out.RechargeRequested, headers: Headers) -> list[Document]:
    request_id = output.request_id.decode()
    document = {
        "id": request_id,
        "type": "recharge.requested",
        "account": output.account.decode(),
        "time": format_time_ms(output.issued_at_ms),
        "request_id": request_id,
        "amount_micros": output.amount_micros,
        "available_micros": output.available_micros,
        "threshold_micros": output.threshold_micros,
        "currency": output.currency.decode(),
        "balance_micros": output.balance_micros,
    }
    return [
        Document(
            names.RECHARGE_REQUESTS, output.account, _json(document), headers, "recharge_request"
        )
    ]


def _declined(output: out.RechargeDeclined, headers: Headers) -> list[Document]:
    """A declined recharge: the failure e-mail and a low-balance notice."""
    account, request_id = output.account.decode(), output.request_id.decode()
    time, email = format_time_ms(output.issued_at_ms), output.notify_email.decode()
    failed = {
        "id": f"{request_id}:failed",
        "type": "recharge_failed",
        "account": account,
        "time": time,
        "email": email,
        "reason": output.reason.decode() or "declined",
        "request_id": request_id,
    }
    low: dict[str, Any] = {
        "id": f"{request_id}:low_balance",
        "type": "low_balance",
        "account": account,
        "time": time,
        "available_micros": output.available_micros,
        "threshold_micros": output.threshold_micros,
    }
    if email:
        low["email"] = email
    return [
        Document(names.NOTIFICATIONS, output.account, _json(failed), headers, "recharge_failed"),
        Document(names.NOTIFICATIONS, output.account, _json(low), headers, "notification"),
    ]


def _fee_applied(output: out.FeeApplied, headers: Headers) -> list[Document]:
    account, fee_id = output.account.decode(), output.fee_id.decode()
    document = {
        "id": f"fee:{account}:{fee_id}:applied",
        "type": "fee.applied",
        "account": account,
        "time": format_time_ms(output.issued_at_ms),
        "fee_id": fee_id,
        "ledger_entry_id": output.ledger_entry_id.decode(),
        "amount_micros": output.amount_micros,
        "balance_after_micros": output.balance_after_micros,
    }
    return [Document(names.CHARGE_RESULTS, output.account, _json(document), headers, "fee_applied")]


def _fee_refused(output: out.FeeRefused, headers: Headers) -> list[Document]:
    account, fee_id = output.account.decode(), output.fee_id.decode()
    document = {
        "id": f"fee:{account}:{fee_id}:refused",
        "type": "fee.refused",
        "account": account,
        "time": format_time_ms(output.issued_at_ms),
        "fee_id": fee_id,
        "reason": output.reason.decode(),
        "available_micros": output.available_micros,
    }
    return [Document(names.CHARGE_RESULTS, output.account, _json(document), headers, "fee_refused")]


def _low_balance(output: out.LowBalance, headers: Headers) -> list[Document]:
    account = output.account.decode()
    document: dict[str, Any] = {
        "id": f"low:{account}:{output.crossing}",
        "type": "low_balance",
        "account": account,
        "time": format_time_ms(output.issued_at_ms),
        "available_micros": output.available_micros,
        "threshold_micros": output.threshold_micros,
    }
    if output.notify_email:
        document["email"] = output.notify_email.decode()
    return [Document(names.NOTIFICATIONS, output.account, _json(document), headers, "notification")]


def refusal_headers(output: out.Refused) -> Headers:
    """A DLQ record's headers: the refused record's own (those kept, in order), then
    Spring's `kafka_dlt-*` of where, when and why, charger's reason code, and a trace
    context of charger's only if the record brought no `traceparent` of its own."""
    own = unpack_headers(output.headers)
    reason = output.reason.decode()
    timestamp_type = header_names.TIMESTAMP_TYPES.get(output.timestamp_type, "NoTimestampType")
    out: Headers = [
        *own,
        (header_names.DLT_ORIGINAL_TOPIC, output.source_topic),
        (header_names.DLT_ORIGINAL_PARTITION, header_names.encode_int32(output.source_partition)),
        (header_names.DLT_ORIGINAL_OFFSET, header_names.encode_int64(output.source_offset)),
        (header_names.DLT_ORIGINAL_TIMESTAMP, header_names.encode_int64(output.timestamp_ms)),
        (header_names.DLT_ORIGINAL_TIMESTAMP_TYPE, timestamp_type.encode()),
        (header_names.DLT_EXCEPTION_FQCN, header_names.exception_fqcn(reason).encode()),
        (header_names.DLT_EXCEPTION_MESSAGE, output.detail),
        (header_names.ERROR, output.reason),
    ]
    if output.headers_dropped:
        out.append((header_names.HEADERS_DROPPED, str(output.headers_dropped).encode()))
    if not any(name == header_names.TRACEPARENT for name, _ in own):
        out += trace_headers(output.trace or _made_for_refusal(output))
    return out


def _made_for_refusal(output: out.Refused) -> bytes:
    """The trace of a refusal that came without one (an outbox entry of an older build)."""
    where = b"%s/%d/%d" % (output.source_topic, output.source_partition, output.source_offset)
    return for_id(where.decode(errors="replace"))


def _refused(output: out.Refused, headers: Headers) -> list[Document]:
    # the refused record's key and value as they were, null included
    value = output.value
    return [Document(names.DLQ, output.key, value, refusal_headers(output), "dlq")]


def render(output: out.Output) -> list[Document]:
    """The Kafka records one outbox output stands for, in publishing order, each with the
    trace context of the output's cause (made from its first record's id when it has
    none: an output of a tick)."""
    renderer = _RENDERERS.get(type(output))
    if renderer is None:
        raise ValueError(f"no document for output {type(output).__name__}")
    trace = output.trace
    documents: list[Document] = renderer(output, trace_headers(trace) if trace else None)
    if trace or not documents or type(output) is out.Refused:  # a refusal's has its own
        return documents
    made = trace_headers(for_id(_id_of(documents[0])))
    return [d._replace(headers=made) for d in documents]


def _id_of(document: Document) -> str:
    found = orjson.loads(document.value or b"{}").get("id")
    return found if isinstance(found, str) else f"{document.topic}/{document.kind}"


def _timed_out(output: out.RechargeTimedOut, headers: Headers) -> list[Document]:
    return []  # counted by the metrics; nothing to publish


# Each takes its own output type: the table pairs them.
_RENDERERS: dict[type[out.Output], Any] = {
    out.LedgerEntry: _ledger,
    out.FloorCrossed: _floor,
    out.CallCut: _cutoff,
    out.SessionExpired: _expired,
    out.RechargeRequested: _requested,
    out.RechargeDeclined: _declined,
    out.RechargeTimedOut: _timed_out,
    out.Refused: _refused,
    out.FeeApplied: _fee_applied,
    out.FeeRefused: _fee_refused,
    out.LowBalance: _low_balance,
}
