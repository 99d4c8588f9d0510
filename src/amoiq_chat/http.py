"""Request and response helpers shared by the views: JSON in, validation, JSON out."""
from __future__ import annotations

import functools
import re
from typing import Any, Mapping

import marshmallow
from aiohttp import web

from .db import as_id
from .errors import PayloadTooLarge, ValidationError
from .jsonutil import JSONDecodeError, dumps, loads


# NUL and the other C0 control characters (tab, line feed and carriage return are text), and DEL:
# PostgreSQL refuses NUL in text and JSON, and none of them belongs in a name, an id or a message.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def control_characters(data: Any, prefix: str = "") -> dict[str, str]:
    """{field: problem} for each string (or object key) of `data` holding a control character."""
    found: dict[str, str] = {}
    if isinstance(data, str):
        if CONTROL_CHARACTERS.search(data):
            found[prefix or "body"] = "must not contain control characters"
    elif isinstance(data, Mapping):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(key, str) and CONTROL_CHARACTERS.search(key):
                found[name] = "must not contain control characters"
            else:
                found.update(control_characters(value, name))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found.update(control_characters(value, f"{prefix}.{index}" if prefix else str(index)))
    return found


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """Encode `data` once with orjson."""
    return web.Response(body=dumps(data), status=status, headers=headers, content_type="application/json")


async def read_json(request: web.Request, *, required: bool = True) -> dict:
    """Return the body as a JSON object, or raise a 400/413 in the envelope."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(exc.text or "Request body too large") from None
    if not raw:
        if required:
            raise ValidationError("Request body must be a JSON object", errors={"body": "missing"})
        return {}
    return json_object(raw, "Request body", "body")


def json_object(raw: bytes | str, label: str, field: str) -> dict:
    """Decode a JSON object (a request body, a socket frame), or raise VALIDATION_ERROR naming `field`."""
    try:
        data = loads(raw)
    except JSONDecodeError:
        raise ValidationError(f"{label} is not valid JSON", errors={field: "invalid JSON"}) from None
    if not isinstance(data, dict):
        raise ValidationError(f"{label} must be a JSON object", errors={field: "must be an object"})
    return data


def flatten_errors(messages: Any) -> dict[str, str]:
    """Turn marshmallow's nested messages into {"field.sub": "problem"}."""
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, sub in value.items():
                name = "body" if key == "_schema" else str(key)
                walk(f"{prefix}.{name}" if prefix else name, sub)
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            flat[prefix] = " ".join(value)
        elif isinstance(value, list):
            for index, sub in enumerate(value):
                walk(f"{prefix}.{index}", sub)
        else:
            flat[prefix] = str(value)

    walk("", messages)
    return flat


def validate(schema: marshmallow.Schema | type[marshmallow.Schema], data: Mapping[str, Any], *,
             partial: bool = False) -> dict:
    """Load `data` with `schema` (an instance, or a class: its one shared instance), or raise
    VALIDATION_ERROR naming each bad field.

    `partial=True` makes the top-level fields optional (a partial update); objects nested in
    them (list items, sub-objects) are still validated whole.
    """
    if isinstance(schema, type):
        schema = shared_schema(schema)
    refused = control_characters(data)
    if refused:
        summary = "; ".join(f"{field}: {problem}" for field, problem in refused.items())
        raise ValidationError(f"Validation error: {summary}", errors=refused)
    try:
        return schema.load(data, partial=tuple(schema.load_fields) if partial else False)
    except marshmallow.ValidationError as exc:
        errors = flatten_errors(exc.messages)
        summary = "; ".join(f"{field}: {problem}" for field, problem in errors.items())
        raise ValidationError(f"Validation error: {summary}", errors=errors) from None


@functools.cache
def shared_schema(cls: type[marshmallow.Schema]) -> marshmallow.Schema:
    """One instance of a schema class for every request: a new instance deep-copies each declared
    field (64 us for the message body, three times the cost of loading one), and `load` keeps no
    state on the instance."""
    return cls()


def path_id(request: web.Request, name: str) -> int | None:
    """A numeric path parameter as a database id (BIGINT), or None when it cannot be one."""
    return as_id(request.match_info.get(name, ""))
