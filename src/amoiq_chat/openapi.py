"""The OpenAPI 3.1 document, built from the routes' `@describe` declarations (apidoc.py) and the
marshmallow schemas the handlers validate with; the WebSocket frames from the frame registries."""
from __future__ import annotations

import re
from typing import Any, Iterable

import marshmallow
from aiohttp import web
from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from . import __version__
from .apidoc import RouteDoc, doc_of, summary_of
from .credentials import ADMIN, AGENT, PUBLISHABLE_KEY, SECRET_KEY, VISITOR
from .middlewares import UNLIMITED_PATHS
from .responses import ErrorEnvelope
from .ws.frames import ErrorFrame

OPENAPI_VERSION = "3.1.0"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Each role's credential, all sent as `Authorization: Bearer ...` (SPEC section 2).
SECURITY_SCHEMES = {
    ADMIN: ("adminJWT", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                         "description": "An admin's token (POST /api/auth/login or /api/auth/register)."}),
    AGENT: ("agentJWT", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                         "description": "An agent's token (POST /api/auth/agent-login)."}),
    VISITOR: ("visitorJWT", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                             "description": "A visitor's token bound to one session (POST /api/chat/anonymous-token)."}),
    PUBLISHABLE_KEY: ("publishableKey", {"type": "http", "scheme": "bearer", "bearerFormat": "pk_...",
                                         "description": "The tenant's publishable key (not secret: it is in pages)."}),
    SECRET_KEY: ("secretKey", {"type": "http", "scheme": "bearer", "bearerFormat": "sk_...",
                               "description": "The tenant's secret key, for servers only."}),
}
ERROR_TEXT = {304: "Not modified (If-None-Match matched the ETag)", 400: "Invalid input (VALIDATION_ERROR, MISSING_TENANT_ID)", 401: "No credential, or a bad one",
              403: "The credential may not do this", 404: "Unknown, or another tenant's", 409: "Conflict",
              413: "Body over MAX_BODY_BYTES", 429: "Rate limited (RATE_LIMIT_EXCEEDED, with Retry-After)",
              500: "Unexpected failure (INTERNAL_ERROR, with the request id)", 503: "A backing service is down"}
_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


class UndescribedRoutes(Exception):
    """Routes whose handler has no `@describe` (or no docstring)."""


def schema_name(schema: Any) -> str | None:
    """Components are named after their class; modified instances (partial, only) are inlined."""
    if isinstance(schema, marshmallow.Schema) and (schema.partial or schema.only or schema.exclude):
        return None
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__


def error_statuses(path: str, doc: RouteDoc) -> list[int]:
    """The error statuses a route can answer: those of its kind, plus its own."""
    statuses = {500, *doc.errors}
    if path not in UNLIMITED_PATHS:
        statuses.add(429)
    if doc.body is not None or doc.query is not None:
        statuses.add(400)
    if doc.body is not None:
        statuses.add(413)
    if doc.auth:
        statuses.update((401, 403))
    if _PARAM.search(path):  # 400: control characters in a path parameter (http.check_request_text)
        statuses.update((400, 404))
    return sorted(statuses)


def _content(answer: Any) -> dict:
    if answer is None:
        return {}
    if isinstance(answer, str):  # a media type: JSON that no schema describes (the document itself), or text
        return {"content": {answer: {"schema": {"type": "object" if answer.endswith("json") else "string"}}}}
    return {"content": {"application/json": {"schema": answer}}}


