"""JSON logs: one object per line on standard output, with context, never secrets.

Every line has ``time`` (RFC 3339 UTC, milliseconds), ``level``, ``logger`` and
``message``; whatever a call passes in ``extra`` (``event_id``, ``account``, ``call_id``,
``reason``…) is added as top-level fields, and an exception as ``exc``. Secrets never
reach the output: ``SecretStr`` values print as asterisks, fields named like a secret
are masked, and in any text the password part of a URL (``redis://user:pw@host``) and
the value after a secret-named key (``sasl_plain_password='…'``) are replaced.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

import orjson
from pydantic import SecretBytes, SecretStr

__all__ = ["JsonFormatter", "StdoutHandler", "logging_config", "redact"]

MASK = "***"

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_FIELDS = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
) | {"message", "asctime", "taskName"}

# The password runs to the last "@" before the host: a password may itself hold an "@".
_URL_PASSWORD = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*):[^\s/]*@")
# `password=...`, `'sasl_plain_password': '...'` and the like inside free text (a library
# logging its keyword arguments); a SecretStr's repr is already masked and stays readable.
_KEY_VALUE = re.compile(
    r"""(?i)(\b[\w.-]*(?:password|passwd|secret|api_?key)[\w.-]*['"]?\s*[:=]\s*)"""
    r"""(?!SecretStr\(|SecretBytes\()('[^']*'|"[^"]*"|[^\s,;&)}'"]+)"""
)
_SECRET_NAME = re.compile(
    r"(?i)(password|passwd|secret|token|api_?key|credential|redis_url|database_url|dsn)"
)


def redact(text: str) -> str:
    """`text` with the password of every URL and every `password=` value in it masked."""
    return _KEY_VALUE.sub(rf"\1{MASK}", _URL_PASSWORD.sub(rf"\1:{MASK}@", text))


def _clean(name: str, value: Any, depth: int = 0) -> Any:
    """A JSON-ready, secret-free copy of an `extra` value."""
    if isinstance(value, SecretStr | SecretBytes):
        return str(value)  # asterisks
    if _SECRET_NAME.search(name) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, bytes):
        return redact(value.decode("utf-8", "replace"))
    if depth < 4 and isinstance(value, Mapping):
        return {str(k): _clean(str(k), v, depth + 1) for k, v in value.items()}
    if depth < 4 and isinstance(value, list | tuple | set | frozenset):
        return [_clean(name, v, depth + 1) for v in value]
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[
                :-6
            ]
            + "Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_") and key not in doc:
                doc[key] = _clean(key, value)
        if record.exc_info:
            doc["exc"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            doc["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(doc, default=lambda v: redact(str(v))).decode()


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the process's real standard output, even when `sys.stdout` is redirected.

    The Faust worker redirects `print` into logging; writing through `sys.stdout` then
    would loop back into the logger.
    """

    def __init__(self) -> None:
        stream: IO[str] = sys.__stdout__ if sys.__stdout__ is not None else sys.stdout
        super().__init__(stream)


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` document: JSON lines on stdout at `level`."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stdout": {"()": StdoutHandler, "formatter": "json"}},
        "root": {"level": level.upper(), "handlers": ["stdout"]},
    }
