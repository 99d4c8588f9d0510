"""Request and response helpers shared by the views: JSON in, validation, JSON out."""
from __future__ import annotations

import functools
from typing import Any, Mapping

import marshmallow
from aiohttp import web

from .db import as_id
from .errors import PayloadTooLarge, UnsupportedMediaType, ValidationError
from .jsonutil import JSONDecodeError, dumps, loads
from .untrusted import control_problem


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """Encode `data` once with orjson."""
    return web.Response(body=dumps(data), status=status, headers=headers, content_type="application/json")


async def read_json(request: web.Request, *, required: bool = True) -> dict:
    """Return the body as a JSON object, or raise a 400/413/415 in the envelope."""
    if request.body_exists and request.content_type != "application/json":
        raise UnsupportedMediaType("The request body must be JSON (Content-Type: application/json)",
                                   errors={"Content-Type": "must be application/json"})
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


# Headers the application reads whose text reaches anything beyond a comparison.
CHECKED_HEADERS = ("Origin", "X-Tenant-ID")


def check_request_text(request: web.Request) -> None:
    """Refuse NUL and control characters in path parameters, query values and the headers read (400
    naming e.g. `query.userId`), as the schemas' `Str` does in bodies and frames."""
    places = [("path", request.match_info.items()), ("query", request.query.items()),
              ("header", ((name, request.headers.get(name, "")) for name in CHECKED_HEADERS))]
    for place, items in places:
        for name, value in items:
            problem = control_problem(value)
            if problem:
                field = f"{place}.{name}"
                raise ValidationError(f"Validation error: {field}: {problem}", errors={field: problem})


def path_id(request: web.Request, name: str) -> int | None:
    """A numeric path parameter as a database id (BIGINT), or None when it cannot be one."""
    return as_id(request.match_info.get(name, ""))
