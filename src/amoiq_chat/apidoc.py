"""How a route describes itself for the OpenAPI document: `@describe(...)` next to its handler.

    @routes.post("/api/agents", name="agents")
    @describe("agents", auth=(ADMIN,), body=AgentSchema, answers={201: AgentAnswer}, errors=(409,))
    async def create_agent(request): '''Add an agent to the tenant.'''

The summary is the first line of the handler's docstring, the rest of it the description. The
request schemas are the ones the handler validates with; `answers` maps each success status to
its marshmallow schema (None: no body; a string: a non-JSON media type). Error statuses are
the SPEC's envelope: `errors` adds route-specific ones to those every route of its kind can
answer (see `openapi.error_statuses`). A route that should not appear in the document (a
static asset) says `describe(hidden=True)`; a WebSocket route says `describe(socket=registry, sends={...}, params={...})`.
Nothing here runs per request: `openapi.build_spec` reads these at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import marshmallow

ATTRIBUTE = "__apidoc__"


@dataclass(frozen=True)
class RouteDoc:
    """What a handler declared about itself."""

    tag: str = ""
    auth: tuple[str, ...] = ()  # roles of credentials.py that may call it; () = public
    body: Any = None  # marshmallow schema (class or instance) of the JSON body
    partial: bool = False  # the body is a partial update: every top-level field optional
    body_required: bool = True
    query: Any = None  # marshmallow schema of the query string
    path: Mapping[str, str] = field(default_factory=dict)  # path parameter -> JSON type (default string)
    answers: Mapping[int, Any] = field(default_factory=dict)
    errors: tuple[int, ...] = ()
    hidden: bool = False
    socket: Any = None  # ws.registry.Registry of a WebSocket route (its frames are documented from it)
    sends: Mapping[str, str] = field(default_factory=dict)  # a WebSocket route: frame type it sends -> what it is
    params: Mapping[str, str] = field(default_factory=dict)  # a WebSocket route: query parameter -> what it is
    headers: Mapping[str, str] = field(default_factory=dict)  # request header -> description


def describe(tag: str = "", **declared: Any) -> Callable[[Callable], Callable]:
    """Attach a `RouteDoc` to a handler (returned unchanged)."""
    if "auth" in declared:
        declared["auth"] = tuple(declared["auth"])
    if "errors" in declared:
        declared["errors"] = tuple(declared["errors"])
    doc = RouteDoc(tag=tag, **declared)

    def attach(handler: Callable) -> Callable:
        setattr(handler, ATTRIBUTE, doc)
        return handler

    return attach


def doc_of(handler: Callable) -> RouteDoc | None:
    """The RouteDoc a handler declared, or None."""
    return getattr(handler, ATTRIBUTE, None)


def summary_of(handler: Callable) -> tuple[str, str]:
    """(summary, description) from the handler's docstring; ("", "") without one."""
    text = (handler.__doc__ or "").strip()
    first, _, rest = text.partition("\n")
    return first.strip(), " ".join(line.strip() for line in rest.splitlines()).strip()
