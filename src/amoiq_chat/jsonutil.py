"""JSON encoding (orjson) and the timestamp format of the seeds."""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Encode to JSON bytes; datetimes as ISO 8601 with milliseconds and Z, UUIDs as strings."""
    return orjson.dumps(value, default=_default, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def dumps_str(value: Any) -> str:
    """Encode to a JSON string."""
    return dumps(value).decode()


loads = orjson.loads
JSONDecodeError = orjson.JSONDecodeError


def iso(value: dt.datetime | None) -> str | None:
    """Format a timestamp like the seeds: 2024-01-15T10:30:00.000Z."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def now_iso() -> str:
    """The current time in the seeds' format."""
    return iso(dt.datetime.now(dt.timezone.utc))


def new_uuid() -> str:
    """A random UUID as text."""
    return str(uuid.uuid4())
