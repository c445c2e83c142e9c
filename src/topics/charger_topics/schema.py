"""JSON Schemas and the AsyncAPI document, generated from the record and topic specs.

``python -m charger_topics.schema`` rewrites ``schemas/<type>.json`` and ``asyncapi.yaml`` next to
this module; a test fails when the files on disk differ from what the specs generate.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from charger_topics import headers, names, reasons
from charger_topics.records import COMMON, RECORDS, Field, RecordType, types_on

__all__ = [
    "CONSUMED",
    "SCHEMA_BASE",
    "TIME_LENGTH",
    "TIME_PATTERN",
    "asyncapi_document",
    "dlq_headers",
    "field_schema",
    "input_headers",
    "load_schema",
    "output_headers",
    "record_schema",
    "rendered_files",
    "required_keys",
    "write_all",
]

DRAFT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://charger.dev/schemas/"
KAFKA_BINDING = "0.5.0"

# RFC 3339 in UTC with exactly three fractional digits and a ``Z``: only real calendar dates
# (leap years included), hours 00-23, no leap second. ASCII digits only, written [0-9]
# because ``\d`` also matches other scripts' digits in some regex engines.
_D = "[0-9]"
_LEAP_YEAR = f"(?:{_D}{_D}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_DATE = (
    f"(?:{_D}{{4}}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12]{_D}|3[01])"
    f"|(?:0[469]|11)-(?:0[1-9]|[12]{_D}|30)"
    f"|02-(?:0[1-9]|1{_D}|2[0-8]))"
    f"|{_LEAP_YEAR}-02-29)"
)
TIME_PATTERN = f"^{_DATE}T(?:[01]{_D}|2[0-3]):[0-5]{_D}:[0-5]{_D}\\.{_D}{{3}}Z$"
# Every valid time is exactly this long. Stating it in the schema also keeps engines whose
# ``$`` matches before a trailing newline (Python's) from accepting "...Z\n".
TIME_LENGTH = len("2026-11-22T10:00:00.000Z")


def field_schema(f: Field) -> dict[str, Any]:
    """The JSON Schema of one field."""
    out: dict[str, Any]
    if f.kind == "string":
        out = {"type": "string", "minLength": 1, "maxLength": f.max_length}
    elif f.kind == "time":
        out = {
            "type": "string",
            "minLength": TIME_LENGTH,
            "maxLength": TIME_LENGTH,
            "pattern": TIME_PATTERN,
            "format": "date-time",
        }
    elif f.kind == "integer":
        out = {"type": "integer"}
        if f.minimum is not None:
            out["minimum"] = f.minimum
        if f.maximum is not None:
            out["maximum"] = f.maximum
    elif f.kind == "boolean":
        out = {"type": "boolean"}
    elif f.kind == "enum":
        out = {"enum": list(f.values)}
    elif f.kind == "object":
        out = {"type": "object"}
        if f.fields:
            out["properties"] = {k: field_schema(v) for k, v in f.fields.items()}
            out["required"] = [k for k in f.fields if k not in f.optional]
            out["additionalProperties"] = True
    else:  # pragma: no cover - Kind is a closed Literal
        raise ValueError(f"unknown field kind {f.kind!r}")
    if f.description:
        out["description"] = f.description
    return out


def required_keys(rt: RecordType) -> list[str]:
    """Keys a record of type ``rt`` must carry, common ones first."""
    common = [k for k in COMMON if rt.keyed_by_account or k != "account"]
    return common + list(rt.required)


def record_schema(rt: RecordType) -> dict[str, object]:
    """The draft 2020-12 JSON Schema of one record type."""
    properties: dict[str, Any] = {k: field_schema(v) for k, v in COMMON.items()}
    properties["type"] = {"const": rt.type, "description": COMMON["type"].description}
    properties.update({k: field_schema(v) for k, v in rt.required.items()})
    properties.update({k: field_schema(v) for k, v in rt.optional.items()})
    key = names.TOPICS[rt.topic].key
    return {
        "$schema": DRAFT,
        "$id": f"{SCHEMA_BASE}{rt.type}.json",
        "title": rt.type,
        "description": f"{rt.description} Travels on `{rt.topic}`, keyed by {key}.",
        "type": "object",
        "required": required_keys(rt),
        "properties": properties,
        "additionalProperties": True,
    }


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


# Topics charger reads; it writes every other topic.
CONSUMED = (
    names.TELEPHONY_EVENTS,
    names.BILLING_ACCOUNTS,
    names.RECHARGE_RESULTS,
    names.RATE_PLANS,
)

# A traceparent of W3C Trace Context: any version as an input may send it; version 00 as
# charger writes it.
TRACEPARENT_ANY = "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$"
TRACEPARENT_00 = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
# Headers whose value is a binary integer (Spring's encoding), not text.
_BINARY_HEADERS = (
    headers.DLT_ORIGINAL_PARTITION,
    headers.DLT_ORIGINAL_OFFSET,
    headers.DLT_ORIGINAL_TIMESTAMP,
)


def _header(name: str, description: str) -> dict[str, Any]:
    if name in _BINARY_HEADERS:
        return {
            "type": "string",
            "contentMediaType": "application/octet-stream",
            "description": description,
        }
    out: dict[str, Any] = {"type": "string", "description": description}
    if name == headers.TRACEPARENT:
        out["pattern"] = TRACEPARENT_00
    return out


def input_headers() -> dict[str, Any]:
    """The headers charger reads on a record it consumes: all optional."""
    return {
        "type": "object",
        "properties": {
            headers.TRACEPARENT: {
                "type": "string",
                "pattern": TRACEPARENT_ANY,
                "description": "W3C trace context of the producer's span (optional). Passed "
                "on unchanged to every record this one causes; without one (or with one "
                "that does not parse) charger makes one. Other headers are ignored, and "
                "kept on the record's DLQ record if it is refused.",
            },
            headers.TRACESTATE: {
                "type": "string",
                "description": "W3C tracestate (optional), passed on with a valid "
                "traceparent (at most 512 characters: list members past that are left off).",
            },
        },
        "additionalProperties": True,
    }


def output_headers() -> dict[str, Any]:
    """The headers of every record charger publishes but a DLQ record."""
    return {
        "type": "object",
        "required": [headers.TRACEPARENT],
        "properties": {name: _header(name, d) for name, d in headers.TRACE_HEADERS.items()},
    }


def dlq_headers() -> dict[str, Any]:
    """The headers of a DLQ record: the refused record's own, then charger's."""
    properties = {name: _header(name, d) for name, d in headers.DLQ_HEADERS.items()}
    properties[headers.ERROR]["enum"] = list(reasons.ALL)
    return {
        "type": "object",
        "description": "The refused record's own headers first, untouched and in order (as "
        "many whole headers as fit in 16 KiB), then these, in this order: Spring for Apache "
        "Kafka's dead-letter convention (kafka_dlt-*, with Spring's binary integers), then "
        "charger.error. Spring's rather than Kafka Connect's __connect.errors.* because only "
        "Spring's names the original record's timestamp and timestamp type. A name the "
        "refused record also carried appears twice: the last one is charger's.",
        "required": list(headers.DLQ_REQUIRED),
        "properties": properties,
        "additionalProperties": True,
    }


def _channel_bindings(spec: names.TopicSpec) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for k, v in spec.topic_configs().items():
        config[k] = [v] if k == "cleanup.policy" else int(v) if k.endswith(".ms") else v
    kafka: dict[str, Any] = {"topic": spec.name, "partitions": spec.partitions}
    if config:
        kafka["topicConfiguration"] = config
    kafka["bindingVersion"] = KAFKA_BINDING
    return {"kafka": kafka}


def _message(
    title: str, summary: str, key: str, payload: dict[str, Any], headers: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": title,
        "title": title,
        "summary": summary,
        "contentType": "application/json",
        "headers": headers,
        "payload": payload,
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": key},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def asyncapi_document() -> dict[str, object]:
    """The AsyncAPI 3.0.0 document: every topic, its messages, and what charger does with it."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in names.TOPICS.values():
        cid = _ident(spec.name)
        refs: dict[str, Any] = {}
        for rt in types_on(spec.name):
            mid = _ident(rt.type)
            if mid in messages:
                raise ValueError(f"two record types map to message id {mid!r}")
            schemas[mid] = record_schema(rt)
            payload = {"$ref": f"#/components/schemas/{mid}"}
            kept = input_headers() if spec.name in CONSUMED else output_headers()
            messages[mid] = _message(rt.type, rt.description, spec.key, payload, kept)
            refs[mid] = {"$ref": f"#/components/messages/{mid}"}
        if spec.name == names.DLQ:
            mid = "dlq_record"
            payload = {
                "description": "The refused record's value: the original bytes untouched "
                "(null when it was null)"
            }
            messages[mid] = _message(
                "dlq.record", spec.description, spec.key, payload, dlq_headers()
            )
            messages[mid]["contentType"] = "application/octet-stream"
            refs[mid] = {"$ref": f"#/components/messages/{mid}"}
        channels[cid] = {
            "address": spec.name,
            "title": spec.name,
            "description": f"{spec.description} Producer: {spec.producer}.",
            "servers": [{"$ref": "#/servers/kafka"}],
            "messages": refs,
            "bindings": _channel_bindings(spec),
        }
        action = "receive" if spec.name in CONSUMED else "send"
        operations[f"{action}_{cid}"] = {
            "action": action,
            "channel": {"$ref": f"#/channels/{cid}"},
            "summary": f"charger {'consumes' if action == 'receive' else 'produces'} {spec.name}.",
            "messages": [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in refs],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "charger",
            "version": "0.1.0",
            "description": "Real-time charging for cloud telephony: call and SMS events in, "
            "balances moved once, ledger entries, commands and notifications out. Every "
            "record is one UTF-8 JSON object; money is integer micro-units; times are "
            "RFC 3339 UTC with milliseconds; extra fields may be added.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "localhost:9092",
                "protocol": "kafka",
                "description": "Local development broker.",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def rendered_files() -> dict[str, str]:
    """Generated file contents by path relative to the ``topics`` package directory."""
    out: dict[str, str] = {}
    for rt in RECORDS.values():
        text = orjson.dumps(
            record_schema(rt), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
        ).decode()
        out[f"schemas/{rt.type}.json"] = text + "\n"
    out["asyncapi.yaml"] = yaml.safe_dump(
        asyncapi_document(), sort_keys=False, allow_unicode=True, width=100
    )
    return out


def write_all(root: Path) -> None:
    """Write the generated files under ``root`` (the ``topics`` package directory) and remove
    schema files no record type generates any more."""
    files = rendered_files()
    (root / "schemas").mkdir(parents=True, exist_ok=True)
    for stale in (root / "schemas").glob("*.json"):
        if f"schemas/{stale.name}" not in files:
            stale.unlink()
    for rel, text in files.items():
        (root / rel).write_text(text, encoding="utf-8")


def load_schema(record_type: str) -> dict[str, object]:
    """The packaged JSON Schema of ``record_type``; KeyError for a type the contract lacks."""
    if record_type not in RECORDS:
        raise KeyError(record_type)
    text = resources.files("charger_topics").joinpath("schemas").joinpath(f"{record_type}.json")
    schema: dict[str, object] = orjson.loads(text.read_bytes())
    return schema


def stale_files(root: Path) -> list[str]:
    """Generated files that differ from (or are missing on) disk under ``root``."""
    out = []
    for rel, text in rendered_files().items():
        path = root / rel
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(rel)
    return out


if __name__ == "__main__":
    import sys

    here = Path(__file__).resolve().parent
    if "--check" in sys.argv[1:]:
        stale = stale_files(here)
        if stale:
            print("contract files out of date, run `python -m charger_topics.schema`:", *stale)
            sys.exit(1)
        print(f"contract files up to date ({len(rendered_files())} files)")
    else:
        write_all(here)