def operation(path: str, route_name: str | None, handler: Any, doc: RouteDoc) -> dict:
    """One OpenAPI operation object (its id: the handler's name, or the route's when one handler serves two paths)."""
    summary, description = summary_of(handler)
    op: dict[str, Any] = {"summary": summary, "operationId": route_name or handler.__name__,
                          "tags": [doc.tag] if doc.tag else []}
    if description:
        op["description"] = description
    params: list[dict] = [{"in": "path", "name": name, "required": True,
                           "schema": {"type": doc.path.get(name, "string")}} for name in _PARAM.findall(path)]
    if doc.query is not None:
        params.append({"in": "query", "schema": doc.query})
    params += [{"in": "header", "name": name, "required": False, "description": text, "schema": {"type": "string"}}
               for name, text in doc.headers.items()]
    if params:
        op["parameters"] = params
    if doc.body is not None:
        body = doc.body
        if doc.partial:
            body = (body if isinstance(body, type) else type(body))(partial=True)
        op["requestBody"] = {"required": doc.body_required, "content": {"application/json": {"schema": body}}}
    responses = {str(status): {"description": ERROR_TEXT.get(status, "OK"), **_content(answer)}
                 for status, answer in doc.answers.items()}
    for status in error_statuses(path, doc):
        responses.setdefault(str(status), {"description": ERROR_TEXT.get(status, "Error"),
                                           "content": {"application/json": {"schema": ErrorEnvelope}}})
    op["responses"] = responses
    if doc.auth:
        op["security"] = [{SECURITY_SCHEMES[role][0]: []} for role in doc.auth]
    return op


def described_routes(app: web.Application) -> Iterable[tuple[str, str, Any, RouteDoc]]:
    """(method, path, route, doc) of every route, the WebSocket ones too; UndescribedRoutes if any lacks one."""
    missing = []
    for route in app.router.routes():
        if route.method not in METHODS or route.resource is None:
            continue
        path = route.resource.canonical
        doc = doc_of(route.handler)
        if doc is None or not (doc.hidden or summary_of(route.handler)[0]):
            missing.append(f"{route.method} {path}")
            continue
        if not doc.hidden:
            yield route.method, path, route, doc
    if missing:
        raise UndescribedRoutes("routes without @describe and a docstring: " + ", ".join(missing))


def socket_section(spec: APISpec, handler: Any, doc: RouteDoc) -> dict:
    """A WebSocket route: its query parameters, and the frames it accepts (from its registry)."""
    registry = doc.socket
    receives = {}
    for frame_type, (schema, _handler, _fast) in sorted(registry.handlers.items()):
        name = schema_name(type(schema))
        if name not in spec.components.schemas:
            spec.components.schema(name, schema=type(schema))
        receives[frame_type] = {"$ref": f"#/components/schemas/{name}"}
    summary, description = summary_of(handler)
    return {"summary": summary, "description": description, "query": dict(doc.params),
            "receives": receives, "sends": dict(doc.sends),
            "errorFrame": {"$ref": "#/components/schemas/ErrorFrame"}}


def build_spec(app: web.Application) -> dict:
    """The whole document as a dict."""
    spec = APISpec(title="amoiq-chat", version=__version__, openapi_version=OPENAPI_VERSION,
                   plugins=[MarshmallowPlugin(schema_name_resolver=schema_name)],
                   info={"description": "Self-hostable live-chat backend. Errors are always the envelope "
                                        "(ErrorEnvelope). WebSocket routes and their frames: `x-websockets`."})
    for name, scheme in SECURITY_SCHEMES.values():
        spec.components.security_scheme(name, scheme)
    spec.components.schema("ErrorEnvelope", schema=ErrorEnvelope)
    spec.components.schema("ErrorFrame", schema=ErrorFrame)
    sockets: dict[str, Any] = {}
    paths: dict[str, dict] = {}
    handlers_seen: set[Any] = set()
    for method, path, route, doc in described_routes(app):
        if doc.socket is not None:
            sockets[path] = socket_section(spec, route.handler, doc)
            continue
        shared = route.handler in handlers_seen
        handlers_seen.add(route.handler)
        paths.setdefault(path, {})[method.lower()] = operation(path, route.name if shared else None, route.handler, doc)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    document = spec.to_dict()
    document["x-websockets"] = sockets
    return document
